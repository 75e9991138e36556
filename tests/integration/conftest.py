"""Fixtures that start real processes: the embedded ClickHouse server, and the whole local stack."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.clickhouse import ClickHouseTarget
from connectors.local.process import ManagedProcess
from tests.support import free_port

PASSWORD = "conformance-secret"


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseTarget]:
    """The embedded ClickHouse HTTP server as its own process, as `orderscope stack up` runs it."""
    run_dir: Path = tmp_path_factory.mktemp("clickhouse")
    port = free_port()
    server = ManagedProcess(
        "clickhouse",
        [sys.executable, "-m", "connectors.chdb_server", "--data-dir", str(run_dir / "data"), "--port", str(port),
         "--password", PASSWORD],
        run_dir,
    )  # fmt: skip
    server.start()
    target = ClickHouseTarget(f"http://127.0.0.1:{port}", password=PASSWORD)
    try:
        server.wait_ready(target.is_reachable, 60, print)
        yield target
    finally:
        server.stop()
