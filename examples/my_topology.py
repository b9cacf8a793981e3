"""A topology of your own: agents in pairs, each agent of the second half checking the
answer of its partner in the first, and a majority vote over the checkers decides.

From Python, call it; from YAML, name it (examples/my_topology.yaml):

    topology: {kind: python, ref: "my_topology:pairs", settings: {quorum: 2}}

A topology is a function of the pipeline's agents (in file order) and the team's `name`,
with its settings as keyword arguments, that returns a `Team`; agentfab checks the team as
it checks a built-in one.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentfab import Agent, Aggregate, ConfigError, Team
from agentfab.aggregators import Majority
from agentfab.topologies import custom


def pairs(agents: Sequence[Agent], *, name: str = "pairs", quorum: int | None = None) -> Team:
    if len(agents) < 2 or len(agents) % 2:
        raise ConfigError(f"pairs needs an even number of agents, got {len(agents)}")
    half = len(agents) // 2
    first, second = agents[:half], agents[half:]
    edges = [(a.name, b.name) for a, b in zip(first, second, strict=True)]
    edges += [(b.name, "vote") for b in second]
    return custom([*agents, Aggregate("vote", Majority(), quorum)], edges, name=name)
