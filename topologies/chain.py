"""Chain: each agent refines its predecessor's answer; the last one answers."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from agentfab.agent import Agent
from agentfab.errors import ConfigError
from agentfab.team import Team


def chain(agents: Sequence[Agent], *, name: str = "chain") -> Team:
    if not agents:
        raise ConfigError(f"team {name!r}: chain needs at least one agent")
    edges = [(a.name, b.name) for a, b in pairwise(agents)]
    return Team.from_edges(agents, edges, name=name)
