"""The sandbox against hostile programs: each is contained, scored as not passed, and the
runner goes on. Every test runs under each isolation this host offers: bubblewrap, plain
namespaces (unshare) and none (the portable path: limits, process group and in-process
patches only)."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import time
from pathlib import Path

import pytest

from agentfab.errors import ConfigError
from agentfab.evals.sandbox import (
    Isolation,
    Outcome,
    isolations_available,
    run_python,
    run_python_async,
)
from tests.integration import real_parts

AVAILABLE = isolations_available()
ISOLATION = [pytest.param(kind, id=kind) for kind in ("bwrap", "namespaces", "none")]
NAMESPACED = [param for param in ISOLATION if param.values[0] != "none"]


@pytest.fixture(autouse=True)
def _isolation_here(request: pytest.FixtureRequest) -> None:
    """A test of an isolation this host lacks fails in CI (`make setup` installs bwrap where
    it can; namespaces need only the kernel) and is skipped, listed, elsewhere."""
    callspec = getattr(request.node, "callspec", None)
    kind = callspec.params.get("isolation") if callspec else None
    if kind is None or kind in AVAILABLE:
        return
    part = f"the sandbox's {kind} isolation"
    if kind == "bwrap" and not _setup_installs_bwrap():
        real_parts.skipped[part] = "bwrap is missing and `make setup` cannot install it here"
        pytest.skip(f"{part}: bwrap is missing (no apt-get, or not root)")
    real_parts.require(part, "does not work on this host")


def _setup_installs_bwrap() -> bool:
    """What the Makefile's setup does: apt-get install bubblewrap, as root."""
    return shutil.which("apt-get") is not None and os.geteuid() == 0

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


@pytest.mark.parametrize("isolation", ISOLATION)
def test_a_normal_program_passes_in_a_private_folder_that_is_removed(
    isolation: Isolation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFAB_TEST_SECRET", "s3cret")
    source = (
        "import os\n"
        "assert 'AGENTFAB_TEST_SECRET' not in os.environ\n"
        "assert os.environ['HOME'] == os.environ['TMPDIR'] == os.getcwd()\n"
        "print(os.getcwd())\n"
    )
    out = run_python(source, isolation=isolation)
    assert out.passed, out
    assert out.status == "passed" and out.detail == ""
    folder = Path(out.stdout.strip())
    assert folder.name.startswith("agentfab-sandbox-")
    assert not folder.exists()
    assert 0 < out.seconds < 5


@pytest.mark.parametrize("isolation", ISOLATION)
def test_an_infinite_loop_hits_the_cpu_limit(isolation: Isolation) -> None:
    out = run_python("while True:\n    pass\n", cpu_s=1, timeout_s=10, isolation=isolation)
    assert (out.status, out.detail) == ("timeout", "CPU-time limit of 1 s")
    assert out.seconds < 5


@pytest.mark.parametrize("isolation", ISOLATION)
def test_sleeping_forever_hits_the_wall_clock_and_is_killed(isolation: Isolation) -> None:
    name = marker()
    out = run_python(
        RENAME.format(name=name) + "import time\ntime.sleep(60)\n",
        timeout_s=1,
        isolation=isolation,
    )
    assert (out.status, out.detail) == ("timeout", "wall-clock limit of 1 s")
    assert out.seconds < 3
    assert gone(name)


@pytest.mark.parametrize("isolation", ISOLATION)
def test_a_fork_bomb_is_refused(isolation: Isolation) -> None:
    source = (
        "import os, time\n"
        "for _ in range(32):  # bounded, should every limit fail\n"
        "    if os.fork() == 0:\n"
        "        while True:\n"
        "            time.sleep(60)\n"
    )
    out = run_python(source, isolation=isolation)
    assert out.status == "failed"
    assert out.detail.startswith(("PermissionError", "BlockingIOError")), out.detail


@pytest.mark.parametrize("isolation", ISOLATION)
def test_processes_forked_past_the_patches_do_not_outlive_the_run(isolation: Isolation) -> None:
    # ctypes gets past the in-process patches; where RLIMIT_NPROC applies the forks fail,
    # as root they succeed. With namespaces the children may even leave the session.
    name = marker()
    source = RENAME.format(name=name) + (
        "import os, time\n"
        "libc = ctypes.CDLL(None)\n"
        "for _ in range(16):  # bounded: at worst 16 processes, not a bomb\n"
        "    if libc.fork() == 0:\n"
        f"        {'pass' if isolation == 'none' else 'libc.setsid()'}\n"
        "        while True:\n"
        "            time.sleep(60)\n"
        "raise SystemExit\n"
    )
    out = run_python(source, timeout_s=5, isolation=isolation)
    assert out.status == "failed"
    assert gone(name)


@pytest.mark.parametrize("isolation", ISOLATION)
def test_a_memory_bomb_hits_the_memory_limit(isolation: Isolation) -> None:
    source = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n"
    out = run_python(source, memory_mb=256, isolation=isolation)
    assert (out.status, out.detail) == ("failed", "MemoryError")


@pytest.mark.parametrize("isolation", ISOLATION)
def test_files_it_writes_are_capped_in_size(isolation: Isolation) -> None:
    source = (
        "import os\nprint(os.getcwd(), flush=True)\nopen('big.bin', 'wb').write(bytes(4 << 20))\n"
    )
    out = run_python(source, file_mb=1, isolation=isolation)
    assert (out.status, out.detail) == ("failed", "OSError: [Errno 27] File too large")
    assert not Path(out.stdout.strip()).exists()


@pytest.mark.parametrize("isolation", ISOLATION)
def test_outside_its_folder_it_writes_nothing_with_namespaces(
    isolation: Isolation, tmp_path: Path
) -> None:
    targets = [tmp_path / "escape.bin", Path("/tmp") / f"agentfab-escape-{secrets.token_hex(4)}"]
    source = (
        "import os\n"
        "open('inside.txt', 'w').write('its own folder is writable')\n"
        f"for target in {[str(t) for t in targets]!r}:\n"
        "    try:\n"
        "        open(target, 'wb').write(bytes(4 << 20))\n"
        "    except OSError as exc:\n"
        "        print(exc.errno)\n"
        "print(open('inside.txt').read())\n"
    )
    out = run_python(source, file_mb=1, isolation=isolation)
    errors = "27" if isolation == "none" else "30"  # EFBIG: cut at file_mb; EROFS: read-only
    assert out.passed, out
    assert out.stdout.split() == [errors, errors, "its", "own", "folder", "is", "writable"]
    if isolation == "none":  # not guaranteed: it runs as our user; the size cap holds
        assert all(t.stat().st_size <= 1 << 20 for t in targets)
        for target in targets:
            target.unlink()
    assert not any(t.exists() for t in targets)


@pytest.mark.parametrize("isolation", ISOLATION)
def test_no_connection_reaches_a_listening_socket(isolation: Isolation) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        attempts = [f"socket.create_connection(('127.0.0.1', {port}), timeout=1)"]
        if isolation != "none":  # the raw class gets past the patch, not the audit hook
            attempts.append(
                f"socket.socket.__mro__[2](socket.AF_INET).connect(('127.0.0.1', {port}))"
            )
        for attempt in attempts:
            out = run_python(f"import socket\n{attempt}\n", isolation=isolation)
            assert out.status == "failed", out
            assert out.detail.startswith(("PermissionError", "OSError")), out.detail
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()


@pytest.mark.parametrize("isolation", ISOLATION)
def test_killing_its_parent_leaves_the_runner_alive(isolation: Isolation) -> None:
    out = run_python("import os\nos.kill(os.getppid(), 9)\n", isolation=isolation)
    assert out.status == "failed"
    assert out.detail == "PermissionError: not allowed in the sandbox"
    # Past the patch its parent is the sandbox's shell (the pid namespace's init, which
    # ignores it), never this process.
    source = "import ctypes, os\nctypes.CDLL(None).kill(os.getppid(), 9)\nraise SystemExit\n"
    out = run_python(source, isolation=isolation)
    assert out.status == "failed"


@pytest.mark.parametrize("isolation", NAMESPACED)  # never run this outside a pid namespace
def test_inside_namespaces_even_killing_everything_reaches_nothing_outside(
    isolation: Isolation,
) -> None:
    source = "import ctypes\nctypes.CDLL(None).kill(-1, 9)\nraise SystemExit\n"
    out = run_python(source, isolation=isolation)
    assert out.status == "failed"


@pytest.mark.parametrize("isolation", ISOLATION)
def test_printing_megabytes_is_capped(isolation: Isolation) -> None:
    out = run_python(
        "for _ in range(64):\n    print('x' * (1 << 20))\n",
        file_mb=8,
        max_output_bytes=4096,
        isolation=isolation,
    )
    assert (out.status, out.detail) == ("failed", "OSError: [Errno 27] File too large")
    assert out.stdout.startswith("x" * 4096) and out.stdout.endswith("[output truncated]")
    assert len(out.stdout) < 4200
    # Under the file limit a long output is no failure, only cut.
    out = run_python("print('y' * (1 << 20))\n", max_output_bytes=100, isolation=isolation)
    assert out.passed and out.stdout == "y" * 100 + "\n[output truncated]"


# A wrong solution, then a way out or a forgery, then a test it fails: none of it may pass.
RIGHT = "def double(x):\n    return 2 * x\n\n"
WRONG = "def double(x):\n    return 0\n\n"
TEST = "\ndef check(candidate):\n    assert candidate(2) == 4\n\n\ncheck(double)\n"

EARLY_EXITS = {
    "sys.exit(0)": "import sys\nsys.exit(0)\n",
    "exit()": "exit()\n",
    "os._exit(0)": "import os\nos._exit(0)\n",
    "posix._exit(0)": "import posix\nposix._exit(0)\n",
    "os.execv": "import os, sys\nos.execv(sys.executable, [sys.executable, '-c', 'pass'])\n",
    "posix.execv": "import posix, sys\nposix.execv(sys.executable, [sys.executable, '-c', 'pass'])\n",
    "os.abort()": "import os\nos.abort()\n",
    "SIGTERM to itself": "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n",
    "SIGKILL to itself through posix": "import posix\nposix.kill(posix.getpid(), 9)\n",
    "signal.raise_signal": "import signal\nsignal.raise_signal(signal.SIGINT)\n",
    "a signal handler that exits 0": (
        "import os, signal\nsignal.signal(signal.SIGUSR1, lambda *_: os._exit(0))\n"
        "os.kill(os.getpid(), signal.SIGUSR1)\n"
    ),
    "SystemExit(0) raised inside the test": "def double(x):\n    raise SystemExit(0)\n",
    "status 0 from atexit after the failure": "import atexit, os\natexit.register(os._exit, 0)\n",
    "status 0 from a finalizer": (
        "class Exit:\n    def __del__(self):\n        import os\n        os._exit(0)\n\nkeep = Exit()\n"
    ),
    "a thread that exits": "import os, threading\nthreading.Thread(target=os._exit, args=(0,)).start()\n",
    "rebinding exit, print, exec and write": (
        "import builtins, os, sys\n"
        "builtins.exec = builtins.print = lambda *a, **k: None\n"
        "builtins.exit = builtins.quit = sys.exit = os._exit = lambda *a: None\n"
        "os.write = lambda fd, data: len(data)\n"
    ),
    "rebinding check and AssertionError": (
        "import builtins\nbuiltins.check = lambda candidate: None\n"
        "builtins.AssertionError = type('Quiet', (Exception,), {})\n"
        "def check(candidate):\n    pass\n"
    ),
    "printing a proof": "print('passed')\nprint('0' * 32)\n",
    "a nonce-shaped proof on every descriptor": (
        "import os\nfor fd in range(3, 1024):\n    try:\n        os.write(fd, b'0' * 32)\n"
        "    except OSError:\n        pass\n"
    ),
}

# Each hunt collects what it can reach, then echoes anything shaped like the nonce on every
# descriptor and exits 0: it would pass, were the nonce anywhere it looked.
FORGE = (
    "import os, re\n"
    "def forge(found):\n"
    "    for blob in found:\n"
    "        if isinstance(blob, bytes) and re.fullmatch(rb'[0-9a-f]{32}', blob):\n"
    "            for fd in range(3, 1024):\n"
    "                try:\n"
    "                    os.write(fd, blob)\n"
    "                except OSError:\n"
    "                    pass\n"
    "    os._exit(0)\n"
    "found = []\n"
    "def attempt(read, fd):\n"
    "    try:\n"
    "        found.append(read(fd))\n"
    "    except Exception:\n"
    "        pass\n"
)
HUNTS = {
    "os.read on every descriptor": "for fd in range(1024):\n    attempt(lambda fd: os.read(fd, 64), fd)\n",
    "FileIO on every descriptor": (
        "import io\nfor fd in range(1024):\n"
        "    attempt(lambda fd: io.FileIO(fd, closefd=False).read(64), fd)\n"
    ),
    "every descriptor dup2-ed onto stdin": (
        "import sys\nstdin = sys.stdin.buffer.raw\nfor fd in range(3, 1024):\n"
        "    attempt(lambda fd: (os.dup2(fd, 0), stdin.read(64))[1], fd)\n"
    ),
    "dup and fcntl copies": (
        "import fcntl\nfor fd in range(3, 1024):\n"
        "    attempt(lambda fd: os.read(os.dup(fd), 64), fd)\n"
        "    attempt(lambda fd: os.read(fcntl.fcntl(fd, fcntl.F_DUPFD, 0), 64), fd)\n"
    ),
    "readv, splice and sendfile": (
        "for fd in range(3, 1024):\n"
        "    attempt(lambda fd: bytes(b := bytearray(64))[:os.readv(fd, [b])], fd)\n"
        "    attempt(lambda fd: os.splice(fd, 1, 64), fd)\n"
        "    attempt(lambda fd: os.sendfile(1, fd, None, 64), fd)\n"
    ),
    "re-opened through /proc": (
        "for name in os.listdir('/proc/self/fd'):\n"
        "    attempt(lambda n: os.read(os.open('/proc/self/fd/' + n, os.O_RDONLY | os.O_NONBLOCK), 64), name)\n"
    ),
    "a second copy of posix": (
        "import _imp, importlib.machinery\n"
        "spec = importlib.machinery.ModuleSpec('posix', importlib.machinery.BuiltinImporter)\n"
        "try:\n    fresh = _imp.create_builtin(spec)\nexcept Exception:\n    fresh = os\n"
        "for fd in range(1024):\n    attempt(lambda fd: fresh.read(fd, 64), fd)\n"
    ),
    "the harness's frames and their values": (
        "import sys\nframe = sys._getframe()\nwhile frame is not None:\n"
        "    for value in list(frame.f_locals.values()):\n"
        "        found.append(value)\n"
        "        if isinstance(value, int) and not isinstance(value, bool):\n"
        "            attempt(lambda fd: os.read(fd, 64), value)\n"
        "    frame = frame.f_back\n"
    ),
    "the harness's code run again without exec": (
        "import builtins, sys, types\nframe = sys._getframe()\n"
        "while frame.f_code.co_name != '_sandboxed_main':\n    frame = frame.f_back\n"
        "sys.argv = ['-c', *sys.orig_argv[-5:]]\n"
        "fake = dict(frame.f_globals, __builtins__=dict(vars(builtins), exec=lambda *a: None))\n"
        "attempt(lambda _: types.FunctionType(frame.f_code, fake)(), None)\n"
    ),
    "every object the collector knows": (
        "import gc\nattempt(lambda _: found.extend(gc.get_objects()), None)\n"
        "attempt(lambda _: found.extend(gc.get_referrers(os.read)), None)\n"
    ),
    "a tracer on every frame": (
        "import sys\n"
        "def trace(frame, event, arg):\n    found.extend(frame.f_locals.values())\n    return trace\n"
        "attempt(sys.settrace, trace)\n"
    ),
    "signal handlers and the frames they interrupt": (
        "import signal, sys\nframes = []\n"
        "def grab(signum, frame):\n"
        "    frames.append(frame)\n"
        "    f = sys._getframe()\n"
        "    while f is not None:\n"
        "        found.extend(f.f_locals.values())\n"
        "        f = f.f_back\n"
        "signal.signal(signal.SIGALRM, grab)\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)\n"
        "for _ in range(3000):  # audit events, so that some signals land in the guard\n"
        "    attempt(lambda fd: os.read(fd, 1), 0)\n"
        "signal.setitimer(signal.ITIMER_REAL, 0)\n"
        "assert frames and not any(frames), frames\n"
    ),
    "a kept generator frame walked from a signal handler": (
        # Frames taken while the guard is not on the stack, walked while it might be.
        "import signal, sys, types\n"
        "def spy():\n"
        "    me = sys._getframe()\n"
        "    while True:\n"
        "        f = me.f_back\n"
        "        while f is not None:\n"
        "            original = f.f_locals.get('original')\n"
        "            if type(original) is dict:\n"
        "                spec = types.SimpleNamespace(name='posix', origin=None)\n"
        "                fresh = original['create_builtin'](spec)\n"
        "                for fd in range(1024):\n"
        "                    attempt(lambda fd: fresh.read(fd, 64), fd)\n"
        "            f = f.f_back\n"
        "        yield\n"
        "gen = spy()\n"
        "signal.signal(signal.SIGALRM, lambda *_: next(gen))\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)\n"
        "for _ in range(3000):\n"
        "    attempt(lambda fd: os.read(fd, 1), 0)\n"
        "signal.setitimer(signal.ITIMER_REAL, 0)\n"
    ),
}


@pytest.mark.parametrize("isolation", ISOLATION)
def test_the_right_solution_passes_with_its_proof(isolation: Isolation) -> None:
    out = run_python(RIGHT + TEST, isolation=isolation)
    assert out == Outcome("passed", "", "", "", out.seconds, isolation)


@pytest.mark.parametrize("isolation", ISOLATION)
@pytest.mark.parametrize("way_out", EARLY_EXITS.values(), ids=EARLY_EXITS.keys())
def test_no_way_out_of_a_failing_test_is_scored_passed(isolation: Isolation, way_out: str) -> None:
    out = run_python(WRONG + way_out + TEST, timeout_s=5, isolation=isolation)
    assert out.status == "failed", out


@pytest.mark.parametrize("isolation", ISOLATION)
@pytest.mark.parametrize("hunt", HUNTS.values(), ids=HUNTS.keys())
def test_hunting_for_the_nonce_finds_nothing_to_forge_with(isolation: Isolation, hunt: str) -> None:
    out = run_python(WRONG + FORGE + hunt + "forge(found)\n" + TEST, isolation=isolation)
    assert (out.status, out.detail) == ("failed", "it ended before its end (no proof)"), out


@pytest.mark.parametrize("isolation", ISOLATION)
def test_ordinary_programs_keep_what_the_guard_stands_in_front_of(isolation: Isolation) -> None:
    # namedtuple reads sys._getframe; signal handlers, descriptors and extension modules of
    # its own stay usable; the right answer still passes after all of it.
    source = (
        RIGHT
        + (
            "import collections, decimal, fractions, json, math, os, signal\n"
            "Point = collections.namedtuple('Point', 'x y')\n"
            "assert Point(1, 2).x == 1 and math.isqrt(17) == 4 and json.loads('[1]') == [1]\n"
            "assert decimal.Decimal('0.1') * 3 == decimal.Decimal('0.3') and fractions.Fraction(1, 3)\n"
            "read, write = os.pipe()\n"
            "os.write(os.dup2(write, 100), b'ok')\n"
            "assert os.read(os.dup(read), 2) == b'ok'\n"
            "class Tick(Exception):\n    pass\n"
            "def tick(signum, frame):\n    raise Tick(frame)\n"
            "signal.signal(signal.SIGALRM, tick)\n"
            "signal.setitimer(signal.ITIMER_REAL, 0.01)\n"
            "try:\n    while True:\n        pass\nexcept Tick as tock:\n    assert tock.args == (None,)\n"
            "print('fine')\n"
        )
        + TEST
    )
    out = run_python(source, isolation=isolation)
    assert (out.status, out.stdout) == ("passed", "fine\n"), out


def test_the_strongest_isolation_is_taken_and_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AVAILABLE[-1] == "none"
    assert run_python("pass\n").isolation == AVAILABLE[0]
    monkeypatch.setattr("agentfab.evals.sandbox.isolations_available", lambda: ("none",))
    with pytest.raises(ConfigError, match="'bwrap' is not available"):
        run_python("pass\n", isolation="bwrap")
    assert run_python("pass\n").isolation == "none"


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
    out = run_python("print(1)\n", isolation="none")
    assert out.status == "error" and out.detail.startswith("could not start the interpreter")
    monkeypatch.setattr("agentfab.evals.sandbox._SHELL", ("/nonexistent/sh", "-c", "", "x"))
    out = run_python("print(1)\n", isolation="none")
    assert out.status == "error" and out.detail.startswith("could not start the sandbox")
    assert not out.passed


@pytest.mark.parametrize("isolation", ISOLATION)
def test_after_all_that_a_normal_program_still_passes(isolation: Isolation) -> None:
    out = run_python("print(sum(range(10)))\n", isolation=isolation)
    assert out == Outcome("passed", "", "45\n", "", out.seconds, isolation)
