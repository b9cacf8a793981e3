"""vLLM replicas placed by Ray: a `serving:` server with `placement: ray`.

Each replica is a Ray actor that reserves the replica's resources (GPUs: the tensor-parallel
size on GPU nodes; CPUs on CPU nodes), starts the vLLM server on its node under
`agentfab.serving.tether` (so the server dies with the actor, SIGKILL or node loss
included) and reports its URL. Ray restarts a dead replica actor; the driver's watch asks
each replica to be up every few seconds, which starts the server of a restarted one. Calls
in flight to a dead replica fail over in the `ReplicaPool`, as with local servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentfab.errors import ConfigError
from agentfab.serving.vllm_server import ServerSpec, VLLMServer

if TYPE_CHECKING:
    from agentfab.pipeline import ServeConfig, ServerConfig

__all__ = ["RayReplicas", "with_placement"]

_MAX_RESTARTS = 5
_POLL_S = 2.0
_ALL_INTERFACES = ("0.0.0.0", "::", "")


class _ReplicaActor:
    """One replica: its server on this actor's node. Built again when Ray restarts it."""

    def __init__(self, spec: ServerSpec, log_dir: str) -> None:
        self.spec = spec
        log = Path(log_dir) / f"{spec.served_name}-{spec.port}.log"
        self.server = VLLMServer(spec, log, tethered=True)
        self.starting = asyncio.Lock()

    async def up(self) -> tuple[str, int]:
        """The server's URL once it answers, started (again) when it is not running; and
        this actor's process id (a new one: Ray restarted the actor)."""
        async with self.starting:
            if not self.server.alive:
                await self.server.stop()  # reap what is left of a dead one
                await self.server.start()
        return self.url(), os.getpid()

    async def node(self) -> str:
        """The Ray node this replica runs on."""
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def url(self) -> str:
        import ray

        host = self.spec.host
        if host in _ALL_INTERFACES:
            host = str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
        return f"http://{host}:{self.spec.port}/v1"

    async def stop(self) -> None:
        await self.server.stop()


@dataclass
class _Placed:
    config: ServerConfig
    spec: ServerSpec
    actor: Any
    url: str = ""
    pid: int = 0
    """The actor's process: Ray restarted it when this changes."""


class RayReplicas:
    """Every `placement: ray` server of a config, up for the duration (`async with`)."""

    def __init__(self, config: ServeConfig, *, report: Callable[[str], None] = print) -> None:
        self.config = config
        self.report = report
        self.placed: list[_Placed] = []
        self.restarts = 0
        self._watcher: asyncio.Task[None] | None = None

    def urls(self) -> dict[str, list[str]]:
        """Where each served name's replicas answer, by served name."""
        found: dict[str, list[str]] = {}
        for placed in self.placed:
            found.setdefault(placed.spec.served_name, []).append(placed.url)
        return found

    async def __aenter__(self) -> RayReplicas:
        from agentfab.ray_workers import connect, import_ray

        ray = import_ray()
        connect(self.config.ray_address)
        servers = [s for s in self.config.servers if s.placement == "ray"]
        have = ray.cluster_resources()
        gpus = have.get("GPU", 0.0)
        _check_resources(have, servers)
        remote = ray.remote(_ReplicaActor)
        for server in servers:
            for spec in _specs(self.config, server):
                actor = remote.options(
                    num_cpus=server.ray_cpus,
                    num_gpus=_gpus(server, gpus),
                    max_restarts=_MAX_RESTARTS,
                    max_task_retries=-1,  # a call to a restarting replica waits for it
                    max_concurrency=8,
                    scheduling_strategy="SPREAD",
                ).remote(spec, self.config.log_dir)
                self.placed.append(_Placed(server, spec, actor))
        try:
            ups = await asyncio.gather(*(p.actor.up.remote() for p in self.placed))
        except BaseException:
            await asyncio.shield(self._stop())
            raise
        for placed, (url, pid) in zip(self.placed, ups, strict=True):
            placed.url, placed.pid = url, pid
            self.report(f"ready: {placed.spec.served_name} at {url} (Ray actor, pid {pid})")
        self._watcher = asyncio.get_running_loop().create_task(self._watch())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        from agentfab.serving.supervisor import stop_watching

        await stop_watching(self._watcher)
        await asyncio.shield(self._stop())

    async def _watch(self) -> None:
        """Ask each replica to be up, every few seconds: a restarted actor (or one whose
        server died) starts its server again."""
        while True:
            await asyncio.sleep(_POLL_S)
            await asyncio.gather(*(self._check(p) for p in self.placed))

    async def _check(self, placed: _Placed) -> None:
        try:
            url, pid = await placed.actor.up.remote()
        except Exception as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            self.report(f"down: {placed.spec.served_name} at {placed.url}: {first}")
            return
        if pid != placed.pid:
            self.restarts += 1
            self.report(f"restarted: {placed.spec.served_name} at {url} (Ray actor, pid {pid})")
        placed.url, placed.pid = url, pid

    async def _stop(self) -> None:
        import ray

        stopping = [p.actor.stop.remote() for p in self.placed]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*stopping, return_exceptions=True), 60)
        for placed in self.placed:
            with contextlib.suppress(Exception):
                ray.kill(placed.actor, no_restart=True)


def _specs(config: ServeConfig, server: ServerConfig) -> list[ServerSpec]:
    return [s for s in config.specs() if s.served_name == server.served_name]


def _gpus(server: ServerConfig, cluster_gpus: float) -> float:
    if server.ray_gpus is not None:
        return server.ray_gpus
    return float(server.tensor_parallel_size) if cluster_gpus > 0 else 0.0


def _check_resources(have: dict[str, float], servers: Sequence[ServerConfig]) -> None:
    """Refuse replicas the cluster can never hold, saying what it has."""
    gpus = have.get("GPU", 0.0)
    want_gpus = sum(_gpus(s, gpus) * s.replicas for s in servers)
    want_cpus = sum(s.ray_cpus * s.replicas for s in servers)
    for name, want in (("GPU", want_gpus), ("CPU", want_cpus)):
        if want > have.get(name, 0.0) + 1e-9:
            raise ConfigError(
                f"serving: the replicas placed on Ray ask for {want:g} {name}s, but the cluster "
                f"has {have.get(name, 0.0):g}"
            )


def with_placement(config: ServeConfig, address: str) -> ServeConfig:
    """`agentfab serve --ray ADDRESS`: every server placed on that cluster."""
    servers = [s.model_copy(update={"placement": "ray"}) for s in config.servers]
    return config.model_copy(update={"servers": servers, "ray_address": address})

