"""Where many units of work run: in this process, or spread over a pool of Ray actors.

A `Work` says how to run one key. It is opened once in the process that runs it (where it
makes its clients or loads its model), runs many keys at once, and is closed at the end. An
executor streams each key's `Finished` back as it finishes, in no set order; what to do with
it (write a record, yield a Result) is the caller's. Both executors run the same `Work`, so
a seeded run gives the same answers with or without Ray.

This module holds no model logic and does not import Ray: `agentfab/ray_workers.py` does,
when a Ray executor runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Hashable, Sequence
from dataclasses import dataclass
from typing import Annotated, Generic, Literal, Protocol, TypeVar

from pydantic import Field

from agentfab.errors import first_error
from agentfab.yaml_loader import UserModel

__all__ = ["Executor", "Finished", "LocalExecutor", "RayExecutor", "Work"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
K_contra = TypeVar("K_contra", contravariant=True)
T_co = TypeVar("T_co", covariant=True)


class Work(Protocol[K_contra, T_co]):
    """One kind of unit of work. Sent to each Ray worker as it is (pickled), so it holds
    descriptions (a pipeline, a team), never open clients."""

    async def open(self) -> None:
        """Make what every key needs (clients, a model), once per process."""

    async def run(self, key: K_contra) -> T_co:
        """One key's outcome. Raising stops the whole map: failures that belong to one key
        (a model that did not answer) are part of its outcome, not raised."""
        ...

    async def close(self) -> None:
        """Undo `open`."""


@dataclass(frozen=True)
class Finished(Generic[K, T]):
    """One key's outcome, and where it ran."""

    key: K
    value: T
    worker: str | None = None
    """The Ray worker that ran it (`ray-worker-1`); None when it ran in this process."""
    node: str | None = None
    """The Ray node that worker ran on."""
    lost: tuple[str, ...] = ()
    """Workers that died while running this key before it ran to its end: it was re-run."""


class LocalExecutor(UserModel):
    """Every key in this process, `concurrency` at a time (the caller's setting)."""

    kind: Literal["local"] = "local"

    async def map(
        self, work: Work[K, T], keys: Sequence[K], *, concurrency: int
    ) -> AsyncGenerator[Finished[K, T]]:
        """`work` on every key; the first error raised stops the others and is raised here."""
        await work.open()
        try:
            async for finished in _map_here(work, keys, concurrency):
                yield finished
        finally:
            await work.close()


class RayExecutor(UserModel):
    """Keys spread over `workers` async Ray actors across the cluster's nodes, each running
    `concurrency_per_worker` keys at once with its own clients (or its own embedded model).
    A worker that dies hands its unfinished keys to the others."""

    kind: Literal["ray"] = "ray"
    address: str = "auto"
    """`auto`: the cluster this machine belongs to (`ray start`, or RAY_ADDRESS); `local`: a
    cluster started here for the run and stopped after it; else a cluster's `HOST:PORT` or
    `ray://HOST:PORT`."""
    workers: int = Field(default=2, ge=1, le=4096)
    concurrency_per_worker: int | None = Field(default=None, ge=1)
    """Keys in flight on each worker; default: the run's concurrency shared among them."""
    cpus_per_worker: float = Field(default=1.0, ge=0)
    """CPUs Ray reserves for each worker (an embedded model's torch threads use them)."""
    gpus_per_worker: float = Field(default=0.0, ge=0)
    start_timeout_s: float = Field(default=300.0, gt=0)
    """How long the workers may take to start before the run is refused."""

    def per_worker(self, concurrency: int) -> int:
        if self.concurrency_per_worker is not None:
            return self.concurrency_per_worker
        return max(1, -(-concurrency // self.workers))

    async def map(
        self, work: Work[K, T], keys: Sequence[K], *, concurrency: int
    ) -> AsyncGenerator[Finished[K, T]]:
        """As `LocalExecutor.map`, on Ray; raises `BackendError` when every worker died."""
        from agentfab.ray_workers import map_on_ray

        async for finished in map_on_ray(self, work, keys, self.per_worker(concurrency)):
            yield finished


Executor = Annotated[LocalExecutor | RayExecutor, Field(discriminator="kind")]
"""How a run's tasks are spread: `{kind: local}` (the default) or `{kind: ray, ...}`."""


async def _map_here(
    work: Work[K, T], keys: Sequence[K], concurrency: int
) -> AsyncGenerator[Finished[K, T]]:
    """Run opened `work` on `keys`, `concurrency` at a time, yielding each as it ends."""
    pending = iter(keys)
    done: asyncio.Queue[Finished[K, T] | None] = asyncio.Queue()

    async def worker() -> None:
        for key in pending:  # one shared iterator: each key is taken once
            done.put_nowait(Finished(key, await work.run(key)))

    async def every_worker() -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(concurrency, len(keys))):
                    group.create_task(worker())
        finally:
            done.put_nowait(None)

    runner = asyncio.get_running_loop().create_task(every_worker())
    try:
        while (finished := await done.get()) is not None:
            yield finished
        try:
            await runner
        except BaseExceptionGroup as errors:
            raise first_error(errors) from None
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception, BaseExceptionGroup):
            await runner
