"""Several servers of one model behind one name: balancing, health checks, failover."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agentfab.errors import BackendError
from agentfab.llm import ChatRequest, ChatResponse
from agentfab.openai_client import OpenAIClient

__all__ = ["Replica", "ReplicaPool"]


@dataclass
class Replica:
    """One server of the pool and what the pool knows of it."""

    client: OpenAIClient
    up: bool = True
    outstanding: int = 0
    """Requests sent to it and not yet answered or failed."""
    answered: int = 0
    failed: int = 0
    down_since: float = 0.0
    last_error: str = field(default="", repr=False)

    @property
    def endpoint(self) -> str:
        return self.client.endpoint


class ReplicaPool:
    """An `LLMClient` over several OpenAI-compatible servers of the same model.

    Each request goes to the replica that is up and has the fewest requests outstanding.
    When a replica fails a request with a transient error (connection lost, timeout, 429,
    5xx), it is marked down and the request is sent to another replica: a request is re-sent
    only after its replica failed to answer it, so each gets exactly one answer. A health
    check (`GET /v1/models` every `health_interval_s`) marks replicas up or down again.
    When every replica is down, requests probe the one down longest, waiting `backoff_s`
    (doubling) between attempts, `retries` times beyond one attempt per replica.
    """

    def __init__(
        self,
        clients: Sequence[OpenAIClient],
        *,
        retries: int = 3,
        backoff_s: float = 0.5,
        health_interval_s: float = 2.0,
        health_timeout_s: float = 5.0,
    ) -> None:
        if not clients:
            raise ValueError("a replica pool needs at least one client")
        self.replicas = [Replica(client) for client in clients]
        self.endpoint = " | ".join(r.endpoint for r in self.replicas)
        self._retries = retries
        self._backoff_s = backoff_s
        self._health_interval_s = health_interval_s
        self._health_timeout_s = health_timeout_s
        self._health_task: asyncio.Task[None] | None = None

    @classmethod
    def from_urls(
        cls,
        urls: Sequence[str],
        *,
        retries: int = 3,
        backoff_s: float = 0.5,
        health_interval_s: float = 2.0,
        **client_options: Any,
    ) -> ReplicaPool:
        """One OpenAIClient per URL (`client_options` go to each); the pool, not the client,
        retries transient failures."""
        clients = [OpenAIClient(url, retries=0, **client_options) for url in urls]
        return cls(
            clients, retries=retries, backoff_s=backoff_s, health_interval_s=health_interval_s
        )

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._start_health_checks()
        attempts = len(self.replicas) + self._retries
        waited = 0
        last: BackendError | None = None
        for _ in range(attempts):
            replica = self._pick()
            if not replica.up:  # every replica is down: give them time before probing
                await asyncio.sleep(self._backoff_s * 2**waited)
                waited += 1
            replica.outstanding += 1
            try:
                response = await replica.client.chat(request)
            except BackendError as error:
                if not error.retryable:
                    raise  # a bad request fails the same way everywhere
                replica.failed += 1
                self._mark_down(replica, str(error))
                last = error
                continue
            finally:
                replica.outstanding -= 1
            replica.answered += 1
            return response
        raise BackendError(
            f"{self.endpoint}: no replica answered after {attempts} attempts; last: {last}",
            endpoint=self.endpoint,
            retryable=True,
        )

    async def list_models(self) -> list[str]:
        """The models of the first replica that answers."""
        for replica in sorted(self.replicas, key=lambda r: not r.up):
            with contextlib.suppress(BackendError):
                return await replica.client.list_models()
        raise BackendError(f"{self.endpoint}: no replica answers", endpoint=self.endpoint)

    async def server_counters(self) -> dict[str, dict[str, float]]:
        readings = await asyncio.gather(*(r.client.server_counters() for r in self.replicas))
        return {url: counters for reading in readings for url, counters in reading.items()}

    async def aclose(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None
        await asyncio.gather(*(r.client.aclose() for r in self.replicas))

    async def __aenter__(self) -> ReplicaPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _pick(self) -> Replica:
        """The up replica with the fewest outstanding requests (then the least used);
        when none is up, the one down the longest."""
        up = [r for r in self.replicas if r.up]
        if up:
            return min(up, key=lambda r: (r.outstanding, r.answered + r.failed))
        return min(self.replicas, key=lambda r: r.down_since)

    def _mark_down(self, replica: Replica, error: str) -> None:
        replica.last_error = error
        if replica.up:
            replica.up = False
            replica.down_since = time.monotonic()

    def _start_health_checks(self) -> None:
        if self._health_task is None and len(self.replicas) > 1:
            self._health_task = asyncio.get_running_loop().create_task(self._check_health())

    async def _check_health(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval_s)
            await asyncio.gather(*(self._probe(r) for r in self.replicas))

    async def _probe(self, replica: Replica) -> None:
        try:
            async with asyncio.timeout(self._health_timeout_s):
                await replica.client.list_models()
        except (BackendError, TimeoutError) as error:
            self._mark_down(replica, str(error) or "health check timed out")
            return
        replica.up = True
