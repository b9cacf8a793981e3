"""The topology specs of a pipeline. Each builds its team (`build`) and says what the
pipeline's checks need to know of it: the agent lists it names, the agents it places, the
aggregators it holds, its own checks, and where in the file a shape error's nodes came
from. Nothing here runs a team; the team's shape is checked by `Team`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field

from agentfab import references
from agentfab.agent import Agent
from agentfab.aggregators.majority import Majority
from agentfab.errors import ConfigError
from agentfab.pipeline.aggregators import (
    AggregatorBase,
    AggregatorSpec,
    MajoritySpec,
    SelfAggregateSpec,
)
from agentfab.pipeline.spec import Spec, pick, unknown
from agentfab.team import Aggregate, Node, ShapeError, Team
from agentfab.topologies import chain, custom, groups, mixture_of_agents, star, tree
from agentfab.yaml_loader import FieldError, Loc, dotted

if TYPE_CHECKING:
    from agentfab.pipeline.schema import AgentSpec

AgentLoc = Callable[[str], Loc | None]
"""Where the agent behind a team node was written, if the node is one."""


class TopologyBase(Spec):
    """What every topology answers; the defaults fit a topology that lists no agents."""

    left_out_is_an_error: ClassVar[bool] = False
    """An agent the topology does not place is an error (else a warning: it may be meant)."""
    repeats_allowed: ClassVar[bool] = False
    """A name may appear twice in one of its agent lists."""

    def build(self, agents: Mapping[str, Agent], name: str, context: Mapping[str, int]) -> Team:
        raise NotImplementedError

    def aggregators(self) -> list[tuple[Loc, AggregatorBase]]:
        """The aggregator specs it holds, with where each sits."""
        return []

    def listed(self) -> list[tuple[Loc, list[str]]]:
        """The agent-name lists it holds, with where each sits."""
        return []

    def placed(self, names: list[str]) -> tuple[set[str], str]:
        """The agents it places, and how to say one is not among them."""
        listed = self.listed()
        if not listed:
            return set(names), ""  # no list: every agent
        [(loc, chosen)] = listed
        return set(chosen), f"not among {dotted(loc)}"

    def check(self, index: Mapping[str, int], agents: Sequence[AgentSpec]) -> None:
        """Its own checks, given agent name -> the `agents` entry that made it."""

    def shape_loc(self, error: ShapeError, agent_loc: AgentLoc) -> Loc:
        """Where in the pipeline the nodes, edge or setting of a shape error came from."""
        for node in error.nodes:
            loc = agent_loc(node) or self._node_loc(node, error)
            if loc is not None:
                return loc
        return ("topology", error.setting) if error.setting else ("topology",)

    def _node_loc(self, node: str, error: ShapeError) -> Loc | None:
        return None


class StarSpec(TopologyBase):
    """Workers answer independently; a hub aggregates them."""

    kind: Literal["star"]
    workers: list[str] | None = None
    """Agent names; empty means every agent."""
    aggregator: AggregatorSpec = MajoritySpec()
    quorum: int | None = Field(default=None, ge=1)
    """Aggregate once this many workers answered."""

    def build(self, agents: Mapping[str, Agent], name: str, context: Mapping[str, int]) -> Team:
        workers = pick(agents, self.workers, ("topology", "workers"))
        return star(workers, self.aggregator.build(), quorum=self.quorum, name=name)

    def aggregators(self) -> list[tuple[Loc, AggregatorBase]]:
        return [(("topology", "aggregator"), self.aggregator)]

    def listed(self) -> list[tuple[Loc, list[str]]]:
        return [] if self.workers is None else [(("topology", "workers"), self.workers)]


class ChainSpec(TopologyBase):
    """Each agent refines the previous one's answer."""

    kind: Literal["chain"]
    order: list[str] | None = None
    """Agent names in order; empty means the order of `agents`."""
    vote: AggregatorSpec | None = None
    """An aggregator every step's answer passes through (e.g. ahead_by_k)."""

    def build(self, agents: Mapping[str, Agent], name: str, context: Mapping[str, int]) -> Team:
        vote = self.vote.build() if self.vote else None
        return chain(pick(agents, self.order, ("topology", "order")), vote=vote, name=name)

    def aggregators(self) -> list[tuple[Loc, AggregatorBase]]:
        return [] if self.vote is None else [(("topology", "vote"), self.vote)]

    def listed(self) -> list[tuple[Loc, list[str]]]:
        return [] if self.order is None else [(("topology", "order"), self.order)]


class TreeSpec(TopologyBase):
    """Leaves answer; inner nodes aggregate (or a combiner agent combines) their children."""

    repeats_allowed: ClassVar[bool] = True  # leaves are copied from the agents in turn

    kind: Literal["tree"]
    leaves: list[str] | None = None
    """Agents the leaves are copied from, in turn; empty means every agent but the combiner."""
    branching: int = Field(default=2, ge=2, le=4096)
    depth: int = Field(default=2, ge=1, le=12)
    aggregator: AggregatorSpec | None = None
    combiner: str | None = None
    """An agent whose copies read their children's answers, instead of an aggregator."""

    def build(self, agents: Mapping[str, Agent], name: str, context: Mapping[str, int]) -> Team:
        combiner = agents[self.combiner] if self.combiner else None
        leaf_names = self.leaves or [n for n in agents if n != self.combiner]
        leaves = pick(agents, leaf_names, ("topology", "leaves"))
        aggregator = self.aggregator.build() if self.aggregator else None
        if aggregator is None and combiner is None:
            aggregator = Majority()
        return tree(
            leaves,
            aggregator,
            branching=self.branching,
            depth=self.depth,
            combiner=combiner,
            context_lengths=context,
            name=name,
        )

    def aggregators(self) -> list[tuple[Loc, AggregatorBase]]:
        return [] if self.aggregator is None else [(("topology", "aggregator"), self.aggregator)]

    def listed(self) -> list[tuple[Loc, list[str]]]:
        return [] if self.leaves is None else [(("topology", "leaves"), self.leaves)]

    def placed(self, names: list[str]) -> tuple[set[str], str]:
        combiner = [self.combiner] if self.combiner else []
        return {*(self.leaves or names), *combiner}, "not among topology.leaves"

    def check(self, index: Mapping[str, int], agents: Sequence[AgentSpec]) -> None:
        if self.combiner is not None and self.combiner not in index:
            raise FieldError(("topology", "combiner"), unknown(self.combiner, index))
        self._check_count(index, agents)

    def _check_count(self, index: Mapping[str, int], agents: Sequence[AgentSpec]) -> None:
        """A tree makes branching**depth leaves from its leaf agents taken in turn, so a
        `count` decides how many answer only when the agents number exactly that."""
        leaf_names = self.leaves or [n for n in index if n != self.combiner]
        leaves = self.branching**self.depth
        if len(leaf_names) == leaves:
            return
        for i in sorted({index[n] for n in leaf_names}):
            count = agents[i].count
            if count > 1:
                raise FieldError(
                    ("agents", i, "count"),
                    f"{count} copies, but the tree (branching {self.branching}, depth "
                    f"{self.depth}) has {leaves} leaves, copied from its {len(leaf_names)} "
                    f"leaf agents in turn; drop count, or make the leaf agents number {leaves}",
                )

    def _node_loc(self, node: str, error: ShapeError) -> Loc | None:
        return ("topology", "combiner") if self.combiner is not None else None


class GroupsSpec(TopologyBase):
    """Groups are the units: answers are aggregated inside a group; only aggregates cross."""

    left_out_is_an_error: ClassVar[bool] = True

    kind: Literal["groups"]
    groups: dict[str, list[str]]
    """Group name -> agent names."""
    links: list[tuple[str, str]] = []
    """`[a, b]`: the members of group b read group a's aggregate."""
    aggregator: AggregatorSpec = MajoritySpec()

    def build(self, agents: Mapping[str, Agent], name: str, context: Mapping[str, int]) -> Team:
        members = {
            g: pick(agents, names, ("topology", "groups", g)) for g, names in self.groups.items()
        }
        return groups(members, self.aggregator.build(), links=self.links, name=name)

    def aggregators(self) -> list[tuple[Loc, AggregatorBase]]:
        return [(("topology", "aggregator"), self.aggregator)]

    def listed(self) -> list[tuple[Loc, list[str]]]:
        return [(("topology", "groups", g), members) for g, members in self.groups.items()]

    def placed(self, names: list[str]) -> tuple[set[str], str]:
        members = {m for group in self.groups.values() for m in group}
        return members, "in no group of topology.groups"

    def check(self, index: Mapping[str, int], agents: Sequence[AgentSpec]) -> None:
        """An agent is one node: it can answer in one group only."""
        owner: dict[str, str] = {}
        for group, members in self.groups.items():
            for j, name in enumerate(members):
                if name in owner and owner[name] != group:
                    raise FieldError(
                        ("topology", "groups", group, j),
                        f"{name!r} is already in group {owner[name]!r}; an agent answers in "
                        "one group",
                    )
                owner[name] = group

    def shape_loc(self, error: ShapeError, agent_loc: AgentLoc) -> Loc:
        for i, (src, dst) in enumerate(self.links):
            made = [(src, dst), *((src, member) for member in self.groups.get(dst, []))]
            if any(edge in error.edges for edge in made):  # a link's edge to each member
                return ("topology", "links", i)
        return super().shape_loc(error, agent_loc)

    def _node_loc(self, node: str, error: ShapeError) -> Loc | None:
        return ("topology", "groups", node) if node in self.groups else None


class AggregateNodeSpec(Spec):
    aggregator: AggregatorSpec = MajoritySpec()
    quorum: int | None = Field(default=None, ge=1)


class CustomSpec(TopologyBase):
    """Any acyclic graph with one output: agents plus named aggregate nodes."""

    left_out_is_an_error: ClassVar[bool] = True

    kind: Literal["custom"]
    aggregates: dict[str, AggregateNodeSpec] = {}
    """Aggregate node name -> its aggregator."""
    edges: list[tuple[str, str]]
    """`[a, b]`: node b reads node a."""

    def build(self, agents: Mapping[str, Agent], name: str, context: Mapping[str, int]) -> Team:
        nodes: list[Node] = list(agents.values())
        nodes += [Aggregate(n, a.aggregator.build(), a.quorum) for n, a in self.aggregates.items()]
        return custom(nodes, self.edges, name=name)  # check() saw every node placed

    def aggregators(self) -> list[tuple[Loc, AggregatorBase]]:
        return [
            (("topology", "aggregates", name, "aggregator"), node.aggregator)
            for name, node in self.aggregates.items()
        ]

    def placed(self, names: list[str]) -> tuple[set[str], str]:
        if not self.edges and not self.aggregates and len(names) == 1:
            return set(names), ""  # one agent alone is a team
        return {end for edge in self.edges for end in edge}, "in no edge of topology.edges"

    def check(self, index: Mapping[str, int], agents: Sequence[AgentSpec]) -> None:
        ends = {end for edge in self.edges for end in edge}
        for name in self.aggregates:
            if name not in ends:
                raise FieldError(
                    ("topology", "aggregates", name),
                    "in no edge of topology.edges, so it would never run; add an edge or remove it",
                )

    def shape_loc(self, error: ShapeError, agent_loc: AgentLoc) -> Loc:
        for i, edge in enumerate(self.edges):
            if edge in error.edges:  # the first edge, as listed, of a cycle say
                return ("topology", "edges", i)
        return super().shape_loc(error, agent_loc)

    def _node_loc(self, node: str, error: ShapeError) -> Loc | None:
        if node not in self.aggregates:
            return None
        return ("topology", "aggregates", node, *([error.setting] if error.setting else []))


class MixtureSpec(TopologyBase):
    """Mixture of agents: proposers, then layers of aggregators, then a final aggregator."""

    kind: Literal["mixture"]
    proposers: list[str] | None = None
    """Agent names; empty means every agent."""
    layers: list[int] | int = 1
    """Widths of the aggregating layers, or how many layers as wide as the proposers."""
    aggregator: AggregatorSpec = SelfAggregateSpec(kind="self_aggregate")

    def build(self, agents: Mapping[str, Agent], name: str, context: Mapping[str, int]) -> Team:
        proposers = pick(agents, self.proposers, ("topology", "proposers"))
        return mixture_of_agents(proposers, self.aggregator.build(), layers=self.layers, name=name)

    def aggregators(self) -> list[tuple[Loc, AggregatorBase]]:
        return [(("topology", "aggregator"), self.aggregator)]

    def listed(self) -> list[tuple[Loc, list[str]]]:
        return [] if self.proposers is None else [(("topology", "proposers"), self.proposers)]


class PythonTopologySpec(TopologyBase):
    """Your own topology: `ref` names a function of the agents (in file order) and the
    team's `name` that returns a `Team`; `settings` are its keyword arguments (see
    docs/EXTENDING.md). The team is checked as a built-in one is."""

    kind: Literal["python"]
    ref: str
    """`package.module:function`, found on sys.path, in the current folder or the pipeline's."""
    settings: dict[str, Any] = {}

    def build(self, agents: Mapping[str, Agent], name: str, context: Mapping[str, int]) -> Team:
        try:
            made = references.build(
                self.ref, {"name": name, **self.settings}, args=[list(agents.values())]
            )
        except ShapeError:
            raise
        except ConfigError as error:
            raise FieldError(("topology",), str(error)) from None
        if not isinstance(made, Team):
            got = f"a value of type {type(made).__name__}"
            raise FieldError(("topology", "ref"), f"{self.ref!r} returned {got}, not a Team")
        return made

    def shape_loc(self, error: ShapeError, agent_loc: AgentLoc) -> Loc:
        for node in error.nodes:
            if (loc := agent_loc(node)) is not None:
                return loc
        if error.setting is not None and error.setting in self.settings:  # the function's own
            return ("topology", "settings", error.setting)
        return ("topology",)


TopologySpec = Annotated[
    StarSpec | ChainSpec | TreeSpec | GroupsSpec | CustomSpec | MixtureSpec | PythonTopologySpec,
    Field(discriminator="kind"),
]
