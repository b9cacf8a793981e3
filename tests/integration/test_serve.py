"""`agentfab serve`: start, readiness, restart after a crash, SIGTERM with nothing left behind."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.integration.test_vllm import free_port, live_members

pytestmark = pytest.mark.usefixtures("real_vllm")  # in CI a missing vLLM fails


def write_config(path: Path, port: int, model: str = "default") -> Path:
    path.write_text(
        "servers:\n"
        f"  - {{model: {model!r}, served_name: smollm2, port: {port}, dtype: float32,\n"
        "     extra_args: [--enforce-eager], env: {VLLM_CPU_KVCACHE_SPACE: '2'}}\n"
        f"log_dir: {str(path.parent / 'logs')!r}\n"
    )
    return path


class Serve:
    """`agentfab serve` in its own session, its output read line by line."""

    def __init__(self, config: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agentfab.cli", "serve", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, prefix: str, timeout_s: float = 400) -> str:
        while True:
            line = self.lines.get(timeout=timeout_s)
            if line.startswith(prefix):
                return line


def models(port: int) -> list[str]:
    body = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()
    return [card["id"] for card in body["data"]]


def test_serve_restarts_a_crashed_server_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    serve = Serve(write_config(tmp_path / "serve.yaml", port))
    try:
        first = int(re.findall(r"pid (\d+)", serve.wait_for("ready:"))[0])
        assert models(port) == ["smollm2"]
        os.killpg(first, signal.SIGKILL)  # the server crashes
        serve.wait_for("down:", timeout_s=60)
        second = int(re.findall(r"pid (\d+)", serve.wait_for("ready:"))[0])
        assert second != first and models(port) == ["smollm2"]
        serve.process.send_signal(signal.SIGTERM)
        assert serve.process.wait(timeout=120) == 0
        assert serve.wait_for("stopped", timeout_s=5)
        assert live_members(second) == [] and live_members(serve.process.pid) == []
        assert (tmp_path / "logs" / f"smollm2-{port}.log").stat().st_size > 0
    finally:
        if serve.process.poll() is None:
            os.killpg(serve.process.pid, signal.SIGKILL)


def test_serve_refuses_a_taken_port_and_a_missing_model(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "agentfab.cli", "serve",
             str(write_config(tmp_path / "a.yaml", taken))],
            capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 2 and f"127.0.0.1:{taken} is already in use" in done.stderr
    missing = write_config(tmp_path / "b.yaml", free_port(), model="/nowhere/model")
    done = subprocess.run([sys.executable, "-m", "agentfab.cli", "serve", str(missing)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no such folder" in done.stderr
    assert "Traceback" not in done.stderr
