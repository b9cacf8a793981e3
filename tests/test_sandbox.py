"""The sandbox against hostile programs: each is contained, scored as not passed, and the
runner goes on. Every test runs with Linux namespaces (where this host allows them) and
without (the portable path: limits, process group and in-process patches only)."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from pathlib import Path

import pytest

from agentfab.evals.sandbox import Outcome, namespaces_available, run_python, run_python_async

ISOLATION = [
    pytest.param(
        True,
        id="namespaces",
        marks=pytest.mark.skipif(not namespaces_available(), reason="no namespaces here"),
    ),
    pytest.param(False, id="process"),
]

# The program renames itself (and anything it forks) so that the test can look for survivors.
RENAME = "import ctypes\nctypes.CDLL(None).prctl(15, {name!r}.encode(), 0, 0, 0)\n"


def marker() -> str:
    return "afx" + secrets.token_hex(5)  # a process name is at most 15 characters


def survivors(name: str) -> list[int]:
    """Live processes (zombies are dead) called `name`, anywhere on this machine."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # it ended while we looked
        if comm == name and state not in "ZX":
            found.append(int(pid))
    return found


def gone(name: str, within_s: float = 2.0) -> bool:
    deadline = time.monotonic() + within_s
    while survivors(name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("namespaces", ISOLATION)
def test_a_normal_program_passes_in_a_private_folder_that_is_removed(
    namespaces: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFAB_TEST_SECRET", "s3cret")
    source = (
        "import os\n"
        "assert 'AGENTFAB_TEST_SECRET' not in os.environ\n"
        "assert os.environ['HOME'] == os.environ['TMPDIR'] == os.getcwd()\n"
        "print(os.getcwd())\n"
    )
    out = run_python(source, namespaces=namespaces)
    assert out.passed, out
    assert out.status == "passed" and out.detail == ""
    folder = Path(out.stdout.strip())
    assert folder.name.startswith("agentfab-sandbox-")
    assert not folder.exists()
    assert 0 < out.seconds < 5


@pytest.mark.parametrize("namespaces", ISOLATION)
def test_an_infinite_loop_hits_the_cpu_limit(namespaces: bool) -> None:
    out = run_python("while True:\n    pass\n", cpu_s=1, timeout_s=10, namespaces=namespaces)
    assert (out.status, out.detail) == ("timeout", "CPU-time limit of 1 s")
    assert out.seconds < 5


@pytest.mark.parametrize("namespaces", ISOLATION)
def test_sleeping_forever_hits_the_wall_clock_and_is_killed(namespaces: bool) -> None:
    name = marker()
    out = run_python(
        RENAME.format(name=name) + "import time\ntime.sleep(60)\n",
        timeout_s=1,
        namespaces=namespaces,
    )
    assert (out.status, out.detail) == ("timeout", "wall-clock limit of 1 s")
    assert out.seconds < 3
    assert gone(name)


@pytest.mark.parametrize("namespaces", ISOLATION)
def test_a_fork_bomb_is_refused(namespaces: bool) -> None:
    source = (
        "import os, time\n"
        "for _ in range(32):  # bounded, should every limit fail\n"
        "    if os.fork() == 0:\n"
        "        while True:\n"
        "            time.sleep(60)\n"
    )
    out = run_python(source, namespaces=namespaces)
    assert out.status == "failed"
    assert out.detail.startswith(("PermissionError", "BlockingIOError")), out.detail


@pytest.mark.parametrize("namespaces", ISOLATION)
def test_processes_forked_past_the_patches_do_not_outlive_the_run(namespaces: bool) -> None:
    # ctypes gets past the in-process patches; where RLIMIT_NPROC applies the forks fail,
    # as root they succeed. With namespaces the children may even leave the session.
    name = marker()
    source = RENAME.format(name=name) + (
        "import os, time\n"
        "libc = ctypes.CDLL(None)\n"
        "for _ in range(16):  # bounded: at worst 16 processes, not a bomb\n"
        "    if libc.fork() == 0:\n"
        f"        {'libc.setsid()' if namespaces else 'pass'}\n"
        "        while True:\n"
        "            time.sleep(60)\n"
        "raise SystemExit\n"
    )
    out = run_python(source, timeout_s=5, namespaces=namespaces)
    assert out.status == "failed"
    assert gone(name)


@pytest.mark.parametrize("namespaces", ISOLATION)
def test_a_memory_bomb_hits_the_memory_limit(namespaces: bool) -> None:
    source = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n"
    out = run_python(source, memory_mb=256, namespaces=namespaces)
    assert (out.status, out.detail) == ("failed", "MemoryError")


@pytest.mark.parametrize("namespaces", ISOLATION)
def test_files_it_writes_are_capped_in_size_wherever_they_are(
    namespaces: bool, tmp_path: Path
) -> None:
    # Not guaranteed: that it cannot write outside its folder (it runs as our user). What
    # is: every file it writes stops at file_mb, and its own folder disappears.
    target = tmp_path / "escape.bin"
    source = f"import os\nprint(os.getcwd(), flush=True)\nopen({str(target)!r}, 'wb').write(bytes(4 << 20))\n"
    out = run_python(source, file_mb=1, namespaces=namespaces)
    assert (out.status, out.detail) == ("failed", "OSError: [Errno 27] File too large")
    assert not target.exists() or target.stat().st_size <= 1 << 20
    assert not Path(out.stdout.strip()).exists()


@pytest.mark.parametrize("namespaces", ISOLATION)
def test_no_connection_reaches_a_listening_socket(namespaces: bool) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        attempts = [f"socket.create_connection(('127.0.0.1', {port}), timeout=1)"]
        if namespaces:  # the raw class gets past the patch; only the kernel stops it
            attempts.append(
                f"socket.socket.__mro__[2](socket.AF_INET).connect(('127.0.0.1', {port}))"
            )
        for attempt in attempts:
            out = run_python(f"import socket\n{attempt}\n", namespaces=namespaces)
            assert out.status == "failed", out
            assert out.detail.startswith(("PermissionError", "OSError")), out.detail
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()


@pytest.mark.parametrize("namespaces", ISOLATION)
def test_killing_its_parent_leaves_the_runner_alive(namespaces: bool) -> None:
    out = run_python("import os\nos.kill(os.getppid(), 9)\n", namespaces=namespaces)
    assert out.status == "failed"
    assert out.detail == "PermissionError: not allowed in the sandbox"
    # Past the patch its parent is the sandbox's shell (the pid namespace's init, which
    # ignores it), never this process.
    source = "import ctypes, os\nctypes.CDLL(None).kill(os.getppid(), 9)\nraise SystemExit\n"
    out = run_python(source, namespaces=namespaces)
    assert out.status == "failed"


def test_inside_namespaces_even_killing_everything_reaches_nothing_outside() -> None:
    if not namespaces_available():
        pytest.skip("no namespaces here")  # never run this outside a pid namespace
    source = "import ctypes\nctypes.CDLL(None).kill(-1, 9)\nraise SystemExit\n"
    out = run_python(source, namespaces=True)
    assert out.status == "failed"


@pytest.mark.parametrize("namespaces", ISOLATION)
def test_printing_megabytes_is_capped(namespaces: bool) -> None:
    out = run_python(
        "for _ in range(64):\n    print('x' * (1 << 20))\n",
        file_mb=8,
        max_output_bytes=4096,
        namespaces=namespaces,
    )
    assert (out.status, out.detail) == ("failed", "OSError: [Errno 27] File too large")
    assert out.stdout.startswith("x" * 4096) and out.stdout.endswith("[output truncated]")
    assert len(out.stdout) < 4200
    # Under the file limit a long output is no failure, only cut.
    out = run_python("print('y' * (1 << 20))\n", max_output_bytes=100, namespaces=namespaces)
    assert out.passed and out.stdout == "y" * 100 + "\n[output truncated]"


@pytest.mark.parametrize("namespaces", ISOLATION)
def test_exiting_before_the_end_is_not_passing(namespaces: bool) -> None:
    for source in ("import sys\nsys.exit(0)\n", "exit()\n", "import os\nos._exit(0)\n"):
        out = run_python(source + "raise AssertionError('unreached')\n", namespaces=namespaces)
        assert out.status == "failed", source
        assert "AssertionError" not in out.detail


async def test_many_runs_at_once_from_asyncio_each_in_its_own_folder() -> None:
    outs = await asyncio.gather(
        *(run_python_async(f"import os\nprint({i}, os.getcwd())\n") for i in range(8))
    )
    assert all(out.passed for out in outs)
    assert [out.stdout.split()[0] for out in outs] == [str(i) for i in range(8)]
    assert len({out.stdout.split()[1] for out in outs}) == 8


async def test_cancelling_a_run_kills_its_program() -> None:
    name = marker()
    run = asyncio.create_task(
        run_python_async(RENAME.format(name=name) + "import time\ntime.sleep(60)\n")
    )
    deadline = time.monotonic() + 5
    while not survivors(name) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert survivors(name)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert gone(name)


def test_a_sandbox_that_cannot_start_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.executable", "/nonexistent/python")
    out = run_python("print(1)\n", namespaces=False)
    assert out.status == "error" and out.detail.startswith("could not start the interpreter")
    monkeypatch.setattr("agentfab.evals.sandbox._SHELL", ("/nonexistent/sh", "-c", "", "x"))
    out = run_python("print(1)\n", namespaces=False)
    assert out.status == "error" and out.detail.startswith("could not start the sandbox")
    assert not out.passed


@pytest.mark.parametrize("namespaces", ISOLATION)
def test_after_all_that_a_normal_program_still_passes(namespaces: bool) -> None:
    out = run_python("print(sum(range(10)))\n", namespaces=namespaces)
    assert out == Outcome("passed", "", "45\n", "", out.seconds)
