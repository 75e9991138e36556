"""A local daemon counts as running only while it really runs: a killed daemon that no one has
reaped yet (its starter exited, and a container's init may reap late or never) is dead."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from connectors.local.process import is_zombie


def test_a_killed_process_not_yet_reaped_is_a_zombie_and_a_running_one_is_not() -> None:
    child = subprocess.Popen(["sleep", "300"])
    try:
        assert not is_zombie(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not is_zombie(child.pid):  # dying takes a moment; we do not reap it, so it stays a zombie
            assert time.monotonic() < deadline, "a killed, unreaped process never showed as a zombie"
            time.sleep(0.01)
    finally:
        child.wait()
    assert not is_zombie(os.getpid())
