"""`Spec`: what every part of the pipeline schema is, and the helpers the parts share.

A spec is frozen, refuses unknown keys and raises `ConfigError` lines (`UserModel`). Specs
describe; they call no model and start no server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentfab.agent import Agent
from agentfab.budget import Budget
from agentfab.orchestrator import RunSettings
from agentfab.yaml_loader import FieldError, Loc, UserModel, did_you_mean, field_names


class Spec(UserModel):
    """Every part of the pipeline schema: frozen, no unknown keys, ConfigError lines."""


def pick(agents: Mapping[str, Agent], names: Sequence[str] | None, field: Loc) -> list[Agent]:
    """The agents `names` lists (every agent when it lists none), in its order."""
    if names is None:
        return list(agents.values())
    for i, name in enumerate(names):
        if name not in agents:
            raise FieldError((*field, i), unknown(name, agents))
    return [agents[n] for n in names]


def unknown(value: str, known: Mapping[str, Any]) -> str:
    return f"unknown name {value!r}{did_you_mean(value, known)}"


def schema_keys() -> set[str]:
    """Every key the schema knows, for "did you mean" hints."""
    return field_names(RunSettings, Budget)
