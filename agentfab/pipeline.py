"""Pipelines: a team, its models and how to run it, written in YAML.

The schema is pydantic; `agentfab schema` exports it as JSON Schema for
editor completion. Loading turns every mistake into one `ConfigError` line
naming the file, the line and the field: pydantic's own checks, the cross-field
checks below (names, models, what the topology uses) and the team's shape (a
`ShapeError` names its nodes or edge, which are mapped back to their lines).
A mistake that may be meant (an agent a star's `workers` leave out) is a warning.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from agentfab.agent import Agent
from agentfab.aggregators.ahead_by_k import AheadByK
from agentfab.aggregators.base import Aggregator
from agentfab.aggregators.bradley_terry import BradleyTerry
from agentfab.aggregators.confidence import ConfidenceWeighted
from agentfab.aggregators.execution import ExecutionConsensus
from agentfab.aggregators.majority import Majority
from agentfab.aggregators.self_aggregation import SelfAggregate
from agentfab.errors import ConfigError
from agentfab.llm import LLMClient
from agentfab.messages import Task
from agentfab.orchestrator import RunSettings
from agentfab.references import build, search_in
from agentfab.serving.vllm_server import ServerSpec, client_host
from agentfab.team import Aggregate, Node, ShapeError, Team, check_aggregator
from agentfab.topologies import chain, custom, groups, mixture_of_agents, star, tree
from agentfab.yaml_loader import (
    FieldError,
    FieldWarning,
    Loc,
    UserModel,
    describe,
    did_you_mean,
    dotted,
    field_names,
    load_yaml,
)

EMBEDDED_DEFAULT_CONTEXT = 8192  # SmolLM2-135M-Instruct's max_position_embeddings


# BaseModel is named again so that linters know these as pydantic models (whose mutable
# defaults are copied per instance).
class _Strict(UserModel, BaseModel):
    """Every part of the pipeline schema: frozen, no unknown keys, ConfigError lines."""


# ---- models ---------------------------------------------------------------------------------


class EmbeddedModel(_Strict):
    """A transformers model run in this process (batched); the default is SmolLM2-135M."""

    kind: Literal["embedded"] = "embedded"
    path: str | None = None
    """Local folder or Hugging Face id; empty for the embedded default model."""
    device: str | None = None
    """`cpu`, `cuda`, ...; empty picks a GPU when there is one."""
    context_length: int | None = Field(default=None, ge=256)
    """Tokens the model can read; checked against each agent's fan-in."""


class OpenAIModel(_Strict):
    """A model behind an OpenAI-compatible server (vLLM first)."""

    kind: Literal["openai"]
    base_url: str | list[str] | None = None
    """For example http://127.0.0.1:8000/v1. A list names replicas of one model (balanced,
    with failover). Empty when the pipeline's `serving` section starts the server."""

    @field_validator("base_url")
    @classmethod
    def _urls(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty list names no server")
            return [_check_url(url) for url in value]
        return None if value is None else _check_url(value)

    served_name: str
    """The model name the server knows."""
    api_key_env: str | None = None
    """Environment variable holding the API key, if the server wants one."""
    max_concurrency: int = Field(default=64, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    context_length: int | None = Field(default=None, ge=256)


def _check_url(value: str) -> str:
    import httpx  # here: a pipeline without URLs loads no HTTP client

    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{value!r} is not an http(s):// URL")
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError) as error:
        raise ValueError(f"not a valid URL ({error})") from None
    if not url.host:
        raise ValueError("not a valid URL: it names no host")
    if url.port is not None and not 0 < url.port < 65536:
        raise ValueError(f"not a valid URL: port {url.port} is out of range")
    return value


ModelSpec = Annotated[EmbeddedModel | OpenAIModel, Field(discriminator="kind")]


# ---- aggregators ----------------------------------------------------------------------------


class MajoritySpec(_Strict):
    """Plurality vote over extracted answers; a tie goes to the first agent's answer."""

    kind: Literal["majority"] = "majority"

    def build(self) -> Aggregator:
        return Majority()


class ConfidenceSpec(_Strict):
    """Votes weighted by confidence (ReConcile): stated by the agents, or from logprobs."""

    kind: Literal["confidence"]
    source: Literal["stated", "logprob"] = "stated"
    default: float = Field(default=0.5, ge=0.0, le=1.0)
    """Weight of a voter whose confidence is unknown."""

    def build(self) -> Aggregator:
        return ConfidenceWeighted(source=self.source, default=self.default)


class AheadByKSpec(_Strict):
    """First-to-ahead-by-k (MAKER): sample the node's agents until one answer leads by k."""

    kind: Literal["ahead_by_k"]
    k: int = Field(default=2, ge=1)
    max_samples: int = Field(default=10, ge=1)
    batch: int = Field(default=4, ge=1)

    def build(self) -> Aggregator:
        return AheadByK(k=self.k, max_samples=self.max_samples, batch=self.batch)


class SelfAggregateSpec(_Strict):
    """A model writes a better answer from the candidates (generative self-aggregation)."""

    kind: Literal["self_aggregate"]
    model: str | None = None
    """The writer; empty: the candidates' own model."""
    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)

    def build(self) -> Aggregator:
        return SelfAggregate(self.model, max_tokens=self.max_tokens, temperature=self.temperature)


class BradleyTerrySpec(_Strict):
    """Judges compare answers in pairs, both orders; a Bradley-Terry fit ranks them."""

    kind: Literal["bradley_terry"]
    judge: str | list[str] | None = None
    """A judge model or a panel; empty: the candidates' own models judge each other."""
    judges_per_pair: int = Field(default=1, ge=1)
    all_pairs_up_to: int = Field(default=6, ge=2)
    max_pairs: int | None = Field(default=None, ge=1)
    reputation: dict[str, float] | None = None
    """Judge model -> weight of its verdicts."""

    def build(self) -> Aggregator:
        judge = tuple(self.judge) if isinstance(self.judge, list) else self.judge
        return BradleyTerry(
            judge=judge,
            judges_per_pair=self.judges_per_pair,
            all_pairs_up_to=self.all_pairs_up_to,
            max_pairs=self.max_pairs,
            reputation=self.reputation,
        )


class ExecutionSpec(_Strict):
    """Code answers grouped by what they return on the problem's test inputs; the largest
    group wins. Needs code tasks (`agentfab eval` on a HumanEval-style suite)."""

    kind: Literal["execution"]
    per_input_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    concurrency: int = Field(default=4, ge=1)

    def build(self) -> Aggregator:
        return ExecutionConsensus(
            per_input_s=self.per_input_s, timeout_s=self.timeout_s, concurrency=self.concurrency
        )


class PythonAggregatorSpec(_Strict):
    """Your own aggregator: `ref` names its class (or a function that makes one) and
    `settings` are its keyword arguments. It is made when the pipeline is loaded, so a wrong
    name or setting is an error there (see docs/EXTENDING.md)."""

    kind: Literal["python"]
    ref: str
    """`package.module:Name`, found on sys.path, in the current folder or the pipeline's."""
    settings: dict[str, Any] = {}

    @model_validator(mode="after")
    def _made(self) -> PythonAggregatorSpec:
        try:
            self.build()
        except ConfigError as error:
            raise ValueError(str(error)) from None  # so pydantic places it at its line
        return self

    def build(self) -> Aggregator:
        made = build(self.ref, self.settings)
        check_aggregator(made, f"aggregator {self.ref!r}")
        return made  # type: ignore[no-any-return]


AggregatorSpec = Annotated[
    MajoritySpec
    | ConfidenceSpec
    | AheadByKSpec
    | SelfAggregateSpec
    | BradleyTerrySpec
    | ExecutionSpec
    | PythonAggregatorSpec,
    Field(discriminator="kind"),
]


# ---- topologies -----------------------------------------------------------------------------


class StarSpec(_Strict):
    """Workers answer independently; a hub aggregates them."""

    kind: Literal["star"]
    workers: list[str] | None = None
    """Agent names; empty means every agent."""
    aggregator: AggregatorSpec = MajoritySpec()
    quorum: int | None = Field(default=None, ge=1)
    """Aggregate once this many workers answered."""


class ChainSpec(_Strict):
    """Each agent refines the previous one's answer."""

    kind: Literal["chain"]
    order: list[str] | None = None
    """Agent names in order; empty means the order of `agents`."""
    vote: AggregatorSpec | None = None
    """An aggregator every step's answer passes through (e.g. ahead_by_k)."""


class TreeSpec(_Strict):
    """Leaves answer; inner nodes aggregate (or a combiner agent combines) their children."""

    kind: Literal["tree"]
    leaves: list[str] | None = None
    """Agents the leaves are copied from, in turn; empty means every agent but the combiner."""
    branching: int = Field(default=2, ge=2, le=4096)
    depth: int = Field(default=2, ge=1, le=12)
    aggregator: AggregatorSpec | None = None
    combiner: str | None = None
    """An agent whose copies read their children's answers, instead of an aggregator."""


class GroupsSpec(_Strict):
    """Groups are the units: answers are aggregated inside a group; only aggregates cross."""

    kind: Literal["groups"]
    groups: dict[str, list[str]]
    """Group name -> agent names."""
    links: list[tuple[str, str]] = []
    """`[a, b]`: the members of group b read group a's aggregate."""
    aggregator: AggregatorSpec = MajoritySpec()


class AggregateNodeSpec(_Strict):
    aggregator: AggregatorSpec = MajoritySpec()
    quorum: int | None = Field(default=None, ge=1)


class CustomSpec(_Strict):
    """Any acyclic graph with one output: agents plus named aggregate nodes."""

    kind: Literal["custom"]
    aggregates: dict[str, AggregateNodeSpec] = {}
    """Aggregate node name -> its aggregator."""
    edges: list[tuple[str, str]]
    """`[a, b]`: node b reads node a."""


class MixtureSpec(_Strict):
    """Mixture of agents: proposers, then layers of aggregators, then a final aggregator."""

    kind: Literal["mixture"]
    proposers: list[str] | None = None
    """Agent names; empty means every agent."""
    layers: list[int] | int = 1
    """Widths of the aggregating layers, or how many layers as wide as the proposers."""
    aggregator: AggregatorSpec = SelfAggregateSpec(kind="self_aggregate")


class PythonTopologySpec(_Strict):
    """Your own topology: `ref` names a function of the agents (in file order) and the
    team's `name` that returns a `Team`; `settings` are its keyword arguments (see
    docs/EXTENDING.md). The team is checked as a built-in one is."""

    kind: Literal["python"]
    ref: str
    """`package.module:function`, found on sys.path, in the current folder or the pipeline's."""
    settings: dict[str, Any] = {}

    def build(self, agents: Sequence[Agent], name: str) -> Team:
        try:
            made = build(self.ref, {"name": name, **self.settings}, args=[list(agents)])
        except ShapeError:
            raise
        except ConfigError as error:
            raise FieldError(("topology",), str(error)) from None
        if not isinstance(made, Team):
            got = f"a value of type {type(made).__name__}"
            raise FieldError(("topology", "ref"), f"{self.ref!r} returned {got}, not a Team")
        return made


TopologySpec = Annotated[
    StarSpec | ChainSpec | TreeSpec | GroupsSpec | CustomSpec | MixtureSpec | PythonTopologySpec,
    Field(discriminator="kind"),
]


# ---- serving ---------------------------------------------------------------------------------


class ServerConfig(_Strict):
    """One model served by vLLM, possibly as several replicas on consecutive ports."""

    model: str
    """A local folder or a model id; `default` is the embedded SmolLM2-135M folder."""
    served_name: str
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    replicas: int = Field(default=1, ge=1, le=64)
    tensor_parallel_size: int = Field(default=1, ge=1)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    max_model_len: int | None = Field(default=2048, ge=128)
    dtype: str | None = None
    extra_args: list[str] = []
    """Passed to vLLM as they are, e.g. ["--enforce-eager"]."""
    env: dict[str, str] = {}

    def urls(self) -> list[str]:
        """Where clients reach each replica."""
        host = client_host(self.host)
        return [f"http://{host}:{self.port + i}/v1" for i in range(self.replicas)]


class ServeConfig(_Strict):
    """What `agentfab serve` starts and keeps up."""

    servers: list[ServerConfig] = Field(min_length=1)
    log_dir: str = "logs"
    """Each server writes its output to `<log_dir>/<served_name>-<port>.log`."""

    def specs(self) -> list[ServerSpec]:
        specs = []
        for server in self.servers:
            model = server.model
            if model == "default":
                from agentfab.serving.default_model import default_model_path

                model = str(default_model_path())
            fields = server.model_dump(exclude={"replicas", "model", "port", "extra_args"})
            specs += [
                ServerSpec(
                    model=model, port=server.port + i, extra_args=tuple(server.extra_args), **fields
                )
                for i in range(server.replicas)
            ]
        return specs


# ---- the pipeline ---------------------------------------------------------------------------


class AgentSpec(Agent, UserModel):
    """An agent; with `count` > 1, that many copies named `<name>-1` ... `<name>-<count>`."""

    count: int = Field(default=1, ge=1, le=256)

    def expand(self) -> list[Agent]:
        fields = self.model_dump(exclude={"count"})
        if self.count == 1:
            return [Agent(**fields)]
        return [Agent(**{**fields, "name": f"{self.name}-{i}"}) for i in range(1, self.count + 1)]


class TaskSpec(_Strict):
    prompt: str
    choices: list[str] | None = None
    data: dict[str, Any] = {}
    """What aggregators may need beyond the prompt: execution consensus reads a
    HumanEval-style problem (`prompt`, `entry_point`, `test`)."""


class Pipeline(_Strict):
    """A team of agents, the models they use, and how to run it."""

    name: str = "pipeline"
    description: str = ""
    models: dict[str, ModelSpec] = {"default": EmbeddedModel()}
    """Model name -> where it is served. Agents refer to these names."""
    agents: list[AgentSpec] = Field(min_length=1)
    topology: TopologySpec
    run: RunSettings = RunSettings()
    task: str | TaskSpec | None = None
    """The task `agentfab run` uses when no --task is given."""
    serving: ServeConfig | None = None
    """vLLM servers `agentfab run` starts (or reuses, when already up) and stops after."""

    @model_validator(mode="after")
    def _check(self) -> Pipeline:
        """Cross-field checks, each mistake a FieldError that names where it sits."""
        _check_agents(self)
        _check_urls(self)
        _check_aggregator_models(self)
        _check_topology(self)
        return self

    def warnings(self) -> list[FieldWarning]:
        """What may be meant but looks like a mistake: agents that a topology's explicit
        `workers`, `order`, `proposers` or `leaves` leave out never run."""
        if isinstance(self.topology, CustomSpec | GroupsSpec):
            return []  # there a left-out agent is an error, raised when the pipeline is made
        return [
            FieldWarning(loc, f"{problem}, so {'they' if plural else 'it'} will not run")
            for loc, problem, plural in _unused(self)
        ]

    def urls(self, model: str) -> list[str]:
        """Where an OpenAI-compatible model is served: its base_url(s), else the `serving`
        section's servers of that name (every replica)."""
        spec = self.models[model]
        if not isinstance(spec, OpenAIModel):
            return []
        if spec.base_url is not None:
            return [spec.base_url] if isinstance(spec.base_url, str) else list(spec.base_url)
        servers = self.serving.servers if self.serving else []
        return [
            url
            for server in servers
            if server.served_name == spec.served_name
            for url in server.urls()
        ]

    def all_agents(self) -> dict[str, Agent]:
        return {a.name: a for spec in self.agents for a in spec.expand()}

    def context_lengths(self) -> dict[str, int]:
        lengths = {name: m.context_length for name, m in self.models.items() if m.context_length}
        for name, m in self.models.items():
            if isinstance(m, EmbeddedModel) and m.path is None and m.context_length is None:
                lengths[name] = EMBEDDED_DEFAULT_CONTEXT
        return lengths

    def default_task(self) -> Task | None:
        if self.task is None:
            return None
        if isinstance(self.task, str):
            return Task(prompt=self.task)
        return Task(prompt=self.task.prompt, choices=self.task.choices, data=self.task.data)

    def build_team(self) -> Team:
        """The team; a shape it cannot run in is a FieldError at the part that made it."""
        try:
            team = _build_topology(
                self.topology, self.all_agents(), self.name, self.context_lengths()
            )
            team.validate(self.context_lengths(), self.run.rounds)
        except ShapeError as error:
            raise FieldError(_shape_loc(self, error), error.problem) from None
        return team


# ---- cross-field checks ---------------------------------------------------------------------


def _agent_index(pipeline: Pipeline) -> dict[str, int]:
    """Agent name (after `count`) -> index of the `agents` entry that made it."""
    return {a.name: i for i, spec in enumerate(pipeline.agents) for a in spec.expand()}


def _check_agents(pipeline: Pipeline) -> None:
    seen: set[str] = set()
    for i, spec in enumerate(pipeline.agents):
        if spec.model not in pipeline.models:
            raise FieldError(("agents", i, "model"), _unknown(spec.model, pipeline.models))
        for agent in spec.expand():
            if agent.name in seen:
                raise FieldError(("agents", i, "name"), f"{agent.name!r} is used twice")
            seen.add(agent.name)


def _check_urls(pipeline: Pipeline) -> None:
    for name, model in pipeline.models.items():
        if isinstance(model, OpenAIModel) and not pipeline.urls(name):
            servers = pipeline.serving.servers if pipeline.serving else []
            served = ", ".join(s.served_name for s in servers) or "none"
            raise FieldError(
                ("models", name, "base_url"),
                f"required, unless `serving` starts a server named {model.served_name!r} "
                f"(it starts: {served})",
            )


def _check_aggregator_models(pipeline: Pipeline) -> None:
    """A judge or writer names a model of `models`: a run would stop at its first call."""
    for loc, spec in _aggregator_specs(pipeline.topology):
        named: list[tuple[Loc, str]] = []
        if isinstance(spec, SelfAggregateSpec) and spec.model is not None:
            named.append(((*loc, "model"), spec.model))
        if isinstance(spec, BradleyTerrySpec) and isinstance(spec.judge, str):
            named.append(((*loc, "judge"), spec.judge))
        if isinstance(spec, BradleyTerrySpec) and isinstance(spec.judge, list):
            named += [((*loc, "judge", j), judge) for j, judge in enumerate(spec.judge)]
        if isinstance(spec, PythonAggregatorSpec):
            named += [((*loc, "ref"), model) for model in spec.build().models()]
        for where, model in named:
            if model not in pipeline.models:
                raise FieldError(where, _unknown(model, pipeline.models))


def _aggregator_specs(spec: Any) -> list[tuple[Loc, Any]]:
    """Every aggregator a topology names, with where it sits."""
    if isinstance(spec, CustomSpec):
        return [
            (("topology", "aggregates", name, "aggregator"), node.aggregator)
            for name, node in spec.aggregates.items()
        ]
    field = "vote" if isinstance(spec, ChainSpec) else "aggregator"
    found = getattr(spec, field, None)
    return [] if found is None else [(("topology", field), found)]


def _check_topology(pipeline: Pipeline) -> None:
    """Names the topology lists are agents; every agent it must place is placed."""
    index = _agent_index(pipeline)
    spec = pipeline.topology
    for loc, names in _listed(spec):
        for j, name in enumerate(names):
            if name not in index:
                raise FieldError((*loc, j), _unknown(name, index))
            if not isinstance(spec, TreeSpec) and name in names[:j]:  # tree leaves may repeat
                raise FieldError((*loc, j), f"{name!r} is listed twice")
    if isinstance(spec, TreeSpec) and spec.combiner is not None and spec.combiner not in index:
        raise FieldError(("topology", "combiner"), _unknown(spec.combiner, index))
    if isinstance(spec, GroupsSpec):
        _check_membership(spec)
    if isinstance(spec, CustomSpec):
        _check_aggregates_placed(spec)
    if isinstance(spec, CustomSpec | GroupsSpec) and (unused := _unused(pipeline)):
        loc, problem, plural = unused[0]
        it, them = ("they", "them") if plural else ("it", "it")
        raise FieldError(loc, f"{problem}, so {it} would never run; place {them} or remove {them}")
    if isinstance(spec, TreeSpec):
        _check_tree_count(pipeline, spec)


def _listed(spec: Any) -> list[tuple[Loc, list[str]]]:
    """The agent-name lists of a topology, with where each sits."""
    if isinstance(spec, GroupsSpec):
        return [(("topology", "groups", g), members) for g, members in spec.groups.items()]
    field, names = "", None
    if isinstance(spec, StarSpec):
        field, names = "workers", spec.workers
    elif isinstance(spec, ChainSpec):
        field, names = "order", spec.order
    elif isinstance(spec, MixtureSpec):
        field, names = "proposers", spec.proposers
    elif isinstance(spec, TreeSpec):
        field, names = "leaves", spec.leaves
    return [] if names is None else [(("topology", field), names)]


def _check_membership(spec: GroupsSpec) -> None:
    """An agent is one node: it can answer in one group only."""
    owner: dict[str, str] = {}
    for group, members in spec.groups.items():
        for j, name in enumerate(members):
            if name in owner and owner[name] != group:
                raise FieldError(
                    ("topology", "groups", group, j),
                    f"{name!r} is already in group {owner[name]!r}; an agent answers in one group",
                )
            owner[name] = group


def _check_aggregates_placed(spec: CustomSpec) -> None:
    ends = {end for edge in spec.edges for end in edge}
    for name in spec.aggregates:
        if name not in ends:
            raise FieldError(
                ("topology", "aggregates", name),
                "in no edge of topology.edges, so it would never run; add an edge or remove it",
            )


def _unused(pipeline: Pipeline) -> list[tuple[Loc, str, bool]]:
    """Agents the topology never places: (where, what, several?) per `agents` entry."""
    names = list(pipeline.all_agents())
    used, where = _placed(pipeline.topology, names)
    notes: list[tuple[Loc, str, bool]] = []
    for i, spec in enumerate(pipeline.agents):
        left = [a.name for a in spec.expand() if a.name not in used]
        if left:
            verb = "are" if len(left) > 1 else "is"
            problem = f"{', '.join(map(repr, left))} {verb} {where}"
            notes.append((("agents", i, "name"), problem, len(left) > 1))
    return notes


def _placed(spec: Any, names: list[str]) -> tuple[set[str], str]:
    """The agents a topology places, and how to say one is not among them."""
    if isinstance(spec, CustomSpec):
        if not spec.edges and not spec.aggregates and len(names) == 1:
            return set(names), ""  # one agent alone is a team
        return {end for edge in spec.edges for end in edge}, "in no edge of topology.edges"
    if isinstance(spec, GroupsSpec):
        members = {m for group in spec.groups.values() for m in group}
        return members, "in no group of topology.groups"
    if isinstance(spec, TreeSpec):
        combiner = [spec.combiner] if spec.combiner else []
        return {*(spec.leaves or names), *combiner}, "not among topology.leaves"
    listed = _listed(spec)
    if not listed:
        return set(names), ""  # no list: every agent
    [(loc, chosen)] = listed
    return set(chosen), f"not among {dotted(loc)}"


def _check_tree_count(pipeline: Pipeline, spec: TreeSpec) -> None:
    """A tree makes branching**depth leaves from its leaf agents taken in turn, so a `count`
    decides how many answer only when the agents number exactly that."""
    index = _agent_index(pipeline)
    leaf_names = spec.leaves or [n for n in index if n != spec.combiner]
    leaves = spec.branching**spec.depth
    if len(leaf_names) == leaves:
        return
    for i in sorted({index[n] for n in leaf_names}):
        count = pipeline.agents[i].count
        if count > 1:
            raise FieldError(
                ("agents", i, "count"),
                f"{count} copies, but the tree (branching {spec.branching}, depth {spec.depth}) "
                f"has {leaves} leaves, copied from its {len(leaf_names)} leaf agents in turn; "
                f"drop count, or make the leaf agents number {leaves}",
            )


def _shape_loc(pipeline: Pipeline, error: ShapeError) -> Loc:
    """Where in the pipeline the nodes, edge or setting of a shape error came from."""
    spec = pipeline.topology
    if isinstance(spec, CustomSpec):
        for i, edge in enumerate(spec.edges):
            if edge in error.edges:  # the first edge, as listed, of a cycle say
                return ("topology", "edges", i)
    if isinstance(spec, GroupsSpec):
        for i, (src, dst) in enumerate(spec.links):
            made = [(src, dst), *((src, member) for member in spec.groups.get(dst, []))]
            if any(edge in error.edges for edge in made):  # a link's edge to each member
                return ("topology", "links", i)
    index = _agent_index(pipeline)
    for node in error.nodes:
        agent = node if node in index else node.rsplit("-", 1)[0]  # a tree leaf is a copy
        if agent in index:
            return ("agents", index[agent], "name")
        if isinstance(spec, CustomSpec) and node in spec.aggregates:
            return ("topology", "aggregates", node, *([error.setting] if error.setting else []))
        if isinstance(spec, GroupsSpec) and node in spec.groups:
            return ("topology", "groups", node)
        if isinstance(spec, TreeSpec) and spec.combiner is not None:
            return ("topology", "combiner")
    if isinstance(spec, PythonTopologySpec):  # its settings are the function's
        known = error.setting is not None and error.setting in spec.settings
        return ("topology", "settings", error.setting) if known else ("topology",)
    return ("topology", error.setting) if error.setting else ("topology",)


def _build_topology(
    spec: Any, agents: Mapping[str, Agent], name: str, context: Mapping[str, int]
) -> Team:
    if isinstance(spec, PythonTopologySpec):
        return spec.build(list(agents.values()), name)
    if isinstance(spec, StarSpec):
        workers = _pick(agents, spec.workers, ("topology", "workers"))
        return star(workers, spec.aggregator.build(), quorum=spec.quorum, name=name)
    if isinstance(spec, ChainSpec):
        vote = spec.vote.build() if spec.vote else None
        return chain(_pick(agents, spec.order, ("topology", "order")), vote=vote, name=name)
    if isinstance(spec, MixtureSpec):
        proposers = _pick(agents, spec.proposers, ("topology", "proposers"))
        return mixture_of_agents(proposers, spec.aggregator.build(), layers=spec.layers, name=name)
    if isinstance(spec, TreeSpec):
        combiner = agents[spec.combiner] if spec.combiner else None
        leaf_names = spec.leaves or [n for n in agents if n != spec.combiner]
        leaves = _pick(agents, leaf_names, ("topology", "leaves"))
        aggregator = spec.aggregator.build() if spec.aggregator else None
        if aggregator is None and combiner is None:
            aggregator = Majority()
        return tree(
            leaves,
            aggregator,
            branching=spec.branching,
            depth=spec.depth,
            combiner=combiner,
            context_lengths=context,
            name=name,
        )
    if isinstance(spec, GroupsSpec):
        members = {
            g: _pick(agents, names, ("topology", "groups", g)) for g, names in spec.groups.items()
        }
        return groups(members, spec.aggregator.build(), links=spec.links, name=name)
    assert isinstance(spec, CustomSpec)
    nodes: list[Node] = list(agents.values())
    nodes += [Aggregate(n, a.aggregator.build(), a.quorum) for n, a in spec.aggregates.items()]
    return custom(nodes, spec.edges, name=name)  # _check_topology saw every node placed


def _pick(agents: Mapping[str, Agent], names: Sequence[str] | None, field: Loc) -> list[Agent]:
    if names is None:
        return list(agents.values())
    for i, name in enumerate(names):
        if name not in agents:
            raise FieldError((*field, i), _unknown(name, agents))
    return [agents[n] for n in names]


def _unknown(value: str, known: Mapping[str, Any]) -> str:
    return f"unknown name {value!r}{did_you_mean(value, known)}"


# ---- loading --------------------------------------------------------------------------------


def load_serve_config(path: str | Path) -> ServeConfig:
    data, node = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with `servers` at the top level")
    try:
        return ServeConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe(error, path=path, node=node, keys=schema_keys())) from None


def load_pipeline(
    path: str | Path, *, warn: Callable[[str], None] | None = None
) -> Pipeline:
    """Read and validate a pipeline file, its team included; every problem is a ConfigError
    of `file:line: field: problem` lines. `warn` is given each warning line."""
    data, node = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with agents and topology at the top level")
    search_in([Path(path).parent])  # `kind: python` refs may name modules beside the file
    try:
        pipeline = Pipeline.model_validate(data)
        pipeline.build_team()
    except ValidationError as error:
        raise ConfigError(describe(error, path=path, node=node, keys=schema_keys())) from None
    except FieldError as error:
        raise ConfigError(error.at(path, node)) from None
    except ConfigError as error:  # an aggregator's own check, say: no place to point at
        raise ConfigError(f"{path}: {error}") from None
    if warn is not None:
        for warning in pipeline.warnings():
            warn(warning.at(path, node))
    return pipeline


def build_clients(pipeline: Pipeline) -> dict[str, LLMClient]:
    """One client per model (a replica pool for several URLs); embedded models with the same
    settings share one instance."""
    clients: dict[str, LLMClient] = {}
    embedded: dict[tuple[str | None, str | None], LLMClient] = {}
    for name, spec in pipeline.models.items():
        if isinstance(spec, OpenAIModel):
            clients[name] = _remote_client(spec, pipeline.urls(name))
        else:
            from agentfab.serving.embedded import EmbeddedClient

            seed = pipeline.run.seed  # None: unseeded, so "random" runs do not repeat
            where = (spec.path, spec.device)
            if where not in embedded:
                embedded[where] = EmbeddedClient(spec.path, device=spec.device, seed=seed)
            clients[name] = embedded[where]
    return clients


async def close_clients(clients: Mapping[str, LLMClient]) -> None:
    """Close what `build_clients` made, each client once (models may share one)."""
    for client in {id(c): c for c in clients.values()}.values():
        await client.aclose()


def _remote_client(spec: OpenAIModel, urls: Sequence[str]) -> LLMClient:
    from agentfab.openai_client import OpenAIClient
    from agentfab.replicas import ReplicaPool

    options: dict[str, Any] = {
        "api_key": os.environ.get(spec.api_key_env, "") if spec.api_key_env else None,
        "max_concurrency": spec.max_concurrency,
        "timeout_s": spec.timeout_s,
        "model": spec.served_name,
    }
    if len(urls) > 1:
        return ReplicaPool.from_urls(urls, retries=spec.retries, **options)
    return OpenAIClient(urls[0], retries=spec.retries, **options)


def schema_keys() -> set[str]:
    """Every key the schema knows, for "did you mean" hints."""
    from agentfab.orchestrator import Budget

    return field_names(RunSettings, Budget)
