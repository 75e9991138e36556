"""The one configuration object: typed, frozen, read from ORDERSCOPE_* variables.

Every field can be set from the environment as ORDERSCOPE_<FIELD NAME IN
CAPITALS>; the defaults run the local stack on this machine.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

from connectors.clickhouse import ClickHouseTarget
from connectors.local.process import free_ports
from schemas.stages import DAY_MS, Retention

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ENV_PREFIX = "ORDERSCOPE_"
DEVELOPMENT_PII_KEY = "orderscope-local-development-key"
MAX_EVENTS_TTL_DAYS = 3650  # ClickHouse's DateTime, which a TTL is, ends in 2106
ENVIRONMENTS = ("development", "production")


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    state_dir: Path = PROJECT_ROOT / ".state"
    # Kafka: the local broker's ports, or any cluster's bootstrap servers.
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_bootstrap_servers: str = ""
    kafka_partitions: int = 2
    consumer_group: str = "orderscope-order-visibility"
    # Where a job without a checkpoint starts reading: "earliest" (everything kept) or "latest" (new records only).
    start_from: str = "earliest"
    # ClickHouse: the local embedded server's port, or any server's URL.
    clickhouse_port: int = 8123
    clickhouse_url: str = ""
    clickhouse_user: str = "default"
    clickhouse_password: str = ""
    clickhouse_database: str = "orderscope"
    # Days of event time the canonical events (table order_events) are kept, at most MAX_EVENTS_TTL_DAYS; 0: all.
    # Milestones stay in order_journey.
    events_ttl_days: int = 180
    # Flink
    parallelism: int = 1
    # State is split into this many lanes, fixed for the life of a job's checkpoints; parallelism may not exceed it.
    lanes: int = 16
    max_parallelism: int = 128
    checkpoint_dir: Path | None = None
    checkpoint_interval_ms: int = 2000
    # A standalone session cluster on this machine (`orderscope cluster`): its REST and RPC ports.
    flink_rest_port: int = 8081
    flink_rpc_port: int = 6123
    # Entities each operator instance keeps deserialized, besides Flink state (a read cache).
    state_cache_entries: int = 100_000
    # Raw records are processed in micro-batches of this much processing time.
    batch_window_ms: int = 200
    # Event time: a source's watermark trails its newest event by this much; a source silent for longer
    # than the idleness timeout (processing time) and read to its end holds no one back.
    out_of_orderness_ms: int = 60_000
    source_idleness_ms: int = 10_000
    # ClickHouse writer: buffered rows are written when the oldest is this old or when there are this many.
    sink_flush_interval_ms: int = 300
    sink_max_batch_rows: int = 50_000
    # How long (days of event time) entities stay in state after their last event: orders with a final
    # status, open orders, waybills never linked to an order, linked waybills, vehicles.
    finished_order_retention_days: int = 7
    open_order_retention_days: int = 30
    unlinked_waybill_retention_days: int = 3
    linked_waybill_retention_days: int = 30
    vehicle_retention_days: int = 7
    # A vehicle's GPS position is passed on to the orders it carries at most this often (event time).
    position_update_interval_ms: int = 300_000
    # Key of the keyed hash that turns personal identifiers into pseudonyms, or a file that holds it (read
    # where the job runs, when it starts: never part of the job graph). The default is for local
    # development only: with environment "production" the job refuses it.
    pii_key: str = DEVELOPMENT_PII_KEY
    pii_key_file: Path | None = None
    environment: str = "development"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            name = ENV_PREFIX + spec.name.upper()
            if name in environ:
                values[spec.name] = _parse(name, environ[name], hints[spec.name])
        return cls(**values)

    def __post_init__(self) -> None:
        if self.start_from not in ("earliest", "latest"):
            raise SettingsError(f"{ENV_PREFIX}START_FROM={self.start_from!r} is neither earliest nor latest")
        if self.environment not in ENVIRONMENTS:
            raise SettingsError(f"{ENV_PREFIX}ENVIRONMENT={self.environment!r} is neither {' nor '.join(ENVIRONMENTS)}")
        for spec in dataclasses.fields(self):
            if spec.name.endswith("_retention_days") and getattr(self, spec.name) < 1:
                raise SettingsError(f"{ENV_PREFIX}{spec.name.upper()} must be at least 1 (day)")

        if not 0 <= self.events_ttl_days <= MAX_EVENTS_TTL_DAYS:
            days = f"{ENV_PREFIX}EVENTS_TTL_DAYS={self.events_ttl_days}"
            raise SettingsError(f"{days}: give 1 to {MAX_EVENTS_TTL_DAYS} days, or 0 to keep every event")

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def clickhouse_endpoint(self) -> str:
        return self.clickhouse_url or f"http://127.0.0.1:{self.clickhouse_port}"

    @property
    def clickhouse(self) -> ClickHouseTarget:
        return ClickHouseTarget(
            self.clickhouse_endpoint, self.clickhouse_user, self.clickhouse_password, self.clickhouse_database
        )

    def pseudonymization_key(self) -> str:
        """The key, read now: from ORDERSCOPE_PII_KEY_FILE when set, else ORDERSCOPE_PII_KEY."""
        if self.pii_key_file is not None:
            try:
                key = self.pii_key_file.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise SettingsError(f"{ENV_PREFIX}PII_KEY_FILE={self.pii_key_file}: cannot read it ({error})") from None
        else:
            key = self.pii_key
        if not key:
            raise SettingsError(
                f"the pseudonymization key is empty: set {ENV_PREFIX}PII_KEY or {ENV_PREFIX}PII_KEY_FILE"
            )
        if self.environment == "production" and key == DEVELOPMENT_PII_KEY:
            raise SettingsError(
                f"{ENV_PREFIX}ENVIRONMENT=production with the development pseudonymization key: set a secret in "
                f"{ENV_PREFIX}PII_KEY_FILE (or {ENV_PREFIX}PII_KEY)"
            )
        return key

    @property
    def retention(self) -> Retention:
        return Retention(
            finished_order_ms=self.finished_order_retention_days * DAY_MS,
            open_order_ms=self.open_order_retention_days * DAY_MS,
            unlinked_waybill_ms=self.unlinked_waybill_retention_days * DAY_MS,
            linked_waybill_ms=self.linked_waybill_retention_days * DAY_MS,
            vehicle_ms=self.vehicle_retention_days * DAY_MS,
        )

    @property
    def flink_cluster_url(self) -> str:
        return f"http://127.0.0.1:{self.flink_rest_port}"

    @property
    def flink_log_dir(self) -> Path:
        return self.state_dir / "flink-logs"

    @property
    def checkpoints(self) -> Path:
        return self.checkpoint_dir or self.state_dir / "checkpoints"


def _parse(name: str, raw: str, kind: Any) -> Any:
    target = next((t for t in (int, Path, str) if t == kind or t in getattr(kind, "__args__", ())), str)
    if target is int:
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    return Path(raw).expanduser() if target is Path else raw


def isolated_env(state_dir: Path) -> dict[str, str]:
    """The ORDERSCOPE_* variables of a local stack of its own: its state in state_dir, on free loopback ports, so
    that tests and `orderscope evaluate` run beside a developer's `make run` stack without touching it."""
    kafka_port, controller_port, clickhouse_port = free_ports(3)
    return {
        f"{ENV_PREFIX}STATE_DIR": str(state_dir),
        f"{ENV_PREFIX}KAFKA_PORT": str(kafka_port),
        f"{ENV_PREFIX}KAFKA_CONTROLLER_PORT": str(controller_port),
        f"{ENV_PREFIX}CLICKHOUSE_PORT": str(clickhouse_port),
        # Their replays are of fixed dates (the simulator's 2026-11-21): no retention may expire them.
        f"{ENV_PREFIX}EVENTS_TTL_DAYS": "0",
    }
