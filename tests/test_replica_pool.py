"""ReplicaPool against scripted servers: balancing and failover under faults on demand.

The real two-replica failover (a vLLM server killed mid-run) is in
tests/integration/test_replicas.py; here the faults are exact.
"""

from __future__ import annotations

import asyncio

import pytest

from agentfab import Agent, Orchestrator
from agentfab import replicas as replicas_module
from agentfab.aggregators import Majority
from agentfab.errors import BackendError
from agentfab.llm import ChatRequest
from agentfab.openai_client import counting_calls
from agentfab.replicas import ReplicaPool
from agentfab.serving.stand_in_server import StandInServer
from agentfab.topologies import star
from tests.test_openai_client import closed_port

QUESTION = ChatRequest(messages=[{"role": "user", "content": "Which is largest?"}], model="m")
DEADLINE = 20.0
"""Seconds a pool under faults may take before its test fails (instead of hanging)."""


def pool(*urls: str, **options: object) -> ReplicaPool:
    return ReplicaPool.from_urls(urls, backoff_s=0.001, **options)  # type: ignore[arg-type]


async def test_concurrent_requests_spread_by_outstanding_count() -> None:
    slow, fast = StandInServer(latency_s=0.3), StandInServer(latency_s=0.01)
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
    failing, healthy = StandInServer(faults=["drop"]), StandInServer()
    async with failing as a, healthy as b, pool(a, b) as replicas:
        response = await replicas.chat(QUESTION)
        assert response.completions[0].text == "Answer: B"
        assert len(failing.requests) == 1 and len(healthy.requests) == 1
        first, second = replicas.replicas
        assert (first.failed, first.up, second.answered) == (1, False, 1)


async def test_a_dead_replica_is_skipped_and_revived_by_the_health_check() -> None:
    port = closed_port()
    healthy = StandInServer()
    async with healthy as b:
        replicas = pool(f"http://127.0.0.1:{port}/v1", b, health_interval_s=0.05)
        async with replicas:
            for _ in range(4):
                await replicas.chat(QUESTION)
            dead, alive = replicas.replicas
            assert (dead.failed, dead.answered, alive.answered) == (1, 0, 4)
            revived = StandInServer(port=port)
            async with revived:
                for _ in range(100):  # the health check notices it answers again
                    if dead.up:
                        break
                    await asyncio.sleep(0.05)
                assert dead.up
                await asyncio.gather(*(replicas.chat(QUESTION) for _ in range(2)))
                assert len(revived.requests) == 1


def test_a_pool_used_from_a_second_event_loop_checks_health_there() -> None:
    """Each `agentfab.run` has its own event loop; a pool kept between them must not
    leave its health checks on the first loop, where they never run again."""
    dead_port, healthy_port = closed_port(), closed_port()
    urls = (f"http://127.0.0.1:{dead_port}/v1", f"http://127.0.0.1:{healthy_port}/v1")
    replicas = pool(*urls, health_interval_s=0.05)
    dead = replicas.replicas[0]

    async def first_run() -> None:
        async with StandInServer(port=healthy_port):
            await replicas.chat(QUESTION)
        assert not dead.up

    async def second_run() -> None:
        async with StandInServer(port=dead_port), StandInServer(port=healthy_port):
            await replicas.chat(QUESTION)
            for _ in range(100):  # only a health check running on this loop revives it
                if dead.up:
                    break
                await asyncio.sleep(0.05)
            assert dead.up
        await replicas.aclose()

    asyncio.run(first_run())
    asyncio.run(second_run())


async def test_a_bad_request_is_not_failed_over() -> None:
    first, second = StandInServer(faults=[400]), StandInServer()
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


async def test_with_every_replica_down_the_tries_go_round_them() -> None:
    first, second = StandInServer(then=500), StandInServer(then=500)
    async with first as a, second as b, pool(a, b, retries=4) as replicas:
        with pytest.raises(BackendError, match="no replica answered after 6 attempts"):
            async with asyncio.timeout(DEADLINE):
                await replicas.chat(QUESTION)
        assert (len(first.requests), len(second.requests)) == (3, 3)
        assert [r.failed for r in replicas.replicas] == [3, 3]


async def test_a_429_waits_as_asked_and_leaves_the_replica_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float | None] = []

    def no_wait(backoff_s: float, step: int, retry_after_s: float | None, max_s: float) -> float:
        waits.append(retry_after_s)
        return 0.0

    monkeypatch.setattr(replicas_module, "retry_delay", no_wait)
    busy = StandInServer(faults=[429, 429], retry_after="7")
    async with busy as a, pool(a) as replicas, asyncio.timeout(DEADLINE):
        with counting_calls() as sent:
            response = await replicas.chat(QUESTION)
    assert response.completions[0].text == "Answer: B"
    (replica,) = replicas.replicas
    assert (replica.up, replica.busy, replica.failed, replica.answered) == (True, 2, 0, 1)
    assert waits == [7.0, 7.0]  # the server's Retry-After, not the pool's own backoff
    assert sent.calls == 1  # turned-away requests ran no model


async def test_a_429_spares_the_replica_for_later_requests() -> None:
    busy, other = StandInServer(faults=[429]), StandInServer()
    async with busy as a, other as b, pool(a, b) as replicas, asyncio.timeout(DEADLINE):
        await replicas.chat(QUESTION)  # 429 from the first, answered by the second
        await asyncio.gather(*(replicas.chat(QUESTION) for _ in range(2)))
    assert replicas.replicas[0].up and len(busy.requests) == 2  # 429, then one of the two


async def test_a_long_retry_after_is_bounded() -> None:
    busy = StandInServer(faults=[429], retry_after="3600")
    async with busy as a, pool(a, max_backoff_s=0.01) as replicas:
        async with asyncio.timeout(DEADLINE):  # an unbounded wait fails here
            response = await replicas.chat(QUESTION)
    assert response.completions[0].text == "Answer: B"


async def test_a_call_resent_after_a_timeout_is_a_second_call() -> None:
    hanging, healthy = StandInServer(faults=["hang"]), StandInServer()
    async with hanging as a, healthy as b, pool(a, b, timeout_s=0.2) as replicas:
        async with asyncio.timeout(DEADLINE):
            with counting_calls() as sent:
                await replicas.chat(QUESTION)
            with counting_calls() as next_one:
                await replicas.chat(QUESTION)  # straight to the replica that is up
    assert sent.calls == 2  # the first replica got it and may have run it
    assert next_one.calls == 1 and (len(hanging.requests), len(healthy.requests)) == (1, 2)


async def test_a_run_counts_the_calls_its_pool_resent() -> None:
    hanging, healthy = StandInServer(faults=["hang"]), StandInServer()
    team = star([Agent(name="solo")], Majority())
    async with hanging as a, healthy as b, pool(a, b, timeout_s=0.2) as replicas:
        async with asyncio.timeout(DEADLINE):
            result = await Orchestrator({"default": replicas}).run(team, "q")
    assert result.answer == "b"
    assert result.usage.calls == 2 and result.messages[0].usage.calls == 2


async def test_a_pool_whose_replicas_stay_busy_says_so() -> None:
    busy = StandInServer(then=429, retry_after="0")
    async with busy as a, pool(a, retries=2) as replicas:
        with pytest.raises(BackendError, match=r"after 3 attempts; last: .*HTTP 429") as caught:
            async with asyncio.timeout(DEADLINE):
                await replicas.chat(QUESTION)
    assert caught.value.busy and replicas.replicas[0].up and len(busy.requests) == 3
