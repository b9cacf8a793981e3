"""The pipeline itself: its agents, models, topology, run settings, task and servers, the
checks across them (names, models, what the topology uses), and loading it from a file.

Loading turns every mistake into one `ConfigError` line naming the file, the line and the
field: pydantic's own checks, the cross-field checks below and the team's shape (a
`ShapeError` names its nodes or edge, which the topology maps back to their lines). A
mistake that may be meant (an agent a star's `workers` leave out) is a warning. Nothing here
makes a client or calls a model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from agentfab.agent import Agent
from agentfab.errors import ConfigError
from agentfab.messages import Task
from agentfab.openai_client import BASE_URL_ENV
from agentfab.orchestrator import RunSettings
from agentfab.pipeline.models import (
    EMBEDDED_DEFAULT_CONTEXT,
    EmbeddedModel,
    ModelSpec,
    OpenAIModel,
    check_url,
)
from agentfab.pipeline.serving import ServeConfig
from agentfab.pipeline.spec import Spec, schema_keys, unknown
from agentfab.pipeline.topologies import TopologySpec
from agentfab.references import search_in
from agentfab.team import ShapeError, Team
from agentfab.yaml_loader import FieldError, FieldWarning, Loc, UserModel, describe, load_yaml


class AgentSpec(Agent, UserModel):
    """An agent; with `count` > 1, that many copies named `<name>-1` ... `<name>-<count>`."""

    count: int = Field(default=1, ge=1, le=256)

    def expand(self) -> list[Agent]:
        fields = self.model_dump(exclude={"count"})
        if self.count == 1:
            return [Agent(**fields)]
        return [Agent(**{**fields, "name": f"{self.name}-{i}"}) for i in range(1, self.count + 1)]


class TaskSpec(Spec):
    prompt: str
    choices: list[str] | None = None
    data: dict[str, Any] = {}
    """What aggregators may need beyond the prompt: execution consensus reads a
    HumanEval-style problem (`prompt`, `entry_point`, `test`)."""


class Pipeline(Spec):
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
        if self.topology.left_out_is_an_error:
            return []  # there a left-out agent is an error, raised when the pipeline is made
        return [
            FieldWarning(loc, f"{problem}, so {'they' if plural else 'it'} will not run")
            for loc, problem, plural in _unused(self)
        ]

    def with_run(self, **changes: Any) -> Pipeline:
        """This pipeline with some run settings changed (from the command line)."""
        return self.model_copy(update={"run": self.run.model_copy(update=changes)})

    def with_urls(self, placed: Mapping[str, Sequence[str]]) -> Pipeline:
        """This pipeline with the URLs of servers known only once up (placed by Ray) given
        to the models that name them (by served name) and have no base_url of their own."""
        models = dict(self.models)
        for name, spec in self.models.items():
            if isinstance(spec, OpenAIModel) and spec.base_url is None:
                urls = list(placed.get(spec.served_name, ()))
                models[name] = spec.model_copy(update={"base_url": urls}) if urls else spec
        return self.model_copy(update={"models": models})

    def urls(self, model: str) -> list[str]:
        """Where an OpenAI-compatible model is served: its base_url(s), else the `serving`
        section's servers of that name (every replica)."""
        spec = self.models[model]
        if not isinstance(spec, OpenAIModel):
            return []
        if spec.base_url is not None:
            return [spec.base_url] if isinstance(spec.base_url, str) else list(spec.base_url)
        servers = self.serving.servers if self.serving else []
        served = [
            url
            for server in servers
            if server.served_name == spec.served_name
            for url in server.urls()
        ]
        from_env = os.environ.get(BASE_URL_ENV)
        return served or ([from_env] if from_env else [])

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
            team = self.topology.build(self.all_agents(), self.name, self.context_lengths())
            team.validate(self.context_lengths(), self.run.rounds)
        except ShapeError as error:
            raise FieldError(self._shape_loc(error), error.problem) from None
        return team

    def _shape_loc(self, error: ShapeError) -> Loc:
        index = _agent_index(self)

        def agent_loc(node: str) -> Loc | None:
            agent = node if node in index else node.rsplit("-", 1)[0]  # a tree leaf is a copy
            return ("agents", index[agent], "name") if agent in index else None

        return self.topology.shape_loc(error, agent_loc)


# ---- cross-field checks ---------------------------------------------------------------------


def _agent_index(pipeline: Pipeline) -> dict[str, int]:
    """Agent name (after `count`) -> index of the `agents` entry that made it."""
    return {a.name: i for i, spec in enumerate(pipeline.agents) for a in spec.expand()}


def _check_agents(pipeline: Pipeline) -> None:
    seen: set[str] = set()
    for i, spec in enumerate(pipeline.agents):
        if spec.model not in pipeline.models:
            raise FieldError(("agents", i, "model"), unknown(spec.model, pipeline.models))
        for agent in spec.expand():
            if agent.name in seen:
                raise FieldError(("agents", i, "name"), f"{agent.name!r} is used twice")
            seen.add(agent.name)


def _check_urls(pipeline: Pipeline) -> None:
    for name, model in pipeline.models.items():
        if not isinstance(model, OpenAIModel):
            continue
        urls = pipeline.urls(name)
        if model.base_url is None and urls == [os.environ.get(BASE_URL_ENV)]:
            try:
                check_url(urls[0])
            except ValueError as error:
                raise FieldError(
                    ("models", name, "base_url"), f"taken from {BASE_URL_ENV}: {error}"
                ) from None
        if not urls:
            servers = pipeline.serving.servers if pipeline.serving else []
            served = ", ".join(s.served_name for s in servers) or "none"
            raise FieldError(
                ("models", name, "base_url"),
                f"required, unless `serving` starts a server named {model.served_name!r} "
                f"(it starts: {served}) or {BASE_URL_ENV} is set",
            )


def _check_aggregator_models(pipeline: Pipeline) -> None:
    """A judge or writer names a model of `models`: a run would stop at its first call."""
    for loc, spec in pipeline.topology.aggregators():
        for where, model in spec.models():
            if model not in pipeline.models:
                raise FieldError((*loc, *where), unknown(model, pipeline.models))


def _check_topology(pipeline: Pipeline) -> None:
    """Names the topology lists are agents; every agent it must place is placed."""
    index = _agent_index(pipeline)
    spec = pipeline.topology
    for loc, names in spec.listed():
        for j, name in enumerate(names):
            if name not in index:
                raise FieldError((*loc, j), unknown(name, index))
            if not spec.repeats_allowed and name in names[:j]:
                raise FieldError((*loc, j), f"{name!r} is listed twice")
    spec.check(index, pipeline.agents)
    if spec.left_out_is_an_error and (left := _unused(pipeline)):
        loc, problem, plural = left[0]
        it, them = ("they", "them") if plural else ("it", "it")
        raise FieldError(loc, f"{problem}, so {it} would never run; place {them} or remove {them}")


def _unused(pipeline: Pipeline) -> list[tuple[Loc, str, bool]]:
    """Agents the topology never places: (where, what, several?) per `agents` entry."""
    names = list(pipeline.all_agents())
    used, where = pipeline.topology.placed(names)
    notes: list[tuple[Loc, str, bool]] = []
    for i, spec in enumerate(pipeline.agents):
        left = [a.name for a in spec.expand() if a.name not in used]
        if left:
            verb = "are" if len(left) > 1 else "is"
            problem = f"{', '.join(map(repr, left))} {verb} {where}"
            notes.append((("agents", i, "name"), problem, len(left) > 1))
    return notes


# ---- loading --------------------------------------------------------------------------------


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
