"""`agentfab view`: what the page holds, read back from the page itself, and its refusals.
The page in a real browser: tests/integration/test_viewer_browser.py."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from agentfab import Agent, ConfigError, OpenAIClient, Orchestrator, RunSettings
from agentfab.aggregators import Majority
from agentfab.drawing import TeamShape
from agentfab.evals.records import RESULTS_FILE, read_results
from agentfab.evals.runner import evaluate
from agentfab.serving.stand_in_server import StandInServer
from agentfab.topologies import star
from agentfab.trace import TraceWriter, read_trace
from agentfab.viewer import view
from tests.scripted import ScriptedClient
from tests.test_cli import agentfab
from tests.test_eval_runner import (  # noqa: F401 (fixtures)
    Agents,
    multiple_choice,
    options,
    pipeline,
    suite,
)

HOSTILE = "</script><script>window.owned = 1</script> <!--GRAPH--> /*DATA*/null <!-- Answer: paris"


def data_of(page: Path) -> dict[str, Any]:
    """The JSON block the page's script reads, parsed as the browser would."""
    text = page.read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    assert found, "no data block"
    return json.loads(found.group(1))  # type: ignore[no-any-return]


def self_contained(page: Path) -> bool:
    text = page.read_text(encoding="utf-8")
    return not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", text)


async def test_an_eval_run_s_page_holds_every_item_message_and_decision(
    pipeline: Path,  # noqa: F811
    suite: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    await evaluate(options(pipeline, suite, out), clients={"default": Agents(multiple_choice)})
    page = view(out)
    assert page == out / "view.html" and self_contained(page)
    data = data_of(page)
    records = read_results(out / RESULTS_FILE).records
    assert [n["name"] for n in data["nodes"]] == ["a", "b", "c", "hub"]
    assert sorted(map(tuple, data["edges"])) == [("a", "hub"), ("b", "hub"), ("c", "hub")]
    text = page.read_text(encoding="utf-8")
    assert all(text.count(f'id="node-{i}"') == 1 for i in range(4))
    assert [i["id"] for i in data["items"]] == [r.item for r in records]
    for item, record in zip(data["items"], records, strict=True):
        assert item["correct"] == record.team.correct
        assert item["reference"] == record.reference
        by_sender = {m["sender"]: m for m in item["messages"]}
        assert sorted(by_sender) == ["a", "b", "c", "hub"]
        assert by_sender["hub"]["details"]["votes"] == record.team.details["votes"]
        assert by_sender["hub"]["inputs"] == [f"{n}@1" for n in "abc"]
        for agent in record.agents:
            shown = by_sender[agent.name]
            assert (shown["answer"], shown["correct"]) == (agent.answer, agent.correct)
            assert shown["prompts"] == [c.messages for c in agent.prompts]
            assert shown["started"] is not None
    wrong = [i for i in data["items"] if not i["correct"]]
    assert [i["id"] for i in wrong] == ["q3"]  # the hard one: the page's filter shows it alone
    rates = {r["name"]: r for r in data["report"]["rates"]}
    assert rates["team"]["correct"] == 3 and len(data["report"]["figures"]) >= 2
    assert all(f.startswith("<svg") for f in data["report"]["figures"])


async def traced(path: Path, reply: str) -> TeamShape:
    team = star([Agent(name=f"w{i}") for i in range(3)], Majority())
    writer = TraceWriter(path)
    writer.team(TeamShape.of(team))
    client = ScriptedClient(lambda request: (reply, 0.0))
    try:
        result = await Orchestrator({"default": client}, on_message=writer.message).run(team, "q")
        writer.result(result)
    finally:
        writer.close()
    return TeamShape.of(team)


async def test_a_trace_s_page_keeps_hostile_text_as_text(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    shape = await traced(path, HOSTILE)
    assert read_trace(path).team == shape
    page = view(path)
    assert page == tmp_path / "run.html" and self_contained(page)
    text = page.read_text(encoding="utf-8")
    assert "</script><script>window.owned" not in text  # cannot close the data block
    data = data_of(page)
    (item,) = data["items"]
    assert [m["text"] for m in item["messages"] if m["kind"] == "agent"] == [HOSTILE] * 3
    assert item["answer"] == "paris"
    assert data["totals"]["calls"] == 3


async def test_a_trace_without_its_team_line_is_drawn_from_who_read_whom(
    tmp_path: Path,
) -> None:
    team = star([Agent(name=f"w{i}") for i in range(2)], Majority())
    client = ScriptedClient(lambda request: ("Answer: paris", 0.0))
    result = await Orchestrator({"default": client}, RunSettings(rounds=2)).run(team, "q")
    path = tmp_path / "plain.jsonl"
    path.write_text(result.to_jsonl())  # no team line
    data = data_of(view(path, tmp_path / "page.html"))
    assert {n["name"]: n["kind"] for n in data["nodes"]} == {
        "w0": "agent",
        "w1": "agent",
        "hub": "aggregate",
    }
    # Round 2 reads round 1's peers: that is not an edge of the team.
    assert sorted(map(tuple, data["edges"])) == [("w0", "hub"), ("w1", "hub")]


async def test_each_call_says_when_it_was_sent_and_who_answered() -> None:
    server = StandInServer("Answer: paris")
    url = await server.start()
    client = OpenAIClient(url)
    try:
        before = time.time()
        team = star([Agent(name=f"w{i}") for i in range(2)], Majority())
        result = await Orchestrator({"default": client}).run(team, "q")
        after = time.time()
    finally:
        await client.aclose()
        await server.stop()
    agents = [m for m in result.messages if m.kind == "agent"]
    assert {m.server for m in agents} == {url.rstrip("/")}
    for m in result.messages:
        assert m.started is not None and before <= m.started <= after
    hub = result.messages[-1]
    assert hub.started is not None and hub.started >= max(m.started or 0 for m in agents)


async def test_numbers_json_cannot_carry_are_shown_as_none(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    await traced(path, "Answer: paris")
    lines = path.read_text().splitlines()
    first = json.loads(lines[1])
    first["details"] = {"score": float("nan"), "scores": [float("inf"), 1.0]}
    lines[1] = json.dumps(first)  # Python writes NaN and Infinity, which JSON.parse refuses
    path.write_text("\n".join(lines) + "\n")
    (item,) = data_of(view(path))["items"]
    assert item["messages"][0]["details"] == {"score": None, "scores": [None, 1.0]}


def test_what_cannot_be_viewed_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"event": "message", "version": 1}\nnot json\n{}\n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = [
        (tmp_path / "missing", "no such trace file or run folder"),
        (broken, f"{broken}:1: not a message"),
        (empty, "an empty trace"),
        (folder, "not an eval run (no run.json)"),
    ]
    for source, said in cases:
        done = agentfab("view", str(source))
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and said in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


async def test_a_page_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    await traced(path, "Answer: paris")
    with pytest.raises(ConfigError, match=r"--out .*nowhere.*cannot write"):
        view(path, tmp_path / "nowhere" / "page.html")
    assert not list(tmp_path.glob("**/*.partial"))
