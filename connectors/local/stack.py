"""Start, stop and report the local stack, each part waiting until it is really ready."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from connectors import kafka
from connectors.clickhouse import ClickHouseTarget
from connectors.local.kafka_broker import KafkaBroker
from connectors.local.process import ManagedProcess, free_ports

Report = Callable[[str], None]
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class PartStatus:
    name: str
    pid: int | None
    ready: bool
    address: str
    log: Path


@dataclass(frozen=True)
class Part:
    process: ManagedProcess
    is_ready: Callable[[], bool]
    address: str
    prepare: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class LocalStack:
    state_dir: Path
    kafka_port: int
    kafka_controller_port: int
    kafka_partitions: int
    clickhouse_port: int
    clickhouse_user: str
    clickhouse_password: str
    topics: tuple[str, ...]

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def clickhouse(self) -> ClickHouseTarget:
        return ClickHouseTarget(
            f"http://127.0.0.1:{self.clickhouse_port}", self.clickhouse_user, self.clickhouse_password
        )

    def _kafka(self) -> KafkaBroker:
        return KafkaBroker(self.state_dir, self.kafka_port, self.kafka_controller_port, self.kafka_partitions)

    def _clickhouse(self) -> ManagedProcess:
        return clickhouse_process(
            self.state_dir / "clickhouse", self.clickhouse_port, self.clickhouse_user, self.clickhouse_password
        )

    def _parts(self) -> Iterable[Part]:
        broker = self._kafka()
        yield Part(
            broker.process, lambda: kafka.is_reachable(self.bootstrap_servers), self.bootstrap_servers, broker.prepare
        )
        yield Part(self._clickhouse(), self.clickhouse.is_reachable, self.clickhouse.url)

    def part(self, name: str) -> ManagedProcess:
        """One part's process, by name ("kafka" or "clickhouse"), e.g. to stop and restart it."""
        return next(part.process for part in self._parts() if part.process.name == name)

    def up(self, *, fresh: bool, report: Report) -> None:
        if fresh:
            self.down(report=report)
            shutil.rmtree(self.state_dir, ignore_errors=True)
            report(f"wiped {self.state_dir}")
        for part in self._parts():
            if part.process.pid() is None:
                report(f"starting {part.process.name} on {part.address} (log: {part.process.log_file})")
                part.prepare()
                part.process.start()
            part.process.wait_ready(part.is_ready, READY_TIMEOUT_S, report)
            report(f"{part.process.name} ready on {part.address}")
        created = kafka.ensure_topics(self.bootstrap_servers, self.topics, self.kafka_partitions)
        report(f"created topics: {', '.join(created)}" if created else f"all {len(self.topics)} topics exist")

    def down(self, *, report: Report) -> None:
        for process in (self._clickhouse(), self._kafka().process):
            report(f"stopped {process.name}" if process.stop() else f"{process.name} was not running")

    def status(self) -> list[PartStatus]:
        statuses = []
        for part in self._parts():
            pid = part.process.pid()
            ready = pid is not None and part.is_ready()
            statuses.append(PartStatus(part.process.name, pid, ready, part.address, part.process.log_file))
        return statuses


def clickhouse_process(run_dir: Path, port: int, user: str, password: str) -> ManagedProcess:
    """The embedded ClickHouse HTTP server (connectors/chdb_server.py), its data in run_dir/data."""
    command = [
        sys.executable, "-m", "connectors.chdb_server",
        "--data-dir", str(run_dir / "data"), "--port", str(port), "--user", user, "--password", password,
    ]  # fmt: skip
    return ManagedProcess("clickhouse", command, run_dir)


@contextmanager
def embedded_clickhouse(
    run_dir: Path, password: str, ready_within_s: float, report: Report, database: str = "default"
) -> Iterator[ClickHouseTarget]:
    """A fresh embedded ClickHouse server of its own, on a free port, for as long as the block runs."""
    [port] = free_ports(1)
    server = clickhouse_process(run_dir, port, "default", password)
    server.start()
    target = ClickHouseTarget(f"http://127.0.0.1:{port}", password=password, database=database)
    try:
        server.wait_ready(target.is_reachable, ready_within_s, report)
        yield target
    finally:
        server.stop()
