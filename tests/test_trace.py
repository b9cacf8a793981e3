"""One trace format, written as the run goes (CLI) or at once (`Result.to_jsonl`), read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentfab import Agent, ConfigError, Orchestrator, Result
from agentfab.aggregators import Majority
from agentfab.topologies import star
from agentfab.trace import VERSION, TraceWriter, read_trace
from tests.scripted import ScriptedClient


async def traced_run(path: Path) -> Result:
    client = ScriptedClient(lambda request: ("Answer: Paris", 0.0))
    team = star([Agent(name=f"w{i}", role=f"role {i}") for i in range(3)], Majority())
    writer = TraceWriter(path)
    try:
        result = await Orchestrator({"default": client}, on_message=writer.message).run(team, "q")
        writer.result(result)
    finally:
        writer.close()
    return result


async def test_the_streamed_trace_is_the_results_own(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    result = await traced_run(path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert {line["version"] for line in lines} == {VERSION}
    assert [line["event"] for line in lines] == ["message"] * 4 + ["result"]
    assert sorted(path.read_text().splitlines()) == sorted(result.to_jsonl().splitlines())
    trace = read_trace(path)
    assert sorted(m.id for m in trace.messages) == sorted(m.id for m in result.messages)
    assert trace.result is not None and trace.result["answer"] == "paris"
    assert trace.result["usage"] == result.usage.model_dump()


async def test_a_trace_cut_short_keeps_every_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    await traced_run(path)
    text = path.read_text()
    cut = text[: text.index('"event":"message"', 40) + 10]  # into the second message line
    path.write_text(cut)
    trace = read_trace(path)
    assert len(trace.messages) == 1 and trace.result is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"event": "message", "id": "a"}', r":1: not a version 1 trace line \(version None\)"),
        ('{"event": "tick", "version": 1}', r":1: unknown trace event 'tick'"),
        ('{"event": "message", "version": 1, "id": 5}', r":1: not a message"),
        ("not json", r":1: not a trace line"),
    ],
)
def test_a_line_that_is_not_a_trace_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "trace.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=message):
        read_trace(path)
