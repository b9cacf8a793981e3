"""A team: a directed graph whose nodes are agents and aggregation points.

An edge `a -> b` says that `b` reads what `a` produced. Nodes without inputs
receive the task alone. A node is either an `Agent` (one model call on its
inbox) or an `Aggregate` (an aggregator that reduces its inputs to one
message). The team's answer is what its single output node produces.

A team is data: built and checked once, never changed after, and it runs nothing;
running is the orchestrator's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx

from agentfab.agent import Agent
from agentfab.aggregators.base import Aggregator, Needs
from agentfab.errors import ConfigError

# Tokens reserved for the task and instructions when checking an agent's fan-in.
PROMPT_RESERVE_TOKENS = 512


class ShapeError(ConfigError):
    """A team that cannot run as built. It names the nodes, the edges or the setting at
    fault, so a pipeline can point at the lines of its file that made them."""

    def __init__(
        self,
        team: str,
        problem: str,
        *,
        nodes: Sequence[str] = (),
        edges: Sequence[tuple[str, str]] = (),
        setting: str | None = None,
    ) -> None:
        super().__init__(f"team {team!r}: {problem}")
        self.problem = problem
        self.nodes = tuple(nodes)
        self.edges = tuple(edges)
        self.setting = setting


@dataclass(frozen=True)
class Aggregate:
    """A node that turns the messages reaching it into one."""

    name: str
    aggregator: Aggregator
    quorum: int | None = None
    """Aggregate as soon as this many inputs answered (default: wait for all)."""

    def __post_init__(self) -> None:
        check_aggregator(self.aggregator, f"node {self.name!r}")


def check_aggregator(value: object, who: str) -> None:
    """Refuse what is not an aggregator instance, before a run trips over it."""
    if isinstance(value, type):  # Majority rather than Majority(): the protocol check passes
        raise ConfigError(
            f"{who}: aggregator {value.__name__} is a class; pass an instance: {value.__name__}()"
        )
    if not isinstance(value, Aggregator):
        raise ConfigError(
            f"{who}: {value!r} is not an aggregator (it needs a `name`, `needs`, `models()` "
            "and `async aggregate(task, messages, ctx)`; BaseAggregator gives `needs` and "
            "`models()`)"
        )


Node = Agent | Aggregate


@dataclass
class Team:
    """A validated communication graph. Build one with `agentfab.topologies`.

    A team is not changed after it is built (its run order is computed once,
    off the hot path); to change one, build another.
    """

    graph: nx.DiGraph
    name: str = "team"
    groups: dict[str, list[str]] = field(default_factory=dict)
    """Group name -> member node names, for group-of-agents teams (used for drawing)."""

    def __post_init__(self) -> None:
        self.validate()
        self._order: list[str] = list(nx.lexicographical_topological_sort(self.graph))
        self._inputs = {n: sorted(self.graph.predecessors(n)) for n in self._order}

    @classmethod
    def from_edges(
        cls, nodes: Iterable[Node], edges: Iterable[tuple[str, str]], *, name: str = "team"
    ) -> Team:
        graph = nx.DiGraph()
        for node in nodes:
            if node.name in graph:
                raise ShapeError(
                    name,
                    f"two nodes are named {node.name!r} (an agent may not share "
                    "a name with another agent, a group or a node the topology adds)",
                    nodes=[node.name],
                )
            graph.add_node(node.name, node=node)
        for src, dst in edges:
            for end in (src, dst):
                if end not in graph:
                    raise ShapeError(
                        name, f"edge {src}->{dst} names unknown node {end!r}", edges=[(src, dst)]
                    )
            graph.add_edge(src, dst)
        return cls(graph=graph, name=name)

    def node(self, name: str) -> Node:
        node: Node = self.graph.nodes[name]["node"]
        return node

    @property
    def output(self) -> str:
        """The node whose message is the team's answer."""
        return self._order[-1]  # every node reaches the single output, so it comes last

    def inputs(self, name: str) -> list[str]:
        """Nodes `name` reads, in a stable order."""
        return self._inputs[name]

    def agents(self) -> list[Agent]:
        return [n for n in (self.node(x) for x in self._order) if isinstance(n, Agent)]

    def model_uses(self) -> list[tuple[str, str]]:
        """(who, model) for every agent, judge and writer: the clients a run needs."""
        uses = [(f"agent {a.name!r}", a.model) for a in self.agents()]
        for name in self._order:
            node = self.node(name)
            if isinstance(node, Aggregate):
                uses += [(f"aggregate node {name!r}", m) for m in node.aggregator.models()]
        return uses

    def agent_needs(self) -> dict[str, Needs]:
        """What each agent is asked for beyond its answer: all that the aggregators reading
        it need (a stated confidence, logprobs)."""
        needs = {a.name: Needs() for a in self.agents()}
        for name in self._order:
            node = self.node(name)
            if isinstance(node, Aggregate):
                for agent in (x for x in self.inputs(name) if x in needs):
                    needs[agent] |= node.aggregator.needs
        return needs

    def order(self) -> list[str]:
        """Nodes in a stable topological order."""
        return self._order

    def peers(self, name: str) -> list[str]:
        """Agents whose outputs meet `name`'s at a common reader (itself included).

        In a multi-round run an agent sees its peers' previous answers: the
        workers of a star debate each other, a chain agent revisits its own.
        """
        peers = {name}
        for reader in self.graph.successors(name):
            peers.update(
                p for p in self.graph.predecessors(reader) if isinstance(self.node(p), Agent)
            )
        return sorted(peers)

    def validate(self, context_lengths: Mapping[str, int] | None = None, rounds: int = 1) -> None:
        """Check the shape; with context lengths per model, check every agent's fan-in fits
        (from round 2 an agent also reads its peers' previous answers)."""
        if self.graph.number_of_nodes() == 0:
            raise ShapeError(self.name, "has no nodes")
        if not nx.is_directed_acyclic_graph(self.graph):
            edges = [(e[0], e[1]) for e in nx.find_cycle(self.graph)]
            cycle = " -> ".join([*(src for src, _ in edges), edges[0][0]])
            raise ShapeError(
                self.name,
                f"edges form a cycle ({cycle}); use run rounds for debate",
                edges=edges,
            )
        sinks = sorted(n for n in self.graph if self.graph.out_degree(n) == 0)
        if len(sinks) != 1:
            raise ShapeError(
                self.name,
                f"needs exactly one output node, has {len(sinks)} ({', '.join(sinks)}); "
                "add a node that reads them",
                nodes=sinks,
            )
        for name in self.graph:
            node = self.node(name)
            if isinstance(node, Aggregate) and self.graph.in_degree(name) == 0:
                raise ShapeError(self.name, f"aggregate node {name!r} has no inputs", nodes=[name])
            if isinstance(node, Aggregate) and node.quorum is not None:
                fan_in = self.graph.in_degree(name)
                if not 1 <= node.quorum <= fan_in:
                    raise ShapeError(
                        self.name,
                        f"node {name!r} quorum {node.quorum} must be between 1 and its "
                        f"{fan_in} inputs",
                        nodes=[name],
                        setting="quorum",
                    )
        if context_lengths:
            self._check_fan_in(context_lengths, rounds)

    def _check_fan_in(self, context_lengths: Mapping[str, int], rounds: int) -> None:
        for name in self.graph:
            node = self.node(name)
            if not isinstance(node, Agent) or node.model not in context_lengths:
                continue
            need = PROMPT_RESERVE_TOKENS + node.max_tokens
            need += sum(self._max_output_tokens(p) for p in self.graph.predecessors(name))
            if rounds > 1:
                need += sum(self._max_output_tokens(p) for p in self.peers(name))
            limit = context_lengths[node.model]
            if need > limit:
                raise ShapeError(
                    self.name,
                    f"agent {name!r} reads {self.graph.in_degree(name)} inputs (and peers, "
                    f"in later rounds) needing up to {need} tokens, beyond the {limit}-token "
                    f"context of model {node.model!r}; lower fan-in or max_tokens",
                    nodes=[name],
                )

    def _max_output_tokens(self, name: str) -> int:
        node = self.node(name)
        if isinstance(node, Agent):
            return node.max_tokens
        # An aggregate passes on one of its inputs (or a text of the same size).
        return max((self._max_output_tokens(p) for p in self.graph.predecessors(name)), default=0)
