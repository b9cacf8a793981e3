"""Tree: leaves answer, inner nodes combine their children's answers, up to one root.

Like every topology: it builds a `Team` and runs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agentfab.agent import Agent
from agentfab.aggregators.base import Aggregator
from agentfab.team import Aggregate, Node, ShapeError, Team

MAX_LEAVES = 4096


def tree(
    agents: Sequence[Agent],
    aggregator: Aggregator | None = None,
    *,
    branching: int = 2,
    depth: int = 2,
    combiner: Agent | None = None,
    context_lengths: Mapping[str, int] | None = None,
    name: str = "tree",
) -> Team:
    """A `branching`-ary tree of `depth` levels below the root.

    The branching**depth leaves are copies of `agents`, taken in turn and
    named `<agent>-<i>`. Inner nodes either apply `aggregator` or, with
    `combiner`, are copies of that agent reading their children's answers;
    then each combiner's fan-in is checked against `context_lengths`.
    """
    _check_shape(name, agents, aggregator, combiner, branching, depth)
    leaves: list[Node] = [
        agents[i % len(agents)].model_copy(update={"name": f"{agents[i % len(agents)].name}-{i}"})
        for i in range(branching**depth)
    ]
    nodes: list[Node] = list(leaves)
    edges: list[tuple[str, str]] = []
    level = [n.name for n in leaves]
    for height in range(1, depth + 1):
        parents = []
        for i in range(0, len(level), branching):
            parent = _inner(f"L{height}-{i // branching}", aggregator, combiner)
            nodes.append(parent)
            edges += [(child, parent.name) for child in level[i : i + branching]]
            parents.append(parent.name)
        level = parents
    team = Team.from_edges(nodes, edges, name=name)
    team.validate(context_lengths)
    return team


def _inner(name: str, aggregator: Aggregator | None, combiner: Agent | None) -> Node:
    if combiner is not None:
        return combiner.model_copy(update={"name": name})
    assert aggregator is not None
    return Aggregate(name, aggregator)


def _check_shape(
    name: str,
    agents: Sequence[Agent],
    aggregator: Aggregator | None,
    combiner: Agent | None,
    branching: int,
    depth: int,
) -> None:
    if not agents:
        raise ShapeError(name, "tree needs at least one leaf agent", setting="leaves")
    if branching < 2:
        raise ShapeError(
            name, f"tree branching must be at least 2, got {branching}", setting="branching"
        )
    if depth < 1:
        raise ShapeError(name, f"tree depth must be at least 1, got {depth}", setting="depth")
    if depth > MAX_LEAVES.bit_length() or branching**depth > MAX_LEAVES:
        raise ShapeError(
            name,
            f"a tree of branching {branching} and depth {depth} has more than {MAX_LEAVES} leaves",
            setting="depth",
        )
    if (aggregator is None) == (combiner is None):
        raise ShapeError(
            name, "tree needs exactly one of aggregator or combiner", setting="aggregator"
        )
