"""The Flink functions of the order-visibility job; each wraps pure logic from schemas/."""

from __future__ import annotations

import base64
import json
import logging
import zlib
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Any

from pyflink.common import Row, Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import KeyedProcessFunction, ProcessFunction, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor

from connectors.clickhouse import BatchWriter, ClickHouseTarget
from schemas.events import (
    CustomerAssignment,
    CustomerLink,
    DeadLetter,
    OrderEvent,
    OrderModification,
    OrderRef,
    ServiceMessage,
    ShipmentEvent,
    Signal,
    VehicleLoad,
    VehiclePing,
    WaybillLink,
    WaybillPosition,
)
from schemas.identity import IdentityGraph, identifier_kind
from schemas.normalize import Normalizer
from schemas.order_view import OrderView, utc
from schemas.privacy import Pseudonymizer
from schemas.topics import RAW_GPS

log = logging.getLogger(__name__)

DEAD_LETTERS = OutputTag("dead-letters", Types.PICKLED_BYTE_ARRAY())
WAYBILL_EVENTS = OutputTag("waybill-events", Types.PICKLED_BYTE_ARRAY())
VEHICLE_EVENTS = OutputTag("vehicle-events", Types.PICKLED_BYTE_ARRAY())
IDENTIFIED_ORDERS = OutputTag("identified-orders", Types.PICKLED_BYTE_ARRAY())
MODIFICATIONS = OutputTag("modifications", Types.PICKLED_BYTE_ARRAY())
SERVICE_MESSAGES = OutputTag("service-messages", Types.PICKLED_BYTE_ARRAY())
SIGNALS = OutputTag("signals", Types.PICKLED_BYTE_ARRAY())
# Where Normalize sends each kind of canonical event; order events go to its main output.
# Routing there, rather than filtering a mixed stream, saves a Python operator hop per record per filter.
ROUTES: dict[type, OutputTag] = {
    ShipmentEvent: WAYBILL_EVENTS,
    WaybillLink: WAYBILL_EVENTS,
    VehicleLoad: VEHICLE_EVENTS,
    VehiclePing: VEHICLE_EVENTS,
    OrderModification: MODIFICATIONS,
    ServiceMessage: SERVICE_MESSAGES,
    Signal: SIGNALS,
}
DEAD_LETTER_COLUMNS = ("source_topic", "partition", "offset", "raw", "reason", "detail", "received_at")
MAX_PENDING_SHIPMENT_EVENTS = 100


class Normalize(ProcessFunction):  # type: ignore[misc]
    """Raw Kafka records in; order events out, every other kind and dead letters to their side outputs."""

    def __init__(self, pii_key: str) -> None:
        self._pii_key = pii_key
        self._normalizer: Normalizer | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._normalizer = Normalizer(Pseudonymizer(self._pii_key))

    def process_element(self, record: Row, ctx: ProcessFunction.Context) -> Iterator[Any]:
        assert self._normalizer is not None
        outcome = self._normalizer.normalize(
            record.topic, record.partition, record.offset, bytes(record.payload or b""), record.received_at_ms
        )
        if isinstance(outcome, DeadLetter):
            yield DEAD_LETTERS, outcome
            return
        for event in outcome:
            if isinstance(event, OrderEvent):
                yield event
                if event.identities:
                    yield IDENTIFIED_ORDERS, event
            else:
                yield ROUTES[type(event)], event


def waybill_of(event: ShipmentEvent | WaybillLink | WaybillPosition) -> str:
    return event.waybill


def vehicle_of(event: VehicleLoad | VehiclePing) -> str:
    return event.vehicle_id


class TrackVehicles(KeyedProcessFunction):  # type: ignore[misc]
    """Keyed by vehicle: which waybills it carries (its latest manifest) and where it is.

    A ping newer than the last one passed on, by at least interval_ms of event
    time, goes to every waybill on board; late and repeated pings do not. The
    manifest and the pings come on different topics, so either may be first: the
    newest ping is kept and passed on when its manifest arrives.
    """

    def __init__(self, interval_ms: int) -> None:
        self._interval_ms = interval_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self._load = runtime_context.get_state(ValueStateDescriptor("load", Types.PICKLED_BYTE_ARRAY()))
        self._newest_ping = runtime_context.get_state(ValueStateDescriptor("newest-ping", Types.PICKLED_BYTE_ARRAY()))
        self._passed_on_ms = runtime_context.get_state(ValueStateDescriptor("passed-on", Types.LONG()))

    def process_element(self, event: VehicleLoad | VehiclePing, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        ping: VehiclePing | None = self._newest_ping.value()
        if isinstance(event, VehicleLoad):
            current: VehicleLoad | None = self._load.value()
            if current is not None and event.departed_at_ms < current.departed_at_ms:
                return
            self._load.update(event)
            self._passed_on_ms.clear()
        elif ping is None or event.at_ms > ping.at_ms:
            self._newest_ping.update(event)
            ping = event
        else:
            return
        yield from self._pass_on(ping)

    def _pass_on(self, ping: VehiclePing | None) -> Iterator[WaybillPosition]:
        load: VehicleLoad | None = self._load.value()
        passed_on = self._passed_on_ms.value()
        if load is None or ping is None or ping.at_ms < load.departed_at_ms:
            return
        if passed_on is not None and ping.at_ms < passed_on + self._interval_ms:
            return
        self._passed_on_ms.update(ping.at_ms)
        for waybill in load.waybills:
            yield WaybillPosition(waybill, ping.at_ms, ping.lat, ping.lon, ping.vehicle_id)


def order_key(event: OrderEvent | CustomerAssignment) -> str:
    return event.order.key


class ResolveWaybills(KeyedProcessFunction):  # type: ignore[misc]
    """Keyed by waybill: turns carrier scans into events of the order the waybill belongs to.

    Each scan passes once, however often the carrier repeats it. Scans that arrive
    before any source has linked the waybill to an order wait in state (at most
    MAX_PENDING_SHIPMENT_EVENTS per waybill) until the link comes; of positions,
    only the newest waits.
    """

    def open(self, runtime_context: RuntimeContext) -> None:
        self._order = runtime_context.get_state(ValueStateDescriptor("order", Types.PICKLED_BYTE_ARRAY()))
        self._pending = runtime_context.get_list_state(ListStateDescriptor("pending", Types.PICKLED_BYTE_ARRAY()))
        self._seen_scans = runtime_context.get_map_state(
            MapStateDescriptor("seen-scans", Types.STRING(), Types.BOOLEAN())
        )
        self._position = runtime_context.get_state(ValueStateDescriptor("position", Types.PICKLED_BYTE_ARRAY()))

    def process_element(
        self, event: ShipmentEvent | WaybillLink | WaybillPosition, ctx: KeyedProcessFunction.Context
    ) -> Iterator[Any]:
        if isinstance(event, WaybillPosition):
            linked: OrderRef | None = self._order.value()
            if linked is not None:
                yield _located(event, linked)
            elif (waiting := self._position.value()) is None or event.at_ms > waiting.at_ms:
                self._position.update(event)
            return
        if isinstance(event, WaybillLink):
            if self._order.value() is None:
                self._order.update(event.order)
                yield from (_addressed(shipment, event.order) for shipment in self._pending.get() or ())
                self._pending.clear()
                if (waiting := self._position.value()) is not None:
                    yield _located(waiting, event.order)
                    self._position.clear()
            return
        if self._seen_scans.contains(event.scan_id):
            return
        self._seen_scans.put(event.scan_id, True)
        order: OrderRef | None = self._order.value()
        if order is not None:
            yield _addressed(event, order)
        elif len(list(self._pending.get() or ())) < MAX_PENDING_SHIPMENT_EVENTS:
            self._pending.add(event)
        else:
            log.warning("dropping carrier update for unlinked waybill %s: too many pending", event.waybill)


def _located(position: WaybillPosition, order: OrderRef) -> OrderEvent:
    detail = f"vehicle {position.vehicle_id}"
    return OrderEvent(order, position.at_ms, RAW_GPS, detail=detail, position=(position.lat, position.lon))


def _addressed(shipment: ShipmentEvent, order: OrderRef) -> OrderEvent:
    return OrderEvent(
        order=order,
        at_ms=shipment.at_ms,
        source=shipment.source,
        status=shipment.status,
        detail=shipment.location,
        position=shipment.position,
    )


class MapStateDict(MutableMapping[str, Any]):
    """Flink MapState seen as a dict, so that pure logic written against dicts runs on state."""

    def __init__(self, state: Any) -> None:
        self._state = state

    def __getitem__(self, key: str) -> Any:
        if not self._state.contains(key):
            raise KeyError(key)
        return self._state.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._state.put(key, value)

    def __delitem__(self, key: str) -> None:
        self._state.remove(key)

    def __contains__(self, key: object) -> bool:
        return bool(self._state.contains(key))

    def __iter__(self) -> Iterator[str]:
        return iter(self._state.keys())

    def __len__(self) -> int:
        return sum(1 for _ in self)


CUSTOMER_LINKS = OutputTag("customer-links", Types.PICKLED_BYTE_ARRAY())
ALL_CUSTOMERS = "all"


def all_customers(event: object) -> str:
    """One key for identity resolution: merges can join any two customers."""
    return ALL_CUSTOMERS


class ResolveCustomers(KeyedProcessFunction):  # type: ignore[misc]
    """One identity graph (schemas/identity.py) in keyed state: orders get their customer,
    identifiers their link (side output); merges move every order and link they touch."""

    def __init__(self, strong_kinds: frozenset[str]) -> None:
        self._strong_kinds = strong_kinds

    def open(self, runtime_context: RuntimeContext) -> None:
        parents = runtime_context.get_map_state(MapStateDescriptor("parents", Types.STRING(), Types.STRING()))
        components = runtime_context.get_map_state(
            MapStateDescriptor("components", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        )
        self._graph = IdentityGraph(MapStateDict(parents), MapStateDict(components), self._strong_kinds)
        self._version = runtime_context.get_state(ValueStateDescriptor("version", Types.LONG()))

    def process_element(self, event: OrderEvent, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        memberships = self._graph.observe(event.order.key, event.identities)
        if not memberships:
            return
        version = (self._version.value() or 0) + 1
        self._version.update(version)
        for membership in memberships:
            if membership.is_order:
                yield CustomerAssignment(OrderRef.from_key(membership.member), membership.customer_id)
            else:
                kind = identifier_kind(membership.member)
                strong = kind in self._strong_kinds
                yield CUSTOMER_LINKS, CustomerLink(membership.member, kind, membership.customer_id, strong, version)


class TrackOrders(KeyedProcessFunction):  # type: ignore[misc]
    """Keyed by order: merges each event (and customer assignment) into the order's view;
    emits the row when it changed."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self._view = runtime_context.get_state(ValueStateDescriptor("view", Types.PICKLED_BYTE_ARRAY()))

    def process_element(
        self, event: OrderEvent | CustomerAssignment, ctx: KeyedProcessFunction.Context
    ) -> Iterator[Any]:
        view: OrderView = self._view.value() or OrderView(event.order)
        updated = view.apply(event)
        if updated is view:
            return
        self._view.update(updated)
        row = updated.row()
        if row is not None:
            yield row


JOURNEY_COLUMNS = ("channel", "order_id", "at", "event_id", "status", "source", "detail")


def journey_row(event: OrderEvent) -> tuple[Any, ...]:
    status = event.status.value if event.status else ""
    return (
        event.order.channel,
        event.order.order_id,
        utc(event.at_ms),
        event.event_id,
        status,
        event.source,
        event.detail,
    )


CUSTOMER_LINK_COLUMNS = ("identity", "kind", "customer_id", "strong", "version")


def customer_link_row(link: CustomerLink) -> tuple[Any, ...]:
    return (link.identity, link.kind, link.customer_id, link.strong, link.version)


MODIFICATION_COLUMNS = ("channel", "order_id", "at", "kind", "succeeded", "error")
SERVICE_MESSAGE_COLUMNS = ("channel", "order_id", "identity", "at", "intents")
SIGNAL_COLUMNS = ("kind", "subject", "at", "until", "level", "lat", "lon", "delay_min")


def modification_row(change: OrderModification) -> tuple[Any, ...]:
    order = change.order
    return (order.channel, order.order_id, utc(change.at_ms), change.kind, change.succeeded, change.error)


def service_message_row(message: ServiceMessage) -> tuple[Any, ...]:
    at = utc(message.at_ms)
    return (message.channel, message.order_id, message.identity, at, list(message.intents))


def signal_row(signal: Signal) -> tuple[Any, ...]:
    until = utc(signal.until_ms) if signal.until_ms is not None else None
    return (
        signal.kind,
        signal.subject,
        utc(signal.at_ms),
        until,
        signal.level,
        signal.lat,
        signal.lon,
        signal.delay_min,
    )


def dead_letter_row(letter: DeadLetter) -> tuple[Any, ...]:
    return (
        letter.source_topic,
        letter.partition,
        letter.offset,
        letter.raw,
        letter.reason,
        letter.detail,
        utc(letter.received_at_ms),
    )


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


class Sharded:
    """Makes a row from an event and pairs it with a stable shard, from the row's identity (first two columns)."""

    def __init__(self, to_row: Callable[[Any], tuple[Any, ...]], shards: int) -> None:
        self._to_row = to_row
        self._shards = shards

    def __call__(self, event: Any) -> tuple[int, tuple[Any, ...]]:
        row = self._to_row(event)
        return zlib.crc32(f"{row[0]}|{row[1]}".encode()) % self._shards, row


def shard_key(sharded: tuple[int, tuple[Any, ...]]) -> int:
    return sharded[0]


class ClickHouseBatchSink(KeyedProcessFunction):  # type: ignore[misc]
    """Writes rows to one ClickHouse table in batches, keyed by shard.

    Rows wait in keyed state, so a checkpoint taken before they are written
    holds them; a batch is written when its first row is flush_interval_ms old
    (one processing-time timer per shard, not per row) or when it reaches
    max_rows. A write that keeps failing fails the task and Flink restores the
    batch from the last checkpoint: at-least-once, and idempotent because every
    target table is a ReplacingMergeTree keyed by the row's identity.
    """

    def __init__(
        self, target: ClickHouseTarget, table: str, columns: Sequence[str], flush_interval_ms: int, max_rows: int
    ) -> None:
        self._target = target
        self._table = table
        self._columns = tuple(columns)
        self._flush_interval_ms = flush_interval_ms
        self._max_rows = max_rows
        self._writer: BatchWriter | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._writer = BatchWriter(self._target, self._table, self._columns)
        self._rows = runtime_context.get_list_state(ListStateDescriptor("rows", Types.PICKLED_BYTE_ARRAY()))
        self._count = runtime_context.get_state(ValueStateDescriptor("count", Types.INT()))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def process_element(self, sharded: tuple[int, tuple[Any, ...]], ctx: KeyedProcessFunction.Context) -> None:
        self._rows.add(sharded[1])
        count = (self._count.value() or 0) + 1
        if count >= self._max_rows:
            self._flush()
            return
        if count == 1:
            timers = ctx.timer_service()
            timers.register_processing_time_timer(timers.current_processing_time() + self._flush_interval_ms)
        self._count.update(count)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> None:
        self._flush()

    def _flush(self) -> None:
        assert self._writer is not None
        rows = list(self._rows.get() or ())
        if rows:
            self._writer.write(rows)
        self._rows.clear()
        self._count.clear()
