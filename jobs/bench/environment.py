"""Where the bench runs, and how it runs the project's commands: as a user would, as subprocesses.

The bench has its own state dir and ports, so a developer's `make run` stack is
never touched, and every command it runs gets the same ORDERSCOPE_* variables.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from jobs.settings import ENV_PREFIX, PROJECT_ROOT, Settings

STATE_DIR = PROJECT_ROOT / ".state" / "bench"
# Simulated traffic is kept across runs (simulating 130,000 orders takes minutes); `stack up --fresh` wipes STATE_DIR.
TRAFFIC_DIR = PROJECT_ROOT / ".state" / "bench-traffic"
KAFKA_PORT, KAFKA_CONTROLLER_PORT, CLICKHOUSE_PORT = 29092, 29093, 28123
FLINK_REST_PORT, FLINK_RPC_PORT = 28081, 26123  # and the next ones: a cluster of one TaskManager, then of two
JOB_GROUP = "orderscope-bench-job"
BASELINE_GROUP = "orderscope-baseline"
BASELINE_DATABASE = "orderscope_baseline"

# Variables the bench decides; a developer's own values for them must not send the bench elsewhere.
_DECIDED_BY_THE_BENCH = (
    "STATE_DIR", "KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_PORT",
    "CLICKHOUSE_URL", "CLICKHOUSE_DATABASE", "CHECKPOINT_DIR", "CHECKPOINT_INTERVAL_MS", "CONSUMER_GROUP",
)  # fmt: skip


class CommandError(RuntimeError):
    """An orderscope command the bench ran exited with an error; the message holds its output's tail."""


@dataclass(frozen=True)
class BenchEnvironment:
    """The ORDERSCOPE_* variables of one bench run; the rest of the environment is inherited."""

    variables: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, checkpoint_interval_ms: int) -> BenchEnvironment:
        inherited = {
            name: value
            for name, value in os.environ.items()
            if name.startswith(ENV_PREFIX) and name.removeprefix(ENV_PREFIX) not in _DECIDED_BY_THE_BENCH
        }
        decided = {
            "STATE_DIR": str(STATE_DIR),
            "KAFKA_PORT": str(KAFKA_PORT),
            "KAFKA_CONTROLLER_PORT": str(KAFKA_CONTROLLER_PORT),
            "CLICKHOUSE_PORT": str(CLICKHOUSE_PORT),
            "CHECKPOINT_INTERVAL_MS": str(checkpoint_interval_ms),
            "CONSUMER_GROUP": JOB_GROUP,
        }
        return cls({**inherited, **{ENV_PREFIX + name: value for name, value in decided.items()}})

    def but(self, **settings: str | int) -> BenchEnvironment:
        """The same environment with some settings changed, by field name: but(consumer_group="x")."""
        changed = {ENV_PREFIX + name.upper(): str(value) for name, value in settings.items()}
        return BenchEnvironment({**self.variables, **changed})

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.variables)

    def process_env(self) -> dict[str, str]:
        outside = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
        return {**outside, **self.variables}

    def run(self, *args: str, timeout_s: float = 600) -> str:
        """Run `orderscope ARGS` to its end; returns its output, raises CommandError on an error."""
        result = subprocess.run(
            _orderscope(*args),
            env=self.process_env(),
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        output = result.stdout + result.stderr
        if result.returncode != 0:
            tail = "\n".join(output.splitlines()[-15:])
            raise CommandError(f"`orderscope {' '.join(args)}` exited with {result.returncode}:\n{tail}")
        return output

    def supports(self, *args: str) -> bool:
        """Whether `orderscope ARGS --help` works: commands other engineers are still adding may not exist yet."""
        try:
            self.run(*args, "--help", timeout_s=60)
        except CommandError:
            return False
        return True

    def start(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        """Start `orderscope ARGS` in its own process group (stopped by stop()), output to log."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as output:
            return subprocess.Popen(
                _orderscope(*args),
                env=self.process_env(),
                cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its JVM too gets the SIGINT that stop() sends to the group
            )


def stop(process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Interrupt a process started by BenchEnvironment.start as Ctrl-C would; kill its group if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def ports_in_use() -> list[int]:
    """The bench's ports that something else already listens on (a bench left running, say)."""
    busy = []
    flink = (FLINK_REST_PORT, FLINK_REST_PORT + 1, FLINK_RPC_PORT, FLINK_RPC_PORT + 1)
    for port in (KAFKA_PORT, KAFKA_CONTROLLER_PORT, CLICKHOUSE_PORT, *flink):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    return busy


def _orderscope(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", *args]
