"""A local daemon that the project starts, finds again by its pid file, and stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class StartupError(RuntimeError):
    """A part of the local stack did not become ready; the message says why and where to look."""


@dataclass(frozen=True)
class ManagedProcess:
    name: str
    command: Sequence[str]
    run_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of the running daemon, or None when it is not running."""
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                list(self.command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the command that started it, like `compose up -d`
                env={**os.environ, **self.env},
            )
        self.pid_file.write_text(str(process.pid))
        return process.pid

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop gracefully, then forcibly after timeout_s; returns whether it was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def wait_ready(self, is_ready: Callable[[], bool], timeout_s: float, report: Callable[[str], None]) -> None:
        deadline = time.monotonic() + timeout_s
        next_report = time.monotonic() + 5
        while not is_ready():
            if self.pid() is None:
                raise StartupError(f"{self.name} exited during start-up.\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise StartupError(f"{self.name} was not ready after {timeout_s:.0f} s.\n{self.log_tail()}")
            if time.monotonic() > next_report:
                report(f"  still waiting for {self.name} ...")
                next_report += 5
            time.sleep(0.2)

    def log_tail(self, lines: int = 15) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            return f"(no log at {self.log_file})"
        return f"Last lines of {self.log_file}:\n" + "\n".join(tail)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not is_zombie(pid)


def is_zombie(pid: int) -> bool:
    """A daemon killed after its starter exited waits for a reaper that a container's init may never be:
    signals still reach it, yet it is dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()  # the name may hold any bytes; the state follows its ")"
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open together while chosen, so none repeats)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()
