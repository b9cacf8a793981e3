"""`agentfab serve`: keep a set of vLLM servers up until told to stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from agentfab.serving.vllm_server import ServerSpec, VLLMServer, check_can_start

MAX_BACKOFF_S = 60.0


class Supervisor:
    """Starts every server, restarts one that dies (with backoff), stops them all at the end."""

    def __init__(
        self,
        specs: Sequence[ServerSpec],
        log_dir: Path,
        *,
        report: Callable[[str], None] = print,
        poll_s: float = 2.0,
    ) -> None:
        self.servers = [
            VLLMServer(spec, log_dir / f"{spec.served_name}-{spec.port}.log") for spec in specs
        ]
        self.report = report
        self.poll_s = poll_s
        self.restarts = 0

    async def run(self) -> None:
        """Serve until cancelled (Ctrl-C, SIGTERM); every process started is stopped."""
        for server in self.servers:
            check_can_start(server.spec)  # all mistakes first, before anything starts
        try:
            await asyncio.gather(*(self._start(s) for s in self.servers))
            await asyncio.gather(*(self._watch(s) for s in self.servers))
        finally:
            await asyncio.shield(asyncio.gather(*(s.stop() for s in self.servers)))

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
