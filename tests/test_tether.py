"""`agentfab.serving.tether`: the command ends, with its whole process group, when the
process that started the tether is gone, even killed; otherwise it runs to its end."""

from __future__ import annotations

import os
import subprocess
import sys
import time

TETHER = [sys.executable, "-m", "agentfab.serving.tether"]


def group_alive(pgid: int) -> list[str]:
    return subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()


def test_the_command_runs_to_its_end_and_its_exit_status_is_kept() -> None:
    done = subprocess.run(
        [*TETHER, str(os.getpid()), "--", sys.executable, "-c", "print('hi'); raise SystemExit(3)"],
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (3, "hi\n")


def test_when_its_starter_is_killed_the_command_and_its_children_end() -> None:
    # A starter that tethers `sh` (which starts a child of its own), then dies by SIGKILL.
    starter = (
        "import os, signal, subprocess, sys\n"
        f"p = subprocess.Popen({TETHER!r} + [str(os.getpid()), '--', 'sh', '-c', 'sleep 300 & sleep 300'], start_new_session=True)\n"
        "print(p.pid, flush=True)\n"
        "import time; time.sleep(1.0)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", starter], capture_output=True, text=True, timeout=60
    )
    group = int(done.stdout.split()[0])
    deadline = time.monotonic() + 30
    while group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not group_alive(group), "the tethered command outlived its starter"


def test_a_bad_command_line_is_one_line_of_usage() -> None:
    done = subprocess.run([*TETHER, "x"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("usage:")
