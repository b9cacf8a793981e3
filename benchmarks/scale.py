"""Agents in flight in one process: 10^3, 10^4 and 10^5 at once, against scripted servers.

Each level submits `level / agents` tasks at once, each a star of `--agents` agents with a
majority vote, to `--servers` scripted server processes sharing one port (the kernel spreads
connections over them) that answer after `--latency` seconds. An agent is in flight from
its call to the client until the answer: queued behind the client's `--connections` wire
slots, or on the wire. Each level runs in a fresh process of its own, so memory freed by
one level cannot flatter the next. The baseline is the same workload with at most 64
agents in flight. Printed per level: calls/s, client CPU per call, peak RSS and RSS per
in-flight agent (above the process before the level), and whether every task got its
answer. Figures, never pass/fail; the last line reads

    RESULT complete=<every level answered every task> cpu_ratio_top=<CPU per call at the
    top level / at 64> kb_per_agent_top=<RSS per in-flight agent at the top level>

    python benchmarks/scale.py [--levels 1000,10000,100000] [--agents 10] [--servers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentfab import Agent, Orchestrator, Task
from agentfab.aggregators import Majority
from agentfab.llm import ChatRequest, ChatResponse, LLMClient
from agentfab.openai_client import OpenAIClient
from agentfab.topologies import star

PROMPT = "Which planet is largest? A) Mars B) Jupiter C) Venus D) Earth"
BASELINE = 64
WARM_UP_TASKS = 20


class InFlight:
    """Counts the calls between `chat` and its answer, and the most ever at once."""

    def __init__(self, client: LLMClient) -> None:
        self.client = client
        self.now = 0
        self.peak = 0

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            return await self.client.chat(request)
        finally:
            self.now -= 1

    async def aclose(self) -> None:
        await self.client.aclose()


@dataclass(frozen=True)
class Level:
    """One level's figures, as its process reports them."""

    agents: int
    in_flight: int
    calls: int
    answered: bool
    cpu_s: float
    wall_s: float
    rss_before_kb: int
    rss_peak_kb: int

    @property
    def cpu_us_per_call(self) -> float:
        return self.cpu_s / self.calls * 1e6

    @property
    def kb_per_agent(self) -> float:
        return (self.rss_peak_kb - self.rss_before_kb) / max(1, self.in_flight)


def rss_kb() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() // 1024


async def run_level(
    base_url: str, agents: int, cap: int | None, total: int, connections: int
) -> Level:
    """`total` agents' worth of tasks: all at once, or (`cap`) at most `cap` agents at a time."""
    async with OpenAIClient(base_url, max_concurrency=connections) as http:
        client = InFlight(http)
        team = star(
            [Agent(name=f"w{i}", model="m", max_tokens=8) for i in range(agents)], Majority()
        )
        orchestrator = Orchestrator(clients={"m": client})
        slots = asyncio.Semaphore(max(1, (cap or total) // agents))

        async def one(i: int) -> bool:
            async with slots:
                result = await orchestrator.run(team, Task(prompt=PROMPT, id=f"t{i}"))
            return (result.answer or "").upper() == "B"

        await asyncio.gather(*(one(i) for i in range(WARM_UP_TASKS)))
        client.peak = 0
        before = rss_kb()
        cpu, wall = time.process_time(), time.perf_counter()
        answers = await asyncio.gather(*(one(i) for i in range(total // agents)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    calls = len(answers) * agents
    return Level(total, client.peak, calls, all(answers), cpu, wall, before, peak)


@contextmanager
def scripted_servers(count: int, latency_s: float) -> Iterator[str]:
    """`count` scripted server processes on one port; yields its base URL."""
    command = [sys.executable, "-m", "agentfab.serving.stand_in_server", "--reuse-port"]
    command += ["--latency", str(latency_s), "--reply", "Answer: B"]
    processes: list[subprocess.Popen[str]] = []
    try:
        base_url = ""
        for _ in range(count):
            port = ["--port", base_url.rsplit(":", 1)[1].split("/")[0]] if base_url else []
            process = subprocess.Popen(command + port, stdout=subprocess.PIPE, text=True)
            processes.append(process)
            assert process.stdout is not None
            ready, base_url = process.stdout.readline().split()
            assert ready == "READY", ready
        yield base_url
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


def level_in_its_own_process(
    args: argparse.Namespace, base_url: str, total: int, cap: int | None
) -> Level:
    command = [sys.executable, __file__, "--one", str(total), "--url", base_url]
    command += ["--agents", str(args.agents), "--connections", str(args.connections)]
    if cap is not None:
        command += ["--cap", str(cap)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"level {total}: {done.stderr.strip().splitlines()[-1:]}")
    fields: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return Level(**fields)


def report(name: str, level: Level, baseline: Level) -> None:
    ratio = level.cpu_us_per_call / baseline.cpu_us_per_call
    print(
        f"{name:>12} {level.in_flight:>10,} {level.calls:>8,} {level.calls / level.wall_s:>8,.0f} "
        f"{level.cpu_us_per_call:>9.0f} {ratio:>6.2f} {level.rss_peak_kb / 1024:>9.0f} "
        f"{level.kb_per_agent:>9.2f} {'yes' if level.answered else 'NO':>9}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1000,10000,100000", help="agents in flight")
    parser.add_argument("--agents", type=int, default=10, help="agents per task")
    parser.add_argument("--servers", type=int, default=2, help="scripted server processes")
    parser.add_argument("--latency", type=float, default=0.05, help="server's seconds per answer")
    parser.add_argument("--connections", type=int, default=512, help="client's wire slots")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cap", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:  # one level, in this process: print its figures
        level = asyncio.run(run_level(args.url, args.agents, args.cap, args.one, args.connections))
        print(json.dumps(level.__dict__))
        return
    levels = [int(level) for level in args.levels.split(",")]
    with scripted_servers(args.servers, args.latency) as base_url:
        print(
            f"{args.agents} agents a task, {args.servers} server(s) answering after "
            f"{args.latency:g}s, {args.connections} connections"
        )
        baseline = level_in_its_own_process(args, base_url, 2000, BASELINE)
        print(
            f"{'level':>12} {'in flight':>10} {'calls':>8} {'calls/s':>8} {'CPU us':>9} "
            f"{'x 64':>6} {'peak MB':>9} {'KB/agent':>9} {'answered':>9}"
        )
        report(f"<= {BASELINE}", baseline, baseline)
        results = []
        for total in levels:
            results.append(level_in_its_own_process(args, base_url, total, None))
            report(f"{total:,}", results[-1], baseline)
    top = results[-1]
    complete = all(level.answered for level in [baseline, *results])
    print(
        f"RESULT complete={'yes' if complete else 'no'} "
        f"cpu_ratio_top={top.cpu_us_per_call / baseline.cpu_us_per_call:.2f} "
        f"kb_per_agent_top={top.kb_per_agent:.2f}"
    )


if __name__ == "__main__":
    main()
