"""Star: a hub hands the task to every worker and aggregates their answers.

Like every topology: it builds a `Team` and runs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentfab.agent import Agent
from agentfab.aggregators.base import Aggregator
from agentfab.team import Aggregate, Node, ShapeError, Team


def star(
    workers: Sequence[Agent],
    aggregator: Aggregator,
    *,
    hub: str = "hub",
    quorum: int | None = None,
    name: str = "star",
) -> Team:
    """Workers answer independently; the hub aggregates (as soon as `quorum` answered)."""
    if not workers:
        raise ShapeError(name, "star needs at least one worker", setting="workers")
    nodes: list[Node] = [*workers, Aggregate(hub, aggregator, quorum)]
    return Team.from_edges(nodes, [(w.name, hub) for w in workers], name=name)
