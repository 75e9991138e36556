"""ClickHouse access: clients, schema migrations, and retried batch writes.

Works the same against the embedded local server (connectors.chdb_server)
and any ClickHouse server: everything goes through clickhouse-connect.
"""

from __future__ import annotations

import hashlib
import logging
import re
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

log = logging.getLogger(__name__)

MIGRATIONS_TABLE = "schema_migrations"
_MIGRATION_FILE = re.compile(r"(?P<version>\d{3})_(?P<name>\w+)\.sql")


@dataclass(frozen=True)
class ClickHouseTarget:
    """Where ClickHouse is and who we are there."""

    url: str
    user: str = "default"
    password: str = ""
    database: str = "default"

    def connect(self, database: str | None = None, **options: Any) -> Client:
        parts = urlsplit(self.url)
        return clickhouse_connect.get_client(
            interface=parts.scheme or "http",
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8443 if parts.scheme == "https" else 8123),
            username=self.user,
            password=self.password,
            database=database if database is not None else self.database,
            **options,
        )

    def is_reachable(self) -> bool:
        try:
            self.connect(database="default", connect_timeout=2).close()
        except Exception:
            return False
        return True


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def statements(self) -> list[str]:
        text = "\n".join(line for line in self.path.read_text().splitlines() if not line.strip().startswith("--"))
        return [s.strip() for s in re.split(r";\s*(?:\n|$)", text) if s.strip()]


def migrations_in(folder: Path) -> list[Migration]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_FILE.fullmatch(path.name)
        if match is None:
            raise ValueError(f"{path}: migration files are named NNN_name.sql")
        found.append(Migration(match["version"], match["name"], path))
    return found


def migrate(target: ClickHouseTarget, folder: Path, report: Callable[[str], None] = log.info) -> list[Migration]:
    """Apply the migrations not applied yet, in order; returns those applied now."""
    admin = target.connect(database="default")
    admin.command(f"CREATE DATABASE IF NOT EXISTS `{target.database}`")
    client = target.connect()
    client.command(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
        "(version String, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = MergeTree ORDER BY version"
    )
    applied = {row[0]: row[1] for row in client.query(f"SELECT version, checksum FROM {MIGRATIONS_TABLE}").result_rows}
    done = []
    for migration in migrations_in(folder):
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise ValueError(
                    f"{migration.path} changed after it was applied; add a new migration instead of editing it"
                )
            continue
        report(f"applying {migration.path.name}")
        for statement in migration.statements():
            client.command(statement)
        client.insert(
            MIGRATIONS_TABLE,
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        done.append(migration)
    return done


EVENTS_TABLE = "order_events"
_TTL_DAYS = re.compile(r"\bTTL toDateTime\(at\) \+ toIntervalDay\((\d+)\)")


def table_engine(client: Client, table: str) -> str:
    """The table's engine clause as ClickHouse shows it (engine, keys, partitioning, TTL, settings)."""
    [(engine,)] = client.query(
        "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = {name:String}",
        parameters={"name": table},
    ).result_rows
    return str(engine)


def keep_events_for(target: ClickHouseTarget, days: int, report: Callable[[str], None] = log.info) -> None:
    """Sets how many days of event time the canonical events table keeps (its TTL; 0: all), unless it already
    does: a TTL change makes ClickHouse recompute every part's expiry."""
    client = target.connect()
    kept = _TTL_DAYS.search(table_engine(client, EVENTS_TABLE))
    if (int(kept.group(1)) if kept else 0) == days:
        return
    if days:
        report(f"{EVENTS_TABLE} keeps {days} days of events from now on")
        client.command(f"ALTER TABLE {EVENTS_TABLE} MODIFY TTL toDateTime(at) + toIntervalDay({days})")
    else:
        report(f"{EVENTS_TABLE} keeps every event from now on")
        client.command(f"ALTER TABLE {EVENTS_TABLE} REMOVE TTL")


# ClickHouse error codes that speak of the rows, not of the server: cannot parse, type mismatch,
# argument or value out of range, cannot convert, incorrect data, string too large, NULL in a
# non-Nullable column. A batch refused with one of them is split until the row is found.
CONTENT_ERROR_CODES = frozenset({6, 27, 38, 41, 53, 69, 70, 72, 117, 131, 321, 349})


# Raised while encoding a value the column cannot hold (clickhouse-connect's DataError, or the
# conversion itself), before anything is sent.
ENCODING_ERRORS = (DataError, TypeError, ValueError, OverflowError, struct.error)


def is_content_error(error: Exception) -> bool:
    """Whether the rows themselves were refused (retrying cannot help). Anything else, ClickHouse out of
    reach or an error we do not know, is retried and then raised, never taken for bad rows."""
    if isinstance(error, ENCODING_ERRORS):
        return True
    if isinstance(error, OperationalError) or not isinstance(error, DatabaseError):
        return False  # out of reach, timed out, or not ClickHouse's answer at all
    return error.code in CONTENT_ERROR_CODES


@dataclass(frozen=True)
class RefusedRow:
    """A row ClickHouse (or its client) refuses for its content, and why."""

    table: str
    row: Sequence[Any]
    error: str


class RowsRefused(Exception):  # noqa: N818 - reads as "raise RowsRefused(...)"
    """An insert refused for the content of its rows."""


class BatchWriter:
    """Inserts batches into one table, retrying with backoff while ClickHouse is unreachable.

    After `give_up_after_s` it raises, so that the caller (a Flink task) fails
    and is restored from its last checkpoint with the batch still in state. Rows
    refused for their content are not retried: the batch is halved until each such
    row stands alone, every other row is written, and the refused ones are returned.
    """

    def __init__(
        self,
        target: ClickHouseTarget,
        table: str,
        columns: Sequence[str],
        column_types: Sequence[str],
        give_up_after_s: float = 120.0,
    ) -> None:
        self._target = target
        self._table = table
        self._columns = list(columns)
        self._column_types = list(column_types)  # given, so that an insert needs no schema round trip
        self._give_up_after_s = give_up_after_s
        self._client: Client | None = None

    def write(self, rows: Sequence[Sequence[Any]]) -> list[RefusedRow]:
        """Write the rows; returns those refused for their content (the others are written)."""
        try:
            self._insert(rows)
            return []
        except RowsRefused as refused:
            if len(rows) == 1:
                return [RefusedRow(self._table, rows[0], str(refused))]
            half = len(rows) // 2
            return self.write(rows[:half]) + self.write(rows[half:])

    def _insert(self, rows: Sequence[Sequence[Any]]) -> None:
        delay, deadline = 0.5, time.monotonic() + self._give_up_after_s
        while True:
            try:
                self._connection().insert(
                    self._table, rows, column_names=self._columns, column_type_names=self._column_types
                )
                return
            except Exception as error:
                if is_content_error(error):
                    raise RowsRefused(f"{type(error).__name__}: {error}") from error
                self._client = None
                if time.monotonic() + delay > deadline:
                    raise RuntimeError(f"writing {len(rows)} rows to {self._table} failed: {error}") from error
                log.warning(
                    "writing %d rows to %s failed (%s); retrying in %.1f s", len(rows), self._table, error, delay
                )
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _connection(self) -> Client:
        if self._client is None:
            # A replay's batch may hold events of more than 100 days: the day-partitioned events take them all.
            unlimited = {"max_partitions_per_insert_block": 0} if self._table == EVENTS_TABLE else {}
            self._client = self._target.connect(autogenerate_session_id=False, settings=unlimited)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
