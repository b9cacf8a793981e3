"""Model serving: the embedded default model and model servers.

`EmbeddedClient` is imported on first use: it needs torch and transformers
(the `embedded` extra), which the rest of agentfab does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentfab.serving.default_model import DEFAULT_MODEL_NAME, default_model_path

if TYPE_CHECKING:
    from agentfab.serving.embedded import EmbeddedClient

__all__ = ["DEFAULT_MODEL_NAME", "EmbeddedClient", "default_model_path"]


def __getattr__(name: str) -> Any:
    if name == "EmbeddedClient":
        from agentfab.serving.embedded import EmbeddedClient

        return EmbeddedClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
