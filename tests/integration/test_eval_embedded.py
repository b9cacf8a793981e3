"""`agentfab eval` for real, on the embedded model (SmolLM2-135M-Instruct), through the CLI.

A run killed with SIGKILL mid-run and resumed has every item exactly once; and a small
slice (multiple choice and HumanEval) runs end to end into a report whose numbers are
what its results file says. The model is weak: only mechanics and bookkeeping are checked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agentfab.evals import load_suite, wilson

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("real_embedded")]

ROOT = Path(__file__).resolve().parents[2]
MC = str(ROOT / "examples/eval_mc.yaml")
CODE = str(ROOT / "examples/eval_code.yaml")
SLICE = {"mc": (MC, "gpqa-project", 20), "code": (CODE, "humaneval", 10)}


def eval_command(pipeline: str, suite: str, limit: int, out: Path, *more: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agentfab.cli",
        "eval",
        pipeline,
        "--suite",
        suite,
        "--limit",
        str(limit),
        "--out",
        str(out),
        "--no-progress",
        *more,
    ]


def results(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


def finished_lines(path: Path) -> int:
    if not path.exists():
        return 0
    return path.read_bytes().count(b"\n")


def kill_when_finished(command: list[str], out: Path, count: int) -> None:
    """Start the eval `command` and SIGKILL it once `out` has `count` results."""
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 300
        while finished_lines(out / "results.jsonl") < count:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no results after 300 s"
            time.sleep(0.2)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()


def test_a_killed_run_resumes_with_every_item_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # Two at a time, so that items are still in flight when the second line lands.
    kill_when_finished(eval_command(MC, "gpqa-project", 8, out, "--concurrency", "2"), out, 2)
    before = finished_lines(out / "results.jsonl")
    assert 2 <= before < 8
    resumed = subprocess.run(
        eval_command(MC, "gpqa-project", 8, out, "--resume"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"{8 - before} to run, {before} done before" in resumed.stderr
    ids = [line["item"] for line in results(out)]
    expected = [item.id for item in load_suite("gpqa-project", limit=8).items]
    assert sorted(ids) == sorted(expected)  # each once: none lost, none twice
    assert (out / "report.md").is_file() and (out / "summary.json").is_file()


@pytest.fixture(scope="module")
def slice_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The slice, run once for the tests below: 20 multiple-choice items, 10 HumanEval."""
    root = tmp_path_factory.mktemp("slice")
    runs = {}
    for name, (pipeline, suite, limit) in SLICE.items():
        out = root / name
        started = time.monotonic()
        done = subprocess.run(
            eval_command(pipeline, suite, limit, out),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        print(f"\n{name}: {time.monotonic() - started:.0f} s\n{done.stdout}")
        runs[name] = out
    return runs


@pytest.mark.parametrize("name", list(SLICE))
def test_the_slice_report_says_what_the_results_say(slice_runs: dict[str, Path], name: str) -> None:
    folder = slice_runs[name]
    lines = results(folder)
    _, suite, limit = SLICE[name]
    assert sorted(line["item"] for line in lines) == sorted(
        item.id for item in load_suite(suite, limit=limit).items
    )
    for figure in ("accuracy.png", "tokens.png"):
        assert (folder / figure).read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((folder / "summary.json").read_text())
    report = (folder / "report.md").read_text()
    rates = {rate["name"].split("@")[0]: rate for rate in summary["configurations"]}
    for key, right in (
        ("team", lambda line: line["team"]["correct"]),
        ("single", lambda line: line["single"]["correct"]),
        ("self-consistency", lambda line: line["self_consistency"]["correct"]),
        ("oracle", lambda line: line["oracle"]),
    ):
        correct = sum(1 for line in lines if right(line))
        rate = rates[key]
        assert rate["correct"] == correct and rate["items"] == limit
        assert rate["accuracy"] == pytest.approx(correct / limit)
        low, high = wilson(correct, limit)
        assert (rate["low"], rate["high"]) == pytest.approx((low, high))
        row = f"| {rate['label']} | {correct}/{limit} | {correct / limit:.1%} | {low:.0%}–{high:.0%} |"
        assert row in report
    team_tokens = [
        line["team"]["usage"]["prompt_tokens"] + line["team"]["usage"]["completion_tokens"]
        for line in lines
    ]
    assert rates["team"]["tokens_per_item"] == pytest.approx(sum(team_tokens) / limit)
    for line, budget in zip(lines, team_tokens, strict=True):
        sc = line["self_consistency"]
        assert sc["budget"] == budget and sc["samples"] == len(sc["answers"]) >= 1


def test_runs_side_by_side(slice_runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "side.md"
    runs = [str(folder) for folder in slice_runs.values()]
    done = subprocess.run(
        [sys.executable, "-m", "agentfab.cli", "report", *runs, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = out.read_text().splitlines()
    assert len(rows) == 4
    assert rows[2].startswith("| mc | eval-mc | gpqa-project | 20 |")
    assert rows[3].startswith("| code | eval-code | humaneval | 10 |")
    print("\n" + out.read_text())
