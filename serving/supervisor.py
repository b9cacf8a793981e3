"""Keep a set of vLLM servers up: `agentfab serve`, and pipelines with a `serving` section.

It starts, restarts and stops servers, and asks them only whether they are up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from agentfab.serving.vllm_server import ServerSpec, VLLMServer, check_can_start

if TYPE_CHECKING:
    from agentfab.pipeline import ServeConfig

MAX_BACKOFF_S = 60.0


@dataclass
class Served:
    """What `servers_up` brought up."""

    supervisor: Supervisor | None = None
    """The servers on this machine."""
    placed: dict[str, list[str]] = field(default_factory=dict)
    """The URLs of the replicas Ray placed, by served name (they are known only now)."""


@contextlib.asynccontextmanager
async def servers_up(
    config: ServeConfig | None, *, report: Callable[[str], None] = print
) -> AsyncIterator[Served]:
    """A pipeline's `serving` section, up for the duration: local servers already answering
    are reused, the others started, watched and stopped at the end; `placement: ray`
    servers run in Ray actors (`serving/ray_replicas.py`)."""
    here = config.placed("local") if config is not None else None
    on_ray = config.placed("ray") if config is not None else None
    async with contextlib.AsyncExitStack() as stack:
        served = Served()
        if here is not None:
            supervisor = Supervisor(
                here.specs(), Path(here.log_dir), report=report, reuse_running=True
            )
            served.supervisor = await stack.enter_async_context(supervisor)
        if on_ray is not None:
            from agentfab.serving.ray_replicas import RayReplicas

            replicas = await stack.enter_async_context(RayReplicas(on_ray, report=report))
            served.placed = replicas.urls()
        yield served


async def stop_watching(watcher: asyncio.Task[None] | None) -> None:
    """Cancel a background watch and wait until it has ended."""
    if watcher is not None:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


class Supervisor:
    """Starts every server, restarts one that dies (with backoff), stops them all at the end.

    With `reuse_running`, a server that already answers at its address under its served
    name is used as it is: not started, watched or stopped (someone else owns it).
    `async with Supervisor(...)` starts the servers and watches them in the background.
    """

    def __init__(
        self,
        specs: Sequence[ServerSpec],
        log_dir: Path,
        *,
        report: Callable[[str], None] = print,
        poll_s: float = 2.0,
        reuse_running: bool = False,
    ) -> None:
        self.servers = [
            VLLMServer(spec, log_dir / f"{spec.served_name}-{spec.port}.log") for spec in specs
        ]
        self.report = report
        self.poll_s = poll_s
        self.reuse_running = reuse_running
        self.restarts = 0
        self.owned: list[VLLMServer] = []
        self._watcher: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Serve until cancelled (Ctrl-C, SIGTERM); every process started is stopped."""
        try:
            await self.start()
            await self.watch()
        finally:
            await asyncio.shield(self.stop())

    async def start(self) -> None:
        """Start every server not already running; all mistakes are found before any start."""
        running = await asyncio.gather(*(self._already_up(s) for s in self.servers))
        self.owned = [s for s, up in zip(self.servers, running, strict=True) if not up]
        for server in self.servers:
            if server not in self.owned:
                self.report(f"using: {server.spec.served_name} already at {server.spec.base_url}")
        for server in self.owned:
            check_can_start(server.spec)
        try:
            await asyncio.gather(*(self._start(s) for s in self.owned))
        except BaseException:
            await asyncio.shield(self.stop())
            raise

    async def watch(self) -> None:
        """Restart owned servers that die, until cancelled."""
        await asyncio.gather(*(self._watch(s) for s in self.owned))

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.owned))

    async def __aenter__(self) -> Supervisor:
        await self.start()
        self._watcher = asyncio.get_running_loop().create_task(self.watch())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await stop_watching(self._watcher)
        await asyncio.shield(self.stop())

    async def _already_up(self, server: VLLMServer) -> bool:
        if not self.reuse_running:
            return False
        try:
            async with httpx.AsyncClient(timeout=3.0) as client:
                response = await client.get(f"{server.spec.base_url}/models")
                served = [card.get("id") for card in response.json().get("data", [])]
        except (httpx.HTTPError, ValueError, AttributeError):
            return False
        return server.spec.served_name in served

    async def _start(self, server: VLLMServer) -> None:
        await server.start()
        pid = server.process.pid if server.process else 0
        self.report(
            f"ready: {server.spec.served_name} at {server.spec.base_url} (pid {pid}, "
            f"log {server.log_path})"
        )

    async def _watch(self, server: VLLMServer) -> None:
        backoff = 1.0
        while True:
            await asyncio.sleep(self.poll_s)
            if server.alive:
                continue
            self.report(
                f"down: {server.spec.served_name} at {server.spec.base_url}; "
                f"restarting in {backoff:.0f}s"
            )
            await server.stop()  # reap what is left of its process group
            await asyncio.sleep(backoff)
            try:
                await self._start(server)
                self.restarts += 1
                backoff = 1.0
            except Exception as error:
                self.report(f"restart failed: {error}")
                backoff = min(backoff * 2, MAX_BACKOFF_S)
