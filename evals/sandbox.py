"""Run untrusted Python (a model's code) in a sandbox and say how it ended.

Each run gets a fresh interpreter in its own session, a fresh temporary folder
(its cwd, HOME and TMPDIR, deleted afterwards), a minimal environment and
limits. What holds, and who enforces it:

Always, by the kernel:
- CPU time (RLIMIT_CPU), address space (RLIMIT_AS), the size of every file it
  writes, its output included (RLIMIT_FSIZE), no core dumps;
- a wall-clock limit, after which its whole process group is SIGKILLed (the
  group is killed after a normal end too, taking leftovers with it);
- its parent is a small `sh`, never the runner;
- its output is read back capped (stdout from the start, stderr from the end).

Where this host lets the runner create Linux namespaces (probed once with
`unshare --user --net --pid`; see `namespaces_available`), also by the kernel:
- no network: a new network namespace has only a loopback, and it is down;
- its own pid namespace: it cannot see or signal any process outside, and
  every process it starts dies with it, even one that left its session;
- it runs as an unprivileged uid (65534 inside), so it cannot raise its limits.

Where RLIMIT_NPROC applies (the runner is not root; root is exempt), by the
kernel: it can start neither processes nor threads.

Only defence in depth (in-process patches; ctypes or a C extension gets past them):
socket creation and name lookups, process and thread starts (the only process
limit for root), `os.exec*`, `os._exit`, `os.killpg`, and `os.kill` aimed at any
process but itself all raise PermissionError.

A run passes only when the program reaches its end: exiting early (sys.exit,
exit()) fails it, so demo code cannot skip the tests that follow it.

Not guaranteed:
- Files outside its folder. It runs as the runner's user (inside a user
  namespace too: its uid maps back to the runner's), so it can write wherever
  that user can; RLIMIT_FSIZE caps each file's size, not their number. Run
  benchmarks as a dedicated user or in a container when that matters.
- Without namespaces, network isolation is the in-process patch only, and a
  process that calls setsid() through ctypes outlives the run. If the runner
  is also root, the program is root: through ctypes it can raise its own
  limits, fork without bound until the wall-clock limit, and signal any
  process on the machine. The limits then stop accidents, not attacks.
- Memory summed over processes: RLIMIT_AS is per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from typing import IO, Literal, NoReturn

from agentfab.errors import ConfigError

__all__ = ["Outcome", "Status", "namespaces_available", "run_python", "run_python_async"]

Status = Literal["passed", "failed", "timeout", "error"]

# util-linux `unshare`: new user, network and pid namespaces, the program as uid 65534.
_UNSHARE_FLAGS = (
    "--user",
    "--map-user=65534",
    "--map-group=65534",
    "--net",
    "--pid",
    "--fork",
    "--kill-child",
)
# A shell between the runner and the program (exec'ing nothing, so it stays): the program's
# parent to kill instead of the runner, the pid namespace's init, and it reports a
# signal that ended the program as exit status 128 + n.
_SHELL = ("/bin/sh", "-c", '"$@"; exit $?', "sandbox")


@dataclass(frozen=True)
class Outcome:
    """How one sandboxed run ended."""

    status: Status
    """`passed`: the program ran to its end. `failed`: it raised, exited early (sys.exit
    counts), was killed by a signal, or hit the memory or file-size limit. `timeout`: it
    hit the wall-clock or CPU-time limit. `error`: the sandbox itself could not run it."""
    detail: str
    """One line: the exception, signal or limit that ended it; empty when it passed."""
    stdout: str
    """Its standard output, at most `max_output_bytes` from the start."""
    stderr: str
    """Its standard error, at most `max_output_bytes` from the end (where tracebacks are)."""
    seconds: float
    """Wall-clock time of the run."""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_python(
    source: str,
    *,
    timeout_s: float = 10.0,
    cpu_s: float = 10.0,
    memory_mb: int = 1024,
    file_mb: int = 16,
    max_output_bytes: int = 64_000,
    namespaces: bool | None = None,
) -> Outcome:
    """`run_python_async` for code without an event loop."""
    return asyncio.run(
        run_python_async(
            source,
            timeout_s=timeout_s,
            cpu_s=cpu_s,
            memory_mb=memory_mb,
            file_mb=file_mb,
            max_output_bytes=max_output_bytes,
            namespaces=namespaces,
        )
    )


async def run_python_async(
    source: str,
    *,
    timeout_s: float = 10.0,
    cpu_s: float = 10.0,
    memory_mb: int = 1024,
    file_mb: int = 16,
    max_output_bytes: int = 64_000,
    namespaces: bool | None = None,
) -> Outcome:
    """Run `source` as a program in a sandbox (see the module docstring for what holds).

    `namespaces`: None uses Linux namespaces where this host allows them; False never
    does; True insists, and raises ConfigError where they are unavailable. Safe to run
    many at once; cancelling kills the program.
    """
    prefix = await _isolation(namespaces)
    limits = (str(max(1, math.ceil(cpu_s))), str(memory_mb << 20), str(file_mb << 20))
    argv = [*prefix, *_SHELL, sys.executable, "-s", "-P", "-c", _bootstrap_source(), *limits]
    work = tempfile.mkdtemp(prefix="agentfab-sandbox-")
    try:
        with open(os.path.join(work, "main.py"), "w", encoding="utf-8") as file:
            file.write(source)
        with tempfile.TemporaryFile(dir=work) as out, tempfile.TemporaryFile(dir=work) as err:
            started = time.monotonic()
            try:
                code = await _execute(argv, work, out, err, timeout_s)
            except OSError as exc:
                return Outcome("error", f"could not start the sandbox: {exc}", "", "", 0.0)
            seconds = time.monotonic() - started
            stdout = _read_head(out, max_output_bytes)
            stderr = _read_tail(err, max_output_bytes)
        status, detail = _verdict(code, stderr, timeout_s, cpu_s)
        return Outcome(status, detail, stdout, stderr, seconds)
    finally:
        _remove_tree(work)


def namespaces_available() -> bool:
    """Whether this host lets the sandbox use Linux namespaces (probed once, ~20 ms)."""
    return bool(_unshare_argv())


async def _isolation(namespaces: bool | None) -> tuple[str, ...]:
    if namespaces is False:
        return ()
    argv = await asyncio.to_thread(_unshare_argv)
    if namespaces and not argv:
        raise ConfigError("sandbox: Linux namespaces are not available on this host (unshare)")
    return argv


@functools.cache
def _unshare_argv() -> tuple[str, ...]:
    """`unshare` and its flags when it can start our interpreter here, else ()."""
    path = shutil.which("unshare")
    if path is None:
        return ()
    argv = (path, *_UNSHARE_FLAGS)
    try:
        probe = subprocess.run(
            [*argv, sys.executable, "-c", "pass"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    return argv if probe.returncode == 0 else ()


async def _execute(
    argv: list[str], work: str, out: IO[bytes], err: IO[bytes], timeout_s: float
) -> int | None:
    """The program's exit status, or None when the wall-clock limit ended it."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=work,
        env=_environment(work),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        start_new_session=True,
    )
    code: int | None = None
    try:
        async with asyncio.timeout(timeout_s):
            code = await process.wait()
    except TimeoutError:
        pass
    finally:
        _kill_group(process.pid)  # after a timeout or a cancellation, and any leftovers
    if code is None:
        await process.wait()
    return code


def _environment(work: str) -> dict[str, str]:
    # The whole environment is ours, so `-E` (ignore PYTHON*) is not needed and a fixed
    # hash seed can be set: str hashes, hence set order, repeat across runs, which
    # comparing programs by their outputs' reprs relies on.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": work,
        "TMPDIR": work,
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUTF8": "1",
        "OMP_NUM_THREADS": "1",  # numerical libraries must not start threads: they are refused
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _verdict(code: int | None, stderr: str, timeout_s: float, cpu_s: float) -> tuple[Status, str]:
    if code is None:
        return "timeout", f"wall-clock limit of {timeout_s:g} s"
    if code == 0:
        return "passed", ""
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    if code in (126, 127):  # the shell could not run the interpreter (Python never exits so)
        return "error", f"could not start the interpreter: {last[:300]}"
    # Negative: the shell itself was killed; above 128: the shell saw a signal end the program.
    signum = -code if code < 0 else code - 128 if code > 128 else None
    if signum == signal.SIGXCPU:
        return "timeout", f"CPU-time limit of {max(1, math.ceil(cpu_s))} s"
    if signum is not None:
        return "failed", f"killed by {_signal_name(signum)}"
    return "failed", last[:300] or f"exit status {code}"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _read_head(file: IO[bytes], cap: int) -> str:
    file.seek(0)
    data = file.read(cap + 1)
    text = data[:cap].decode("utf-8", "replace")
    return text + "\n[output truncated]" if len(data) > cap else text


def _read_tail(file: IO[bytes], cap: int) -> str:
    size = file.seek(0, os.SEEK_END)
    file.seek(max(0, size - cap))
    text = file.read(cap).decode("utf-8", "replace")
    return "[output truncated]\n" + text if size > cap else text


def _remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path):
        return
    # The program took its own permissions away. (It runs as our user: whatever it might
    # race us into chmod-ing, it could have chmod-ed itself.)
    os.chmod(path, 0o700)
    for root, dirs, _files in os.walk(path):
        for name in dirs:
            inner = os.path.join(root, name)
            if not os.path.islink(inner):  # never chmod through a link the program planted
                os.chmod(inner, 0o700)
    shutil.rmtree(path, ignore_errors=True)


@functools.cache
def _bootstrap_source() -> str:
    body = textwrap.dedent(inspect.getsource(_sandboxed_main))
    return f"from __future__ import annotations\n{body}\n_sandboxed_main()\n"


def _sandboxed_main() -> None:  # pragma: no cover - runs only inside the sandbox
    """The sandbox's first code (its source goes to the child with `-c`): limits, then main.py.

    Never call it in the runner: it cripples the interpreter it runs in.
    """
    import _posixsubprocess
    import _socket
    import _thread
    import builtins
    import os
    import resource
    import socket
    import sys

    network_calls = ("create_connection", "create_server", "socketpair", "fromfd")
    lookups = ("getaddrinfo", "getnameinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr")
    process_calls = ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "pidfd_open")
    exits = ("execv", "execve", "_exit")  # exec replaces the program; _exit skips its end
    cpu_s, memory, file_size = (int(arg) for arg in sys.argv[1:4])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))  # SIGXCPU, a second later SIGKILL
    for limit, value in (
        (resource.RLIMIT_AS, memory),
        (resource.RLIMIT_FSIZE, file_size),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NPROC, 1),  # no processes or threads; root is exempt
    ):
        resource.setrlimit(limit, (value, value))

    def refuse(*_args: object, **_kwargs: object) -> NoReturn:
        raise PermissionError("not allowed in the sandbox")

    # Defence in depth, not a kernel guarantee: ctypes or a C extension gets past all this.
    class NoSocket(socket.socket):
        def __init__(self, *_args: object, **_kwargs: object) -> None:
            refuse()

    for module in (socket, _socket):
        for name in ("socket", "SocketType"):
            setattr(module, name, NoSocket)
        for name in network_calls + lookups:
            if hasattr(module, name):
                setattr(module, name, refuse)
    for name in process_calls + exits:
        setattr(os, name, refuse)
    _posixsubprocess.fork_exec = refuse
    for name in ("start_new_thread", "start_new", "start_joinable_thread"):
        if hasattr(_thread, name):
            setattr(_thread, name, refuse)

    # It has no children (they are refused), so the one process it may signal is itself.
    real_kill = os.kill

    def kill(pid: int, sig: int) -> None:
        if pid != os.getpid():
            refuse()
        real_kill(pid, sig)

    os.kill, os.killpg = kill, refuse

    sys.argv = ["main.py"]
    with open("main.py", encoding="utf-8") as file:
        program = compile(file.read(), "main.py", "exec")
    try:
        exec(program, {"__name__": "__main__", "__file__": "main.py", "__builtins__": builtins})
    except SystemExit as exc:  # a program that exits early has not run to its end
        raise SystemExit(f"SystemExit: the program exited before its end ({exc.code!r})") from None
