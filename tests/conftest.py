"""Shared fixtures. The embedded model is loaded once per test session.

Tests on a real part ask for it by fixture (`real_vllm`, `real_embedded`, `real_ray`,
`real_browser`, or `embedded` itself): in CI a missing or broken part fails them, elsewhere it skips them with the reason
(tests/integration/real_parts.py), and the session's summary names what was not tested.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from tests.integration import real_parts

if TYPE_CHECKING:
    from agentfab.serving.embedded import EmbeddedClient

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def real_vllm() -> None:
    """vLLM can start a server here (imports checked in a fresh interpreter, model found)."""
    real_parts.require("vLLM", real_parts.vllm_problem())


@pytest.fixture(scope="session")
def real_embedded() -> None:
    """The embedded default model can be loaded here (its libraries import, model found)."""
    real_parts.require("the embedded model", real_parts.embedded_problem())


@pytest.fixture(scope="session")
def real_ray() -> None:
    """Ray is installed and can start a local cluster here."""
    real_parts.require("Ray", real_parts.ray_problem())


@pytest.fixture(scope="session")
def real_browser() -> None:
    """A headless Chromium and its driver are here, and selenium to drive them."""
    real_parts.require("Chromium", real_parts.browser_problem())


@pytest.fixture(scope="session")
async def embedded(real_embedded: None) -> AsyncIterator[EmbeddedClient]:
    """The real embedded default model (SmolLM2-135M-Instruct), shared by the session."""
    from agentfab.serving.embedded import EmbeddedClient

    client = EmbeddedClient(seed=0)
    await client.load()
    yield client
    await client.aclose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not real_parts.skipped:
        return
    terminalreporter.section("real parts not tested (CI=true makes these failures)")
    for part, problem in real_parts.skipped.items():
        terminalreporter.write_line(f"{part}: {problem}; its tests were skipped")
