"""Items per second on Ray workers against one process, at equal total concurrency.

A stand-in server (a separate process, `agentfab.serving.stand_in_server`) answers every
call after a fixed delay, standing in for GPU decoding. Each item is a 5-agent star with a
majority vote (5 calls). The same items run through `agentfab.run_many`:

  - in one process without Ray (`LocalExecutor`), `--concurrency` items in flight;
  - on a local Ray cluster with 1, 2 and 4 workers, the same total in flight
    (`concurrency_per_worker` = concurrency / workers).

For each it prints items/s and CPU ms per item: the CPU of every process on the machine
(driver, Ray's workers, raylet, GCS) less the stand-in server's, from psutil's system
times; Ray's per-item overhead is its CPU per item less that of the run without Ray.
Prints figures, never pass/fail. The last line reads
`RESULT local_items_per_s=<x> ray_items_per_s_<w>=<y> ... ray_overhead_cpu_ms_per_item=<z>`
(the overhead at the largest worker count).

    python benchmarks/ray_scaling.py [--items 2000] [--concurrency 64] [--delay 0.2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psutil

from agentfab import Agent, run_many
from agentfab.aggregators import Majority
from agentfab.llm import LLMClient
from agentfab.topologies import star

AGENTS = 5
WORKER_COUNTS = (1, 2, 4)


@dataclass(frozen=True)
class Measurement:
    name: str
    items: int
    wall_s: float
    cpu_s: float
    answered: int

    @property
    def items_per_s(self) -> float:
        return self.items / self.wall_s

    @property
    def cpu_ms_per_item(self) -> float:
        return self.cpu_s / self.items * 1e3


@contextmanager
def stand_in_server(delay_s: float) -> Iterator[tuple[str, psutil.Process]]:
    command = [
        sys.executable,
        "-m",
        "agentfab.serving.stand_in_server",
        "--reply",
        "Answer: B",
        "--latency",
        str(delay_s),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready, base_url = process.stdout.readline().split()
        assert ready == "READY", ready
        yield base_url, psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass(frozen=True)
class Clients:
    """Makes a worker's client (picklable: each Ray worker calls it for its own)."""

    base_url: str
    in_flight: int

    def __call__(self) -> dict[str, LLMClient]:
        from agentfab.openai_client import OpenAIClient

        client = OpenAIClient(self.base_url, model="scripted", max_concurrency=self.in_flight)
        return {"default": client}


def busy_cpu_s(server: psutil.Process) -> float:
    """CPU seconds the whole machine has spent, less the stand-in server's."""
    machine = psutil.cpu_times()
    server_times = server.cpu_times()
    # nice too: Ray may start its workers at a lower priority; irq time serves the sockets.
    busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq
    return busy - server_times.user - server_times.system


def measure(name: str, items: int, server: psutil.Process, **run: Any) -> Measurement:
    team = star([Agent(name=f"w{i}", max_tokens=8) for i in range(AGENTS)], Majority())
    tasks = [
        f"Which planet is largest? ({i}) A) Mars B) Jupiter C) Venus D) Earth" for i in range(items)
    ]
    cpu, wall = busy_cpu_s(server), time.perf_counter()
    answered = sum(
        1
        for done in run_many(team, tasks, **run)
        if done.ok and done.result and (done.result.answer or "").lower() == "b"
    )
    return Measurement(name, items, time.perf_counter() - wall, busy_cpu_s(server) - cpu, answered)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64, help="items in flight in all")
    parser.add_argument("--delay", type=float, default=0.2, help="the server's seconds per call")
    args = parser.parse_args()

    import ray

    ray.init(
        num_cpus=max(WORKER_COUNTS),
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    results: list[Measurement] = []
    with stand_in_server(args.delay) as (base_url, server):
        clients = Clients(base_url, AGENTS * args.concurrency)
        common = {"clients": clients, "concurrency": args.concurrency}
        measure("warm-up", 20, server, **common)  # imports, connections
        results.append(measure("one process, no Ray", args.items, server, **common))
        for workers in WORKER_COUNTS:
            executor = {"kind": "ray", "workers": workers, "cpus_per_worker": 1}
            results.append(
                measure(
                    f"Ray, {workers} worker{'s' * (workers > 1)}",
                    args.items,
                    server,
                    executor=executor,
                    **common,
                )
            )
    ray.shutdown()

    local = results[0]
    floor = args.concurrency / args.delay
    print(
        f"{args.items} items × {AGENTS} calls, {args.concurrency} items in flight, server delay "
        f"{args.delay:g} s (at most {floor:.0f} items/s); {psutil.cpu_count()} CPUs"
    )
    print(f"{'run':<22} {'items/s':>8} {'CPU ms/item':>12} {'Ray overhead ms':>16} {'answered':>9}")
    for m in results:
        extra = "" if m is local else f"{m.cpu_ms_per_item - local.cpu_ms_per_item:.2f}"
        shown = f"{m.answered}/{m.items}"
        rate, cpu = f"{m.items_per_s:.1f}", f"{m.cpu_ms_per_item:.2f}"
        print(f"{m.name:<22} {rate:>8} {cpu:>12} {extra:>16} {shown:>9}")
    figures = [f"local_items_per_s={local.items_per_s:.1f}"]
    figures += [
        f"ray_items_per_s_{w}={m.items_per_s:.1f}"
        for w, m in zip(WORKER_COUNTS, results[1:], strict=True)
    ]
    figures.append(
        f"ray_overhead_cpu_ms_per_item={results[-1].cpu_ms_per_item - local.cpu_ms_per_item:.2f}"
    )
    print("RESULT " + " ".join(figures))


if __name__ == "__main__":
    main()
