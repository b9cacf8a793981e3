"""Two vLLM replicas behind one model name, started by a pipeline's `serving` section."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentfab import Agent, Orchestrator, RunSettings, Task
from agentfab.aggregators import Majority
from agentfab.pipeline import Pipeline, build_clients, load_pipeline
from agentfab.replicas import ReplicaPool
from agentfab.serving.supervisor import Supervisor, servers_up
from agentfab.topologies import star
from tests.integration.test_vllm import free_port

pytestmark = pytest.mark.usefixtures("real_vllm")  # in CI a missing vLLM fails

PIPELINE = """\
name: replicated
serving:
  log_dir: {logs!r}
  servers:
    - model: default
      served_name: smollm2
      port: {port}
      replicas: 2
      dtype: float32
      extra_args: [--enforce-eager, --max-num-batched-tokens, "16384"]
      env: {{VLLM_CPU_KVCACHE_SPACE: "1"}}
models:
  default: {{kind: openai, served_name: smollm2, retries: 4}}
agents:
  - {{name: w, count: 3, max_tokens: 24}}
topology: {{kind: star}}
task: Name a primary colour.
"""


def two_free_ports() -> int:
    """A port P with P + 1 free too (replicas take consecutive ports)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@pytest.fixture(scope="module")
def pipeline_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("replicas")
    path = folder / "pipeline.yaml"
    path.write_text(PIPELINE.format(logs=str(folder / "logs"), port=two_free_ports()))
    return path


@pytest.fixture(scope="module")
async def supervisor(real_vllm: None, pipeline_file: Path) -> AsyncIterator[Supervisor]:
    async with servers_up(load_pipeline(pipeline_file).serving) as served:
        running = served.supervisor
        assert running is not None and len(running.owned) == 2  # both started, none reused
        yield running


async def test_a_replica_killed_mid_run_loses_no_task_and_answers_none_twice(
    supervisor: Supervisor, pipeline_file: Path
) -> None:
    pipeline: Pipeline = load_pipeline(pipeline_file)
    [pool] = build_clients(pipeline).values()
    assert isinstance(pool, ReplicaPool) and len(pool.replicas) == 2
    team = star([Agent(name=f"w{i}", max_tokens=24) for i in range(3)], Majority())
    orchestrator = Orchestrator({"default": pool}, RunSettings(seed=1, server_metrics=False))
    tasks = [Task(prompt=f"Name a colour of the number {i}.", id=f"t{i}") for i in range(16)]
    survivor = pool.replicas[1].client
    before = await survivor.server_counters()
    try:
        runs = [asyncio.create_task(orchestrator.run(team, task)) for task in tasks]
        victim = pool.replicas[0]
        async with asyncio.timeout(300):
            while not (victim.outstanding > 0 and sum(r.answered for r in pool.replicas) >= 3):
                await asyncio.sleep(0.05)
        process = supervisor.owned[0].process
        assert process is not None
        os.killpg(process.pid, signal.SIGKILL)  # replica 0 dies with requests in flight
        results = await asyncio.gather(*runs)
        after = await survivor.server_counters()
    finally:
        await pool.aclose()
    # Every task completed, each agent answered exactly once.
    assert [r.task.id for r in results] == [t.id for t in tasks]
    for result in results:
        assert result.complete and result.answer is not None
        assert sorted(m.sender for m in result.messages if m.kind == "agent") == ["w0", "w1", "w2"]
        assert all(m.ok for m in result.messages)
    # In-flight requests of the dead replica were re-sent; each request has one answer: the
    # survivor's server, by its own /metrics counter (not the pool's), finished every request
    # the dead replica did not answer, no more and no fewer.
    assert pool.replicas[0].failed >= 1 and not pool.replicas[0].up
    [(url, counted_before)] = before.items()
    finished = after[url]["requests"] - counted_before["requests"]
    assert finished == 16 * 3 - pool.replicas[0].answered
    # and the pool counted exactly what that server finished
    assert finished == pool.replicas[1].answered


async def test_the_supervisor_restarts_the_dead_replica_and_the_pool_uses_it_again(
    supervisor: Supervisor, pipeline_file: Path
) -> None:
    pipeline = load_pipeline(pipeline_file)
    [pool] = build_clients(pipeline).values()
    assert isinstance(pool, ReplicaPool)
    for _ in range(300):  # the supervisor restarts it (a vLLM start takes a minute or two)
        if supervisor.restarts >= 1 and supervisor.owned[0].alive:
            break
        await asyncio.sleep(1)
    assert supervisor.restarts >= 1
    orchestrator = Orchestrator({"default": pool}, RunSettings(seed=2))
    team = star([Agent(name=f"w{i}", max_tokens=8) for i in range(4)], Majority())
    try:
        result = await orchestrator.run(team, "Name a fruit.")
    finally:
        await pool.aclose()
    assert result.complete
    # Least-outstanding balancing spreads four concurrent calls over both replicas.
    assert [r.answered for r in pool.replicas] == [2, 2]
    assert sorted(s.endpoint for s in result.servers) == sorted(r.endpoint for r in pool.replicas)
    assert sum(s.requests for s in result.servers) == 4


def test_agentfab_run_reuses_the_pipelines_running_servers(
    supervisor: Supervisor, pipeline_file: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agentfab.cli", "run", str(pipeline_file)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("using: smollm2 already at") == 2  # nothing new was started
    assert done.stdout.startswith("answer:")
    assert done.stdout.count("prefix-cache hits") == 2  # one line per replica's metrics
