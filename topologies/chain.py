"""Chain: each agent refines its predecessor's answer; the last one answers.

Like every topology: it builds a `Team` and runs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentfab.agent import Agent
from agentfab.aggregators.base import Aggregator
from agentfab.team import Aggregate, Node, ShapeError, Team


def chain(agents: Sequence[Agent], *, vote: Aggregator | None = None, name: str = "chain") -> Team:
    """Agents in order. With `vote`, every step's answer passes through an aggregate
    node `<agent>-vote` (for example first-to-ahead-by-k) before the next agent reads it."""
    if not agents:
        raise ShapeError(name, "chain needs at least one agent", setting="order")
    nodes: list[Node] = list(agents)
    steps = [a.name for a in agents]
    edges: list[tuple[str, str]] = []
    if vote is not None:
        nodes += [Aggregate(f"{a.name}-vote", vote) for a in agents]
        edges += [(a.name, f"{a.name}-vote") for a in agents]
        steps = [f"{a.name}-vote" for a in agents]
    edges += [(step, agent.name) for step, agent in zip(steps, agents[1:], strict=False)]
    return Team.from_edges(nodes, edges, name=name)
