"""vLLM replicas (the CPU build) placed by Ray: `placement: ray` in a `serving:` section.

Two replicas start as Ray actors, one on each node of the two-node cluster; one actor is
killed with SIGKILL mid-run: every call is answered once (the pool fails over), Ray
restarts the actor and its server comes back, and no vLLM process is left after the run.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from agentfab import Agent, ConfigError, Orchestrator, RunSettings, Task
from agentfab.aggregators import Majority
from agentfab.pipeline import build_clients, load_pipeline
from agentfab.replicas import ReplicaPool
from agentfab.serving.ray_replicas import RayReplicas
from agentfab.topologies import star
from tests.integration.test_replicas import PIPELINE, two_free_ports

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("real_vllm")]


def vllm_processes(port: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if "vllm.entrypoints" in line and f"--port {port}" in line:
            found.append(process)
    return found


@pytest.fixture(scope="module")
def pipeline_file(tmp_path_factory: pytest.TempPathFactory, cluster: Any) -> Path:
    folder = tmp_path_factory.mktemp("ray-replicas")
    text = PIPELINE.format(logs=str(folder / "logs"), port=two_free_ports())
    text = text.replace("      replicas: 2\n", "      replicas: 2\n      placement: ray\n")
    text = text.replace("serving:\n", f"serving:\n  ray_address: {cluster.address!r}\n")
    path = folder / "pipeline.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
async def replicas(pipeline_file: Path) -> AsyncIterator[RayReplicas]:
    serving = load_pipeline(pipeline_file).serving
    assert serving is not None and serving.placed("ray") is not None
    async with RayReplicas(serving) as running:
        yield running
    port = serving.servers[0].port
    for _ in range(60):  # the actors' servers are stopped; give the processes time to go
        if not vllm_processes(port) and not vllm_processes(port + 1):
            break
        await asyncio.sleep(1)
    assert not vllm_processes(port) and not vllm_processes(port + 1), "vLLM outlived its actor"


async def test_a_replica_actor_killed_mid_run_loses_no_call_and_ray_restarts_it(
    replicas: RayReplicas, pipeline_file: Path
) -> None:
    assert len(replicas.placed) == 2
    nodes = {await p.actor.node.remote() for p in replicas.placed}
    assert len(nodes) == 2, "one replica on each node"
    pipeline = load_pipeline(pipeline_file).with_urls(replicas.urls())
    [pool] = build_clients(pipeline).values()
    assert isinstance(pool, ReplicaPool) and len(pool.replicas) == 2
    team = star([Agent(name=f"w{i}", max_tokens=24) for i in range(3)], Majority())
    orchestrator = Orchestrator({"default": pool}, RunSettings(seed=1, server_metrics=False))
    tasks = [Task(prompt=f"Name a colour of the number {i}.", id=f"t{i}") for i in range(16)]
    victim = replicas.placed[0]
    vllm_before = {p.pid for p in vllm_processes(victim.spec.port)}
    assert vllm_before
    try:
        runs = [asyncio.create_task(orchestrator.run(team, task)) for task in tasks]
        async with asyncio.timeout(300):
            while pool.replicas[0].outstanding == 0 or sum(r.answered for r in pool.replicas) < 3:
                await asyncio.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)  # the actor, with calls in flight to its server
        results = await asyncio.gather(*runs)
    finally:
        await pool.aclose()
    for result in results:
        assert result.complete and result.answer is not None
        assert sorted(m.sender for m in result.messages if m.kind == "agent") == ["w0", "w1", "w2"]
    assert pool.replicas[0].failed >= 1
    # its server went with it (the tether), then Ray restarted the actor, which started a new one
    async with asyncio.timeout(400):
        while replicas.restarts < 1:
            await asyncio.sleep(1)
    assert not any(psutil.pid_exists(pid) for pid in vllm_before)
    assert vllm_processes(victim.spec.port)


async def test_replicas_asking_for_more_gpus_than_the_cluster_has_are_one_line(
    pipeline_file: Path,
) -> None:
    serving = load_pipeline(pipeline_file).serving
    assert serving is not None
    greedy = [s.model_copy(update={"ray_gpus": 1.0}) for s in serving.servers]
    config = serving.model_copy(update={"servers": greedy})
    with pytest.raises(ConfigError, match="ask for 2 GPUs, but the cluster has 0"):
        async with RayReplicas(config):
            pass
