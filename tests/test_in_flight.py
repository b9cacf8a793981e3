"""Ten thousand agents in flight at once in one process, over HTTP, all answered.

A scripted server (in this process) holds every answer until all agents are waiting for
theirs, queued behind the client's wire slots or on the wire; then it answers them all.
Timing is benchmarks/scale.py's business.
"""

from __future__ import annotations

import asyncio

from agentfab import Agent, ChatRequest, ChatResponse, Orchestrator, Task
from agentfab.aggregators import Majority
from agentfab.openai_client import OpenAIClient
from agentfab.serving.stand_in_server import StandInServer
from agentfab.topologies import star

TASKS, AGENTS = 1_000, 10


class Gauge(OpenAIClient):
    """Counts the calls waiting for their answer, and the most ever at once."""

    waiting = peak = 0

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.waiting += 1
        self.peak = max(self.peak, self.waiting)
        try:
            return await super().chat(request)
        finally:
            self.waiting -= 1


async def test_ten_thousand_agents_in_flight_all_get_their_answer() -> None:
    gate = asyncio.Event()
    server = StandInServer("Answer: B", record=False, gate=gate)
    team = star([Agent(name=f"w{i}", model="m", max_tokens=8) for i in range(AGENTS)], Majority())
    async with server as base_url, Gauge(base_url, max_concurrency=256) as client:
        orchestrator = Orchestrator(clients={"m": client})
        runs = (
            orchestrator.run(team, Task(prompt="Largest planet?", id=f"t{i}")) for i in range(TASKS)
        )
        all_runs = asyncio.gather(*runs)
        async with asyncio.timeout(120):  # a bound, not a measurement
            while client.waiting < TASKS * AGENTS:
                await asyncio.sleep(0.05)
        assert server.max_in_flight == 256  # the wire slots are full, the rest queue
        gate.set()
        results = await all_runs
    assert client.peak == TASKS * AGENTS
    assert client.waiting == 0
    assert [result.answer for result in results] == ["b"] * TASKS
    assert sum(result.usage.calls for result in results) == TASKS * AGENTS
