"""A team's generated tokens/s against the same requests sent with bare httpx, on real vLLM.

Starts a vLLM server (the CPU build here, the same code on a GPU build) unless `--url`
names one, then runs `--tasks` tasks at once, each an 8-agent star with majority voting
over a shared ~650-token question (each task its own question) and distinct roles:

  (a) agentfab: the teams, every request through the orchestrator and OpenAIClient;
  (b) bare httpx: the very request bodies (a) sent, all at once through one
      `httpx.AsyncClient` with the same number in flight.

Decoding is greedy, so both passes generate the same tokens. The server's prefix cache is
reset before each pass (vLLM's dev endpoint), so neither pass inherits the other's cache;
the passes alternate `--repeats` times and each side's best pass counts. Then the same
teams run once with the role-first layout, to show what the shared-first layout saves.
Hit rates are read from the server's /metrics around each pass: vLLM's prefix-cache hit
rate (hits / queries) and the share of prompt tokens served from the cache (which does not
count a split prefill's own earlier chunks as hits). The last line reads
`RESULT serving_ratio=<(a) / (b) tokens/s> team_tokens_per_s=... bare_tokens_per_s=...
hit_rate_shared_first=... hit_rate_role_first=... cached_share_shared_first=...
cached_share_role_first=...`.

    python benchmarks/serving.py [--tasks 8] [--repeats 2] [--url http://127.0.0.1:8000/v1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agentfab import Agent, ChatRequest, ChatResponse, Orchestrator, RunSettings, Task
from agentfab.aggregators import Majority
from agentfab.openai_client import OpenAIClient
from agentfab.server_metrics import ServerStats, difference
from agentfab.serving import default_model_path
from agentfab.serving.vllm_server import ServerSpec, VLLMServer
from agentfab.topologies import star

AGENTS = 8
MAX_TOKENS = 32
SERVED = "smollm2"


@dataclass(frozen=True)
class Pass:
    name: str
    tokens: int
    """Generated tokens."""
    wall_s: float
    stats: ServerStats

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s


class Recorder:
    """An OpenAIClient that keeps every request body it sends, for the bare replay."""

    def __init__(self, client: OpenAIClient) -> None:
        self.client = client
        self.requests: list[ChatRequest] = []

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        return await self.client.chat(request)

    async def aclose(self) -> None:
        await self.client.aclose()


def question(tag: str) -> str:
    facts = " ".join(
        f"Fact {i}: planet {i} of system {tag} has {i * 7 % 13} moons." for i in range(30)
    )
    return f"[{tag}] {facts}\n\nHow many moons has planet 5?"


def team_and_tasks(tasks: int, tag: str) -> tuple[Any, list[Task]]:
    agents = [
        Agent(
            name=f"expert{i}",
            role=f"You are expert number {i}.",
            temperature=0.0,
            max_tokens=MAX_TOKENS,
        )
        for i in range(AGENTS)
    ]
    return star(agents, Majority()), [
        Task(prompt=question(f"{tag}-{t}"), id=f"{tag}-{t}") for t in range(tasks)
    ]


async def counters(client: httpx.AsyncClient, root: str) -> dict[str, float]:
    from agentfab.server_metrics import parse_counters

    return parse_counters((await client.get(f"{root}/metrics")).text)


async def team_pass(
    url: str,
    http: httpx.AsyncClient,
    tasks: int,
    tag: str,
    layout: str,
    recorder: list[ChatRequest] | None = None,
) -> Pass:
    root = url.removesuffix("/v1")
    await http.post(f"{root}/reset_prefix_cache")
    client = Recorder(OpenAIClient(url, model=SERVED, max_concurrency=AGENTS * tasks))
    settings = RunSettings(prompt_layout=layout, server_metrics=False)  # type: ignore[arg-type]
    orchestrator = Orchestrator({"default": client}, settings)
    team, work = team_and_tasks(tasks, tag)
    before = await counters(http, root)
    started = time.perf_counter()
    results = await asyncio.gather(*(orchestrator.run(team, task) for task in work))
    wall = time.perf_counter() - started
    after = await counters(http, root)
    await client.aclose()
    if recorder is not None:
        recorder.extend(client.requests)
    tokens = sum(r.usage.completion_tokens for r in results)
    return Pass(f"agentfab ({layout})", tokens, wall, difference(url, before, after))


async def bare_pass(url: str, http: httpx.AsyncClient, requests: list[ChatRequest]) -> Pass:
    root = url.removesuffix("/v1")
    await http.post(f"{root}/reset_prefix_cache")
    bodies = [
        json.dumps(
            {
                "model": SERVED,
                "messages": r.messages,
                "temperature": r.temperature,
                "top_p": r.top_p,
                "max_tokens": r.max_tokens,
                "n": r.n,
            }
        ).encode()
        for r in requests
    ]
    before = await counters(http, root)
    started = time.perf_counter()

    async def send(body: bytes) -> int:
        response = await http.post(
            f"{url}/chat/completions", content=body, headers={"content-type": "application/json"}
        )
        response.raise_for_status()
        return int(response.json()["usage"]["completion_tokens"])

    tokens = sum(await asyncio.gather(*(send(b) for b in bodies)))
    wall = time.perf_counter() - started
    after = await counters(http, root)
    return Pass("bare httpx", tokens, wall, difference(url, before, after))


@contextlib.asynccontextmanager
async def vllm(url: str | None) -> AsyncIterator[str]:
    if url:
        yield url.rstrip("/")
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    spec = ServerSpec(
        model=str(default_model_path()),
        served_name=SERVED,
        port=port,
        dtype="float32",  # bf16 is ~5x slower on CPUs without AVX-512
        extra_args=("--enforce-eager", "--max-num-batched-tokens", "16384"),
        env={"VLLM_CPU_KVCACHE_SPACE": "4", "VLLM_SERVER_DEV_MODE": "1"},
    )
    log = Path(tempfile.mkdtemp(prefix="agentfab-bench-")) / "vllm.log"
    print(f"starting vLLM on port {port} (log {log}) ...", flush=True)
    async with VLLMServer(spec, log) as server:
        yield server.spec.base_url


def show(p: Pass) -> None:
    rate = p.stats.prefix_cache_hit_rate or 0.0
    cached = p.stats.cached_prompt_share or 0.0
    print(
        f"  {p.name:<26} {p.tokens:>6} tokens in {p.wall_s:6.1f}s = {p.tokens_per_s:6.1f} tok/s"
        f"   prefix-cache hit rate {rate:5.1%}, prompt tokens from cache {cached:5.1%}"
        f"   requests {p.stats.requests:.0f}",
        flush=True,
    )


async def main(args: argparse.Namespace) -> None:
    async with (
        vllm(args.url) as url,
        httpx.AsyncClient(
            timeout=600, limits=httpx.Limits(max_connections=AGENTS * args.tasks)
        ) as http,
    ):
        print(
            f"{args.tasks} tasks x {AGENTS} agents at once, {MAX_TOKENS} tokens each, "
            f"against {url}",
            flush=True,
        )
        await team_pass(url, http, 1, "warm-up", "shared_first")
        team: list[Pass] = []
        bare: list[Pass] = []
        for repeat in range(args.repeats):
            sent: list[ChatRequest] = []
            team.append(await team_pass(url, http, args.tasks, f"r{repeat}", "shared_first", sent))
            show(team[-1])
            bare.append(await bare_pass(url, http, sent))
            show(bare[-1])
        naive = await team_pass(url, http, args.tasks, "naive", "role_first")
        show(naive)
    best_team = max(team, key=lambda p: p.tokens_per_s)
    best_bare = max(bare, key=lambda p: p.tokens_per_s)
    ratio = best_team.tokens_per_s / best_bare.tokens_per_s
    shared, naive_stats = best_team.stats, naive.stats
    print(
        f"RESULT serving_ratio={ratio:.2f} team_tokens_per_s={best_team.tokens_per_s:.1f} "
        f"bare_tokens_per_s={best_bare.tokens_per_s:.1f} "
        f"hit_rate_shared_first={shared.prefix_cache_hit_rate or 0.0:.2f} "
        f"hit_rate_role_first={naive_stats.prefix_cache_hit_rate or 0.0:.2f} "
        f"cached_share_shared_first={shared.cached_prompt_share or 0.0:.2f} "
        f"cached_share_role_first={naive_stats.cached_prompt_share or 0.0:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--url", help="a running vLLM server (with VLLM_SERVER_DEV_MODE=1)")
    asyncio.run(main(parser.parse_args()))
