"""Model serving: the embedded default model and model servers.

Every name is imported on first use: `EmbeddedClient` needs torch and transformers
(the `embedded` extra), which the rest of agentfab does not, and importing
`default_model` eagerly would make `python -m agentfab.serving.default_model` warn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentfab.serving.default_model import DEFAULT_MODEL_NAME, default_model_path
    from agentfab.serving.embedded import EmbeddedClient

__all__ = ["DEFAULT_MODEL_NAME", "EmbeddedClient", "default_model_path"]

_HOMES = {
    "DEFAULT_MODEL_NAME": "agentfab.serving.default_model",
    "default_model_path": "agentfab.serving.default_model",
    "EmbeddedClient": "agentfab.serving.embedded",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
