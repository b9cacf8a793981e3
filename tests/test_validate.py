"""`agentfab validate` stops what `agentfab run` would trip over, before any model call:
each mistake is one line `file:line: field: problem`, exit code 2, no traceback. The SDK
raises agentfab's own errors with the same lines."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import agentfab
from agentfab import Agent, Aggregate, Budget, ConfigError, RunSettings, Task
from agentfab.aggregators import BradleyTerry, Majority, SelfAggregate
from agentfab.orchestrator import Orchestrator
from agentfab.pipeline import Pipeline, build_clients, close_clients, load_pipeline
from agentfab.serving.stand_in_server import StandInServer
from agentfab.topologies import custom, mixture_of_agents, star, tree
from tests.scripted import ScriptedClient
from tests.test_cli import agentfab as cli

# Each case: the pipeline, with `#<` marking the line the error must name; the field; and
# a fragment of the problem.
CASES = {
    "unknown agent model": (
        """
agents:
  - name: a
  - name: b
    model: gpt   #<
topology: {kind: star}
""",
        "agents[1].model",
        "unknown name 'gpt' (known: default)",
    ),
    "duplicate agent name": (
        """
agents:
  - name: a
  - name: b
  - name: a   #<
topology: {kind: chain}
""",
        "agents[2].name",
        "'a' is used twice",
    ),
    "cycle": (
        """
agents: [{name: a}, {name: b}]
topology:
  kind: custom
  edges:
    - [a, b]   #<
    - [b, a]
""",
        "topology.edges[0]",
        "edges form a cycle (a -> b -> a); use run rounds for debate",
    ),
    "cycle through group links": (
        """
agents: [{name: a}, {name: b}]
topology:
  kind: groups
  groups: {g1: [a], g2: [b]}
  links:
    - [g1, g2]   #<
    - [g2, g1]
""",
        "topology.links[0]",
        "edges form a cycle",
    ),
    "edge to an unknown node": (
        """
agents: [{name: a}, {name: b}]
topology:
  kind: custom
  edges:
    - [a, b]
    - [b, nobody]   #<
""",
        "topology.edges[1]",
        "edge b->nobody names unknown node 'nobody'",
    ),
    "agent no edge reaches": (
        """
agents:
  - name: a
  - name: b
  - name: c   #<
topology:
  kind: custom
  aggregates: {vote: {aggregator: {kind: majority}}}
  edges: [[a, vote], [b, vote]]
""",
        "agents[2].name",
        "'c' is in no edge of topology.edges, so it would never run; place it or remove it",
    ),
    "aggregate no edge reaches": (
        """
agents: [{name: a}, {name: b}]
topology:
  kind: custom
  aggregates:
    vote: {aggregator: {kind: majority}}   #<
  edges: [[a, b]]
""",
        "topology.aggregates.vote",
        "in no edge of topology.edges, so it would never run",
    ),
    "group leaves an agent out": (
        """
agents:
  - name: a
  - name: b
  - name: c   #<
    count: 2
topology:
  kind: groups
  groups: {g1: [a], g2: [b, c-1]}
""",
        "agents[2].name",
        "'c-2' is in no group of topology.groups, so it would never run",
    ),
    "agent in two groups": (
        """
agents: [{name: a}, {name: b}]
topology:
  kind: groups
  groups:
    g1: [a, b]
    g2: [b]   #<
""",
        "topology.groups.g2[0]",
        "'b' is already in group 'g1'; an agent answers in one group",
    ),
    "count the tree's shape overrides": (
        """
agents:
  - name: leaf
    count: 5   #<
topology: {kind: tree, branching: 2, depth: 3}
""",
        "agents[0].count",
        "5 copies, but the tree (branching 2, depth 3) has 8 leaves",
    ),
    "judge model with no client": (
        """
agents: [{name: a}, {name: b}]
topology:
  kind: star
  aggregator:
    kind: bradley_terry
    judge: [default, judgy]   #<
""",
        "topology.aggregator.judge[1]",
        "unknown name 'judgy' (known: default)",
    ),
    "writer model with no client": (
        """
models:
  default: {kind: embedded}
  writer: {kind: embedded}
agents: [{name: a}, {name: b}]
topology:
  kind: mixture
  aggregator: {kind: self_aggregate, model: writr}   #<
""",
        "topology.aggregator.model",
        "unknown name 'writr'; did you mean 'writer'?",
    ),
    "misspelt topology kind": (
        """
agents: [{name: a}]
topology:
  kind: starr   #<
""",
        "topology.kind",
        "unknown kind 'starr'; did you mean 'star'?",
    ),
    "misspelt aggregator kind": (
        """
agents: [{name: a}]
topology:
  kind: star
  aggregator: {kind: bradley_terri}   #<
""",
        "topology.aggregator.kind",
        "unknown kind 'bradley_terri'; did you mean 'bradley_terry'?",
    ),
    "misspelt model kind": (
        """
models:
  default: {kind: opnai, served_name: m}   #<
agents: [{name: a}]
topology: {kind: star}
""",
        "models.default.kind",
        "unknown kind 'opnai'; did you mean 'openai'?",
    ),
    "unknown worker": (
        """
agents: [{name: a}, {name: b}]
topology:
  kind: star
  workers: [a, bb]   #<
""",
        "topology.workers[1]",
        "unknown name 'bb'; did you mean 'b'?",
    ),
    "quorum beyond fan-in": (
        """
agents: [{name: a}, {name: b}]
topology:
  kind: star
  quorum: 3   #<
""",
        "topology.quorum",
        "node 'hub' quorum 3 must be between 1 and its 2 inputs",
    ),
    "agent named like the hub": (
        """
agents:
  - name: a
  - name: hub   #<
topology: {kind: star}
""",
        "agents[1].name",
        "two nodes are named 'hub'",
    ),
    "fan-in beyond the context": (
        """
models:
  default: {kind: embedded, context_length: 700}
agents:
  - name: leaf
    max_tokens: 64
  - name: judge
    max_tokens: 64
topology: {kind: tree, branching: 4, depth: 1, combiner: judge}   #<
""",
        "topology.combiner",
        "beyond the 700-token context of model 'default'",
    ),
}


def _line_of_marker(content: str) -> int:
    return next(i for i, line in enumerate(content.splitlines(), 1) if "#<" in line)


@pytest.mark.parametrize("case", list(CASES))
def test_validate_names_file_line_and_field(tmp_path: Path, case: str) -> None:
    content, field, problem = CASES[case]
    path = tmp_path / "pipeline.yaml"
    path.write_text(content)
    done = cli("validate", str(path))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    expected = f"agentfab: error: {path}:{_line_of_marker(content)}: {field}: "
    assert done.stderr.startswith(expected), done.stderr
    assert problem in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_run_stops_at_the_same_line_before_any_call(tmp_path: Path) -> None:
    content, field, problem = CASES["judge model with no client"]
    path = tmp_path / "pipeline.yaml"
    path.write_text(content)
    done = cli("run", str(path), "--task", "What is 2 + 2?")
    assert done.returncode == 2, done.stderr
    assert f"{path}:{_line_of_marker(content)}: {field}: {problem}" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize(
    ("topology", "field"),
    [
        ("{kind: star, workers: [a, b]}", "topology.workers"),
        ("{kind: chain, order: [b, a]}", "topology.order"),
        ("{kind: tree, leaves: [a, b], depth: 1}", "topology.leaves"),
    ],
)
def test_an_agent_left_out_of_an_explicit_list_is_a_warning(
    tmp_path: Path, topology: str, field: str
) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"agents:\n  - name: a\n  - name: b\n  - name: c\ntopology: {topology}\n")
    done = cli("validate", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        f"agentfab: warning: {path}:4: agents[2].name: 'c' is not among {field}, "
        "so it will not run\n"
    )
    assert "ok: team" in done.stdout


def test_one_agent_alone_is_a_custom_team(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text("agents: [{name: solo}]\ntopology: {kind: custom, edges: []}\n")
    done = cli("validate", str(path))
    assert done.returncode == 0 and "output 'solo'" in done.stdout, done.stderr


# ---- the SDK ----------------------------------------------------------------------------


def _agents(*names: str) -> list[Agent]:
    return [Agent(name=n, max_tokens=8) for n in names]


@pytest.mark.parametrize(
    "build",
    [
        lambda: star(_agents("a", "b"), Majority),  # type: ignore[arg-type]
        lambda: tree(_agents("a"), Majority, depth=1),  # type: ignore[arg-type]
        lambda: mixture_of_agents(_agents("a"), Majority),  # type: ignore[arg-type]
        lambda: custom([*_agents("a"), Aggregate("v", Majority)], [("a", "v")]),  # type: ignore[arg-type]
    ],
    ids=["star", "tree", "mixture", "custom"],
)
def test_an_aggregator_class_instead_of_an_instance(build: object) -> None:
    with pytest.raises(ConfigError, match=r"aggregator Majority is a class; pass an instance"):
        build()  # type: ignore[operator]


def test_something_that_is_no_aggregator() -> None:
    with pytest.raises(ConfigError, match="'majority' is not an aggregator"):
        star(_agents("a"), "majority")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"agents": [{"name": "a", "max_tokns": 3}], "topology": {"kind": "star"}},
            "Pipeline: agents[0].max_tokns: unknown key; did you mean 'max_tokens'?",
        ),
        (
            {"agents": [{"name": "a"}], "topology": {"kind": "tre"}},
            "Pipeline: topology.kind: unknown kind 'tre'; did you mean 'tree'?",
        ),
        (
            {"agents": [{"name": "a", "model": "gpt"}], "topology": {"kind": "star"}},
            "agents[0].model: unknown name 'gpt' (known: default)",
        ),
    ],
)
def test_sdk_constructors_raise_one_line_config_errors(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Pipeline(**fields)  # type: ignore[arg-type]
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Agent(name="a", max_tokns=3), "Agent: max_tokns: unknown key; did you mean 'max_tokens'?"),
        (lambda: Agent(name="a", temperature=3), "Agent: temperature: Input should be less than or equal to 2"),
        (lambda: RunSettings(rounds=0), "RunSettings: rounds: Input should be greater than or equal to 1"),
        (
            lambda: RunSettings(budget={"max_calls": 0}),
            "RunSettings: budget.max_calls: Input should be greater than or equal to 1",
        ),
        (lambda: Budget(max_secs=3), "Budget: max_secs: unknown key; did you mean 'max_seconds'?"),
    ],
    ids=["agent-key", "agent-range", "settings", "nested-budget", "budget-key"],
)
def test_sdk_models_raise_one_line_config_errors(build: object, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build()  # type: ignore[operator]
    assert str(raised.value) == message


def test_run_settings_are_checked_before_any_call() -> None:
    client = ScriptedClient(lambda request: ("Answer: 4", 0.0))
    team = star(_agents("a", "b"), Majority())
    with pytest.raises(ConfigError) as raised:
        agentfab.run(team, "2 + 2?", clients={"default": client}, rounds=0)
    assert str(raised.value) == "RunSettings: rounds: Input should be greater than or equal to 1"
    with pytest.raises(ConfigError, match="seeed: unknown key; did you mean 'seed'"):
        agentfab.run(team, "2 + 2?", clients={"default": client}, seeed=1)
    assert client.requests == []


def test_a_judge_without_a_client_stops_before_any_call() -> None:
    client = ScriptedClient(lambda request: ("Answer: 4", 0.0))
    team = star(_agents("a", "b"), BradleyTerry(judge="judge"))
    with pytest.raises(ConfigError, match="uses model 'judge', which has no client"):
        agentfab.run(team, Task(prompt="2 + 2?"), clients={"default": client})
    assert client.requests == []


def test_team_lists_every_model_it_needs() -> None:
    team = mixture_of_agents(_agents("a", "b"), SelfAggregate("writer"), layers=0)
    assert sorted({model for _, model in team.model_uses()}) == ["default", "writer"]
    judged = star(_agents("a"), BradleyTerry(judge=("j1", "j2")))
    assert {model for _, model in judged.model_uses()} == {"default", "j1", "j2"}


def test_openai_client_is_exported() -> None:
    from agentfab import OpenAIClient

    assert "OpenAIClient" in agentfab.__all__
    assert OpenAIClient is importlib.import_module("agentfab.openai_client").OpenAIClient


OPENAI_PIPELINE = """\
models:
  default: {kind: openai, served_name: smol}
agents: [{name: a, max_tokens: 8}, {name: b, max_tokens: 8}]
topology: {kind: star, aggregator: {kind: majority}}
"""


async def test_a_model_without_base_url_reaches_openai_base_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(OPENAI_PIPELINE)
    async with StandInServer("Answer: B", model="smol") as base_url:
        monkeypatch.setenv("OPENAI_BASE_URL", base_url)
        pipeline = load_pipeline(path)
        clients = build_clients(pipeline)
        try:
            result = await Orchestrator(clients).run(pipeline.build_team(), "Pick one.")
        finally:
            await close_clients(clients)
    assert result.answer == "b" and result.usage.calls == 2  # free-text answers, normalised


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (None, "models.default.base_url: required, unless `serving` starts a server named "
         "'smol' (it starts: none) or OPENAI_BASE_URL is set"),
        ("localhost:8000", "models.default.base_url: taken from OPENAI_BASE_URL: "
         "'localhost:8000' is not an http(s):// URL"),
    ],
)
def test_openai_base_url_missing_or_wrong_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str | None, problem: str
) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(OPENAI_PIPELINE)
    if env is None:
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    else:
        monkeypatch.setenv("OPENAI_BASE_URL", env)
    done = cli("validate", str(path))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr == f"agentfab: error: {path}:2: {problem}\n"
