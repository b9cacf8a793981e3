"""The benchmark runner and its reports, fast: scripted agents, real scoring, real files.

The agents are a scripted client (the conditions are chosen: who is right, how many tokens
a sample costs, a server that fails); everything else is real: pipelines, the
orchestrator, letter extraction, the sandbox running HumanEval tests, results files,
resume, summaries and figures.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentfab import BackendError, ChatRequest, ChatResponse, Completion, ConfigError
from agentfab.aggregators import vote_stats
from agentfab.evals import load_suite, phi, wilson
from agentfab.evals.records import (
    RESULTS_FILE,
    AgentAttempt,
    Attempt,
    ItemRecord,
    RunConfig,
    Sampled,
    read_results,
)
from agentfab.evals.report import compare_runs, summarise, write_report
from agentfab.evals.runner import EvalOptions, evaluate, plan_eval
from agentfab.evals.stats import correlation_matrix
from agentfab.messages import Usage
from tests.test_cli import agentfab

ROOT = Path(__file__).resolve().parents[1]
PROMPT_TOKENS = 100
TOKENS_PER_SAMPLE = 10

PIPELINE = """
name: scripted
agents:
  - {name: a, role: "Careful.", max_tokens: 16}
  - {name: b, role: "Careful.", max_tokens: 16}
  - {name: c, role: "Careless.", max_tokens: 16}
topology: {kind: star, aggregator: {kind: majority}}
run: {answer_format: letter, seed: 0}
"""

# Careful agents know every answer but the "hard" ones; careless ones never do.
QUESTIONS = [
    {
        "id": "q1",
        "question": "Pick the right one.",
        "choices": ["right", "w1", "w2", "w3"],
        "answer": 0,
    },
    {
        "id": "q2",
        "question": "Pick the right one.",
        "choices": ["w1", "right", "w2", "w3"],
        "answer": 1,
    },
    {"id": "q3", "question": "A hard one.", "choices": ["w1", "w2", "right", "w3"], "answer": 2},
    {
        "id": "q4",
        "question": "Pick the right one.",
        "choices": ["w1", "w2", "w3", "right"],
        "answer": 3,
    },
]


class Agents:
    """A scripted LLMClient: replies chosen by `reply(prompt) -> text`; usage like a server's
    (the prompt counted once per request, completion tokens per sample)."""

    def __init__(self, reply: Callable[[str], str], delay_s: float = 0.0) -> None:
        self.reply = reply
        self.delay_s = delay_s
        self.requests: list[ChatRequest] = []

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        await asyncio.sleep(self.delay_s)
        text = self.reply(request.messages[-1]["content"])
        return ChatResponse(
            [Completion(text)] * request.n,
            prompt_tokens=PROMPT_TOKENS,
            completion_tokens=TOKENS_PER_SAMPLE * request.n,
        )

    async def aclose(self) -> None:
        return None


def letter_of(prompt: str, word: str) -> str:
    found = re.search(rf"^([A-Z])\) {word}$", prompt, re.MULTILINE)
    assert found, prompt
    return found.group(1)


def multiple_choice(prompt: str) -> str:
    careful = prompt.endswith("Careful.") and "hard" not in prompt
    return f"Answer: {letter_of(prompt, 'right' if careful else 'w1')}"


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return path


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "team.yaml"
    path.write_text(PIPELINE)
    return path


def options(pipeline: Path, suite: Path | str, out: Path, **more: Any) -> EvalOptions:
    return EvalOptions(pipeline=pipeline, suite=str(suite), out=out, progress=False, **more)


def lines(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / RESULTS_FILE).read_text().splitlines()]


# ---- statistics ------------------------------------------------------------------------


def test_wilson_interval_by_hand() -> None:
    low, high = wilson(3, 4)  # p = 0.75, n = 4, z = 1.96
    assert low == pytest.approx(0.3006, abs=1e-4)
    assert high == pytest.approx(0.9544, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(0, 0) == (0.0, 1.0)


def test_wilson_interval_holds_the_observed_rate() -> None:
    # 0 of 3 once gave a lower bound of 5.6e-17 above 0, and the report's figure failed.
    for n in range(1, 80):
        for k in range(n + 1):
            low, high = wilson(k, n)
            assert 0.0 <= low <= k / n <= high <= 1.0, (k, n)


def test_phi_on_hand_made_examples() -> None:
    x = [True, True, True, False, False, False]
    y = [True, True, False, False, False, True]
    # a = 2 both right, 3 and 3 right in all: (6*2 - 3*3) / sqrt(3*3*3*3) = 1/3
    assert phi(x, y) == pytest.approx(1 / 3)
    assert phi(x, x) == pytest.approx(1.0)
    assert phi(x, [not v for v in x]) == pytest.approx(-1.0)
    assert phi(x, [True] * 6) is None  # always right: no correlation to speak of


def test_error_correlation_matrix() -> None:
    correct = {
        "a": {"1": True, "2": True, "3": False, "4": False},
        "b": {"1": True, "2": True, "3": False, "4": False},  # fails exactly with a
        "c": {"1": False, "2": True, "3": True, "4": False},  # independent of a
    }
    names, matrix, average = correlation_matrix(correct)
    assert names == ["a", "b", "c"]
    assert matrix[0][1] == pytest.approx(1.0) and matrix[1][0] == pytest.approx(1.0)
    assert matrix[0][2] == pytest.approx(0.0) and matrix[1][2] == pytest.approx(0.0)
    assert average == pytest.approx(1 / 3)


# ---- scoring and baselines ---------------------------------------------------------------


async def test_multiple_choice_is_scored_with_every_baseline(
    pipeline: Path, suite: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    outcome = await evaluate(
        options(pipeline, suite, out), clients={"default": Agents(multiple_choice)}
    )
    records = {r["item"]: r for r in lines(out)}
    assert sorted(records) == ["q1", "q2", "q3", "q4"]
    q1, q3 = records["q1"], records["q3"]
    shown = {item.id: item for item in load_suite(str(suite)).items}["q1"]
    assert q1["reference"] == shown.answer == chr(65 + shown.choices.index("right"))
    assert q1["team"]["correct"] and q1["single"]["correct"] and q1["oracle"]
    assert q1["team"]["details"]["votes"] == {q1["reference"]: 2, q1["agents"][2]["answer"]: 1}
    assert [a["correct"] for a in q1["agents"]] == [True, True, False]
    assert not q3["team"]["correct"] and not q3["oracle"]  # nobody knew the hard one
    summary = outcome.summary
    assert summary is not None
    team, single, consistency, oracle = summary.configurations
    assert (team.correct, single.correct, consistency.correct, oracle.correct) == (3, 3, 3, 3)
    assert team.accuracy == pytest.approx(0.75)
    assert (team.low, team.high) == pytest.approx(wilson(3, 4))
    assert oracle.name == "oracle@3"


async def test_self_consistency_is_matched_to_the_team_s_tokens(
    pipeline: Path, suite: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    agents = Agents(multiple_choice)
    await evaluate(options(pipeline, suite, out, limit=1), clients={"default": agents})
    (record,) = lines(out)
    # The team: 3 calls of 100 prompt + 10 completion tokens.
    assert record["team"]["usage"] == {"prompt_tokens": 300, "completion_tokens": 30, "calls": 3}
    sc = record["self_consistency"]
    # One sample (110 tokens, the single baseline's), then one request whose 100-token prompt
    # leaves 120 tokens: 12 samples of 10. 13 samples, 330 tokens: the team's exactly.
    assert sc["budget"] == 330
    assert (sc["samples"], sc["requests"]) == (13, 2)
    assert sc["usage"]["prompt_tokens"] + sc["usage"]["completion_tokens"] == 330
    assert sc["samples"] == len(sc["answers"]) == len(sc["texts"])
    assert sorted(r.n for r in agents.requests) == [1, 1, 1, 1, 12]
    assert record["single"]["usage"] == {"prompt_tokens": 100, "completion_tokens": 10, "calls": 1}


def one_agent_pipeline(folder: Path) -> Path:
    """The scripted team with only its first agent."""
    path = folder / "alone.yaml"
    path.write_text(
        PIPELINE.replace('  - {name: b, role: "Careful.", max_tokens: 16}\n', "").replace(
            '  - {name: c, role: "Careless.", max_tokens: 16}\n', ""
        )
    )
    return path


async def test_self_consistency_stops_nearest_the_budget(
    pipeline: Path, suite: Path, tmp_path: Path
) -> None:
    # A one-agent team spends what one sample costs: no second request comes closer.
    path = one_agent_pipeline(tmp_path)
    out = tmp_path / "run"
    await evaluate(options(path, suite, out, limit=1), clients={"default": Agents(multiple_choice)})
    (record,) = lines(out)
    assert record["self_consistency"]["samples"] == 1
    assert record["self_consistency"]["requests"] == 1


HUMANEVAL = load_suite("humaneval", limit=2)


def code_pipeline(folder: Path) -> Path:
    """The scripted team, deciding code by execution consensus."""
    path = folder / "code.yaml"
    path.write_text(
        PIPELINE.replace("{kind: majority}", "{kind: execution}").replace("letter", "text")
    )
    return path


def code_reply(prompt: str) -> str:
    """Careful agents write the reference solution; careless ones a wrong body."""
    item = next(i for i in HUMANEVAL.items if i.prompt in prompt)
    body = item.data["canonical_solution"] if prompt.endswith("Careful.") else "    return None\n"
    return f"Here it is:\n```python\n{item.prompt}{body}```\n"


async def test_code_is_judged_by_its_tests_in_the_sandbox(tmp_path: Path) -> None:
    path = code_pipeline(tmp_path)
    out = tmp_path / "run"
    outcome = await evaluate(
        options(path, "humaneval", out, limit=2), clients={"default": Agents(code_reply)}
    )
    records = lines(out)
    assert len(records) == 2
    for record in records:
        assert record["kind"] == "code" and record["reference"] is None
        assert [a["correct"] for a in record["agents"]] == [True, True, False]
        assert record["agents"][2]["check"].startswith("failed")
        assert record["agents"][0]["check"] == "passed"
        assert record["team"]["correct"] and record["oracle"]
        assert record["single"]["correct"] and record["self_consistency"]["correct"]
        assert record["team"]["details"]["winner"] == "g1"
    assert outcome.summary is not None
    assert [r.accuracy for r in outcome.summary.configurations] == [1.0, 1.0, 1.0, 1.0]


def judging_reply(prompt: str) -> str:
    """Agents as in `code_reply`; as judges, they prefer the answer that does not return
    None; as writers, they write the reference solution from the candidates."""
    if "Answer 1:" in prompt and "Answer 2:" in prompt:
        first = prompt.split("Answer 1:")[1].split("Answer 2:")[0]
        return "2" if "return None" in first else "1"
    if "candidate answers" in prompt:
        item = next(i for i in HUMANEVAL.items if i.prompt in prompt)
        return f"```python\n{item.prompt}{item.data['canonical_solution']}```\n"
    return code_reply(prompt)


@pytest.mark.parametrize("aggregator", ["bradley_terry", "self_aggregate"])
async def test_code_decided_by_a_judge_or_a_writer(tmp_path: Path, aggregator: str) -> None:
    path = code_pipeline(tmp_path)
    path.write_text(path.read_text().replace("{kind: execution}", f"{{kind: {aggregator}}}"))
    out = tmp_path / "run"
    agents = Agents(judging_reply)
    outcome = await evaluate(options(path, "humaneval", out, limit=2), clients={"default": agents})
    records = lines(out)
    assert len(records) == 2
    for record in records:
        assert [a["correct"] for a in record["agents"]] == [True, True, False]
        assert record["team"]["correct"] and record["team"]["check"] == "passed"
    prompts = [r.messages[-1]["content"] for r in agents.requests]
    if aggregator == "bradley_terry":
        # the careful two wrote the same answer and are merged: one pair, both orders, per item
        assert sum("Answer 1:" in p for p in prompts) == 2 * 2
        assert [c["support"] for c in records[0]["team"]["details"]["candidates"]] == [2, 1]
    else:
        assert sum("candidate answers" in p for p in prompts) == 2
    assert outcome.summary is not None and outcome.summary.configurations[0].accuracy == 1.0


OUTSIDE = Path("/tmp/agentfab-hostile-write")
HOSTILE = {
    "infinite loop": "    while True:\n        pass\n",
    "fork bomb": "    import os\n    while True:\n        os.fork()\n",
    "memory bomb": "    hoard = [bytearray(1 << 20) for _ in range(1 << 16)]\n",
    "kills its parent": "    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n",
    "prints megabytes": "    print('x' * 50_000_000)\n",
    "writes outside": f"    open({str(OUTSIDE)!r}, 'w').write('x' * 10**8)\n",
}
HOSTILE_SUITE = load_suite("humaneval", limit=len(HOSTILE))


def hostile_reply(prompt: str) -> str:
    """Careful agents write the reference solution; the careless one something hostile."""
    index, item = next((i, it) for i, it in enumerate(HOSTILE_SUITE.items) if it.prompt in prompt)
    if prompt.endswith("Careful."):
        body = item.data["canonical_solution"]
    else:
        body = list(HOSTILE.values())[index]
    return f"```python\n{item.prompt}{body}```\n"


async def test_hostile_completions_are_contained_and_the_run_goes_on(tmp_path: Path) -> None:
    path = code_pipeline(tmp_path)
    out = tmp_path / "run"
    outcome = await evaluate(
        options(path, "humaneval", out, limit=len(HOSTILE), test_timeout_s=3.0),
        clients={"default": Agents(hostile_reply)},
    )
    records = {r["item"]: r for r in lines(out)}
    assert sorted(records) == [item.id for item in HOSTILE_SUITE.items]
    for (what, _), item in zip(HOSTILE.items(), HOSTILE_SUITE.items, strict=True):
        record = records[item.id]
        hostile = record["agents"][2]
        assert not hostile["correct"], what
        assert hostile["check"] != "passed", what
        # the careful agents' programs were still tested and passed, and so did the team
        assert [a["correct"] for a in record["agents"][:2]] == [True, True], what
        assert record["team"]["correct"], what
    assert outcome.summary is not None and outcome.summary.configurations[0].accuracy == 1.0
    if OUTSIDE.exists():  # without namespaces /tmp is shared: the file-size limit held
        assert OUTSIDE.stat().st_size <= 16 << 20
        OUTSIDE.unlink(missing_ok=True)


async def test_several_samples_give_pass_at_k(pipeline: Path, suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    agents = Agents(multiple_choice)
    outcome = await evaluate(options(pipeline, suite, out, samples=3), clients={"default": agents})
    assert sorted((r["item"], r["sample"]) for r in lines(out)) == [
        (q["id"], s) for q in QUESTIONS for s in range(3)
    ]
    assert outcome.summary is not None
    team = outcome.summary.configurations[0]
    assert team.pass_at_k == {"pass@1": pytest.approx(0.75), "pass@3": pytest.approx(0.75)}
    # every request is seeded, and no two alike: samples, agents and baselines all differ
    seeds = [r.seed for r in agents.requests]
    assert None not in seeds and len(set(seeds)) == len(seeds)


# ---- failures, resume and refusals ----------------------------------------------------------


def failing(prompt: str) -> str:
    raise BackendError("http://127.0.0.1:9/v1: connection refused", endpoint="scripted")


async def test_items_nobody_answered_are_recorded_then_the_run_stops(
    pipeline: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    with pytest.raises(BackendError, match="stopping: 5 of the 5 items"):
        await evaluate(
            options(pipeline, "gpqa-project", out, limit=12, concurrency=1),
            clients={"default": Agents(failing)},
        )
    records = lines(out)
    assert len(records) == 5
    assert all(r["error_kind"] == "backend" and not r["team"]["correct"] for r in records)
    assert "connection refused" in records[0]["single"]["error"]
    # --resume asks them again, and only once each
    plan = plan_eval(options(pipeline, "gpqa-project", out, limit=12, resume=True))
    assert len(plan.units) == 12 and plan.done == []
    await evaluate(
        options(pipeline, "gpqa-project", out, limit=12, resume=True),
        clients={"default": Agents(multiple_choice_or_first)},
    )
    assert sorted(r["item"] for r in lines(out)) == sorted(
        i.id for i in load_suite("gpqa-project", limit=12).items
    )


def multiple_choice_or_first(prompt: str) -> str:
    return "Answer: A"


async def test_resume_skips_finished_items_and_drops_a_cut_short_line(
    pipeline: Path, suite: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    await evaluate(
        options(pipeline, suite, out, limit=2), clients={"default": Agents(multiple_choice)}
    )
    results = out / RESULTS_FILE
    complete = results.read_text()
    # as if killed while writing a third line
    results.write_text(complete + complete.splitlines()[0][:57])
    loaded = read_results(results)
    assert loaded.truncated and len(loaded.records) == 2
    agents = Agents(multiple_choice)
    outcome = await evaluate(
        options(pipeline, suite, out, resume=True), clients={"default": agents}
    )
    assert (outcome.skipped, outcome.written) == (2, 2)
    assert len(agents.requests) == 2 * 5  # only q3 and q4 were asked: 3 agents + 2 baseline calls
    assert sorted(r["item"] for r in lines(out)) == ["q1", "q2", "q3", "q4"]
    assert results.read_text().startswith(complete)
    # a second resume has nothing left to do, and writes nothing twice
    again = await evaluate(
        options(pipeline, suite, out, resume=True), clients={"default": Agents(failing)}
    )
    assert (again.skipped, again.written) == (4, 0)
    assert len(lines(out)) == 4


def cut(results: Path, how: str) -> None:
    """Leave the results file as a kill at some moment could: `how` names the moment."""
    data = results.read_bytes()
    if how == "the newline of the last line lost":
        results.write_bytes(data.removesuffix(b"\n"))
    elif how == "a third line cut short":
        results.write_bytes(data + data.splitlines()[0][:57])
    elif how == "the only line cut short":
        results.write_bytes(data.splitlines()[0][:57])
    elif how == "an empty file":
        results.write_bytes(b"")
    elif how == "only run.json":
        results.unlink()
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "kept"),
    [
        ("the newline of the last line lost", 2),
        ("a third line cut short", 2),
        ("the only line cut short", 0),
        ("an empty file", 0),
        ("only run.json", 0),
    ],
)
async def test_every_cut_resumes_and_resumes_again(
    pipeline: Path, suite: Path, tmp_path: Path, how: str, kept: int
) -> None:
    out = tmp_path / "run"
    await evaluate(
        options(pipeline, suite, out, limit=2), clients={"default": Agents(multiple_choice)}
    )
    cut(out / RESULTS_FILE, how)
    agents = Agents(multiple_choice)
    first = await evaluate(options(pipeline, suite, out, resume=True), clients={"default": agents})
    assert (first.skipped, first.written) == (kept, 4 - kept)
    assert len(agents.requests) == (4 - kept) * 5  # 3 agents + 2 baseline calls per item
    data = (out / RESULTS_FILE).read_bytes()
    assert data.endswith(b"\n") and sorted(r["item"] for r in lines(out)) == [
        "q1",
        "q2",
        "q3",
        "q4",
    ]
    assert read_results(out / RESULTS_FILE).tidy
    # a second resume reads the file, has nothing left to do and writes nothing twice
    again = await evaluate(
        options(pipeline, suite, out, resume=True), clients={"default": Agents(failing)}
    )
    assert (again.skipped, again.written) == (4, 0) and (out / RESULTS_FILE).read_bytes() == data
    assert again.summary is not None and again.summary.lines == 4


def test_a_complete_last_line_without_its_newline_is_kept_and_needs_one(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    first, second = record("q1", True).model_dump_json(), record("q2", False).model_dump_json()
    path.write_text(f"{first}\n{second}")
    loaded = read_results(path)
    assert [r.item for r in loaded.records] == ["q1", "q2"]
    assert not loaded.truncated and loaded.unterminated and not loaded.tidy
    # complete JSON that is not a record is not a cut: it is named, not dropped
    path.write_text(f'{first}\n{{"note": "mine"}}')
    with pytest.raises(ConfigError, match=rf"{RESULTS_FILE}:2: not a result line"):
        read_results(path)


async def test_a_suite_is_known_by_its_content_not_its_name(pipeline: Path, tmp_path: Path) -> None:
    here, there, renamed = (tmp_path / name for name in ("here", "there", "renamed"))
    for folder in (here, there, renamed):
        folder.mkdir()
    (here / "mc.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    other = [q | {"question": q["question"] + " Really."} for q in QUESTIONS]
    (there / "mc.jsonl").write_text("".join(json.dumps(q) + "\n" for q in other))
    (renamed / "copy.jsonl").write_bytes((here / "mc.jsonl").read_bytes())
    out = tmp_path / "run"
    await evaluate(
        options(pipeline, here / "mc.jsonl", out, limit=2),
        clients={"default": Agents(multiple_choice)},
    )
    with pytest.raises(ConfigError, match=r"another suite \(its content differs\)") as caught:
        plan_eval(options(pipeline, there / "mc.jsonl", out, resume=True))
    assert f"from {here / 'mc.jsonl'} (sha256 " in str(caught.value)
    assert f"not 'mc' from {there / 'mc.jsonl'} (sha256 " in str(caught.value)
    # the same content under another name and folder is the same suite
    plan = plan_eval(options(pipeline, renamed / "copy.jsonl", out, resume=True))
    assert len(plan.done) == 2 and [i.id for i, _ in plan.units] == ["q3", "q4"]


@pytest.mark.parametrize(
    ("fmt", "suite_spec", "why"),
    [
        ("short", "mc", "'mc' is multiple choice, scored by the letter of the option"),
        ("number", "mc", "'mc' is multiple choice"),
        ("letter", "humaneval", "'humaneval' is code, scored by running the program"),
    ],
)
async def test_a_format_the_suite_cannot_score_is_refused_before_any_call(
    pipeline: Path, suite: Path, tmp_path: Path, fmt: str, suite_spec: str, why: str
) -> None:
    pipeline.write_text(PIPELINE.replace("answer_format: letter", f"answer_format: {fmt}"))
    out = tmp_path / "run"
    agents = Agents(multiple_choice)
    spec = suite if suite_spec == "mc" else suite_spec
    with pytest.raises(ConfigError, match=rf"run.answer_format is '{fmt}', but suite {why}"):
        await evaluate(options(pipeline, spec, out, limit=1), clients={"default": agents})
    assert agents.requests == [] and not out.exists()


def test_cli_refuses_short_answers_on_multiple_choice_in_one_line(
    suite: Path, tmp_path: Path
) -> None:
    # Its model is a server nobody runs: a call would fail differently, and slowly.
    team = tmp_path / "short.yaml"
    team.write_text(
        PIPELINE.replace("answer_format: letter", "answer_format: short")
        + 'models: {default: {kind: openai, base_url: "http://127.0.0.1:9/v1", '
        "served_name: nobody}}\n"
    )
    out = tmp_path / "run"
    line = one_error_line(agentfab("eval", str(team), "--suite", str(suite), "--out", str(out)))
    assert line == (
        f"agentfab: error: {team}: run.answer_format is 'short', but suite 'mc' is multiple "
        "choice, scored by the letter of the option; set answer_format to 'auto' or 'letter'"
    )
    assert not out.exists()


def careless_fails(prompt: str) -> str:
    """Careful agents answer as in `multiple_choice`; the careless one's server fails on
    the questions whose right option is shown first or last."""
    if not prompt.endswith("Careful.") and letter_of(prompt, "right") in "AD":
        raise BackendError("http://127.0.0.1:9/v1: connection reset", endpoint="scripted")
    return multiple_choice(prompt)


async def test_oracle_k_counts_the_answers_it_looked_at(
    pipeline: Path, suite: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    outcome = await evaluate(
        options(pipeline, suite, out), clients={"default": Agents(careless_fails)}
    )
    records = lines(out)
    failed = {r["item"] for r in records if r["agents"][2]["error"]}
    assert failed and len(failed) < 4  # some lines had 3 answers, some 2
    assert {r["item"]: r["oracle_k"] for r in records} == {
        r["item"]: 2 if r["item"] in failed else 3 for r in records
    }
    assert outcome.summary is not None
    oracle = outcome.summary.configurations[3]
    mean_k = (3 * 4 - len(failed)) / 4
    assert oracle.name == "oracle@2–3"
    assert oracle.label == f"oracle@2–3 (some agent right; {mean_k:.1f} answers per line)"
    # a one-agent team's oracle looked at one answer
    alone = one_agent_pipeline(tmp_path)
    one = await evaluate(
        options(alone, suite, tmp_path / "one"), clients={"default": Agents(multiple_choice)}
    )
    assert one.summary is not None and one.summary.configurations[3].name == "oracle@1"


def test_oracle_k_of_older_lines_is_the_last_round_s_answers() -> None:
    # No oracle_k recorded: three agents in round 1, two of them again in round 2, one
    # of which failed there. The oracle looked at one answer, not three.
    agents = [AgentAttempt(id=f"a{i}@1", name=f"a{i}", round=1) for i in range(3)] + [
        AgentAttempt(id="a0@2", name="a0", round=2, correct=True),
        AgentAttempt(id="a1@2", name="a1", round=2, error="timeout"),
    ]
    line = record("q1", True).model_copy(update={"agents": agents})
    assert summarise([line]).configurations[3].name == "oracle@1"


async def test_cancelled_run_keeps_what_finished(
    pipeline: Path, suite: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    slow = Agents(multiple_choice, delay_s=0.05)
    run = asyncio.create_task(
        evaluate(options(pipeline, suite, out, concurrency=1), clients={"default": slow})
    )
    while not (out / RESULTS_FILE).exists() or len(lines(out)) < 1:
        await asyncio.sleep(0.01)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    finished = len(lines(out))
    assert 1 <= finished < 4
    await evaluate(
        options(pipeline, suite, out, resume=True), clients={"default": Agents(multiple_choice)}
    )
    assert sorted(r["item"] for r in lines(out)) == ["q1", "q2", "q3", "q4"]


async def test_refusals(pipeline: Path, suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    await evaluate(
        options(pipeline, suite, out, limit=1), clients={"default": Agents(multiple_choice)}
    )
    with pytest.raises(ConfigError, match=r"run has results; pass --resume or another --out"):
        plan_eval(options(pipeline, suite, out))
    with pytest.raises(ConfigError, match=r"another --seed: 0, not 7"):
        plan_eval(options(pipeline, suite, out, resume=True, seed=7))
    with pytest.raises(ConfigError, match=r"another suite \(its content differs\): 'mc' from "):
        plan_eval(options(pipeline, "gpqa-project", out, resume=True))
    pipeline.write_text(PIPELINE.replace("max_tokens: 16", "max_tokens: 17"))
    with pytest.raises(ConfigError, match=r"another pipeline file \(its content changed\)"):
        plan_eval(options(pipeline, suite, out, resume=True))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        plan_eval(options(pipeline, suite, a_file))


def test_a_bad_line_in_the_middle_is_named(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    good = record("q1", True).model_dump_json()
    path.write_text(f"{good}\n{{not json\n{record('q2', True).model_dump_json()}\n")
    with pytest.raises(ConfigError, match=rf"{RESULTS_FILE}:2: not a result line"):
        read_results(path)
    path.write_text(f"{good}\n{good}\n")
    assert read_results(path).duplicates == 1


# ---- reports -------------------------------------------------------------------------------


def record(
    item: str, team: bool, *, agents: tuple[bool, ...] = (), votes: dict[str, int] | None = None
) -> ItemRecord:
    answers = [a for a, n in (votes or {"A": 3}).items() for _ in range(n)]
    return ItemRecord(
        item=item,
        kind="choice",
        reference="A",
        team=Attempt(
            correct=team,
            usage=Usage(prompt_tokens=300, completion_tokens=30),
            details=vote_stats(answers),
        ),
        agents=[
            AgentAttempt(id=f"a{i}@1", name=f"a{i}", round=1, correct=right)
            for i, right in enumerate(agents)
        ],
        single=Attempt(correct=False, usage=Usage(prompt_tokens=100, completion_tokens=10)),
        self_consistency=Sampled(
            correct=team, usage=Usage(prompt_tokens=200, completion_tokens=130), samples=13
        ),
        oracle=team or any(agents),
    )


def run_config(**changes: Any) -> RunConfig:
    fields: dict[str, Any] = {
        "pipeline": "team.yaml",
        "pipeline_name": "scripted",
        "pipeline_sha256": "0" * 64,
        "team": "star, majority, 3 agents",
        "suite": "mc",
        "suite_kind": "choice",
        "suite_source": "mc.jsonl",
        "seed": 0,
        "limit": None,
        "samples": 1,
        "concurrency": 8,
        "started": "2025-01-01T00:00:00+00:00",
        "agentfab": "0.1.0",
    }
    return RunConfig(**(fields | changes))


def write_run(folder: Path, records: list[ItemRecord], **changes: Any) -> Path:
    folder.mkdir()
    (folder / "run.json").write_text(run_config(**changes).model_dump_json())
    (folder / RESULTS_FILE).write_text("".join(r.model_dump_json() + "\n" for r in records))
    return folder


SYNTHETIC = [
    record("q1", True, agents=(True, True, False)),
    record("q2", True, agents=(True, False, False), votes={"A": 1, "B": 1, "C": 1}),
    record("q3", True, agents=(True, True, True)),
    record("q4", False, agents=(False, False, True), votes={"A": 2}),
]


def test_report_from_results(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "run", SYNTHETIC)
    summary = write_report(folder)
    for name in ("summary.json", "report.md", "accuracy.png", "tokens.png", "agreement.png"):
        assert (folder / name).stat().st_size > 0, name
    assert (folder / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    team, single, _, oracle = summary.configurations
    assert (team.correct, team.items, team.accuracy) == (3, 4, 0.75)
    assert (team.low, team.high) == pytest.approx((0.3006, 0.9544), abs=1e-4)
    assert (single.correct, oracle.correct, oracle.name) == (0, 4, "oracle@3")
    assert team.tokens_per_item == 330 and single.tokens_per_item == 110
    assert summary.self_consistency_samples == 13
    assert summary.correlation_agents == ["a0", "a1", "a2"]
    a0, a1 = [True, True, True, False], [True, False, True, False]
    assert summary.correlation_matrix[0][1] == pytest.approx(phi(a0, a1))
    assert [(s.votes, s.lines) for s in summary.agreement] == [
        ("3", 2),
        ("2, 1 no answer", 1),
        ("1+1+1", 1),
    ]
    text = (folder / "report.md").read_text()
    assert "| team (star, majority, 3 agents) | 3/4 | 75.0% | 30%–95% | 330 |" in text
    assert "| oracle@3 (some agent right) | 4/4 | 100.0% |" in text
    assert "![accuracy](accuracy.png)" in text and "![agreement](agreement.png)" in text
    saved = json.loads((folder / "summary.json").read_text())
    assert saved["configurations"][0]["accuracy"] == 0.75


def test_summary_of_samples_averages_within_items(tmp_path: Path) -> None:
    records = [
        r.model_copy(update={"sample": s, "team": r.team.model_copy(update={"correct": right})})
        for r, s, right in [
            (SYNTHETIC[0], 0, True),
            (SYNTHETIC[0], 1, False),
            (SYNTHETIC[1], 0, True),
            (SYNTHETIC[1], 1, True),
        ]
    ]
    summary = summarise(records)
    team = summary.configurations[0]
    assert (summary.items, summary.samples, team.correct, team.accuracy) == (2, 2, 1.5, 0.75)
    # pass@2: q1 has one right of two (1.0), q2 two of two (1.0)
    assert team.pass_at_k == {"pass@1": 0.75, "pass@2": 1.0}


def test_runs_side_by_side(tmp_path: Path) -> None:
    first = write_run(tmp_path / "first", SYNTHETIC)
    second = write_run(tmp_path / "second", SYNTHETIC[:2], pipeline_name="other")
    table = compare_runs([first, second])
    rows = table.splitlines()
    assert rows[0].startswith("| run | pipeline | suite | items | team |")
    assert rows[2].startswith("| first | scripted | mc | 4 | 75.0% (30%–95%) | 0.0%")
    assert rows[3].startswith("| second | other | mc | 2 | 100.0%")
    with pytest.raises(ConfigError, match="no such run folder"):
        compare_runs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"not an eval run \(no run.json\)"):
        compare_runs([tmp_path / "empty"])
    (first / "run.json").write_text("{")
    with pytest.raises(ConfigError, match=r"run\.json: not a run description"):
        compare_runs([first])


# ---- the command line ----------------------------------------------------------------------


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_cli_unknown_suite_lists_the_known_ones() -> None:
    line = one_error_line(
        agentfab("eval", str(ROOT / "examples/eval_mc.yaml"), "--suite", "gpqa-projct")
    )
    assert "unknown suite 'gpqa-projct'; did you mean 'gpqa-project'?" in line
    assert "known: gpqa-diamond, gpqa-extended, gpqa-main, gpqa-project, humaneval" in line


def test_cli_suite_in_the_wrong_layout(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("Question,Correct Answer\nWhat?,Yes\n")
    line = one_error_line(
        agentfab("eval", str(ROOT / "examples/eval_mc.yaml"), "--suite", str(bad))
    )
    assert f"{bad}:1: missing column 'Incorrect Answer 1'" in line


def test_cli_bad_out_and_existing_results(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    mc = str(ROOT / "examples/eval_mc.yaml")
    line = one_error_line(agentfab("eval", mc, "--suite", "gpqa-project", "--out", str(a_file)))
    assert "exists and is not a folder" in line
    folder = write_run(tmp_path / "run", SYNTHETIC)
    line = one_error_line(agentfab("eval", mc, "--suite", "gpqa-project", "--out", str(folder)))
    assert line.endswith(f"{folder} has results; pass --resume or another --out")
    line = one_error_line(
        agentfab("eval", mc, "--suite", "gpqa-project", "--out", str(folder), "--resume")
    )
    assert "another pipeline file" in line


def test_cli_report(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "run", SYNTHETIC)
    out = tmp_path / "side.md"
    done = agentfab("report", str(folder), str(folder), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == out.read_text()
    assert done.stdout.count("| run | scripted | mc | 4 |") == 2
    line = one_error_line(agentfab("report", str(tmp_path / "nowhere")))
    assert "no such run folder" in line


def test_one_short_first_sample_does_not_inflate_self_consistency() -> None:
    from agentfab import Message, Result, Task
    from agentfab.evals.runner import _Draws

    def drawn(completion_tokens: int) -> Result:
        usage = Usage(prompt_tokens=150, completion_tokens=completion_tokens, calls=1)
        message = Message(id="a@1", sender="a", text="x", usage=usage)
        return Result(
            team="a",
            task=Task(prompt="?"),
            answer=None,
            text="x",
            messages=[message],
            usage=usage,
            wall_s=0.1,
            rounds=1,
        )

    # The team's three agents wrote 70 tokens each; the single sample only one.
    draws = _Draws(budget=3 * (150 + 70), cap=32, prior=(210, 3))
    draws.add(drawn(1))
    # Samples are taken to be (210 + 1) / 4 = 53 tokens long: 359 tokens left after a second
    # prompt of 150 fit 7 of them, not the 32 that one 1-token sample would suggest.
    assert draws.next_n() == 7
    draws.add(drawn(7 * 60))
    assert draws.usage.total_tokens == 721 and draws.next_n() == 0
