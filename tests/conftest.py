"""Shared fixtures. The embedded model is loaded once per test session."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from agentfab.serving.embedded import EmbeddedClient

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
async def embedded() -> AsyncIterator[EmbeddedClient]:
    """The real embedded default model (SmolLM2-135M-Instruct), shared by the session."""
    from agentfab.serving.embedded import EmbeddedClient

    client = EmbeddedClient(seed=0)
    await client.load()
    yield client
    await client.aclose()
