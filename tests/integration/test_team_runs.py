"""Teams run end to end on the real embedded model (SmolLM2-135M-Instruct).

The model is weak; these tests check mechanics and measured effects, never
that an answer is right.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentfab import Agent, Budget, BudgetExceeded, Message, Orchestrator, RunSettings, Task, Usage
from agentfab.aggregators import Majority
from agentfab.pipeline import load_pipeline
from agentfab.topologies import chain, star

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

pytestmark = pytest.mark.usefixtures("real_embedded")  # the CLI and SDK runs need it too


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
async def test_every_example_pipeline_runs(embedded: Any, path: Path) -> None:
    pipeline = load_pipeline(path)
    team = pipeline.build_team()
    clients = dict.fromkeys(pipeline.models, embedded)
    task = pipeline.default_task()
    assert task is not None
    result = await Orchestrator(clients, pipeline.run).run(team, task)
    assert result.complete
    assert {m.sender for m in result.messages} == set(team.graph.nodes)
    assert all(m.ok for m in result.messages)
    agent_messages = [m for m in result.messages if m.kind == "agent"]
    assert all(m.text for m in agent_messages)
    # a request's usage rides on its first sample; extra samples of it carry none
    assert all(m.usage.completion_tokens > 0 for m in agent_messages if m.usage.calls)
    # judges, synthesisers, extra samples and later rounds add calls, never remove them
    assert result.usage.calls >= len(team.agents())
    # every call is counted once, by the message that made it
    assert result.usage == sum((m.usage for m in result.messages), Usage())
    assert result.text == result.messages[-1].text
    for message in result.messages:  # in round 1, each message read exactly its graph inputs
        if message.round == 1 and "." not in message.id:
            assert message.inputs == sorted(f"{p}@1" for p in team.inputs(message.sender))


async def test_independent_agents_are_batched_together(embedded: Any) -> None:
    stats = embedded.stats
    rows_before, batches_before = stats.rows, stats.batches
    team = star([Agent(name=f"w{i}", max_tokens=8) for i in range(8)], Majority())
    await Orchestrator({"default": embedded}).run(team, "Name a colour.")
    rows, batches = stats.rows - rows_before, stats.batches - batches_before
    assert rows == 8
    assert batches < 8, "the 8 calls did not overlap: each ran in its own forward pass"


async def test_chain_runs_in_order_and_passes_answers_on(embedded: Any) -> None:
    seen: list[Message] = []
    team = chain([Agent(name=n, max_tokens=8, temperature=0.0) for n in ("a", "b", "c")])
    orchestrator = Orchestrator({"default": embedded}, on_message=seen.append)
    result = await orchestrator.run(team, "What is 2 + 2?")
    assert [m.sender for m in seen] == ["a", "b", "c"]
    assert [m.inputs for m in result.messages] == [[], ["a@1"], ["b@1"]]


async def test_later_rounds_read_the_peers_previous_answers(embedded: Any) -> None:
    team = star([Agent(name=f"w{i}", max_tokens=8) for i in range(3)], Majority())
    settings = RunSettings(rounds=2, seed=1)
    result = await Orchestrator({"default": embedded}, settings).run(team, "Name a fruit.")
    assert result.rounds == 2 and len(result.messages) == 8
    second = [m for m in result.messages if m.round == 2 and m.kind == "agent"]
    assert all(m.inputs == ["w0@1", "w1@1", "w2@1"] for m in second)
    assert result.messages[-1].id == "hub@2"


async def test_token_budget_is_never_exceeded(embedded: Any) -> None:
    team = star([Agent(name=f"w{i}", max_tokens=16) for i in range(6)], Majority())
    settings = RunSettings(budget=Budget(max_tokens=300))
    with pytest.raises(BudgetExceeded, match="token budget of 300") as caught:
        await Orchestrator({"default": embedded}, settings).run(team, Task(prompt="Name a city."))
    partial = caught.value.partial
    assert partial is not None
    assert 1 <= partial.usage.calls < 6
    assert partial.usage.total_tokens <= 300


def test_cli_run_writes_json_and_a_trace(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentfab.cli",
            "run",
            str(ROOT / "examples/star.yaml"),
            "--task",
            "What is the capital of Italy?",
            "--json",
            "--trace",
            str(trace),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["task"]["prompt"] == "What is the capital of Italy?"
    assert len(result["messages"]) == 6
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["team"] + ["message"] * 6 + ["result"]
    assert lines[0]["output"] == "hub" and len(lines[0]["nodes"]) == 6
    assert {line["id"] for line in lines[1:-1]} == {m["id"] for m in result["messages"]}
    assert lines[-1]["answer"] == result["answer"]


def test_sdk_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples/sdk_star.py")],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 7 and lines[-1].startswith("answer:")
    assert lines[5].startswith("hub@1")
