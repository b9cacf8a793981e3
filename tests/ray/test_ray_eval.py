"""`agentfab eval` on Ray workers of a real two-node cluster, on the embedded model.

The same seeded slice gives the same answers with Ray as without it, with items on both
nodes; a worker killed (by Ray, or SIGKILL of its process) or a node removed mid-run loses
nothing and counts nothing twice, and the re-runs are reported; a killed driver resumes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agentfab.errors import ConfigError
from agentfab.evals.runner import EvalOptions, evaluate
from agentfab.executors import RayExecutor
from tests.integration.test_eval_embedded import finished_lines, kill_when_finished, results

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("real_embedded")]

ROOT = Path(__file__).resolve().parents[2]
MC = ROOT / "examples/eval_mc.yaml"
SUITE = "gpqa-project"


def options(out: Path, limit: int, **more: Any) -> EvalOptions:
    return EvalOptions(pipeline=MC, suite=SUITE, limit=limit, out=out, progress=False, **more)


def answers(folder: Path) -> dict[tuple[str, int], Any]:
    return {
        (r["item"], r["sample"]): (
            r["team"]["answer"],
            [a["answer"] for a in r["agents"]],
            r["single"]["answer"],
            r["self_consistency"]["answers"],
        )
        for r in results(folder)
    }


async def until_lines(path: Path, count: int, run: asyncio.Task[Any]) -> None:
    deadline = time.monotonic() + 300
    while finished_lines(path) < count:
        assert not run.done(), f"the run ended first: {run.exception()!r}"
        assert time.monotonic() < deadline, f"fewer than {count} results after 300 s"
        await asyncio.sleep(0.1)


def workers() -> dict[str, Any]:
    """The named worker actors alive now, by their pool name (`ray-worker-1`)."""
    import ray
    from ray.util import list_named_actors

    from agentfab.ray_workers import NAMESPACE

    found = {}
    for actor in list_named_actors(all_namespaces=True):
        if actor["namespace"] == NAMESPACE:
            name = actor["name"].split("-", 1)[1]
            try:
                found[name] = ray.get_actor(actor["name"], namespace=NAMESPACE)
            except ValueError:  # listed, then died before the lookup: not alive
                continue
    return found


def exactly_once(folder: Path, limit: int) -> list[dict[str, Any]]:
    got = results(folder)
    keys = [(r["item"], r["sample"]) for r in got]
    assert len(keys) == len(set(keys)) == limit
    return got


async def test_the_same_seeded_slice_gives_the_same_answers_on_ray_and_lands_on_both_nodes(
    cluster: Any, tmp_path: Path
) -> None:
    import ray

    here = await evaluate(options(tmp_path / "here", 6, concurrency=2))
    ray_run = options(tmp_path / "ray", 6, concurrency=2, ray=cluster.address, workers=2)
    there = await evaluate(ray_run)
    assert answers(there.folder) == answers(here.folder)
    got = results(there.folder)
    assert {r["node"] for r in got} == {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert {r["worker"] for r in got} == {"ray-worker-0", "ray-worker-1"}
    assert all(r["worker"] is None for r in results(here.folder))
    assert there.summary is not None and there.summary.nodes and not there.summary.reruns


@pytest.mark.parametrize("how", ["ray.kill", "SIGKILL"])
async def test_a_worker_killed_mid_run_loses_nothing_and_its_items_rerun_elsewhere(
    cluster: Any, tmp_path: Path, how: str
) -> None:
    import ray

    out = tmp_path / "run"
    run = asyncio.create_task(
        evaluate(options(out, 8, concurrency=4, ray=cluster.address, workers=2))
    )
    await until_lines(out / "results.jsonl", 1, run)
    victim = workers()["ray-worker-1"]
    if how == "ray.kill":
        ray.kill(victim, no_restart=True)
    else:
        os.kill(await victim.pid.remote(), signal.SIGKILL)
    outcome = await asyncio.wait_for(run, 600)
    got = exactly_once(out, 8)
    rerun = [r for r in got if r["lost"]]
    assert rerun, "the killed worker held items; they must show as re-run"
    assert all(r["lost"] == ["ray-worker-1"] and r["worker"] == "ray-worker-0" for r in rerun)
    assert outcome.summary is not None
    assert {(r.item, r.sample) for r in outcome.summary.reruns} == {
        (r["item"], r["sample"]) for r in rerun
    }
    assert all(r["team"]["usage"]["completion_tokens"] > 0 for r in rerun)


async def test_a_node_removed_mid_run_loses_nothing(cluster: Any, tmp_path: Path) -> None:
    third = cluster.add_node(num_cpus=1, resources={"third": 1})
    cluster.wait_for_nodes()
    out = tmp_path / "run"
    run = asyncio.create_task(
        evaluate(options(out, 9, concurrency=6, ray=cluster.address, workers=3))
    )
    await until_lines(out / "results.jsonl", 1, run)
    on_third = [r["worker"] for r in results(out) if r["node"] == third.unique_id]
    cluster.remove_node(third)
    outcome = await asyncio.wait_for(run, 600)
    got = exactly_once(out, 9)
    lost = {w for r in got for w in r["lost"]}
    assert len(lost) == 1, f"one worker was on the removed node, lost: {lost}"
    assert all(r["node"] != third.unique_id for r in got if r["lost"])
    assert not on_third or on_third[0] in lost
    assert outcome.summary is not None and len(outcome.summary.reruns) >= 1


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "agentfab.cli", "eval", str(MC), "--suite", SUITE, *args]


def test_a_killed_driver_resumes_with_every_item_once_and_leaves_no_worker(
    cluster: Any, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    common = ["--limit", "6", "--out", str(out), "--no-progress", "--ray", cluster.address]
    kill_when_finished(cli(*common, "--concurrency", "2"), out, 2)
    assert finished_lines(out / "results.jsonl") < 6
    deadline = time.monotonic() + 60
    while workers() and time.monotonic() < deadline:  # Ray ends the workers of a dead driver
        time.sleep(0.5)
    assert not workers(), "the killed driver's workers outlived it"
    resumed = subprocess.run(cli(*common, "--resume"), cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    exactly_once(out, 6)
    assert "ran on 2 Ray workers over 2 nodes" in resumed.stdout


def test_more_gpus_or_cpus_than_the_cluster_has_is_one_line(cluster: Any, tmp_path: Path) -> None:
    from agentfab.evals.runner import plan_eval, run_eval

    plan = plan_eval(options(tmp_path / "run", 1, ray=cluster.address))
    greedy = RayExecutor(address=cluster.address, workers=2, gpus_per_worker=1)
    run = plan.pipeline.run.model_copy(update={"executor": greedy})
    plan = dataclasses.replace(plan, pipeline=plan.pipeline.model_copy(update={"run": run}))
    with pytest.raises(ConfigError, match=r"2 GPUs, but the Ray cluster has 0 GPUs on 2 nodes"):
        asyncio.run(run_eval(plan))
    done = subprocess.run(
        cli(
            "--limit",
            "1",
            "--out",
            str(tmp_path / "cpus"),
            "--ray",
            cluster.address,
            "--workers",
            "5",
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    (line,) = [x for x in done.stderr.strip().splitlines() if x.startswith("agentfab:")]
    assert "5 workers × 1 CPUs = 5 CPUs, but the Ray cluster has 2 CPUs on 2 nodes" in line
    assert "Traceback" not in done.stderr


def test_an_address_nothing_answers_at_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        cli("--limit", "1", "--out", str(tmp_path / "run"), "--ray", "127.0.0.1:9"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    (line,) = [x for x in done.stderr.strip().splitlines() if x.startswith("agentfab:")]
    assert "Ray address '127.0.0.1:9': no Ray cluster answers" in line
    assert "Traceback" not in done.stderr


def test_without_ray_installed_the_extra_is_named(tmp_path: Path) -> None:
    blocked = (
        "import sys; sys.modules['ray'] = None; from agentfab.cli import main; "
        f"sys.exit(main(['eval', {str(MC)!r}, '--suite', {SUITE!r}, '--limit', '1', "
        f"'--out', {str(tmp_path / 'run')!r}, '--ray']))"
    )
    done = subprocess.run([sys.executable, "-c", blocked], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert "pip install 'agentfab[ray]'" in done.stderr
    assert "Traceback" not in done.stderr
