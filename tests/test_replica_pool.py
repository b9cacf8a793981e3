"""ReplicaPool against scripted servers: balancing and failover under faults on demand.

The real two-replica failover (a vLLM server killed mid-run) is in
tests/integration/test_replicas.py; here the faults are exact.
"""

from __future__ import annotations

import asyncio

import pytest

from agentfab.errors import BackendError
from agentfab.llm import ChatRequest
from agentfab.replicas import ReplicaPool
from agentfab.serving.scripted import ScriptedServer
from tests.test_openai_client import closed_port

QUESTION = ChatRequest(messages=[{"role": "user", "content": "Which is largest?"}], model="m")


def pool(*urls: str, **options: object) -> ReplicaPool:
    return ReplicaPool.from_urls(urls, backoff_s=0.001, **options)  # type: ignore[arg-type]


async def test_concurrent_requests_spread_by_outstanding_count() -> None:
    slow, fast = ScriptedServer(latency_s=0.3), ScriptedServer(latency_s=0.01)
    async with slow as a, fast as b, pool(a, b) as replicas:
        await asyncio.gather(*(replicas.chat(QUESTION) for _ in range(4)))  # 2 and 2 at once
        assert (len(slow.requests), len(fast.requests)) == (2, 2)
        # One each; the fast one is free again when three more come: it takes the first,
        # then both hold one and the less used (slow) one takes the next.
        first = asyncio.gather(*(replicas.chat(QUESTION) for _ in range(2)))
        await asyncio.sleep(0.1)
        await asyncio.gather(*(replicas.chat(QUESTION) for _ in range(3)), first)
        assert (len(slow.requests), len(fast.requests)) == (2 + 1 + 1, 2 + 1 + 2)


async def test_a_dropped_connection_is_resent_to_the_other_replica_once() -> None:
    failing, healthy = ScriptedServer(faults=["drop"]), ScriptedServer()
    async with failing as a, healthy as b, pool(a, b) as replicas:
        response = await replicas.chat(QUESTION)
        assert response.completions[0].text == "Answer: B"
        assert len(failing.requests) == 1 and len(healthy.requests) == 1
        first, second = replicas.replicas
        assert (first.failed, first.up, second.answered) == (1, False, 1)


async def test_a_dead_replica_is_skipped_and_revived_by_the_health_check() -> None:
    port = closed_port()
    healthy = ScriptedServer()
    async with healthy as b:
        replicas = pool(f"http://127.0.0.1:{port}/v1", b, health_interval_s=0.05)
        async with replicas:
            for _ in range(4):
                await replicas.chat(QUESTION)
            dead, alive = replicas.replicas
            assert (dead.failed, dead.answered, alive.answered) == (1, 0, 4)
            revived = ScriptedServer(port=port)
            async with revived:
                for _ in range(100):  # the health check notices it answers again
                    if dead.up:
                        break
                    await asyncio.sleep(0.05)
                assert dead.up
                await asyncio.gather(*(replicas.chat(QUESTION) for _ in range(2)))
                assert len(revived.requests) == 1


async def test_a_bad_request_is_not_failed_over() -> None:
    first, second = ScriptedServer(faults=[400]), ScriptedServer()
    async with first as a, second as b, pool(a, b) as replicas:
        with pytest.raises(BackendError, match="HTTP 400"):
            await replicas.chat(QUESTION)
        assert len(second.requests) == 0 and replicas.replicas[0].up


async def test_every_replica_down_ends_in_one_error_naming_them() -> None:
    urls = [f"http://127.0.0.1:{closed_port()}/v1" for _ in range(2)]
    async with pool(*urls, retries=1) as replicas:
        with pytest.raises(BackendError, match="no replica answered after 3 attempts") as error:
            await replicas.chat(QUESTION)
    assert all(url in str(error.value) for url in urls)
