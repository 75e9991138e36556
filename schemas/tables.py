"""Every ClickHouse table the job writes, declared once: its columns with their types, the
columns that make a row's identity (its ORDER BY key), and how a row is made.

The sinks insert with these names and types (no schema round trip per insert), and
tests/integration/test_tables_match_schema.py checks them against the migrated schema.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.eta import Leg
from schemas.events import CustomerLink, DeadLetter, OrderEvent, OrderModification, ServiceMessage, Signal
from schemas.identity import Degenerate, identifier_kind
from schemas.rules import PublishedRules

Row = tuple[Any, ...]  # times are epoch milliseconds: DateTime64(3) ticks, inserted as they are


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, ClickHouse type), in row order
    identity: tuple[str, ...]  # the ORDER BY key: rows with the same identity are one fact or one version chain
    row: Callable[[Any], Row]

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def column_types(self) -> list[str]:
        return [kind for _, kind in self.columns]


def utc(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def _journey_row(identified: tuple[str, OrderEvent]) -> Row:
    """The journey row of an event, given with its event id (computed once by whoever has it)."""
    event_id, event = identified
    status = event.status.value if event.status else ""
    order = event.order
    return (
        order.channel, order.order_id, event.at_ms, event_id, status, event.source, event.detail,
        event.amount_fen, event.region_code or "", event.carrier,
    )  # fmt: skip


def _customer_link_row(link: CustomerLink) -> Row:
    return (link.identity, link.kind, link.customer_id, link.strong, link.version)


def _degenerate_row(degenerate: Degenerate) -> Row:
    identity = degenerate.identity
    kind = identifier_kind(identity)
    return (identity, kind, degenerate.crowded_kind, degenerate.distinct, degenerate.customer_id, degenerate.at_ms)


def _modification_row(change: OrderModification) -> Row:
    order = change.order
    return (order.channel, order.order_id, change.at_ms, change.kind, change.succeeded, change.error)


def _service_message_row(message: ServiceMessage) -> Row:
    return (message.channel, message.order_id, message.identity, message.at_ms, list(message.intents))


def _signal_row(signal: Signal) -> Row:
    return (
        signal.kind,
        signal.subject,
        signal.at_ms,
        signal.until_ms,
        signal.level,
        signal.lat,
        signal.lon,
        signal.delay_min,
    )


def _dead_letter_row(letter: DeadLetter) -> Row:
    return (
        letter.source_topic,
        letter.partition,
        letter.offset,
        letter.raw,
        letter.reason,
        letter.detail,
        letter.received_at_ms,
    )


def _given(row: Row) -> Row:
    """For tables whose rows are made by the logic that owns them (orders_current, event_time)."""
    return row


REFUSED_ROWS_TOPIC = "clickhouse.refused"  # dead letters' source_topic for rows ClickHouse refused
MAX_DETAIL_CHARS = 2000


def refused_row_letter(table: str, row: Sequence[Any], error: str, now_ms: int) -> DeadLetter:
    """A row ClickHouse refused for its content, kept as a dead letter: the row as JSON (rows hold
    pseudonyms only), identified by its hash, so the same row refused again after a restore is the
    same dead letter."""
    raw = json.dumps({"table": table, "row": row}, default=str).encode()  # ASCII: lone surrogates too
    offset = int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest()) >> 1  # fits Int64
    return DeadLetter(REFUSED_ROWS_TOPIC, 0, offset, raw, "refused_by_clickhouse", error[:MAX_DETAIL_CHARS], now_ms)


def dead_letter_json(letter: DeadLetter) -> str:
    """The dead-letter topic's record: the raw bytes exactly (base64), and as text when they are UTF-8."""
    try:
        text: str | None = letter.raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return json.dumps(
        {
            "source_topic": letter.source_topic,
            "partition": letter.partition,
            "offset": letter.offset,
            "reason": letter.reason,
            "detail": letter.detail,
            "received_at": utc(letter.received_at_ms).isoformat(),
            "raw": text,
            "raw_base64": base64.b64encode(letter.raw).decode(),
        },
        ensure_ascii=False,
    )


TIME = "DateTime64(3, 'UTC')"
MILESTONES = ("paid_at", "purchased_at", "first_update_at", "delivered_at")
COLOR = "Enum8('green' = 1, 'yellow' = 2, 'red' = 3)"
HEALTH_COLUMNS = (
    ("health_score", "UInt8"),
    ("health_color", COLOR),
    ("health_reasons", "Array(String)"),
    ("health_at", TIME),
    ("health_config", "LowCardinality(String)"),
)
ETA_COLUMNS = (  # none while no lane has learned enough (schemas/eta.py)
    ("eta", f"Nullable({TIME})"),
    ("eta_p10", f"Nullable({TIME})"),
    ("eta_p90", f"Nullable({TIME})"),
    ("promise_at_risk", "Nullable(Float32)"),
    ("eta_basis", "String"),
)
RULE_COLUMNS = (  # what the business rules decided (schemas/rules.py)
    ("priority", "LowCardinality(String)"),
    ("tags", "Array(LowCardinality(String))"),
    ("recommendations", "Array(String)"),
    ("rules", "Array(LowCardinality(String))"),
    ("rules_version", "LowCardinality(String)"),
)
ORDERS_CURRENT = Table(
    "orders_current",
    (
        ("channel", "LowCardinality(String)"),
        ("order_id", "String"),
        ("customer_id", "String"),
        ("status", "LowCardinality(String)"),
        ("status_at", TIME),
        ("updated_at", TIME),
        ("waybills", "Array(String)"),
        ("amount_fen", "Nullable(Int64)"),
        ("region_code", "Nullable(String)"),
        ("promised_at", f"Nullable({TIME})"),
        ("version", "UInt64"),
        ("position_lat", "Nullable(Float64)"),
        ("position_lon", "Nullable(Float64)"),
        ("position_at", f"Nullable({TIME})"),
        *(
            (name, kind if name in ("health_reasons", "health_config") else f"Nullable({kind})")
            for name, kind in HEALTH_COLUMNS
        ),  # no health until an order has a status
        *ETA_COLUMNS,
        *RULE_COLUMNS,
        ("carrier", "LowCardinality(String)"),  # as the tracking aggregator names it; '' until a scan tells it
        *((name, f"Nullable({TIME})") for name in MILESTONES),  # schemas/order_view.py milestone_columns
    ),
    ("channel", "order_id"),
    _given,
)
ORDER_HEALTH_HISTORY = Table(
    "order_health_history",
    (("channel", "LowCardinality(String)"), ("order_id", "String"), *HEALTH_COLUMNS, *ETA_COLUMNS, *RULE_COLUMNS),
    ("channel", "order_id", "health_at"),
    _given,
)
ALERTS = Table(
    "alerts",
    (
        ("alert_id", "String"),
        ("incident_key", "String"),
        ("alert_type", "LowCardinality(String)"),
        ("severity", "Enum8('yellow' = 1, 'red' = 2)"),
        ("channel", "LowCardinality(String)"),
        ("order_id", "String"),
        ("opened_at", TIME),
        ("resolved_at", f"Nullable({TIME})"),
        ("reason", "String"),
        ("rule_id", "LowCardinality(String)"),
        ("config_version", "LowCardinality(String)"),
        ("revision", "UInt32"),
        ("step", "LowCardinality(String)"),
        ("updated_at", TIME),
    ),
    ("incident_key",),
    _given,
)
ETA_LEGS = Table(
    "eta_legs",
    (
        ("channel", "LowCardinality(String)"),
        ("order_id", "String"),
        ("carrier", "LowCardinality(String)"),
        ("region_code", "LowCardinality(String)"),
        ("delivered_at", TIME),
        ("steps", "Array(LowCardinality(String))"),
        ("remaining_ms", "Array(Int64)"),
        ("conditions", "Array(LowCardinality(String))"),
        ("delivered_lat", "Nullable(Float64)"),
        ("delivered_lon", "Nullable(Float64)"),
    ),
    ("channel", "order_id"),
    Leg.row,
)
RULE_SETS = Table(
    "rule_sets",
    (("version", "String"), ("spec", "String"), ("published_at", TIME)),
    ("version", "published_at"),
    PublishedRules.row,
)
ORDER_EVENTS = Table(
    "order_events",
    (
        ("channel", "LowCardinality(String)"),
        ("order_id", "String"),
        ("at", TIME),
        ("event_id", "String"),
        ("status", "LowCardinality(String)"),
        ("source", "LowCardinality(String)"),
        ("detail", "String"),
        ("amount_fen", "Nullable(Int64)"),
        ("region_code", "LowCardinality(String)"),  # '' where the event told none; so is carrier
        ("carrier", "LowCardinality(String)"),
    ),
    ("channel", "order_id", "at", "event_id"),
    _journey_row,
)
CUSTOMER_LINKS = Table(
    "customer_links",
    (
        ("identity", "String"),
        ("kind", "LowCardinality(String)"),
        ("customer_id", "String"),
        ("strong", "Bool"),
        ("version", "UInt64"),
    ),
    ("identity",),
    _customer_link_row,
)
DEGENERATE_IDENTIFIERS = Table(
    "degenerate_identifiers",
    (
        ("identity", "String"),
        ("kind", "LowCardinality(String)"),
        ("crowded_kind", "LowCardinality(String)"),
        ("distinct_seen", "UInt32"),
        ("customer_id", "String"),
        ("flagged_at", TIME),
    ),
    ("identity",),
    _degenerate_row,
)
MODIFICATIONS = Table(
    "modifications",
    (
        ("channel", "LowCardinality(String)"),
        ("order_id", "String"),
        ("at", TIME),
        ("kind", "LowCardinality(String)"),
        ("succeeded", "Bool"),
        ("error", "String"),
    ),
    ("channel", "order_id", "at", "kind"),
    _modification_row,
)
SERVICE_MESSAGES = Table(
    "service_messages",
    (
        ("channel", "LowCardinality(String)"),
        ("order_id", "String"),
        ("identity", "String"),
        ("at", TIME),
        ("intents", "Array(LowCardinality(String))"),
    ),
    ("channel", "identity", "at", "order_id"),
    _service_message_row,
)
SIGNALS = Table(
    "signals",
    (
        ("kind", "LowCardinality(String)"),
        ("subject", "String"),
        ("at", TIME),
        ("until", f"Nullable({TIME})"),
        ("level", "String"),
        ("lat", "Nullable(Float64)"),
        ("lon", "Nullable(Float64)"),
        ("delay_min", "Nullable(Int32)"),
    ),
    ("kind", "subject", "at"),
    _signal_row,
)
DEAD_LETTERS = Table(
    "dead_letters",
    (
        ("source_topic", "LowCardinality(String)"),
        ("partition", "Int32"),
        ("offset", "Int64"),
        ("raw", "String"),
        ("reason", "LowCardinality(String)"),
        ("detail", "String"),
        ("received_at", TIME),
    ),
    ("source_topic", "partition", "offset"),
    _dead_letter_row,
)
EVENT_TIME = Table(
    "event_time",
    (
        ("operator", "LowCardinality(String)"),
        ("source", "LowCardinality(String)"),
        ("max_event_at", TIME),
        ("watermark", TIME),
        ("idle", "Bool"),
        ("updated_at", TIME),
    ),
    ("operator", "source"),
    _given,
)
OPERATOR_STATS = Table(
    "operator_stats",
    (
        ("operator", "LowCardinality(String)"),
        ("calls", "UInt64"),
        ("items", "UInt64"),
        ("busy_s", "Float64"),
        ("updated_at", TIME),
    ),
    ("operator",),
    _given,
)
DIMENSION = "Enum8('channel' = 1, 'carrier' = 2, 'region' = 3, 'warehouse' = 4)"  # of the KPI windows
KPI_WINDOWS = Table(  # schemas/kpi.py Cell.row
    "kpi_windows",
    (
        ("window", "Enum8('1m' = 1, '5m' = 5)"),
        ("window_start", TIME),
        ("window_end", TIME),
        ("dimension", DIMENSION),
        ("key", "LowCardinality(String)"),
        ("orders", "UInt32"),
        ("gmv_fen", "Int64"),
        ("first_updates", "UInt32"),
        ("first_update_p50_ms", "Nullable(Int64)"),
        ("first_update_p95_ms", "Nullable(Int64)"),
        ("shipped", "UInt32"),
        ("exceptions", "UInt32"),
        ("delivered", "UInt32"),
        ("delivered_with_promise", "UInt32"),
        ("on_time", "UInt32"),
        ("modifications", "UInt32"),
        ("modifications_failed", "UInt32"),
        ("dwell_ms", "Map(LowCardinality(String), Int64)"),
        ("facts", "UInt32"),
    ),
    ("dimension", "key", "window", "window_start"),
    _given,
)
KPI_LATE_FACTS = Table(
    "kpi_late_facts",
    (
        ("dimension", DIMENSION),
        ("key", "LowCardinality(String)"),
        ("day", TIME),
        ("facts", "UInt64"),
        ("max_behind_ms", "Int64"),
    ),
    ("dimension", "key", "day"),
    _given,
)
CHANNEL_BREAKERS = Table(
    "channel_breakers",
    (
        ("channel", "LowCardinality(String)"),
        ("opened_at", TIME),
        ("closed_at", f"Nullable({TIME})"),
        ("failure_rate", "Float64"),
        ("modifications", "UInt32"),
        ("failed", "UInt32"),
        ("open_above_rate", "Float64"),
        ("min_modifications", "UInt32"),
        ("config_version", "LowCardinality(String)"),
        ("updated_at", TIME),
    ),
    ("channel", "opened_at"),
    _given,
)
TABLES = {table.name: table for table in (
    ORDERS_CURRENT, ORDER_HEALTH_HISTORY, ALERTS, ETA_LEGS, RULE_SETS, ORDER_EVENTS, CUSTOMER_LINKS,
    DEGENERATE_IDENTIFIERS, MODIFICATIONS, SERVICE_MESSAGES, SIGNALS,
    DEAD_LETTERS, EVENT_TIME, OPERATOR_STATS, KPI_WINDOWS, KPI_LATE_FACTS, CHANNEL_BREAKERS,
)}  # fmt: skip
