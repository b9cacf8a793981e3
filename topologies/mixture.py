"""Mixture-of-agents: proposers answer, layers of aggregators refine, one final node answers.

Like every topology: it builds a `Team` and runs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agentfab.agent import Agent
from agentfab.aggregators.base import Aggregator
from agentfab.aggregators.self_aggregation import SelfAggregate
from agentfab.team import Aggregate, Node, ShapeError, Team, check_aggregator

AggregatorFactory = Callable[[int, int], Aggregator]
"""`(layer, index) -> Aggregator`: layers count from 1; the final node is `(layers + 1, 0)`."""


def mixture_of_agents(
    proposers: Sequence[Agent],
    aggregator: Aggregator | AggregatorFactory | None = None,
    *,
    layers: Sequence[int] | int = 1,
    final: str = "final",
    name: str = "mixture",
) -> Team:
    """Every node of a layer reads every node of the layer before; `final` reads the last layer.

    `layers` lists each layer's width, or (an int) counts layers as wide as
    the proposers. Every node applies `aggregator` (by default `SelfAggregate()`,
    which asks the proposers' model), or, given a factory, its own
    `aggregator(layer, index)`, so nodes can differ in model or settings.
    Layer nodes are named `L<layer>-<index>`.
    """
    widths = _widths(name, proposers, layers)
    pick = _picker(aggregator)
    nodes: list[Node] = list(proposers)
    edges: list[tuple[str, str]] = []
    previous = [p.name for p in proposers]
    for layer, width in enumerate(widths, start=1):
        current = [Aggregate(f"L{layer}-{i}", pick(layer, i)) for i in range(width)]
        nodes += current
        edges += [(src, dst.name) for dst in current for src in previous]
        previous = [n.name for n in current]
    nodes.append(Aggregate(final, pick(len(widths) + 1, 0)))
    edges += [(src, final) for src in previous]
    return Team.from_edges(nodes, edges, name=name)


def _widths(name: str, proposers: Sequence[Agent], layers: Sequence[int] | int) -> list[int]:
    if not proposers:
        raise ShapeError(name, "mixture_of_agents needs at least one proposer", setting="proposers")
    if isinstance(layers, int):
        if layers < 0:
            raise ShapeError(name, f"layers must be 0 or more, got {layers}", setting="layers")
        return [len(proposers)] * layers
    if any(w < 1 for w in layers):
        raise ShapeError(
            name, f"every layer needs a width of 1 or more, got {layers}", setting="layers"
        )
    return list(layers)


def _picker(aggregator: Aggregator | AggregatorFactory | None) -> AggregatorFactory:
    if aggregator is None:
        aggregator = SelfAggregate()
    if isinstance(aggregator, type):  # a class is callable: it would pass for a factory
        check_aggregator(aggregator, "mixture_of_agents")
    if isinstance(aggregator, Aggregator):
        same = aggregator
        return lambda _layer, _index: same
    return aggregator
