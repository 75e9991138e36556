"""The Flink functions of the order-visibility job: thin shells around schemas/stages.py.

Each works on micro-batches (jobs/batches.py): one Python call per batch and lane,
not per record, because the per-record operator call is what costs in PyFlink.
"""

from __future__ import annotations

import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from pyflink.common import Row, Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import KeyedProcessFunction, ProcessFunction, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor

from connectors.clickhouse import ClickHouseTarget
from jobs.batches import Batch, Lanes, by_lane, framed
from jobs.settings import Settings
from jobs.sink import TableWriters
from jobs.source_clock import KafkaInput, PartitionClock
from schemas.event_time import UNKNOWN, EventClock, WatermarkMerge, now_ms, split_of
from schemas.events import (
    DeadLetter,
)
from schemas.health import MINUTE_MS, HealthPolicy
from schemas.identity import IdentityRules, IdentityState
from schemas.kpi import KpiFact, KpiOutput, KpiSettings, KpiWindows
from schemas.normalize import Normalizer
from schemas.privacy import Pseudonymizer
from schemas.rules import PublishedRules
from schemas.stages import (
    DAY_MS,
    CustomerStage,
    OrderRows,
    OrderStage,
    OrderState,
    Resolved,
    Retention,
    Routed,
    Stage,
    VehicleStage,
    WaybillStage,
    event_time_of,
    order_key,
    vehicle_of,
    waybill_of,
)
from schemas.tables import (
    ALERTS,
    DEAD_LETTERS,
    EVENT_TIME,
    OPERATOR_STATS,
    dead_letter_json,
)
from schemas.tables import (
    Row as TableRow,
)

PICKLED = Types.PICKLED_BYTE_ARRAY()
# What every keyed operator receives: (key, value), keyed on the JVM side (order_visibility.keyed_by_key).
KEYED = Types.ROW([Types.INT(), PICKLED])
VEHICLE_BATCHES = OutputTag("vehicle-batches", KEYED)
WAYBILL_BATCHES = OutputTag("waybill-batches", KEYED)
CUSTOMER_BATCHES = OutputTag("customer-batches", KEYED)
WRITES = OutputTag("writes", KEYED)
DEAD_LETTER_RECORDS = OutputTag("dead-letter-records", Types.STRING())
ALERT_RECORDS = OutputTag("alert-records", Types.STRING())
LEG_RECORDS = OutputTag("leg-records", Types.STRING())
KPI_FACT_BATCHES = OutputTag("kpi-fact-batches", KEYED)
BREAKER_RECORDS = OutputTag("breaker-records", Types.STRING())
CONTEXT_CACHE_ENTRIES = 4096  # of all the instance's lanes: conditions, and the figures of every ETA lane
CHECK_CACHE_ENTRIES = 1024  # the pending minutes and the minutes being filled, of all the instance's lanes
WINDOW_CACHE_ENTRIES = 64  # the KPI minutes still open to late facts, and the breakers
KPI_LANE = "kpis"  # every KPI fact goes to the lane of this key: windows count facts of every order
REPORT_EVERY_MS = 5000
TICK_TOPIC = ""  # the topic of the clock's beats in a micro-batch (order_visibility.records_view): no Kafka topic's


@dataclass
class Busy:
    """Time an operator instance spends in Python, for operator_stats (the bench's cost breakdown)."""

    operator: str
    calls: int = 0
    items: int = 0
    seconds: float = 0.0
    reported_at_ms: int = 0

    def add(self, items: int, seconds: float) -> None:
        self.calls += 1
        self.items += items
        self.seconds += seconds

    def report(self, now: int) -> list[TableRow]:
        """The stats row, when one is due."""
        if now - self.reported_at_ms < REPORT_EVERY_MS:
            return []
        self.reported_at_ms = now
        return [(self.operator, self.calls, self.items, self.seconds, now)]


def subtask_index(runtime_context: RuntimeContext) -> int:
    """PyFlink 2.2's thread mode asks the Java RuntimeContext for getIndexOfThisSubtask, which Flink 2
    moved to its TaskInfo; ask there when the first way fails."""
    try:
        return int(runtime_context.get_index_of_this_subtask())
    except AttributeError:
        return int(runtime_context._runtime_context.getTaskInfo().getIndexOfThisSubtask())


def with_time(grouped: dict[int, list[Any]], lanes: Lanes) -> dict[int, list[Any]]:
    """The items by lane, with an empty batch for each subtask that would get none, so that all hear the time."""
    filled, covered = dict(grouped), {lanes.owners[lane] for lane in grouped}
    for lane in lanes.keys:
        if lanes.owners[lane] not in covered:
            filled[lane] = []
            covered.add(lanes.owners[lane])
    return filled


def raw_records(batch: Row) -> Iterator[tuple[bytes | None, str, int, int, int]]:
    """A micro-batch's Kafka records (payload, topic, partition, offset, received at), without the clock's beats."""
    for record in zip(batch.payloads, batch.topics, batch.partitions, batch.offsets, batch.received_at_ms, strict=True):
        if record[1] != TICK_TOPIC:
            yield record


def keyed(batch: Batch) -> Row:
    return Row(batch.lane, batch)


def keyed_batches(batches: Iterator[Batch], tag: OutputTag | None = None) -> Iterator[Any]:
    for batch in batches:
        yield keyed(batch) if tag is None else (tag, keyed(batch))


class NormalizeBatches(ProcessFunction):  # type: ignore[misc]
    """A micro-batch of raw Kafka records in; canonical events out, by lane, to the stage that owns
    each kind; rows of the tables that need no state straight to the writer; dead letters also as
    records for their Kafka topic. Tracks event time per source."""

    def __init__(self, lanes: Lanes, source: KafkaInput, out_of_orderness_ms: int, idleness_ms: int) -> None:
        self._lanes = lanes
        self._source = source
        self._out_of_orderness_ms = out_of_orderness_ms
        self._idleness_ms = idleness_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        # The key is read where the job runs, now: it is never part of the job graph.
        self._normalizer = Normalizer(Pseudonymizer(Settings.from_env().pseudonymization_key()))
        self._clock = EventClock(self._out_of_orderness_ms, self._idleness_ms)
        subtask = subtask_index(runtime_context)
        self._partition_clock = PartitionClock(self._source, subtask, self._clock)
        self._partition_clock.fetch_offsets(now_ms())
        self._name = f"normalize-{subtask}"
        self._writer_key = self._lanes.writer_keys[subtask]
        self._busy = Busy(self._name)
        self._minute = UNKNOWN
        self._heartbeat_at = UNKNOWN
        self._idle = False  # as last sent on

    def process_element(self, batch: Row, ctx: ProcessFunction.Context) -> Iterator[Any]:
        started = time.perf_counter()
        outputs = list(self._normalized(batch))
        self._busy.add(len(batch.topics) - batch.topics.count(TICK_TOPIC), time.perf_counter() - started)
        yield from outputs

    def close(self) -> None:
        if (partition_clock := getattr(self, "_partition_clock", None)) is not None:  # open() may have failed
            partition_clock.close()

    def _normalized(self, batch: Row) -> Iterator[Any]:
        now = now_ms()
        routed = Routed()
        rows = routed.rows
        clock = self._clock
        owned = self._partition_clock.owns(batch.partitions[0])  # a batch holds one partition group
        for payload, topic, partition, offset, received_at_ms in raw_records(batch):
            if owned:
                clock.read(source := split_of(topic, partition), offset, now)
            outcome = self._normalizer.normalize(topic, partition, offset, bytes(payload or b""), received_at_ms)
            if isinstance(outcome, DeadLetter):
                rows[DEAD_LETTERS.name].append(DEAD_LETTERS.row(outcome))
                yield DEAD_LETTER_RECORDS, dead_letter_json(outcome)
                continue
            for event in outcome:
                routed.add(event)
                if owned and (at_ms := event_time_of(event)) is not None:
                    clock.observe(source, at_ms, now)
        self._partition_clock.fetch_offsets(now)
        watermark, idle = clock.watermark(now), self._partition_clock.is_idle_everywhere(now)
        lanes = self._lanes
        orders = by_lane(routed.orders, lanes, order_key)
        context = routed.context
        # All three: each keeps its own state.
        time_moved = self._is_new_minute(watermark) | self._is_heartbeat_due(now) | self._idleness_changed(idle)
        if context or time_moved:
            for lane in lanes.keys:  # signals and legs count for every order; checks fall due in every lane
                orders.setdefault(lane, []).extend(context)
        yield from keyed_batches(framed(orders, lanes, self._name, watermark, idle))
        # Event time travels only with batches: the stages between here and the orders hear it even when this
        # call has nothing for them, or an order lane would merge the time they last passed on (see onward).
        side_outputs = ((routed.vehicles, vehicle_of, VEHICLE_BATCHES), (routed.waybills, waybill_of, WAYBILL_BATCHES))
        for items, key, output in side_outputs:
            grouped = by_lane(items, lanes, key)
            grouped = with_time(grouped, lanes) if time_moved else grouped
            yield from keyed_batches(framed(grouped, lanes, self._name, watermark, idle), output)
        if routed.customers or time_moved:  # identity resolution is one graph (merges join any two customers): one lane
            customers = Batch(self._lanes.keys[0], True, self._name, watermark, idle, routed.customers)
            yield CUSTOMER_BATCHES, keyed(customers)
        if stats := self._busy.report(now):
            rows[OPERATOR_STATS.name].extend(stats)
            rows[EVENT_TIME.name].extend(self._event_time_rows(now, watermark, idle))
        if rows:
            yield WRITES, Row(self._writer_key, dict(rows))

    def _is_new_minute(self, watermark: int) -> bool:
        """Whether event time entered a new minute: then every lane hears of it, even one that no
        order event reaches, so its orders' checks fall due (OrderStage.check_due)."""
        minute = watermark // MINUTE_MS
        if watermark == UNKNOWN or minute <= self._minute:
            return False
        self._minute = minute
        return True

    def _is_heartbeat_due(self, now: int) -> bool:
        """Whether every lane should hear this normalizer's event time, news or not. A lane counts an upstream
        silent for the idleness timeout as idle: while this normalizer reads only GPS pings, the other
        normalizers (other partitions) would set the lane's time alone, and its orders' checks fall due early."""
        if now - self._heartbeat_at < self._idleness_ms // 2:
            return False
        self._heartbeat_at = now
        return True

    def _idleness_changed(self, idle: bool) -> bool:
        """Whether its sources turned idle everywhere, or active again: then every lane hears it, or one that heard
        nothing else from it would go on leaving it out (or waiting for it) meanwhile."""
        changed, self._idle = idle != self._idle, idle
        return changed

    def _event_time_rows(self, now: int, watermark: int, idle: bool) -> list[TableRow]:
        """One row per source that has a known event time, and one ('*') for the combined watermark."""
        clock = self._clock
        known = {source: state for source, state in clock.sources.items() if state.newest_ms != UNKNOWN}
        rows = [
            (self._name, source, state.newest_ms, clock.source_watermark(source), clock.is_idle(source, now), now)
            for source, state in sorted(known.items())
        ]  # fmt: skip
        if known and watermark != UNKNOWN:
            newest = max(state.newest_ms for state in known.values())
            rows.append((self._name, "*", newest, watermark, idle, now))
        return rows


class MapStateDict(MutableMapping[Any, Any]):
    """Flink MapState seen as a dict, so that pure logic written against dicts runs on state.

    Every state access crosses into the JVM (and may hand the GIL to another operator's thread),
    so writes wait in `pending` until `commit()` puts them all in one call, and reads go through
    a bounded cache of deserialized values (absent keys included). The cache cannot go stale:
    this operator instance is the only writer of its keys, every write goes through it, the
    stages never change a value in place without writing it back in the same call (schemas/eta.py's
    LaneFigures are changed so), and a restore or rescale makes new instances. The
    instance serves several lanes, whose states may hold the same keys, so the cache holds values
    by (lane, key): the operator names the lane (`lane`) before each call. The operator commits
    before its call returns, so a checkpoint never misses a pending write.
    """

    def __init__(self, state: Any, cache_entries: int) -> None:
        self._state = state
        self._capacity = cache_entries
        self._cache: OrderedDict[Any, Any] = OrderedDict()
        self._pending: dict[Any, Any] = {}
        self.lane: int | None = None  # the current key of the keyed state; set before each call

    def commit(self) -> None:
        if self._pending:
            self._state.put_all(self._pending)
            self._pending = {}

    def get(self, key: Any, default: Any = None) -> Any:
        value = self._read(key)  # stored values are never None
        return default if value is None else value

    def __getitem__(self, key: Any) -> Any:
        value = self._read(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self._pending[key] = value
        self._remember(key, value)

    def __delitem__(self, key: Any) -> None:
        self._pending.pop(key, None)
        self._state.remove(key)
        self._remember(key, None)

    def __contains__(self, key: object) -> bool:
        return self._read(key) is not None

    def __iter__(self) -> Iterator[Any]:
        self.commit()
        return iter(list(self._state.keys()))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _read(self, key: Any) -> Any:
        if key in self._pending:
            return self._pending[key]
        cached = (self.lane, key)
        if cached in self._cache:
            self._cache.move_to_end(cached)
            return self._cache[cached]
        value = self._state.get(key)
        self._remember(key, value)
        return value

    def _remember(self, key: Any, value: Any) -> None:
        if self._capacity:
            cached = (self.lane, key)
            self._cache[cached] = value
            self._cache.move_to_end(cached)
            if len(self._cache) > self._capacity:
                self._cache.popitem(last=False)


class LaneOperator(KeyedProcessFunction):  # type: ignore[misc]
    """Keyed by lane: applies its stage to each batch, keeps what it makes in memory, and passes it
    on when a batch that ends an upstream call arrives (jobs/batches.py says why that is safe).
    Sweeps expired entities of a lane once per day of event time."""

    NAME = ""
    FEEDS_CHECKS = False  # whether the next operator keeps checks per lane (the orders): see onward

    def __init__(self, lanes: Lanes, cache_entries: int, idleness_ms: int) -> None:
        self._lanes = lanes
        self._cache_entries = cache_entries
        self._idleness_ms = idleness_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        subtask = subtask_index(runtime_context)
        self._name = f"{self.NAME}-{subtask}"
        self._writer_key = self._lanes.writer_keys[subtask]
        self._watermarks = WatermarkMerge(self._idleness_ms)
        self._forwarded_ms = UNKNOWN  # the event time last passed on to every downstream subtask
        self._idle = False  # whether every upstream is idle everywhere (WatermarkMerge), as of the last batch
        self._forwarded_idle = False  # as last passed on to every downstream subtask
        self._swept_day = runtime_context.get_state(ValueStateDescriptor("swept-day", Types.LONG()))
        self._busy = Busy(self._name)
        self._states: list[MapStateDict] = []
        self.stage = self.make_stage(runtime_context)

    def make_stage(self, runtime_context: RuntimeContext) -> Stage[Any] | CustomerStage | KpiWindows:
        raise NotImplementedError

    def entities(self, runtime_context: RuntimeContext, name: str) -> MapStateDict:
        return self.state(runtime_context, name, self._cache_entries)

    def state(self, runtime_context: RuntimeContext, name: str, cache_entries: int = 0) -> MapStateDict:
        descriptor = MapStateDescriptor(name, Types.STRING(), PICKLED)
        mapping = MapStateDict(runtime_context.get_map_state(descriptor), cache_entries)
        self._states.append(mapping)
        return mapping

    def take(self, items: list[Any], watermark_ms: int) -> None:
        raise NotImplementedError

    def release(self, watermark_ms: int) -> Iterator[Any]:
        raise NotImplementedError

    def process_element(self, batch: Batch, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        started = time.perf_counter()
        now = now_ms()
        watermark = self._watermarks.update(batch.upstream, batch.watermark_ms, now, idle=batch.idle)
        self._idle = self._watermarks.is_idle_everywhere(now)
        for mapping in self._states:
            mapping.lane = batch.lane
        self.take(batch.items, watermark)
        self._sweep(watermark)
        for mapping in self._states:
            mapping.commit()
        outputs = [*self.release(watermark), *self._stats()] if batch.last else []
        self._busy.add(len(batch.items), time.perf_counter() - started)
        yield from outputs

    def onward(self, items: list[Any], key: Callable[[Any], str], watermark_ms: int) -> Iterator[Row]:
        """Items for the next keyed operator, one batch per lane. When event time moved, every downstream subtask
        gets a batch, empty or not: the next operator merges the time of each upstream that spoke lately, and a
        time passed on only with items would hold it at the last one sent (for good, while still speaking); so does
        a change of whether every source behind this one is idle (WatermarkMerge leaves such an upstream out). When
        it entered a new minute and the next operator keeps checks, every lane does: a lane's checks (at whole
        minutes) fall due only in a call for that lane, and the upstream that reaches a minute last may be the
        one that moves the merged time there."""
        grouped = by_lane(items, self._lanes, key)
        moved = watermark_ms > self._forwarded_ms
        if moved or self._idle != self._forwarded_idle:  # an idleness changed is told to every subtask too
            new_minute = moved and self.FEEDS_CHECKS and watermark_ms // MINUTE_MS > self._forwarded_ms // MINUTE_MS
            self._forwarded_ms, self._forwarded_idle = max(watermark_ms, self._forwarded_ms), self._idle
            grouped = (
                {lane: grouped.get(lane, []) for lane in self._lanes.keys}
                if new_minute
                else with_time(grouped, self._lanes)
            )
        return keyed_batches(framed(grouped, self._lanes, self._name, watermark_ms, self._idle))

    def _stats(self) -> Iterator[Any]:
        if stats := self._busy.report(now_ms()):
            yield self.to_writer({OPERATOR_STATS.name: stats})

    def to_writer(self, rows: dict[str, list[TableRow]]) -> Any:
        """Rows for the writer: a side output, except from the operator whose main output is the writer."""
        return WRITES, Row(self._writer_key, rows)

    def _sweep(self, watermark_ms: int) -> None:
        day = watermark_ms // DAY_MS
        if isinstance(self.stage, Stage) and day > (self._swept_day.value() or 0):
            self.stage.sweep(watermark_ms)
            self._swept_day.update(day)


class TrackVehicles(LaneOperator):
    NAME = "vehicles"

    def __init__(self, lanes: Lanes, cache_entries: int, idleness_ms: int, interval_ms: int, retention: Retention):
        super().__init__(lanes, cache_entries, idleness_ms)
        self._interval_ms = interval_ms
        self._retention = retention

    def make_stage(self, runtime_context: RuntimeContext) -> VehicleStage:
        self._positions: list[Any] = []
        entities, expiry = (
            self.entities(runtime_context, "vehicles"),
            self.state(runtime_context, "expiry"),
        )
        return VehicleStage(entities, expiry, self._interval_ms, self._retention)

    def take(self, items: list[Any], watermark_ms: int) -> None:
        assert isinstance(self.stage, VehicleStage)
        self._positions.extend(self.stage.apply(items))

    def release(self, watermark_ms: int) -> Iterator[Row]:
        positions, self._positions = self._positions, []
        yield from self.onward(positions, waybill_of, watermark_ms)


class ResolveWaybills(LaneOperator):
    NAME = "waybills"
    FEEDS_CHECKS = True

    def __init__(self, lanes: Lanes, cache_entries: int, idleness_ms: int, retention: Retention) -> None:
        super().__init__(lanes, cache_entries, idleness_ms)
        self._retention = retention

    def make_stage(self, runtime_context: RuntimeContext) -> WaybillStage:
        self._events: list[Any] = []
        entities, expiry = (
            self.entities(runtime_context, "waybills"),
            self.state(runtime_context, "expiry"),
        )
        return WaybillStage(entities, expiry, self._retention)

    def take(self, items: list[Any], watermark_ms: int) -> None:
        assert isinstance(self.stage, WaybillStage)
        self._events.extend(self.stage.apply(items))

    def release(self, watermark_ms: int) -> Iterator[Row]:
        events, self._events = self._events, []
        yield from self.onward(events, order_key, watermark_ms)


class ResolveCustomers(LaneOperator):
    NAME = "customers"
    FEEDS_CHECKS = True

    def __init__(self, lanes: Lanes, cache_entries: int, idleness_ms: int, rules: IdentityRules) -> None:
        super().__init__(lanes, cache_entries, idleness_ms)
        self._rules = rules

    def make_stage(self, runtime_context: RuntimeContext) -> CustomerStage:
        self._resolved = Resolved()
        state = IdentityState.of(lambda name: self.entities(runtime_context, name))
        return CustomerStage(state, self._rules)

    def take(self, items: list[Any], watermark_ms: int) -> None:
        assert isinstance(self.stage, CustomerStage)
        resolved = self.stage.apply(items)
        self._resolved.assignments.extend(resolved.assignments)
        for table, rows in resolved.rows.items():
            self._resolved.rows[table].extend(rows)

    def release(self, watermark_ms: int) -> Iterator[Any]:
        resolved, self._resolved = self._resolved, Resolved()
        yield from self.onward(resolved.assignments, order_key, watermark_ms)
        if rows := {table: table_rows for table, table_rows in resolved.rows.items() if table_rows}:
            yield self.to_writer(rows)


class TrackOrders(LaneOperator):
    NAME = "orders"

    def __init__(
        self,
        lanes: Lanes,
        cache_entries: int,
        idleness_ms: int,
        retention: Retention,
        policy: HealthPolicy,
        rules: PublishedRules,
    ) -> None:
        super().__init__(lanes, cache_entries, idleness_ms)
        self._retention = retention
        self._policy = policy
        self._rules = rules

    def make_stage(self, runtime_context: RuntimeContext) -> OrderStage:
        self._rows = OrderRows()
        self._kpi_lane = self._lanes.of(KPI_LANE)
        self._kpis_told = (UNKNOWN, False)  # the event time and idleness last told the KPI lane
        state = OrderState(
            self.entities(runtime_context, "orders"),
            self.state(runtime_context, "expiry"),
            self.state(runtime_context, "checks", CHECK_CACHE_ENTRIES),
            self.state(runtime_context, "context", CONTEXT_CACHE_ENTRIES),
        )
        return OrderStage(state, self._retention, self._policy, self._rules)

    def take(self, items: list[Any], watermark_ms: int) -> None:
        assert isinstance(self.stage, OrderStage)
        self._rows.extend(self.stage.apply(items, watermark_ms))
        self._rows.extend(self.stage.check_due(watermark_ms))

    def release(self, watermark_ms: int) -> Iterator[Any]:
        assert isinstance(self.stage, OrderStage)
        rows, self._rows = self._rows, OrderRows()
        rows.alerts.extend(self.stage.take_expired())
        for step in rows.alerts:
            yield ALERT_RECORDS, step.json()
        for leg in rows.legs:
            yield LEG_RECORDS, leg.json()
        yield from self._to_kpis(rows.facts, watermark_ms)
        if tables := rows.by_table():
            yield self.to_writer(tables)

    def to_writer(self, rows: dict[str, list[TableRow]]) -> Row:
        return Row(self._writer_key, rows)

    def _to_kpis(self, facts: list[KpiFact], watermark_ms: int) -> Iterator[Any]:
        """The facts for the KPI lane, and event time whenever it moved: its windows close on time alone, so
        that lane itself must hear it (not only its subtask, as onward would tell it with an empty batch of
        another lane)."""
        told_ms, told_idle = self._kpis_told
        if facts or watermark_ms > told_ms or self._idle != told_idle:
            self._kpis_told = (max(watermark_ms, told_ms), self._idle)
            yield KPI_FACT_BATCHES, keyed(Batch(self._kpi_lane, True, self._name, watermark_ms, self._idle, facts))


class CountKpis(LaneOperator):
    """The KPI windows and the channels' breakers (schemas/kpi.py), in one lane: a window counts facts of every
    order. Facts arrive batched, one batch per order lanes' call, so this is one small call per such call."""

    NAME = "kpis"

    def __init__(self, lanes: Lanes, idleness_ms: int, settings: KpiSettings) -> None:
        super().__init__(lanes, WINDOW_CACHE_ENTRIES, idleness_ms)
        self._settings = settings

    def make_stage(self, runtime_context: RuntimeContext) -> KpiWindows:
        self._out = KpiOutput()
        return KpiWindows(self.entities(runtime_context, "windows"), self._settings)

    def take(self, items: list[Any], watermark_ms: int) -> None:
        assert isinstance(self.stage, KpiWindows)
        out = self.stage.apply(items, watermark_ms)
        for table, rows in out.rows.items():
            self._out.rows[table].extend(rows)
        self._out.alerts.extend(out.alerts)
        self._out.breakers.extend(out.breakers)

    def release(self, watermark_ms: int) -> Iterator[Any]:
        out, self._out = self._out, KpiOutput()
        for step in out.alerts:
            yield ALERT_RECORDS, step.json()
        for record in out.breakers:
            yield BREAKER_RECORDS, record
        rows = dict(out.rows)
        if out.alerts:
            rows[ALERTS.name] = [step.row() for step in out.alerts]
        if rows:
            yield self.to_writer(rows)


class ClickHouseWriter(KeyedProcessFunction):  # type: ignore[misc]
    """Writes rows to ClickHouse in few large inserts: one per table per flush of a subtask's buffer.

    Rows wait in keyed state (one key per subtask), so a checkpoint taken before they
    are written holds them; the buffer is written when its first rows are
    flush_interval_ms old or when it holds max_rows. A write that keeps failing
    fails the task, and Flink restores the buffer from the last checkpoint:
    at-least-once, and idempotent because every table is a ReplacingMergeTree keyed
    by the row's identity (schemas/tables.py).
    """

    def __init__(self, target: ClickHouseTarget, flush_interval_ms: int, max_rows: int) -> None:
        self._target = target
        self._flush_interval_ms = flush_interval_ms
        self._max_rows = max_rows

    def open(self, runtime_context: RuntimeContext) -> None:
        self._writers = TableWriters(self._target)
        self._chunks = runtime_context.get_list_state(ListStateDescriptor("chunks", PICKLED))
        self._buffered = runtime_context.get_state(ValueStateDescriptor("buffered-rows", Types.LONG()))
        self._busy = Busy(f"clickhouse writer-{subtask_index(runtime_context)}")

    def close(self) -> None:
        if writers := getattr(self, "_writers", None):
            writers.close()

    def process_element(self, rows_by_table: dict[str, list[TableRow]], ctx: KeyedProcessFunction.Context) -> None:
        if not rows_by_table:
            return
        self._chunks.add(rows_by_table)
        before = self._buffered.value() or 0
        buffered = before + sum(map(len, rows_by_table.values()))
        if buffered >= self._max_rows:
            self._flush()
            return
        if before == 0:
            timers = ctx.timer_service()
            timers.register_processing_time_timer(timers.current_processing_time() + self._flush_interval_ms)
        self._buffered.update(buffered)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> None:
        self._flush()

    def _flush(self) -> None:
        started = time.perf_counter()
        rows: dict[str, list[TableRow]] = defaultdict(list)
        for chunk in self._chunks.get() or ():
            for table, table_rows in chunk.items():
                rows[table].extend(table_rows)
        rows[OPERATOR_STATS.name].extend(self._busy.report(now_ms()))
        self._writers.write(rows, now_ms())
        self._chunks.clear()
        self._buffered.clear()
        self._busy.add(sum(map(len, rows.values())), time.perf_counter() - started)
