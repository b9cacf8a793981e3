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

Isolation, the strongest this host offers (probed once; `Outcome.isolation`
says which a run got, `isolations_available` which exist):
- `bwrap` (bubblewrap, where installed and working): new user, pid, network,
  mount, IPC and UTS namespaces; the whole filesystem read-only but its own
  folder and a private /dev (a small tmpfs, gone with it) and /proc; it runs
  as uid 65534 with no capabilities.
- `namespaces` (util-linux `unshare`): the same namespaces; every mount is
  remounted read-only but its own folder, then every capability is dropped
  (it runs as uid 0 of its user namespace with an empty bounding set, so it
  cannot remount anything writable).
- `none`: the limits above and the in-process patches below only.
With either namespace kind, also by the kernel: no network (a new network
namespace has only a loopback), its own pid namespace (it cannot see or signal
any process outside, and every process it starts dies with it), no file
written outside its folder, and it cannot raise its limits.

Where RLIMIT_NPROC applies (the runner is not root; root is exempt), by the
kernel: it can start neither processes nor threads.

"passed" is proved, not inferred from the exit status. The runner makes a
random nonce per run and sends it through a socket whose other end it closes;
the harness in the child reads it only after the program's last statement
returned, and writes it to a pipe. The run passes only when the interpreter
then exits 0 and the pipe holds exactly that nonce. Before its end the program
never has the nonce in memory, so exiting early by any route (sys.exit,
os/posix._exit, exec, abort, a signal to itself, SystemExit raised in a test),
printing a fake proof, or rebinding the names the harness uses (it bound its
own before the program ran) all fail it. A program that goes looking for the
nonce finds these refused, by an audit hook (it cannot be removed) and by
patches of `os`, `posix`, `fcntl`, `_imp` and `_signal`:
- opening, reading, duplicating or splicing the nonce's socket (`os.read` is
  rebuilt on the audited `FileIO`; `dup`, `dup2` and `fcntl` refuse that
  socket; `readv`, `pread`, `preadv`, `sendfile`, `splice`,
  `copy_file_range` and `login_tty` are refused; a socket cannot be re-opened
  through /proc);
- a second copy of a module the harness patched (`_imp.create_builtin` and
  `create_dynamic` refuse names that were loaded when the program started);
- reaching the audit hook's frame, where the originals live: `sys._getframe`,
  `tb_frame`, `gi_frame`, `cr_frame` and `ag_frame` are refused when the
  frame's stack holds the hook, and the hook runs none of the program's code;
  signal handlers get no frame and wait while the sandbox's own functions run;
  `sys.settrace`, `sys.setprofile`, `sys._current_frames`,
  `gc.get_objects`/`get_referrers`/`get_referents`, new audit hooks and
  setting a function's `__code__` or `__defaults__` are refused;
- the harness's own read: only the harness's frame may open the socket.
Also refused (defence in depth): sockets, process and thread starts, `exec*`,
`os.kill` and `os.killpg` aimed at any process but itself.

Not guaranteed:
- Native code gets past everything in-process: ctypes, a C extension (the
  interpreter's own test modules included), crafted bytecode (marshal). Such a
  program can read the nonce and forge a pass; only the kernel limits and the
  isolation hold against it. Nor is the guard proof against pure Python
  written to defeat it: an extension module's initialisation runs outside the
  hook (it may import modules that look at frames), so a module the program
  planted for it to import can reach the original `_imp` functions there.
- What a test checks is the test's business: a program can still fool the
  test itself (rebinding a builtin the test calls, returning an object equal to
  everything). "passed" means the test program ran to its end.
- Files outside its folder without namespaces: it runs as the runner's user
  and can write wherever that user can; RLIMIT_FSIZE caps each file's size,
  not their number. Run benchmarks as a dedicated user or in a container then.
- Without namespaces, network isolation is the in-process patch only, and a
  process that calls setsid() through ctypes outlives the run. If the runner
  is also root, the program is root: through ctypes it can raise its own
  limits, fork without bound until the wall-clock limit, and signal any
  process on the machine. The limits then stop accidents, not attacks.
- Memory summed over processes: RLIMIT_AS is per process.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import inspect
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import IO, Any, Literal, NoReturn

from agentfab.errors import ConfigError

__all__ = [
    "Isolation",
    "Outcome",
    "Status",
    "isolations_available",
    "run_python",
    "run_python_async",
]

Status = Literal["passed", "failed", "timeout", "error"]
Isolation = Literal["bwrap", "namespaces", "none"]
_STRONGEST_FIRST: tuple[Isolation, ...] = ("bwrap", "namespaces")

# A shell between the runner and the program (exec'ing nothing, so it stays): the program's
# parent to kill instead of the runner, and it reports a signal that ended the program as
# exit status 128 + n.
_SHELL = ("/bin/sh", "-c", '"$@"; exit $?', "sandbox")
# Inside `unshare`: its folder stays writable, every other mount becomes read-only (fstab
# lists them), its cwd moves onto the new mount, then `setpriv` drops every capability so
# that nothing can be remounted.
_REMOUNT = (
    'w=$1 root=$2 table=$3; shift 3; mount --bind "$w" "$w" && '
    'mount -o "remount,bind,ro$root" / && mount -a -T "$table" && cd "$w" || exit 125; exec "$@"'
)
_DROP_CAPABILITIES = ("--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--")
_NONCE_BYTES = 16


@dataclass(frozen=True)
class Outcome:
    """How one sandboxed run ended."""

    status: Status
    """`passed`: the program ran to its end, as the harness proved after its last statement.
    `failed`: it raised, exited early (sys.exit counts), was killed by a signal, or hit the
    memory or file-size limit. `timeout`: it hit the wall-clock or CPU-time limit. `error`:
    the sandbox itself could not run it."""
    detail: str
    """One line: the exception, signal or limit that ended it; empty when it passed."""
    stdout: str
    """Its standard output, at most `max_output_bytes` from the start."""
    stderr: str
    """Its standard error, at most `max_output_bytes` from the end (where tracebacks are)."""
    seconds: float
    """Wall-clock time of the run."""
    isolation: Isolation = "none"
    """Which isolation the run had (see the module docstring)."""

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
    isolation: Isolation | None = None,
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
            isolation=isolation,
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
    isolation: Isolation | None = None,
) -> Outcome:
    """Run `source` as a program in a sandbox (see the module docstring for what holds).

    `isolation`: None takes the strongest this host offers; a kind insists on it and raises
    ConfigError where it is unavailable. Safe to run many at once; cancelling kills it.
    """
    kind = await _choose(isolation)
    limits = (str(max(1, math.ceil(cpu_s))), str(memory_mb << 20), str(file_mb << 20))
    work = tempfile.mkdtemp(prefix="agentfab-sandbox-")
    try:
        with open(os.path.join(work, "main.py"), "w", encoding="utf-8") as file:
            file.write(source)
        with _Channels() as channels, tempfile.TemporaryFile(dir=work) as out, \
                tempfile.TemporaryFile(dir=work) as err:  # fmt: skip
            python = [sys.executable, "-s", "-P", "-c", _bootstrap_source()]
            argv = [*_wrap(kind, work), *_SHELL, *python, *limits, *channels.child_args()]
            started = time.monotonic()
            try:
                code = await _execute(argv, work, out, err, timeout_s, channels)
            except OSError as exc:
                return Outcome("error", f"could not start the sandbox: {exc}", "", "", 0.0, kind)
            seconds = time.monotonic() - started
            proved = channels.proved()
            stdout = _read_head(out, max_output_bytes)
            stderr = _read_tail(err, max_output_bytes)
        status, detail = _verdict(code, proved, stderr, timeout_s, cpu_s)
        return Outcome(status, detail, stdout, stderr, seconds, kind)
    finally:
        _remove_tree(work)


def isolations_available() -> tuple[Isolation, ...]:
    """The isolations this host offers, strongest first (probed once, ~50 ms each)."""
    return (*(kind for kind in _STRONGEST_FIRST if _works(kind)), "none")


async def _choose(isolation: Isolation | None) -> Isolation:
    if isolation == "none":
        return "none"
    available = await asyncio.to_thread(isolations_available)
    if isolation is None:
        return available[0]
    if isolation not in available:
        raise ConfigError(f"sandbox: isolation {isolation!r} is not available on this host")
    return isolation


class _Channels:
    """The nonce the harness must echo (sent through a socket) and the pipe it echoes to."""

    def __init__(self) -> None:
        self.nonce = secrets.token_hex(_NONCE_BYTES).encode()
        ours, self._secret = socket.socketpair()
        with ours:  # closed at once: the child reads the nonce, then end of file
            ours.sendall(self.nonce)
        self._proof_read, self._proof_write = os.pipe()

    def child_args(self) -> tuple[str, str]:
        return str(self._secret.fileno()), str(self._proof_write)

    def child_fds(self) -> tuple[int, int]:
        return self._secret.fileno(), self._proof_write

    def started(self) -> None:
        """Our copies of the child's ends are closed, so the proof pipe ends when it does."""
        self._secret.close()
        if self._proof_write >= 0:  # once: the number may belong to another run's file next
            os.close(self._proof_write)
            self._proof_write = -1

    def proved(self) -> bool:
        os.set_blocking(self._proof_read, False)
        try:
            echoed = os.read(self._proof_read, len(self.nonce) + 1)
        except BlockingIOError:  # a leftover still holds the pipe open, and wrote nothing
            return False
        return echoed == self.nonce

    def __enter__(self) -> _Channels:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.started()
        os.close(self._proof_read)


async def _execute(
    argv: list[str], work: str, out: IO[bytes], err: IO[bytes], timeout_s: float,
    channels: _Channels,
) -> int | None:  # fmt: skip
    """The program's exit status, or None when the wall-clock limit ended it."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=work,
        env=_environment(work),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        start_new_session=True,
        pass_fds=channels.child_fds(),
    )
    channels.started()
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


def _wrap(kind: Isolation, work: str) -> tuple[str, ...]:
    """The command that puts a run in `kind` of isolation, its folder writable."""
    if kind == "bwrap":
        return (*_bwrap(), "--bind", work, work, "--chdir", work, "--")
    if kind == "namespaces":
        root_flags, table = _read_only_mounts()
        setup = (*_unshare(), "/bin/sh", "-c", _REMOUNT, "sandbox-setup", work, root_flags)
        return (*setup, table, _setpriv(), *_DROP_CAPABILITIES)
    return ()


@functools.cache
def _bwrap() -> tuple[str, ...]:
    path = shutil.which("bwrap")
    if path is None:
        return ()
    return (
        path,
        *("--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534"),
        *("--die-with-parent", "--new-session"),
        *("--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"),
    )


@functools.cache
def _unshare() -> tuple[str, ...]:
    path = shutil.which("unshare")
    if path is None:
        return ()
    flags = ("--user", "--map-root-user", "--mount", "--net", "--pid", "--fork")
    return (path, *flags, "--kill-child", "--mount-proc")


@functools.cache
def _setpriv() -> str:
    return shutil.which("setpriv") or "setpriv"


@functools.cache
def _read_only_mounts() -> tuple[str, str]:
    """The root mount's flags, and an fstab remounting every other writable mount read-only.

    Written once per runner (mount points rarely change): a file outside any run's folder.
    """
    root = ""
    lines: dict[str, str] = {}
    with open("/proc/self/mountinfo", encoding="utf-8") as file:
        for line in file:
            fields = line.split()
            point, flags = fields[4], fields[5].split(",")
            # Remounting must repeat the flags a less privileged namespace cannot drop.
            kept = "".join(f",{flag}" for flag in flags if flag not in ("rw", "ro"))
            if point == "/":
                root = kept
            elif "ro" not in flags:
                lines.setdefault(point, f"none {point} none remount,bind,ro{kept} 0 0\n")
    folder = tempfile.mkdtemp(prefix="agentfab-sandbox-mounts-")
    atexit.register(shutil.rmtree, folder, True)
    table = os.path.join(folder, "fstab")
    with open(table, "w", encoding="utf-8") as file:
        file.writelines(lines.values())
    os.chmod(folder, 0o755)
    return root, table


@functools.cache
def _works(kind: Isolation) -> bool:
    """Whether `kind` of isolation starts our interpreter here (one run of `python -c pass`)."""
    if not (_bwrap() if kind == "bwrap" else _unshare()):
        return False
    work = tempfile.mkdtemp(prefix="agentfab-sandbox-probe-")
    try:
        probe = subprocess.run(
            [*_wrap(kind, work), sys.executable, "-c", "pass"],
            cwd=work,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        _remove_tree(work)
    return probe.returncode == 0


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


def _verdict(
    code: int | None, proved: bool, stderr: str, timeout_s: float, cpu_s: float
) -> tuple[Status, str]:
    if code is None:
        return "timeout", f"wall-clock limit of {timeout_s:g} s"
    if code == 0:
        return ("passed", "") if proved else ("failed", "it ended before its end (no proof)")
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


# ---- What runs in the child. Its source goes to the interpreter with `-c`; never call any
# of it in the runner: it cripples the interpreter it runs in.


@functools.cache
def _bootstrap_source() -> str:
    parts = (_relay, _routed, _read, _refuse, _guard, _sandboxed_main)
    body = "\n\n".join(textwrap.dedent(inspect.getsource(part)) for part in parts)
    return f"from __future__ import annotations\n{body}\n_sandboxed_main()\n"


def _relay(
    state: tuple[Callable[[int, None], object], dict[str, Any], FrameType, Any, Any],
    signum: int,
    frame: FrameType | None,
) -> None:  # pragma: no cover - runs only inside the sandbox
    """A program's signal handler, bound to its state: no frame, never inside the guard.

    Uses only its arguments (no global or builtin it could rebind) and no audited lookup.
    While one of the sandbox's own functions (they share `boot`, the bootstrap's globals)
    is on the stack, apart from the harness and the bootstrap's module, the signal is
    tripped again (`interrupt_main`) instead of handled, to be handled once they returned.
    The trip is the last thing done, inside a `for` (whose step, unlike a call, handles no
    signal): tripped by a call, it would be handled at once, right here.
    """
    handler, boot, harness, interrupt, map_ = state
    while frame is not None:
        if frame.f_globals is boot and frame is not harness and frame.f_back is not None:
            for _tripped in map_(interrupt, (signum,)):
                return
        frame = frame.f_back
    handler(signum, None)


def _routed(name: str, audit: Callable[..., None]) -> Callable[..., Any]:  # pragma: no cover
    """A stand-in that asks the guard's hook to call the original (held only by the hook)."""

    def call(*args: object) -> Any:
        box: list[Any] = []
        audit("agentfab.call", name, args, box)
        return box[0]

    return call


def _read(fd: int, n: int) -> bytes | None:  # pragma: no cover - runs only inside the sandbox
    """`os.read` through `FileIO`, whose opening the guard audits."""
    import _io

    with _io.FileIO(fd, "rb", closefd=False) as file:
        return file.read(n)


def _refuse(*_args: object, **_kwargs: object) -> NoReturn:  # pragma: no cover
    raise PermissionError("not allowed in the sandbox")


def _guard(secret: int, harness: FrameType) -> None:  # pragma: no cover - in the sandbox
    """Install the audit hook that keeps the nonce's socket from everyone but `harness`.

    The originals of what it patches live only in the hook's closure. The hook looks up
    no global or builtin (the program could rebind them) and touches only objects of exact
    built-in types, so none of the program's code ever runs while its frame is on the stack.
    """
    import _imp
    import _signal
    import _thread
    import fcntl
    import os
    import posix
    import sys
    import types

    key = (os.fstat(secret).st_dev, os.fstat(secret).st_ino)
    original = {
        "dup": os.dup,
        "dup2": os.dup2,
        "fcntl": fcntl.fcntl,
        "signal": _signal.signal,
        "create_builtin": _imp.create_builtin,
        "create_dynamic": _imp.create_dynamic,
    }
    # functools.wraps kept the original in signal.signal (imported later, it keeps ours).
    if "signal" in sys.modules:
        vars(sys.modules["signal"].signal).pop("__wrapped__", None)
    loaded = frozenset(sys.modules)
    refused = frozenset(
        (
            "sys.settrace",
            "sys.setprofile",
            "sys._current_frames",
            "sys._current_exceptions",
            "sys.addaudithook",
            "gc.get_objects",
            "gc.get_referrers",
            "gc.get_referents",
            "socket.__new__",
            "os.fork",
            "os.forkpty",
            "os.exec",
            "os.posix_spawn",
            "os.spawn",
            "os.system",
            "os.killpg",
            "subprocess.Popen",
        )
    )
    fd_calls = frozenset(("dup", "dup2", "fcntl"))
    creations = frozenset(("create_builtin", "create_dynamic"))
    functions = frozenset(("__code__", "__defaults__", "__kwdefaults__"))
    fstat, getframe, getpid, get, len_ = os.fstat, sys._getframe, os.getpid, getattr, len
    frame_type, method_type = types.FrameType, types.MethodType
    traceback_type, generator_type = types.TracebackType, types.GeneratorType
    coroutine_type, async_generator_type = types.CoroutineType, types.AsyncGeneratorType
    str_, int_, bytes_, tuple_, list_, type_ = str, int, bytes, tuple, list, type
    error, denied, relay, map_ = OSError, PermissionError, _relay, map
    depth = [0]  # above 0 while the hook looks at frames: those lookups raise events too
    codes: list[frozenset[object]] = []

    def plain(value: object) -> bool:
        kind = type_(value)
        return kind is int_ or kind is str_ or kind is bytes_ or value is None

    def is_secret(fd: Any) -> bool:
        if type_(fd) is not int_:
            return True  # refused: a file object's fileno() would run the program's code
        try:
            stat = fstat(fd)
        except error:
            return False
        return (stat.st_dev, stat.st_ino) == key

    def holds_frame(value: object, name: object) -> bool:
        kind = type_(value)
        return type_(name) is str_ and (
            (kind is traceback_type and name == "tb_frame")
            or (kind is generator_type and name == "gi_frame")
            or (kind is coroutine_type and name == "cr_frame")
            or (kind is async_generator_type and name == "ag_frame")
        )

    def is_relay(handler: object) -> bool:
        if type_(handler) is not method_type:
            return False
        state = get(handler, "__self__")
        return (
            get(handler, "__func__") is relay
            and type_(state) is tuple_
            and state[1] is boot
            and state[2] is harness
            and state[3] is interrupt_main
            and state[4] is map_
        )

    def routed(args: tuple[Any, ...]) -> tuple[list[Any], Any, tuple[Any, ...]] | None:
        name, call_args, box = args
        if type_(name) is not str_ or type_(call_args) is not tuple_ or type_(box) is not list_:
            raise denied("not allowed in the sandbox")
        if (
            name == "signal"
            and len_(call_args) == 2
            and type_(call_args[0]) is int_
            and (type_(call_args[1]) is int_ or is_relay(call_args[1]))
        ):
            return box, original[name], call_args
        for arg in call_args:
            if not plain(arg):
                raise denied("not allowed in the sandbox")
        if name in fd_calls and len_(call_args) and not is_secret(call_args[0]):
            return box, original[name], call_args
        # A second copy of a module loaded before the program would come without our patches.
        if name in creations and len_(call_args) == 2 and call_args[0] not in loaded:
            box.append(original[name])
            return None
        raise denied("not allowed in the sandbox")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if type_(event) is not str_ or type_(args) is not tuple_ or depth[0]:
            return
        depth[0] += 1
        try:
            call = None
            frame: Any = None
            if event in refused:
                raise denied("not allowed in the sandbox")
            if event == "sys._getframe" and len_(args) == 1:
                frame = args[0]
            elif event == "object.__getattr__" and len_(args) == 2:
                if holds_frame(args[0], args[1]):
                    frame = get(args[0], args[1])
            elif event == "object.__setattr__" and len_(args) == 3:
                if type_(args[1]) is str_ and args[1] in functions:
                    raise denied("not allowed in the sandbox")
            elif event == "os.kill" and len_(args) == 2:
                if type_(args[0]) is not int_ or args[0] != getpid():
                    raise denied("not allowed in the sandbox")
            elif event == "open" and len_(args) == 3 and type_(args[0]) is int_:
                if is_secret(args[0]) and getframe(1) is not harness:
                    raise denied("not allowed in the sandbox")
            elif event == "agentfab.call" and len_(args) == 3:
                call = routed(args)
            while type_(frame) is frame_type:  # no frame whose stack holds this hook
                if frame.f_code in codes[0]:
                    raise denied("not allowed in the sandbox")
                frame = frame.f_back
        finally:
            depth[0] -= 1
        if call is not None:  # outside the depth guard: what it runs is audited in full
            box, function, call_args = call
            box.append(function(*call_args))

    def creation(name: str) -> Callable[..., Any]:
        def create(spec: Any, *_rest: object) -> Any:
            # The original runs here, not in the hook: an extension's initialisation may
            # import modules that look at frames (namedtuple does), which the hook refuses.
            module, origin = spec.name, getattr(spec, "origin", None)
            box: list[Any] = []
            audit("agentfab.call", name, (module, origin), box)
            return box[0](types.SimpleNamespace(name=module, origin=origin))

        return create

    audit = sys.audit
    helpers = (hook, routed, plain, is_secret, holds_frame, is_relay)
    codes.append(frozenset(helper.__code__ for helper in helpers))
    boot, interrupt_main = relay.__globals__, _thread.interrupt_main
    sys.addaudithook(hook)

    def install(signum: object, handler: object) -> Any:
        if callable(handler):
            handler = types.MethodType(_relay, (handler, boot, harness, interrupt_main, map))
        return _routed("signal", audit)(signum, handler)

    stand_ins: dict[str, Callable[..., Any]] = {"read": _read, "login_tty": _refuse}
    stand_ins |= {"dup": _routed("dup", audit), "dup2": _routed("dup2", audit)}
    for name in ("readv", "pread", "preadv", "sendfile", "splice", "copy_file_range"):
        stand_ins[name] = _refuse
    for module in (os, posix):
        for name, stand_in in stand_ins.items():
            setattr(module, name, stand_in)
    fcntl.fcntl = _routed("fcntl", audit)
    _signal.signal = install
    _imp.create_builtin = creation("create_builtin")
    _imp.create_dynamic = creation("create_dynamic")


def _sandboxed_main() -> None:  # pragma: no cover - runs only inside the sandbox
    """The sandbox's first code: limits, patches, the guard, then main.py, then the proof."""
    import _io
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
    execs = ("execv", "execve")
    cpu_s, memory, file_size, secret, proof = (int(arg) for arg in sys.argv[1:6])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))  # SIGXCPU, a second later SIGKILL
    for limit, value in (
        (resource.RLIMIT_AS, memory),
        (resource.RLIMIT_FSIZE, file_size),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NPROC, 1),  # no processes or threads; root is exempt
    ):
        resource.setrlimit(limit, (value, value))
    for fd in (secret, proof):
        os.set_inheritable(fd, False)  # a program that replaced itself has neither

    # Defence in depth, not a kernel guarantee: ctypes or a C extension gets past all this.
    class NoSocket(socket.socket):
        def __init__(self, *_args: object, **_kwargs: object) -> None:
            _refuse()

    for module in (socket, _socket):
        for name in ("socket", "SocketType"):
            setattr(module, name, NoSocket)
        for name in network_calls + lookups:
            if hasattr(module, name):
                setattr(module, name, _refuse)
    for name in process_calls + execs:
        setattr(os, name, _refuse)
    _posixsubprocess.fork_exec = _refuse
    for name in ("start_new_thread", "start_new", "start_joinable_thread"):
        if hasattr(_thread, name):
            setattr(_thread, name, _refuse)

    sys.argv = ["main.py"]
    with open("main.py", encoding="utf-8") as file:
        program = compile(file.read(), "main.py", "exec", dont_inherit=True, optimize=0)
    namespace = {"__name__": "__main__", "__file__": "main.py", "__builtins__": builtins}
    # What the proof needs is bound now: the program may rebind any name it could look up.
    file_io, write, run = _io.FileIO, os.write, exec
    _guard(secret, sys._getframe())
    try:
        run(program, namespace)
    except SystemExit as exc:  # a program that exits early has not run to its end
        raise SystemExit(f"SystemExit: the program exited before its end ({exc.code!r})") from None
    # Reached only when the program's last statement returned.
    with file_io(secret, "rb") as channel:
        write(proof, channel.read(64))
