"""Client-side CPU per model call: agentfab against bare aiohttp and bare httpx.

The scripted server runs as a separate process on 127.0.0.1 and answers at once with
"Answer: B", so its CPU stays out of this process's `time.process_time()`. Measured here:

  (a) agentfab: a 5-agent star with majority voting over 200 tasks (1,000 calls),
  (b) the same 1,000 requests with bare aiohttp,
  (c) the same with bare httpx.AsyncClient (default transport),
  (d) OpenAIClient.chat alone, over its own HttpPool and over each candidate httpx
      transport (the transport choice),

always at most 64 calls in flight. Each method is warmed up once; then the methods take
turns for `--repeats` timed batches and each one's least-CPU batch counts. Prints figures,
never pass/fail. (d) includes httpx_aiohttp's transport when that package is installed.
The last line reads
`RESULT overhead_vs_aiohttp=<(a) / (b) CPU per call> calls_per_s=<(a) calls per second>`.

    python benchmarks/overhead.py [--tasks 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

from agentfab import Agent, Orchestrator, Task
from agentfab.aggregators import Majority
from agentfab.llm import ChatRequest
from agentfab.openai_client import OpenAIClient
from agentfab.topologies import star

AGENTS = 5
IN_FLIGHT = 64
AGENTFAB = "agentfab: star(5) + Majority"
BARE_AIOHTTP = "bare aiohttp"
PROMPT = "Which planet is largest? A) Mars B) Jupiter C) Venus D) Earth"

Batch = Callable[[], Awaitable[int]]
"""Sends one batch of calls; returns how many calls were made."""


@dataclass(frozen=True)
class Measurement:
    name: str
    calls: int
    cpu_s: float
    wall_s: float

    @property
    def cpu_us_per_call(self) -> float:
        return self.cpu_s / self.calls * 1e6

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.wall_s


@contextmanager
def scripted_server() -> Iterator[str]:
    command = [sys.executable, "-m", "agentfab.serving.stand_in_server", "--reply", "Answer: B"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready, base_url = process.stdout.readline().split()
        assert ready == "READY", ready
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def timed(name: str, batch: Batch) -> Measurement:
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    calls = await batch()
    return Measurement(name, calls, time.process_time() - cpu, time.perf_counter() - wall)


async def measure(batches: dict[str, Batch], repeats: int) -> dict[str, Measurement]:
    """The least-CPU batch of each method, after one warm-up batch each.

    Methods take turns, so drift in the machine's load reaches all of them alike."""
    for batch in batches.values():
        await batch()
    best: dict[str, Measurement] = {}
    for _ in range(repeats):
        for name, batch in batches.items():
            run = await timed(name, batch)
            if name not in best or run.cpu_s < best[name].cpu_s:
                best[name] = run
    return best


def agentfab_batch(client: OpenAIClient, tasks: int) -> Batch:
    team = star(
        [Agent(name=f"w{i}", model="m", max_tokens=8) for i in range(AGENTS)],
        aggregator=Majority(),
    )
    orchestrator = Orchestrator(clients={"m": client})

    async def batch() -> int:
        # All tasks at once; the client's max_concurrency keeps 64 calls in flight.
        runs = (orchestrator.run(team, Task(prompt=PROMPT, id=f"t{i}")) for i in range(tasks))
        results = await asyncio.gather(*runs)
        assert all((result.answer or "").upper() == "B" for result in results), results[0]
        return sum(result.usage.calls for result in results)

    return batch


def request_body() -> dict[str, Any]:
    messages = [{"role": "user", "content": PROMPT}]
    return {"model": "m", "messages": messages, "max_tokens": 8, "temperature": 0.7, "n": 1}


def aiohttp_batch(session: aiohttp.ClientSession, base_url: str, calls: int) -> Batch:
    url, body, slots = f"{base_url}/chat/completions", request_body(), asyncio.Semaphore(IN_FLIGHT)

    async def call() -> str:
        async with slots, session.post(url, json=body) as response:
            data = await response.json()
        return str(data["choices"][0]["message"]["content"])

    async def batch() -> int:
        return len(await asyncio.gather(*(call() for _ in range(calls))))

    return batch


def httpx_batch(client: httpx.AsyncClient, base_url: str, calls: int) -> Batch:
    url, body, slots = f"{base_url}/chat/completions", request_body(), asyncio.Semaphore(IN_FLIGHT)

    async def call() -> str:
        async with slots:
            response = await client.post(url, json=body)
        return str(response.json()["choices"][0]["message"]["content"])

    async def batch() -> int:
        return len(await asyncio.gather(*(call() for _ in range(calls))))

    return batch


def client_batch(client: OpenAIClient, calls: int) -> Batch:
    request = ChatRequest(messages=request_body()["messages"], model="m", max_tokens=8)

    async def batch() -> int:
        return len(await asyncio.gather(*(client.chat(request) for _ in range(calls))))

    return batch


def candidate_transports() -> dict[str, Callable[[], httpx.AsyncBaseTransport]]:
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    candidates: dict[str, Callable[[], httpx.AsyncBaseTransport]] = {
        "httpx default (httpcore)": lambda: httpx.AsyncHTTPTransport(limits=limits),
    }
    try:
        from httpx_aiohttp import AiohttpTransport
    except ImportError:
        print("httpx-aiohttp is not installed: its transport is left out")
    else:
        candidates["httpx_aiohttp.AiohttpTransport"] = lambda: AiohttpTransport(limits=limits)
    return candidates


async def run(base_url: str, tasks: int, repeats: int) -> None:
    calls = tasks * AGENTS
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(OpenAIClient(base_url, max_concurrency=IN_FLIGHT))
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT))
        )
        http = await stack.enter_async_context(httpx.AsyncClient(limits=limits))
        batches = {
            AGENTFAB: agentfab_batch(client, tasks),
            BARE_AIOHTTP: aiohttp_batch(session, base_url, calls),
            "OpenAIClient alone (its HttpPool)": client_batch(client, calls),
            "bare httpx (default transport)": httpx_batch(http, base_url, calls),
        }
        for name, transport in candidate_transports().items():
            candidate = OpenAIClient(base_url, max_concurrency=IN_FLIGHT, transport=transport())
            await stack.enter_async_context(candidate)
            batches[f"OpenAIClient over {name}"] = client_batch(candidate, calls)
        results = await measure(batches, repeats)
    report(results)


def report(results: dict[str, Measurement]) -> None:
    ours, bare = results[AGENTFAB], results[BARE_AIOHTTP]
    print(f"{'method':<50} {'calls':>6} {'CPU us/call':>12} {'calls/s':>9} {'x aiohttp':>10}")
    for m in results.values():
        ratio = m.cpu_us_per_call / bare.cpu_us_per_call
        print(
            f"{m.name:<50} {m.calls:>6} {m.cpu_us_per_call:>12.1f} "
            f"{m.calls_per_s:>9.0f} {ratio:>10.2f}"
        )
    overhead = ours.cpu_us_per_call / bare.cpu_us_per_call
    print(f"RESULT overhead_vs_aiohttp={overhead:.2f} calls_per_s={ours.calls_per_s:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Client-side CPU per call, agentfab vs bare.")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed batches per method; the best counts"
    )
    args = parser.parse_args()
    with scripted_server() as base_url:
        asyncio.run(run(base_url, args.tasks, args.repeats))


if __name__ == "__main__":
    main()
