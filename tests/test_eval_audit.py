"""An eval record can be audited alone: the options as shown, every call's prompt, how the
decision was reached; the report lists the decisions that were not clear; --resume needs a
run to resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentfab import ConfigError
from agentfab.evals.records import RESULTS_FILE
from agentfab.evals.runner import evaluate, plan_eval
from tests.test_cli import agentfab
from tests.test_eval_runner import Agents, letter_of, lines, options

ROLES = {"One.": "right", "Two.": "w1", "Three.": "w2"}
TIED = """
name: split
agents:
  - {name: a, role: "One.", max_tokens: 16}
  - {name: b, role: "Two.", max_tokens: 16}
  - {name: c, role: "Three.", max_tokens: 16}
topology: {kind: star, aggregator: {kind: majority}}
run: {answer_format: letter, seed: 0}
"""
QUESTION = {"id": "q1", "question": "Pick the right one.", "choices": ["right", "w1", "w2", "w3"]}


def each_their_own(prompt: str) -> str:
    """Every agent names another option: a three-way tie."""
    word = next((w for role, w in ROLES.items() if prompt.endswith(role)), "w3")
    return f"Answer: {letter_of(prompt, word)}"


@pytest.fixture
def split(tmp_path: Path) -> tuple[Path, Path]:
    pipeline, suite = tmp_path / "split.yaml", tmp_path / "one.jsonl"
    pipeline.write_text(TIED)
    suite.write_text(json.dumps(QUESTION | {"answer": 0}) + "\n")
    return pipeline, suite


async def test_a_record_holds_the_options_shown_and_every_prompt(
    split: tuple[Path, Path], tmp_path: Path
) -> None:
    pipeline, suite = split
    agents = Agents(each_their_own)
    out = tmp_path / "run"
    await evaluate(options(pipeline, suite, out), clients={"default": agents})
    (record,) = lines(out)
    assert record["question"] == "Pick the right one."
    assert sorted(record["choices"]) == ["right", "w1", "w2", "w3"]  # shuffled, as shown
    assert record["choices"][ord(record["reference"]) - ord("A")] == "right"
    sent = [r.messages for r in agents.requests]
    recorded = [c["messages"] for a in record["agents"] for c in a["prompts"]]
    recorded += [c["messages"] for c in record["single"]["prompts"]]
    recorded += [c["messages"] for c in record["self_consistency"]["prompts"]]
    assert set(map(json.dumps, recorded)) == set(map(json.dumps, sent))
    # self-consistency reuses the single sample: its calls are all of its requests
    assert len(record["self_consistency"]["prompts"]) == record["self_consistency"]["requests"]
    assert record["agents"][0]["prompts"][0]["by"] == "a@1"
    # the options appear in the prompt in the order the record gives them
    shown = record["agents"][0]["prompts"][0]["messages"][-1]["content"]
    assert all(f"{chr(65 + i)}) {c}" in shown for i, c in enumerate(record["choices"]))


async def test_a_tie_is_said_in_the_record_and_the_report(
    split: tuple[Path, Path], tmp_path: Path
) -> None:
    pipeline, suite = split
    out = tmp_path / "run"
    await evaluate(options(pipeline, suite, out), clients={"default": Agents(each_their_own)})
    (record,) = lines(out)
    assert record["team"]["note"] == "tie of 3 single votes, broken by agent order"
    assert "prompts" not in record["team"]["details"]  # the calls are in `prompts`, once
    report = (out / "report.md").read_text()
    assert "## Decisions to read with care" in report
    tie = f"| q1 | {record['reference']} | tie of 3 single votes, broken by agent order | yes |"
    assert tie in report


def test_resume_needs_a_run_to_resume(split: tuple[Path, Path], tmp_path: Path) -> None:
    pipeline, suite = split
    for folder in (tmp_path / "nowhere", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(ConfigError, match="holds no run to resume"):
            plan_eval(options(pipeline, suite, folder, resume=True))
        assert not (folder / RESULTS_FILE).exists()


def test_cli_refuses_to_resume_where_there_is_no_run(
    split: tuple[Path, Path], tmp_path: Path
) -> None:
    pipeline, suite = split
    folder = tmp_path / "empty"
    folder.mkdir()
    done = agentfab("eval", str(pipeline), "--suite", str(suite), "--out", str(folder), "--resume")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"agentfab: error: --resume: {folder} holds no run to resume (no run.json); "
        "pass the --out of an earlier run, or drop --resume to start one"
    )
    assert list(folder.iterdir()) == []  # nothing was run
