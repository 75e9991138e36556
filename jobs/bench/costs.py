"""Where a raw record's time goes: the per-record cost breakdown of `make bench`.

Two views of the same work. Offline, in the bench's own process: a sample of the
backlog through the job's pure Python (schemas/normalize.py, schemas/stages.py)
on dict state, each step timed alone: what the Python itself costs. In the job:
the seconds each operator spent in its Python calls (table operator_stats, which
includes Flink state access and, for the writer, the ClickHouse inserts), per raw
record the job normalized. What neither shows (Kafka source, the SQL window,
exchanges between operators, checkpoints) is the rest of the wall time per record.
"""

from __future__ import annotations

import base64
import itertools
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.baseline import Record, Stages, normalized
from jobs.settings import Settings
from schemas.event_time import now_ms
from schemas.normalize import Normalizer
from schemas.privacy import Pseudonymizer

SAMPLE_RECORDS = 100_000
BATCH_RECORDS = 1_000  # about one micro-batch of the job at saturation
SUBTASK_SUFFIX = re.compile(r"-\d+$")


@dataclass(frozen=True)
class OfflineCosts:
    """Microseconds of pure Python per raw record, by step, over `records` records of the backlog."""

    records: int
    us_per_record: dict[str, float]


@dataclass(frozen=True)
class JobCosts:
    """Microseconds per raw record each operator spent in Python inside the job (all its subtasks)."""

    raw_records: int
    us_per_record: dict[str, float]


def offline_costs(lines: Path, records: int = SAMPLE_RECORDS) -> OfflineCosts:
    """Time normalization and each stage over the first `records` records of a producer-lines file."""
    normalizer = Normalizer(Pseudonymizer(Settings().pii_key))
    stages = Stages.in_memory(Settings())
    watch, count = Stopwatch(), 0
    for batch in _batches(lines, records):
        count += len(batch)
        with watch("normalize"):
            routed = normalized(normalizer, batch, stages.clock)
        with watch("vehicles"):
            positions = stages.vehicles.apply(routed.vehicles)
        with watch("waybills"):
            addressed = stages.waybills.apply([*routed.waybills, *positions])
        with watch("customers"):
            resolved = stages.customers.apply(routed.customers)
        with watch("orders"):
            watermark = stages.clock.watermark(now_ms())
            rows = stages.orders.apply([*routed.orders, *routed.signals, *addressed, *resolved.assignments], watermark)
            rows.extend(stages.orders.check_due(watermark))
        with watch("kpis"):
            stages.kpis.apply(rows.facts, watermark)
    return OfflineCosts(count, {step: seconds * 1e6 / max(count, 1) for step, seconds in watch.spent.items()})


def job_costs(client: Any) -> JobCosts | None:
    """The job's operator_stats, summed over subtasks, per raw record normalized; None before any report."""
    rows = client.query("SELECT operator, items, busy_s FROM operator_stats FINAL").result_rows
    items: dict[str, int] = defaultdict(int)
    busy: dict[str, float] = defaultdict(float)
    for operator, operator_items, busy_s in rows:
        name = SUBTASK_SUFFIX.sub("", operator)
        items[name] += operator_items
        busy[name] += busy_s
    raw_records = items.get("normalize", 0)
    if not raw_records:
        return None
    return JobCosts(raw_records, {name: seconds * 1e6 / raw_records for name, seconds in busy.items()})


class Stopwatch:
    """Seconds spent in each named step, summed over its uses."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.spent[step] += time.perf_counter() - started


def _batches(lines: Path, records: int) -> Iterator[list[Record]]:
    with lines.open("rb") as file:
        sample = enumerate(itertools.islice(file, records))
        while batch := [_record(offset, line) for offset, line in itertools.islice(sample, BATCH_RECORDS)]:
            yield batch


def _record(offset: int, line: bytes) -> Record:
    topic, _, value = line.rstrip(b"\n").split(b"\t")
    return Record(topic.decode(), 0, offset, base64.b64decode(value), 0)
