"""A pool of async Ray actors that runs a `Work`'s keys, and hands a dead worker's keys on.

Each worker is an actor holding its own copy of the work (opened once: its clients, or its
own embedded model) and running many keys at once. The driver keeps every key's fate: a
worker that dies (killed, its process gone, its node removed) takes nothing with it, since
every key it held goes back to the queue and runs on a worker still alive; the `Finished`
it ends with names the workers lost on the way. Workers are not restarted: Ray's restart
would lose the calls in flight anyway, and the others carry on.

Only this module imports Ray, and only when a Ray executor runs. It holds no model logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncGenerator, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from agentfab.errors import BackendError, ConfigError
from agentfab.executors import Finished, RayExecutor, Work

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

NAMESPACE = "agentfab"
"""Where the workers are named (`<run>-ray-worker-<i>`), for `ray list actors` and tests."""
_PROBE_TIMEOUT_S = 5.0
_CLOSE_TIMEOUT_S = 30.0


def import_ray() -> Any:
    """Ray, or one line naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "running on Ray needs Ray, which is not installed: pip install 'agentfab[ray]'"
        ) from None
    return ray


def connect(address: str) -> None:
    """Join the cluster at `address` (see `RayExecutor.address`) unless already joined."""
    ray = import_ray()
    if ray.is_initialized():
        return
    if address not in ("auto", "local") and not address.startswith("ray://"):
        _probe(address)
    try:
        ray.init(
            address=None if address == "local" else address,
            include_dashboard=False,
            logging_level="ERROR",
            log_to_driver=False,
            configure_logging=False,
        )
    except ConnectionError as error:
        said = (str(error).strip().splitlines() or [""])[0]
        raise ConfigError(f"Ray address {address!r}: no cluster found ({said})") from None


def _probe(address: str) -> None:
    """Refuse an address nothing answers at in seconds: ray.init would wait minutes."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r}: expected auto, local, HOST:PORT or ray://…")
    try:
        socket.create_connection((host, int(port)), timeout=_PROBE_TIMEOUT_S).close()
    except OSError as error:
        why = error.strerror or type(error).__name__
        raise ConfigError(f"Ray address {address!r}: no Ray cluster answers ({why})") from None


def check_resources(executor: RayExecutor) -> None:
    """Refuse, before any worker starts, a pool the cluster can never hold."""
    ray = import_ray()
    have = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    for name, each in (("CPU", executor.cpus_per_worker), ("GPU", executor.gpus_per_worker)):
        want = each * executor.workers
        if want > have.get(name, 0.0) + 1e-9:
            raise ConfigError(
                f"executor: {executor.workers} workers × {each:g} {name}s = {want:g} {name}s, "
                f"but the Ray cluster has {have.get(name, 0.0):g} {name}s on {nodes} "
                f"node{'s' * (nodes != 1)}; ask for fewer workers or {name}s per worker"
            )


class _Worker:
    """The actor: one copy of the work, opened on first use, many keys at once."""

    def __init__(self, work: Work[Any, Any]) -> None:
        self.work = work
        self.opened = False
        self.opening: asyncio.Lock | None = None

    async def node(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    async def pid(self) -> int:
        return os.getpid()

    async def run(self, key: Any) -> Any:
        if not self.opened:
            self.opening = self.opening or asyncio.Lock()
            async with self.opening:
                if not self.opened:
                    await self.work.open()
                    self.opened = True
        return await self.work.run(key)

    async def close(self) -> None:
        if self.opened:
            self.opened = False
            await self.work.close()


@dataclass
class _Member:
    name: str
    actor: Any
    node: str = ""
    alive: bool = True


@dataclass
class _Pool(Generic[K, T]):
    """The driver's side: what is left to run, and what came back."""

    members: list[_Member]
    todo: asyncio.Queue[K] = field(default_factory=asyncio.Queue)
    out: asyncio.Queue[Finished[K, T] | BaseException] = field(default_factory=asyncio.Queue)
    lost: dict[K, list[str]] = field(default_factory=dict)

    async def feed(self, member: _Member) -> None:
        """One of a worker's slots: take a key, run it there, report it; until it dies."""
        ray = import_ray()
        while member.alive:
            key = await self.todo.get()
            if not member.alive:  # it died while this slot waited: the key is for another
                self.todo.put_nowait(key)
                return
            try:
                value = await member.actor.run.remote(key)
            except ray.exceptions.RayActorError:
                self._lose(member, key)
                return
            except ray.exceptions.RayTaskError as error:
                cause = error.cause if isinstance(error.cause, BaseException) else error
                self.out.put_nowait(cause)
                return
            lost = tuple(self.lost.pop(key, ()))
            self.out.put_nowait(Finished(key, value, member.name, member.node, lost))

    def _lose(self, member: _Member, key: K) -> None:
        """A worker died holding `key`: it runs again on another."""
        member.alive = False
        lost = self.lost.setdefault(key, [])
        if member.name not in lost:
            lost.append(member.name)
        self.todo.put_nowait(key)
        if not any(m.alive for m in self.members):
            names = ", ".join(m.name for m in self.members)
            self.out.put_nowait(
                BackendError(f"every Ray worker died ({names}); the keys they held did not run")
            )


async def map_on_ray(
    executor: RayExecutor, work: Work[K, T], keys: Sequence[K], per_worker: int
) -> AsyncGenerator[Finished[K, T]]:
    """`work` on every key over a pool of Ray workers; see the module's docstring."""
    if not keys:
        return
    ray = import_ray()
    connect(executor.address)
    check_resources(executor)
    members = await _start(ray, executor, work, per_worker)
    pool: _Pool[K, T] = _Pool(members)
    for key in keys:
        pool.todo.put_nowait(key)
    feeders = [
        asyncio.get_running_loop().create_task(pool.feed(member))
        for member in members
        for _ in range(per_worker)
    ]
    try:
        for _ in range(len(keys)):
            outcome = await pool.out.get()
            if isinstance(outcome, BaseException):
                raise outcome
            yield outcome
    finally:
        for feeder in feeders:
            feeder.cancel()
        await asyncio.gather(*feeders, return_exceptions=True)
        await _stop(ray, members)


async def _start(
    ray: Any, executor: RayExecutor, work: Work[K, T], per_worker: int
) -> list[_Member]:
    """The workers, spread over the nodes, each answering before any key is sent."""
    actor_class = ray.remote(_Worker)
    run = uuid.uuid4().hex[:8]  # names each run's actors apart in the shared namespace
    members = [
        _Member(
            f"ray-worker-{i}",
            actor_class.options(
                num_cpus=executor.cpus_per_worker,
                num_gpus=executor.gpus_per_worker,
                max_concurrency=per_worker + 2,  # its slots, and node() / close() beside them
                max_restarts=0,
                scheduling_strategy="SPREAD",
                name=f"{run}-ray-worker-{i}",
                namespace=NAMESPACE,
            ).remote(work),
        )
        for i in range(executor.workers)
    ]
    try:
        nodes = await asyncio.wait_for(
            asyncio.gather(*(m.actor.node.remote() for m in members)), executor.start_timeout_s
        )
    except (TimeoutError, ray.exceptions.RayError) as error:
        await _stop(ray, members)
        why = "did not start" if isinstance(error, TimeoutError) else str(error).splitlines()[0]
        raise BackendError(
            f"Ray workers: {why} within {executor.start_timeout_s:g} s "
            f"(the cluster has {ray.cluster_resources()})"
        ) from None
    for member, node in zip(members, nodes, strict=True):
        member.node = node
    return members


async def _stop(ray: Any, members: Sequence[_Member]) -> None:
    """Close each live worker's work (its clients), then end every worker."""
    closing = [m.actor.close.remote() for m in members if m.alive]
    with contextlib.suppress(Exception):  # a worker that cannot close is ended all the same
        await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), _CLOSE_TIMEOUT_S)
    for member in members:
        with contextlib.suppress(Exception):
            ray.kill(member.actor, no_restart=True)
