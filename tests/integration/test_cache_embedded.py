"""The call cache with the real embedded model: a rerun, or another aggregator over the
same samples, makes no model calls and gives the same results; two `agentfab eval` runs
sharing one cache at once lose nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentfab import Agent, ChatRequest, ChatResponse, Orchestrator, RunSettings
from agentfab.aggregators import Majority, SelfAggregate
from agentfab.cache import CacheStats
from agentfab.topologies import star

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("real_embedded")]

ROOT = Path(__file__).resolve().parents[2]
VOLATILE = {"wall_s", "latency_s", "started", "server", "finished", "worker", "cache"}
"""What differs between two runs of the same items whatever they answered (at any depth)."""


class Refusing:
    """The embedded model's endpoint, but any call that reaches it fails the test."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    async def chat(self, request: ChatRequest) -> ChatResponse:
        raise AssertionError(f"a call reached the model: {request.messages[-1]['content']!r}")

    async def aclose(self) -> None:
        pass


def texts(result: Any) -> dict[str, str]:
    return {m.id: m.text for m in result.messages}


async def test_a_rerun_and_a_new_aggregator_answer_from_the_cache(
    embedded: Any, tmp_path: Path
) -> None:
    agents = [Agent(name=f"w{i}", max_tokens=24, temperature=1.0) for i in range(3)]
    settings = RunSettings(cache=tmp_path / "cache")  # unseeded: three different samples
    question = "Name a fruit that is yellow."

    first = await Orchestrator({"default": embedded}, settings).run(
        star(agents, Majority()), question
    )
    assert first.cache == CacheStats(hits=0, misses=3)

    refusing = {"default": Refusing(embedded.endpoint)}
    again = await Orchestrator(refusing, settings).run(star(agents, Majority()), question)
    assert again.cache == CacheStats(hits=3, misses=0)
    assert texts(again) == texts(first) and again.answer == first.answer
    assert again.usage == first.usage  # what the answers cost, as first paid

    # A writer over the same three samples: only the writer's call is new.
    written = await Orchestrator({"default": embedded}, settings).run(
        star(agents, SelfAggregate(max_tokens=24)), question
    )
    assert written.cache == CacheStats(hits=3, misses=1)
    workers = {k: v for k, v in texts(written).items() if k.startswith("w")}
    assert workers == {k: v for k, v in texts(first).items() if k.startswith("w")}


def eval_slice(out: Path, cache: Path, seed: int) -> subprocess.Popen[str]:
    command = [
        *(sys.executable, "-m", "agentfab.cli", "eval", str(ROOT / "examples/eval_mc.yaml")),
        *("--suite", "gpqa-project", "--limit", "3", "--seed", str(seed), "--no-progress"),
        *("--out", str(out), "--cache", str(cache)),
    ]
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finished(process: subprocess.Popen[str]) -> str:
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    return stdout


def records(out: Path) -> dict[str, dict[str, Any]]:
    lines = (out / "results.jsonl").read_text().splitlines()
    return {r["item"]: r for r in map(json.loads, lines)}


def steady(value: Any) -> Any:
    """`value` without what differs between runs."""
    if isinstance(value, dict):
        return {k: steady(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [steady(v) for v in value]
    return value


def answers(out: Path) -> dict[str, Any]:
    return {item: steady(record) for item, record in records(out).items()}


def test_eval_reruns_sharing_a_cache_make_no_calls_and_lose_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    # Two different runs (different seeds: different requests) writing one cache at once.
    runs = {seed: eval_slice(tmp_path / f"first-{seed}", cache, seed) for seed in (1, 2)}
    for process in runs.values():
        finished(process)
    for seed in runs:
        sent = sum(r["cache"]["misses"] for r in records(tmp_path / f"first-{seed}").values())
        assert sent > 0, "the first run found its calls already cached"

    reruns = {seed: eval_slice(tmp_path / f"again-{seed}", cache, seed) for seed in runs}
    for seed, process in reruns.items():
        stdout = finished(process)
        again = records(tmp_path / f"again-{seed}")
        assert len(again) == 3
        assert all(r["cache"]["misses"] == 0 and r["cache"]["hits"] > 0 for r in again.values())
        assert answers(tmp_path / f"again-{seed}") == answers(tmp_path / f"first-{seed}")
        hits = sum(r["cache"]["hits"] for r in again.values())
        assert f"call cache: {hits} of {hits} calls answered from it, 0 sent" in stdout
