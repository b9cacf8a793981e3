"""Model serving: the embedded default model and model servers.

Every name is imported on first use: `EmbeddedClient` needs torch and transformers
(the `embedded` extra), which the rest of agentfab does not, and importing
`default_model` eagerly would make `python -m agentfab.serving.default_model` warn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfab.lazy import exports

if TYPE_CHECKING:
    from agentfab.serving.default_model import DEFAULT_MODEL_NAME, default_model_path
    from agentfab.serving.embedded import EmbeddedClient

__all__ = ["DEFAULT_MODEL_NAME", "EmbeddedClient", "default_model_path"]

_HOMES = {
    "DEFAULT_MODEL_NAME": "agentfab.serving.default_model",
    "default_model_path": "agentfab.serving.default_model",
    "EmbeddedClient": "agentfab.serving.embedded",
}

__getattr__, __dir__ = exports(__name__, _HOMES, __all__)
