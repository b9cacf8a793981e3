"""An agent is data: a name, a role, a model and how to sample it. Only the Orchestrator acts."""

from __future__ import annotations

from pydantic import Field

from agentfab.yaml_loader import UserModel


class Agent(UserModel):
    """One member of a team; a mistake in its fields raises one `ConfigError` line."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    """Unique within a team; letters, digits, `_`, `.`, `-`."""
    model: str = "default"
    """Name of the model (a key of the orchestrator's clients)."""
    role: str = ""
    """The agent's persona or instructions; shown after the text the team shares."""
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=256, ge=1)
    """Longest answer, in tokens."""
    samples: int = Field(default=1, ge=1)
    """Samples drawn per call (`n`); several samples are voted on inside the agent."""
    seed: int | None = None
