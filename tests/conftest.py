"""Fixtures of every test: Hypothesis for busy machines, a pseudonymizer, and real processes (the embedded
ClickHouse server, the whole local stack) for the integration and chaos tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from connectors.clickhouse import ClickHouseTarget, migrate
from connectors.local.stack import embedded_clickhouse
from jobs.cli import SQL_DIR, clickhouse, local_stack
from jobs.settings import Settings, isolated_env
from schemas.privacy import Pseudonymizer

# The suite runs on busy two-core machines: no property test may fail for being slow.
hypothesis_settings.register_profile("busy-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("busy-machine")


@pytest.fixture
def ids() -> Pseudonymizer:
    return Pseudonymizer("test-key")


# --- real processes: the embedded ClickHouse server, and the whole local stack ----------------

PASSWORD = "conformance-secret"


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseTarget]:
    """The embedded ClickHouse HTTP server as its own process, as `orderscope stack up` runs it."""
    with embedded_clickhouse(tmp_path_factory.mktemp("clickhouse"), PASSWORD, 60, print) as target:
        yield target


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real local stack (Kafka broker, ClickHouse server) on free ports, migrated; yields its ORDERSCOPE_* env."""
    env = {
        **isolated_env(tmp_path_factory.mktemp("stack")),
        "ORDERSCOPE_PARALLELISM": "2",
        "ORDERSCOPE_CHECKPOINT_INTERVAL_MS": "1000",
    }
    settings = Settings.from_env(env)
    stack = local_stack(settings)
    try:
        stack.up(fresh=True, report=print)
        migrate(clickhouse(settings), SQL_DIR, report=print)
        yield env
    finally:
        stack.down(report=print)
