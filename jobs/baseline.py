"""The baseline the job is measured against: one plain Python process, no Flink.

A kafka-python consumer reads the raw topics, and the same code as the job's
operators (schemas/normalize.py, schemas/stages.py) normalizes them and keeps
every vehicle, waybill, customer and order in dicts; rows are written to the
same tables in the same batches (by age and size), then the offsets are
committed. Its state lives in memory only, so it always starts from the
earliest offsets: it is a yardstick for `make bench`, not a second pipeline.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from kafka import KafkaConsumer

from connectors import kafka
from jobs.settings import Settings
from jobs.sink import TableWriters
from jobs.source_clock import KafkaInput, PartitionClock
from schemas.adapters import ADAPTERS
from schemas.event_time import EventClock, now_ms, split_of
from schemas.events import DeadLetter
from schemas.health import load_health_policy
from schemas.identity import IdentityState, load_identity_rules
from schemas.kpi import KpiWindows, breaker_signal, load_kpi_settings
from schemas.normalize import Normalizer
from schemas.privacy import Pseudonymizer
from schemas.rules import PublishedRules, load_rules
from schemas.stages import (
    CustomerStage,
    OrderStage,
    OrderState,
    Routed,
    VehicleStage,
    WaybillStage,
    event_time_of,
)
from schemas.tables import DEAD_LETTERS, Row
from schemas.topics import BREAKERS, ETA_LEGS

Report = Callable[[str], None]
POLL_RECORDS = 5000


class Record(NamedTuple):
    """A Kafka record as a consumer reads it, for records read from elsewhere (a recording, bench lines)."""

    topic: str
    partition: int
    offset: int
    value: bytes
    timestamp: int


@dataclass
class Stages:
    """Every stage of the job, its state in dicts."""

    vehicles: VehicleStage
    waybills: WaybillStage
    customers: CustomerStage
    orders: OrderStage
    kpis: KpiWindows
    clock: EventClock  # event time, as the job's normalizer tracks it

    @classmethod
    def in_memory(cls, settings: Settings, rules: PublishedRules | None = None) -> Stages:
        """Rules: the job's starting set (schemas/rules.yaml) unless given."""
        retention = settings.retention
        return cls(
            VehicleStage({}, {}, settings.position_update_interval_ms, retention),
            WaybillStage({}, {}, retention),
            CustomerStage(IdentityState.in_memory(), load_identity_rules()),
            OrderStage(OrderState.in_memory(), retention, load_health_policy(), rules or load_rules()),
            KpiWindows({}, load_kpi_settings()),
            EventClock(settings.out_of_orderness_ms, settings.source_idleness_ms),
        )

    def apply(self, routed: Routed) -> dict[str, list[Row]]:
        """Rows made from one batch: the job's graph, run in order in one process."""
        rows = routed.rows
        watermark = self.clock.watermark(now_ms())
        positions = self.vehicles.apply(routed.vehicles)
        addressed = self.waybills.apply([*routed.waybills, *positions])
        resolved = self.customers.apply(routed.customers)
        order_rows = self.orders.apply([*routed.orders, *routed.context, *addressed, *resolved.assignments], watermark)
        order_rows.extend(self.orders.check_due(watermark))
        kpis = self.kpis.apply(order_rows.facts, watermark)
        order_rows.alerts += kpis.alerts
        # Legs and breakers apply at once: one process, no topic to read them back from.
        self.orders.apply([*order_rows.legs, *map(breaker_signal, kpis.breakers)])
        for table, table_rows in [*resolved.rows.items(), *order_rows.by_table().items(), *kpis.rows.items()]:
            rows[table].extend(table_rows)
        return rows


@dataclass
class RowBuffer:
    """Rows waiting to be written, flushed by age or size like the job's writer."""

    writers: TableWriters
    flush_interval_s: float
    max_rows: int
    rows: dict[str, list[Row]] = field(default_factory=lambda: defaultdict(list))
    count: int = 0
    oldest_at: float | None = None

    def add(self, rows: dict[str, list[Row]]) -> None:
        for table, table_rows in rows.items():
            self.rows[table].extend(table_rows)
            self.count += len(table_rows)
        if self.count and self.oldest_at is None:
            self.oldest_at = time.monotonic()

    def due(self) -> bool:
        old = self.oldest_at is not None and time.monotonic() - self.oldest_at >= self.flush_interval_s
        return old or self.count >= self.max_rows

    def flush(self) -> None:
        self.writers.write(self.rows, time.time_ns() // 1_000_000)
        self.rows, self.count, self.oldest_at = defaultdict(list), 0, None


def run(settings: Settings, *, until_idle_s: float | None, report: Report) -> int:
    """Consume from the earliest offsets until idle for until_idle_s (or interrupted); returns records read."""
    default = Settings()
    if settings.consumer_group == default.consumer_group or settings.clickhouse_database == default.clickhouse_database:
        raise ValueError(
            "the baseline forgets its consumer group's offsets and writes its own rows: give it a group and a "
            "database of its own (ORDERSCOPE_CONSUMER_GROUP, ORDERSCOPE_CLICKHOUSE_DATABASE), not the job's"
        )
    kafka.forget_group_offsets(settings.bootstrap_servers, settings.consumer_group)
    # Its own legs and breakers are applied at once, not read back from the job's topics.
    topics = tuple(sorted(topic for topic in ADAPTERS if topic not in (ETA_LEGS, BREAKERS)))
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.consumer_group,  # for its commits only: the bench follows them
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=POLL_RECORDS,
    )
    # One process reads every partition, so it assigns them itself. A group member could be left with none:
    # kafka-python 3.0.12 drops a join that completes after its poll's timeout (the bench saw 0 records read).
    consumer.assign(
        [kafka.TopicPartition(topic, p) for topic in topics for p in consumer.partitions_for_topic(topic) or ()]
    )
    target = settings.clickhouse
    buffer = RowBuffer(
        TableWriters(target),
        settings.sink_flush_interval_ms / 1000,
        settings.sink_max_batch_rows,
    )
    normalizer, stages = Normalizer(Pseudonymizer(settings.pseudonymization_key())), Stages.in_memory(settings)
    partition_clock = PartitionClock(
        KafkaInput(settings.bootstrap_servers, topics, settings.consumer_group, "earliest"), 0, stages.clock
    )
    read, heard_at, next_report = 0, time.monotonic(), time.monotonic() + 5
    try:
        while until_idle_s is None or time.monotonic() - heard_at < until_idle_s:
            polled = consumer.poll(timeout_ms=200)
            records = [record for partition in polled.values() for record in partition]
            if records:
                routed = normalized(normalizer, records, stages.clock)
                partition_clock.fetch_offsets(now_ms())
                buffer.add(stages.apply(routed))
                read, heard_at = read + len(records), time.monotonic()
            if buffer.due() or (not records and buffer.count):
                buffer.flush()
                consumer.commit()
            if time.monotonic() >= next_report:
                report(f"  baseline: {read} records read")
                next_report += 5
        buffer.flush()
        consumer.commit()
    finally:
        consumer.close()
        partition_clock.close()
    report(f"baseline: {read} records read, idle for {until_idle_s} s; stopping")
    return read


def normalized(normalizer: Normalizer, records: list[Any], clock: EventClock) -> Routed:
    """A batch of Kafka records (anything with topic, partition, offset, value, timestamp), routed; the
    clock reads their offsets and observes their event times."""
    routed, now = Routed(), now_ms()
    for record in records:
        clock.read(source := split_of(record.topic, record.partition), record.offset, now)
        outcome = normalizer.normalize(record.topic, record.partition, record.offset, record.value, record.timestamp)
        if isinstance(outcome, DeadLetter):
            routed.rows[DEAD_LETTERS.name].append(DEAD_LETTERS.row(outcome))
            continue
        for event in outcome:
            routed.add(event)
            if (at_ms := event_time_of(event)) is not None:
                clock.observe(source, at_ms, now)
    return routed
