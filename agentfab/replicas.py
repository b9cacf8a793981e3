"""Several servers of one model behind one name: balancing, health checks, failover."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agentfab.errors import BackendError
from agentfab.llm import ChatRequest, ChatResponse
from agentfab.openai_client import OpenAIClient, retry_delay

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
    busy: int = 0
    """Requests it turned away with 429: it is up, but asked for time."""
    down_since: float = 0.0
    last_sent: int = -1
    """When a request was last sent to it, as a count of the pool's sends."""
    last_error: str = field(default="", repr=False)

    @property
    def sent(self) -> int:
        return self.answered + self.failed + self.busy

    @property
    def endpoint(self) -> str:
        return self.client.endpoint


class ReplicaPool:
    """An `LLMClient` over several OpenAI-compatible servers of the same model.

    Each request goes to the replica that is up and has the fewest requests outstanding.
    When a replica fails a request with a transient error (connection lost, timeout, 5xx),
    it is marked down and the request is sent to another replica: a request is re-sent
    only after its replica failed to answer it, so each gets exactly one answer (a re-sent
    request is a call of its own in `counting_calls`: the first replica may have run it).
    A 429 is no failure: the replica stays up and the request waits for what the server
    asked (`Retry-After`, else the backoff) before it is sent again. A health check
    (`GET /v1/models` every `health_interval_s`) marks replicas up or down again. When every
    replica is down, requests probe them in turn, the one tried longest ago first, waiting
    `backoff_s` (doubling) between attempts. A request makes one attempt per replica and
    `retries` more; no wait is longer than `max_backoff_s`.
    """

    def __init__(
        self,
        clients: Sequence[OpenAIClient],
        *,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        health_interval_s: float = 2.0,
        health_timeout_s: float = 5.0,
    ) -> None:
        if not clients:
            raise ValueError("a replica pool needs at least one client")
        self.replicas = [Replica(client) for client in clients]
        self.endpoint = " | ".join(r.endpoint for r in self.replicas)
        self._retries = retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._sends = itertools.count()
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
        max_backoff_s: float = 30.0,
        health_interval_s: float = 2.0,
        **client_options: Any,
    ) -> ReplicaPool:
        """One OpenAIClient per URL (`client_options` go to each); the pool, not the client,
        retries transient failures."""
        clients = [OpenAIClient(url, retries=0, **client_options) for url in urls]
        return cls(
            clients,
            retries=retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            health_interval_s=health_interval_s,
        )

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._start_health_checks()
        attempts = len(self.replicas) + self._retries
        waits = 0
        last: BackendError | None = None
        for _ in range(attempts):
            replica = self._pick()
            if not replica.up:  # every replica is down: give them time before probing
                await self._wait(waits)
                waits += 1
            try:
                return await self._send(replica, request)
            except BackendError as error:
                if not error.retryable:
                    raise  # a bad request fails the same way everywhere
                last = error
                if error.busy:  # up, but asked for time: wait, then send it again
                    await self._wait(waits, error.retry_after_s)
                    waits += 1
        raise BackendError(
            f"{self.endpoint}: no replica answered after {attempts} attempts; last: {last}",
            endpoint=self.endpoint,
            retryable=True,
            status=last.status if last else None,  # all busy stays a 429 for the caller
            retry_after_s=last.retry_after_s if last else None,
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
        task = self._health_task
        self._health_task = None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(r.client.aclose() for r in self.replicas))

    async def __aenter__(self) -> ReplicaPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _send(self, replica: Replica, request: ChatRequest) -> ChatResponse:
        """One attempt on one replica, and what the pool learns from it."""
        replica.outstanding += 1
        replica.last_sent = next(self._sends)
        try:
            response = await replica.client.chat(request)
        except BackendError as error:
            if error.busy:
                replica.busy += 1
                replica.up = True  # it answered: busy is not down
            elif error.retryable:
                replica.failed += 1
                self._mark_down(replica, str(error))
            raise
        finally:
            replica.outstanding -= 1
        replica.answered += 1
        return response

    async def _wait(self, step: int, retry_after_s: float | None = None) -> None:
        await asyncio.sleep(retry_delay(self._backoff_s, step, retry_after_s, self._max_backoff_s))

    def _pick(self) -> Replica:
        """The up replica with the fewest outstanding requests (then the least used);
        when none is up, the one tried longest ago, so probes go round every replica."""
        up = [r for r in self.replicas if r.up]
        if up:
            return min(up, key=lambda r: (r.outstanding, r.sent))
        return min(self.replicas, key=lambda r: r.last_sent)

    def _mark_down(self, replica: Replica, error: str) -> None:
        replica.last_error = error
        if replica.up:
            replica.up = False
            replica.down_since = time.monotonic()

    def _start_health_checks(self) -> None:
        loop = asyncio.get_running_loop()
        task = self._health_task
        # A pool used from a new event loop (a second `agentfab.run`) checks on that loop:
        # the task of a loop that has ended would never run again.
        if task is not None and (task.done() or task.get_loop() is not loop):
            task = None
        if task is None and len(self.replicas) > 1:
            # A context of its own: the task must not carry the first caller's call count.
            task = loop.create_task(self._check_health(), context=contextvars.Context())
        self._health_task = task

    async def _check_health(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval_s)
            await asyncio.gather(*(self._probe(r) for r in self.replicas))

    async def _probe(self, replica: Replica) -> None:
        try:
            async with asyncio.timeout(self._health_timeout_s):
                await replica.client.list_models()
        except BackendError as error:
            if not error.busy:  # a 429 comes from a server that is up
                self._mark_down(replica, str(error))
                return
        except TimeoutError:
            self._mark_down(replica, "health check timed out")
            return
        replica.up = True
