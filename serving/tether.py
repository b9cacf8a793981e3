"""`python -m agentfab.serving.tether PID -- COMMAND...`: run COMMAND, and end it with its
whole process group as soon as process PID (the one that started this) is gone.

A vLLM server started by a Ray actor runs under it: SIGKILL of the actor, or its node
going away, cannot run the actor's own clean-up, and a server left behind would keep
holding its GPU and port. Started in a session of its own (`VLLMServer` does), this is
the group's leader, so stopping the group stops it, the server and the server's workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

_POLL_S = 0.5
_GRACE_S = 15.0


def main(argv: Sequence[str]) -> int:
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print("usage: python -m agentfab.serving.tether PID -- COMMAND...", file=sys.stderr)
        return 2
    parent = int(argv[0])
    # A stop signal reaches the whole group, the server included: wait for it to end.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    child = subprocess.Popen(list(argv[2:]))
    while child.poll() is None:
        if os.getppid() != parent:  # the parent died: this was handed to init
            _end_group(child)
            break
        time.sleep(_POLL_S)
    return child.wait()


def _end_group(child: subprocess.Popen[bytes]) -> None:
    os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_S
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(0, signal.SIGKILL)  # this process too: nothing of the group outlives it


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
