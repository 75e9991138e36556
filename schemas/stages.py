"""The job's stateful logic, a batch of events at a time, on state held in mappings.

Each stage owns one kind of entity (vehicles, waybills, customers, orders). Its
state is a mapping from entity key to a small immutable value: a plain dict in
the baseline consumer and in tests, Flink MapState in the job (jobs/operators.py).
A batch touches each entity once: one read and one write per entity, whatever
the number of its events, because state access is what costs in Flink.

Entities expire: each carries the event time after which it may go
(`expires_at_ms`), indexed by day; `sweep` removes those whose time has passed
the watermark, and re-indexes those that were touched since.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Generic, TypeVar

from schemas.alerts import AlertStep, closed, follow
from schemas.compact import compact_pickle
from schemas.eta import Leg, learn
from schemas.event_time import UNKNOWN
from schemas.events import (
    CanonicalEvent,
    CustomerAssignment,
    CustomerLink,
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
    fact_id_of,
)
from schemas.geo import Point
from schemas.health import (
    BREAKER_SIGNAL,
    MINUTE_MS,
    Conditions,
    HealthPolicy,
    assess,
    is_condition,
    is_settled,
    traffic_found,
    warned_region,
)
from schemas.identity import IdentityGraph, IdentityRules, IdentityState, customer_rank, identifier_kind
from schemas.kpi import KpiFact, order_facts
from schemas.order_view import Mark, OrderView, is_passed_on_position
from schemas.rules import NO_RULES, PublishedRules, RuleError, RuleSet, Subject
from schemas.tables import (
    ALERTS,
    CUSTOMER_LINKS,
    DEGENERATE_IDENTIFIERS,
    ETA_LEGS,
    MODIFICATIONS,
    ORDER_EVENTS,
    ORDER_HEALTH_HISTORY,
    ORDERS_CURRENT,
    RULE_SETS,
    SERVICE_MESSAGES,
    SIGNALS,
    Row,
    Table,
)
from schemas.topics import RAW_GPS

LOG = logging.getLogger(__name__)
DAY_MS = 86_400_000
MAX_PENDING_SHIPMENT_EVENTS = 100
E = TypeVar("E")
S = TypeVar("S")


@dataclass(frozen=True)
class Retention:
    """How long (event time) entities stay in state after their last event (defaults: jobs/settings.py)."""

    finished_order_ms: int  # late confirmations and return requests still find the order
    open_order_ms: int
    unlinked_waybill_ms: int
    linked_waybill_ms: int
    vehicle_ms: int


class ExpiryIndex:
    """Entity keys by the day their entity may expire, in their own mapping (MapState in the job).

    One entry per entity, keyed "day|key", so adding is one write whatever the day's size;
    a sweep reads the index once."""

    def __init__(self, entries: MutableMapping[str, bool]) -> None:
        self._entries = entries

    def add(self, key: str, expires_at_ms: int) -> None:
        self._entries[f"{expires_at_ms // DAY_MS:08d}|{key}"] = True

    def due(self, watermark_ms: int) -> list[str]:
        """Keys indexed on days wholly before the watermark's day, each entry removed once read."""
        today = watermark_ms // DAY_MS
        due = [entry for entry in self._entries if int(entry.split("|", 1)[0]) < today]
        for entry in due:
            del self._entries[entry]
        return [entry.split("|", 1)[1] for entry in due]


class Stage(Generic[S]):
    """Entities of one kind in `entities`, with their expiry index."""

    def __init__(self, entities: MutableMapping[str, S], expiry: MutableMapping[str, bool]) -> None:
        self.entities = entities
        self._expiry = ExpiryIndex(expiry)

    def expires_at(self, entity: S) -> int:
        raise NotImplementedError

    def store(self, key: str, entity: S, before: S | None) -> None:
        """Store the entity; index it when new, and again when its expiry moved earlier (an order became
        final): a sweep re-checks every entry, so an entity indexed twice is harmless."""
        self.entities[key] = entity
        expires_at = self.expires_at(entity)
        if before is None or expires_at // DAY_MS < self.expires_at(before) // DAY_MS:
            self._expiry.add(key, expires_at)

    def update_each(self, events: Iterable[E], key: Callable[[E], str], new: S, observe: Callable[[S, E], S]) -> None:
        """Each entity the events touch: read once, every event of the batch observed, stored once if changed."""
        for entity_key, changes in grouped(events, key).items():
            before = self.entities.get(entity_key)
            entity = before or new
            for change in changes:
                entity = observe(entity, change)
            if entity is not before:
                self.store(entity_key, entity, before)

    def sweep(self, watermark_ms: int) -> int:
        """Remove the entities whose time has passed; returns how many went."""
        removed = 0
        for key in self._expiry.due(watermark_ms):
            entity = self.entities.get(key)
            if entity is None:
                continue
            expires_at = self.expires_at(entity)
            if expires_at < watermark_ms:
                self.leaving(entity, expires_at)
                del self.entities[key]
                removed += 1
            else:
                self._expiry.add(key, expires_at)
        return removed

    def leaving(self, entity: S, at_ms: int) -> None:
        """Called for an entity about to leave state at event time at_ms."""


STATELESS_TABLES: dict[type, Table] = {
    OrderModification: MODIFICATIONS,
    ServiceMessage: SERVICE_MESSAGES,
    Signal: SIGNALS,
}


@dataclass
class Routed:
    """A batch's canonical events by the stage that owns them; rows of tables that need no state."""

    orders: list[OrderEvent | Mark] = field(default_factory=list)  # with the messages and changes naming an order
    customers: list[OrderEvent] = field(default_factory=list)  # order events that name their buyer
    signals: list[Signal] = field(default_factory=list)  # the conditions health reads, for every lane
    legs: list[Leg] = field(default_factory=list)  # delivered orders, for every lane to learn arrivals from
    rules: list[PublishedRules] = field(default_factory=list)  # business rule sets, for every lane to apply
    waybills: list[ShipmentEvent | WaybillLink] = field(default_factory=list)
    vehicles: list[VehicleLoad | VehiclePing] = field(default_factory=list)
    rows: dict[str, list[Row]] = field(default_factory=lambda: defaultdict(list))

    @property
    def context(self) -> list[Signal | Leg | PublishedRules]:
        """What every order lane hears of."""
        return [*self.signals, *self.legs, *self.rules]

    def add(self, event: CanonicalEvent | Leg | PublishedRules) -> None:
        if isinstance(event, OrderEvent):
            self.orders.append(event)
            if event.identities:
                self.customers.append(event)
        elif isinstance(event, ShipmentEvent | WaybillLink):
            self.waybills.append(event)
        elif isinstance(event, VehicleLoad | VehiclePing):
            self.vehicles.append(event)
        elif isinstance(event, Leg):
            self.legs.append(event)
        elif isinstance(event, PublishedRules):
            self.rules.append(event)
            self.rows[RULE_SETS.name].append(event.row())
        else:
            table = STATELESS_TABLES[type(event)]
            self.rows[table.name].append(table.row(event))
            if isinstance(event, Signal):
                if is_condition(event):
                    self.signals.append(event)
            elif isinstance(event, OrderModification) or event.order_id:
                self.orders.append(event)


def event_time_of(event: CanonicalEvent | Leg | PublishedRules) -> int | None:
    """None for what tells no time of the sources: a leg or a breaker is the job's own record, read back; a rule
    set is control."""
    if isinstance(event, VehicleLoad):
        return event.departed_at_ms
    if isinstance(event, Leg | PublishedRules) or (isinstance(event, Signal) and event.kind == BREAKER_SIGNAL):
        return None
    return getattr(event, "at_ms", None)


def grouped(events: Iterable[E], key: Any) -> dict[str, list[E]]:
    by_key: dict[str, list[E]] = defaultdict(list)
    for event in events:
        by_key[key(event)].append(event)
    return by_key


# --- vehicles -----------------------------------------------------------------------------


@compact_pickle
@dataclass(frozen=True, slots=True)
class Vehicle:
    load: VehicleLoad | None = None
    newest_ping: VehiclePing | None = None
    passed_on_ms: int | None = None  # event time of the last ping passed on to the load
    last_seen_ms: int = 0
    waiting: tuple[VehiclePing, ...] = ()  # pings read before any manifest (the newest PINGS_WAITING), by time


PINGS_WAITING = 16  # a replay reads a vehicle's pings ahead of its manifest: enough for a trip's stops to be told


def vehicle_of(event: VehicleLoad | VehiclePing) -> str:
    return event.vehicle_id


class VehicleStage(Stage[Vehicle]):
    """Which waybills a vehicle carries (its latest manifest) and where it is.

    A ping newer than the last one passed on, by at least interval_ms of event
    time, goes to every waybill on board; late and repeated pings do not. Manifest
    and pings come on different topics, so either may be first: pings wait (the
    newest PINGS_WAITING) and are passed on, as they would have been, when the
    manifest arrives.
    """

    def __init__(self, entities: MutableMapping[str, Vehicle], expiry: Any, interval_ms: int, retention: Retention):
        super().__init__(entities, expiry)
        self._interval_ms = interval_ms
        self._retention = retention

    def expires_at(self, entity: Vehicle) -> int:
        return entity.last_seen_ms + self._retention.vehicle_ms

    def apply(self, events: Iterable[VehicleLoad | VehiclePing]) -> list[WaybillPosition]:
        positions: list[WaybillPosition] = []
        self.update_each(events, vehicle_of, Vehicle(), lambda vehicle, event: self._observe(vehicle, event, positions))
        return positions

    def _observe(self, vehicle: Vehicle, event: VehicleLoad | VehiclePing, out: list[WaybillPosition]) -> Vehicle:
        seen = max(vehicle.last_seen_ms, event.departed_at_ms if isinstance(event, VehicleLoad) else event.at_ms)
        if isinstance(event, VehicleLoad):
            if vehicle.load is not None and event.departed_at_ms < vehicle.load.departed_at_ms:
                return vehicle
            pings = vehicle.waiting or ((vehicle.newest_ping,) if vehicle.newest_ping else ())
            vehicle = replace(vehicle, load=event, passed_on_ms=None, last_seen_ms=seen, waiting=())
        elif vehicle.newest_ping is None or event.at_ms > vehicle.newest_ping.at_ms:
            waiting = vehicle.waiting if vehicle.load is not None else (*vehicle.waiting, event)[-PINGS_WAITING:]
            vehicle, pings = replace(vehicle, newest_ping=event, last_seen_ms=seen, waiting=waiting), (event,)
        else:
            return vehicle
        return self._pass_on(vehicle, pings, out)

    def _pass_on(self, vehicle: Vehicle, pings: tuple[VehiclePing, ...], out: list[WaybillPosition]) -> Vehicle:
        """The vehicle after passing on the pings (by time) due to its load: each after its departure, and
        interval_ms after the last one passed on."""
        load, passed_on = vehicle.load, vehicle.passed_on_ms
        if load is None:
            return vehicle
        for ping in pings:
            if ping.at_ms < load.departed_at_ms or (
                passed_on is not None and ping.at_ms < passed_on + self._interval_ms
            ):
                continue
            out.extend(WaybillPosition(w, ping.at_ms, ping.lat, ping.lon, ping.vehicle_id) for w in load.waybills)
            passed_on = ping.at_ms
        return vehicle if passed_on == vehicle.passed_on_ms else replace(vehicle, passed_on_ms=passed_on)


# --- waybills -----------------------------------------------------------------------------


@compact_pickle
@dataclass(frozen=True, slots=True)
class Waybill:
    order: OrderRef | None = None
    seen_scans: frozenset[str] = frozenset()
    pending: tuple[ShipmentEvent, ...] = ()  # scans that came before the waybill's order was known
    waiting_position: WaybillPosition | None = None  # only the newest waits
    last_seen_ms: int = 0


WaybillEvent = ShipmentEvent | WaybillLink | WaybillPosition


def waybill_of(event: WaybillEvent) -> str:
    return event.waybill


class WaybillStage(Stage[Waybill]):
    """Turns carrier scans and vehicle positions into events of the order each waybill belongs to.

    Each scan passes once, however often the carrier repeats it. Scans that arrive
    before any source has linked the waybill to an order wait (at most
    MAX_PENDING_SHIPMENT_EVENTS per waybill) until the link comes.
    """

    def __init__(self, entities: MutableMapping[str, Waybill], expiry: Any, retention: Retention) -> None:
        super().__init__(entities, expiry)
        self._retention = retention

    def expires_at(self, entity: Waybill) -> int:
        keep = self._retention.linked_waybill_ms if entity.order else self._retention.unlinked_waybill_ms
        return entity.last_seen_ms + keep

    def apply(self, events: Iterable[WaybillEvent]) -> list[OrderEvent]:
        out: list[OrderEvent] = []
        self.update_each(events, waybill_of, Waybill(), lambda waybill, event: self._observe(waybill, event, out))
        return out

    def _observe(self, waybill: Waybill, event: WaybillEvent, out: list[OrderEvent]) -> Waybill:
        if isinstance(event, WaybillLink):
            if waybill.order is not None:
                return waybill
            out.extend(_addressed(scan, event.order) for scan in waybill.pending)
            if waybill.waiting_position is not None:
                out.append(_located(waybill.waiting_position, event.order))
            seen = max(waybill.last_seen_ms, event.at_ms)
            return replace(waybill, order=event.order, pending=(), waiting_position=None, last_seen_ms=seen)
        if isinstance(event, WaybillPosition):
            if waybill.order is not None:
                out.append(_located(event, waybill.order))
                return replace(waybill, last_seen_ms=max(waybill.last_seen_ms, event.at_ms))
            waiting = waybill.waiting_position
            if waiting is None or event.at_ms > waiting.at_ms:
                return replace(waybill, waiting_position=event, last_seen_ms=max(waybill.last_seen_ms, event.at_ms))
            return waybill
        return self._scan(waybill, event, out)

    def _scan(self, waybill: Waybill, scan: ShipmentEvent, out: list[OrderEvent]) -> Waybill:
        if scan.scan_id in waybill.seen_scans:
            return waybill
        seen = replace(
            waybill, seen_scans=waybill.seen_scans | {scan.scan_id}, last_seen_ms=max(waybill.last_seen_ms, scan.at_ms)
        )
        if waybill.order is not None:
            out.append(_addressed(scan, waybill.order))
            return seen
        if len(waybill.pending) >= MAX_PENDING_SHIPMENT_EVENTS:
            return seen  # a waybill that never gets its order cannot hold unbounded state
        return replace(seen, pending=(*waybill.pending, scan))


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
        carrier=shipment.carrier,
    )


# --- customers ----------------------------------------------------------------------------


@dataclass
class Resolved:
    """What a batch told about customers: orders' assignments, and rows of customer_links and
    degenerate_identifiers."""

    assignments: list[CustomerAssignment] = field(default_factory=list)
    rows: dict[str, list[Row]] = field(default_factory=lambda: defaultdict(list))


class CustomerStage:
    """One identity graph (schemas/identity.py): orders get their customer, identifiers their
    link; merges move every order and link they touch. Customers do not expire."""

    def __init__(self, state: IdentityState, rules: IdentityRules) -> None:
        self._graph = IdentityGraph(state, rules)
        self._strong_kinds = rules.strong

    def apply(self, events: Iterable[OrderEvent]) -> Resolved:
        resolved = Resolved()
        links, degenerate = resolved.rows[CUSTOMER_LINKS.name], resolved.rows[DEGENERATE_IDENTIFIERS.name]
        for event in events:
            observation = self._graph.observe(event.order.key, event.identities, event.at_ms)
            for membership in observation.memberships:
                customer = membership.customer_id
                if membership.is_order:
                    order = OrderRef.from_key(membership.member)
                    resolved.assignments.append(CustomerAssignment(order, customer, event.at_ms))
                else:
                    kind = identifier_kind(membership.member)
                    link = CustomerLink(membership.member, kind, customer, kind in self._strong_kinds,
                                        customer_rank(customer))  # fmt: skip
                    links.append(CUSTOMER_LINKS.row(link))
            degenerate.extend(map(DEGENERATE_IDENTIFIERS.row, observation.degenerate))
        return resolved


# --- orders -------------------------------------------------------------------------------


def order_key(event: OrderEvent | CustomerAssignment | Mark) -> str:
    return event.order.key


OrderChange = OrderEvent | CustomerAssignment | Mark
OrderItem = OrderChange | Signal | Leg | PublishedRules  # what the order stage receives


@dataclass
class OrderRows:
    current: list[Row] = field(default_factory=list)
    journey: list[Row] = field(default_factory=list)
    health: list[Row] = field(default_factory=list)  # order_health_history
    alerts: list[AlertStep] = field(default_factory=list)
    legs: list[Leg] = field(default_factory=list)  # orders delivered: to eta_legs, and back to every lane
    facts: list[KpiFact] = field(default_factory=list)  # for the KPI windows (schemas/kpi.py)

    def extend(self, other: OrderRows) -> None:
        self.current += other.current
        self.journey += other.journey
        self.health += other.health
        self.alerts += other.alerts
        self.legs += other.legs
        self.facts += other.facts

    def by_table(self) -> dict[str, list[Row]]:
        tables = {
            ORDERS_CURRENT.name: self.current,
            ORDER_EVENTS.name: self.journey,
            ORDER_HEALTH_HISTORY.name: self.health,
            ALERTS.name: [step.row() for step in self.alerts],
            ETA_LEGS.name: [leg.row() for leg in self.legs],
        }
        return {table: rows for table, rows in tables.items() if rows}


def ceil_minute(at_ms: int) -> int:
    return -(-at_ms // MINUTE_MS) * MINUTE_MS


class CheckIndex:
    """When to look at an order again if nothing more is heard of it: order keys by the minute of event
    time their check is due, so that a quiet order turns yellow or red on time without a timer each.

    State: one entry per minute holding its keys, and one holding the pending minutes; a batch's
    additions are written once per minute (`flush`). An order has at most one live entry
    (OrderView.check_at_ms); entries left behind when its check moved are skipped when due.
    """

    PENDING = "pending"

    def __init__(self, entries: MutableMapping[str, Any]) -> None:
        self._entries = entries
        self._added: dict[int, list[str]] = defaultdict(list)

    def add(self, key: str, at_ms: int) -> int:
        """Index the key at the minute at or after at_ms; returns that minute's time."""
        at_minute = ceil_minute(at_ms)
        self._added[at_minute // MINUTE_MS].append(key)
        return at_minute

    def flush(self) -> None:
        if not self._added:
            return
        for minute, keys in self._added.items():
            self._entries[str(minute)] = (*self._entries.get(str(minute), ()), *keys)
        self._entries[self.PENDING] = self._pending() | self._added.keys()
        self._added.clear()

    def take_due(self, watermark_ms: int) -> list[tuple[int, tuple[str, ...]]]:
        """The entries due by the watermark, earliest first, each removed as it is read."""
        self.flush()
        pending = self._pending()
        due = sorted(minute for minute in pending if minute * MINUTE_MS <= watermark_ms)
        if not due:
            return []
        taken = [(minute * MINUTE_MS, self._entries.get(str(minute), ())) for minute in due]
        for minute in due:
            del self._entries[str(minute)]
        self._entries[self.PENDING] = pending.difference(due)
        return taken

    def _pending(self) -> frozenset[int]:
        pending: frozenset[int] = self._entries.get(self.PENDING, frozenset())
        return pending


class OrderStage(Stage[OrderView]):
    """Merges each event (customer assignment, buyer's message, modification) into its order's view and
    assesses the order's health (schemas/health.py) whenever its view changes or a check falls due;
    the assessment opens, updates and resolves alerts (schemas/alerts.py).

    Each assessment also estimates the order's arrival (schemas/eta.py) from what the lane learned of
    delivered orders: every lane hears of every delivery (a leg), and an order delivered here makes one.

    Rows: a new fact makes a journey row, a changed view an orders_current row, a changed health or an
    estimate that moved an order_health_history row; alert steps go to the alerts table and topic.
    Signals (weather, ports) reach every lane and are kept as the conditions that later assessments read.
    """

    CONDITIONS = "conditions"
    RULES = "rules"

    def __init__(
        self, state: OrderState, retention: Retention, policy: HealthPolicy, rules: PublishedRules = NO_RULES
    ) -> None:
        super().__init__(state.orders, state.expiry)
        self._checks = CheckIndex(state.checks)
        self._context = state.context
        self._retention = retention
        self._policy = policy
        self._starting_rules = rules  # in force until a rule set is published (published_at 0)
        self._compiled: dict[PublishedRules, RuleSet] = {}
        self._expired: list[AlertStep] = []  # see leaving()

    def expires_at(self, entity: OrderView) -> int:
        keep = self._retention.finished_order_ms if entity.is_final else self._retention.open_order_ms
        # Known only by its customer so far (its first event is on its way, or a merge reached an order
        # that had left state): kept from the time of the event that assigned the customer.
        return (entity.updated_at_ms if entity.is_heard_from else entity.assigned_at_ms) + keep

    def apply(self, items: Iterable[OrderItem], watermark_ms: int = UNKNOWN) -> OrderRows:
        """Rows from a batch; views are assessed at the watermark, never at their own newest event: that event
        may come from a partition read ahead of the others (a buyer's message stamped a day later, a vehicle's
        position passed on before the scans read with it), and an assessment at its time would find overdue
        every step whose event is still unread. Before event time is known at all, a changed view is looked
        at once it is: a check at its first event walks it forward (check_due)."""
        rows = OrderRows()
        changes: list[OrderChange] = []
        legs: list[Leg] = []
        signals: list[Signal] = []
        adopted = False
        for item in items:
            if isinstance(item, Signal):
                signals.append(item)
            elif isinstance(item, Leg):
                legs.append(item)
            elif isinstance(item, PublishedRules):
                adopted |= self._adopt(item)
            else:
                changes.append(item)
        warned, tripped = self._observe(signals, watermark_ms)
        if legs := [leg for leg in legs if watermark_ms == UNKNOWN or leg.delivered_at_ms <= watermark_ms + DAY_MS]:
            learn(self._context, legs, self._policy.eta)  # a leg from beyond tomorrow is a clock gone wrong
            self._keep(self._conditions().with_places(_delivery_places(legs)))
        conditions, rules = self._conditions(), self._rules()
        assessed: set[str] = set()  # under the conditions with this batch's signals
        for key, order_changes in grouped(changes, order_key).items():
            before = self.entities.get(key)
            view = self._merged(before or OrderView(order_changes[0].order), order_changes, rows)
            if view is before:
                continue
            rows.facts += order_facts(before, view)
            now = max(watermark_ms, view.assessed_at_ms)  # never back: see version
            if view.track.current is not None and not self._moved_quietly(before, view, order_changes, now, conditions):
                if now <= 0:  # no event time yet, nor an earlier assessment: nothing can be found overdue
                    view = self._look_again_at_first_event(view)
                else:
                    view = self._checked_up_to(view, now, conditions, rules, rows)
                    view, _ = self._assessed(view, now, conditions, rules, rows)
                    assessed.add(key)
            self.store(key, view, before)
            if (row := view.row()) is not None:
                rows.current.append(row)
        if adopted:
            self._assess_all(watermark_ms, conditions, rules, rows)
        elif warned or tripped:
            concerned = partial(_concerned_by, warned, tripped, assessed)
            self._assess_all(watermark_ms, conditions, rules, rows, concerned)
        self._checks.flush()
        return rows

    def _moved_quietly(
        self, before: OrderView | None, view: OrderView, changes: list[OrderChange], now_ms: int, conditions: Conditions
    ) -> bool:
        """Whether the changes moved a well order on without news (_moved_while_well): not when its way now passes
        a traffic incident in force, which its vehicle's positions are the only way to find."""
        if not _moved_while_well(before, changes, now_ms):
            return False
        return (
            now_ms >= conditions.traffic_until_ms
            or traffic_found(self._policy, conditions, view.facts_for_health(now_ms), now_ms) is None
        )

    def _assess_all(
        self,
        watermark_ms: int,
        conditions: Conditions,
        rules: RuleSet,
        rows: OrderRows,
        concerned: Callable[[OrderView], bool] | None = None,
    ) -> None:
        """Every order (or every one concerned) assessed now, not only as each is next heard of: a new rule set
        reaches quiet orders and a retired one leaves them; a weather warning reaches the parcels on their way into
        it, though none may be heard of until it ends. Once per rule set published or warning issued: the lane's
        whole state is read."""
        for key in list(self.entities):
            view = self.entities.get(key)
            if view is None or view.track.current is None or (concerned is not None and not concerned(view)):
                continue
            now = max(watermark_ms, view.assessed_at_ms)  # at the watermark, as apply assesses
            if now <= 0:
                continue  # not assessed yet: its check at its first event comes under the new set
            self._reassess(key, self._checked_up_to(view, now, conditions, rules, rows), now, conditions, rules, rows)

    def _look_again_at_first_event(self, view: OrderView) -> OrderView:
        """The view with a check at its first event, unless an earlier one is pending: once the watermark
        passes it, check_due assesses the order there and at each threshold after, up to the watermark."""
        first = min((at for at in view.reached if at), default=view.updated_at_ms)
        if 0 < view.check_at_ms <= ceil_minute(first):
            return view
        return replace(view, check_at_ms=self._checks.add(view.order.key, first))

    def leaving(self, entity: OrderView, at_ms: int) -> None:
        """An order leaving state closes its open incidents as expired: nothing would resolve them later."""
        version = self._policy.version
        self._expired.extend(closed(entity.order, incident, "expired", at_ms, version) for incident in entity.incidents)

    def take_expired(self) -> list[AlertStep]:
        """The last steps of the incidents of orders that left state since the last call."""
        expired, self._expired = self._expired, []
        return expired

    def check_due(self, watermark_ms: int) -> OrderRows:
        """Assess the orders whose check the watermark has reached, at the check's time: an order that
        went quiet turns yellow or red even if nothing more is ever heard of it."""
        rows, conditions, rules = OrderRows(), self._conditions(), self._rules()
        while due := self._checks.take_due(watermark_ms):
            for at_ms, keys in due:
                for key in keys:
                    view = self.entities.get(key)
                    if view is None or view.check_at_ms != at_ms:
                        continue  # gone, or its check moved
                    self._reassess(key, view, at_ms, conditions, rules, rows, pending_check_ms=0)
        return rows

    def _reassess(
        self,
        key: str,
        view: OrderView,
        now_ms: int,
        conditions: Conditions,
        rules: RuleSet,
        rows: OrderRows,
        pending_check_ms: int | None = None,
    ) -> None:
        """An order assessed again with nothing new heard of it: stored, with a row if anything changed."""
        assessed, changed = self._assessed(view, now_ms, conditions, rules, rows, pending_check_ms)
        self.store(key, assessed, view)
        if changed and (row := assessed.row()) is not None:
            rows.current.append(row)

    def _checked_up_to(
        self, view: OrderView, now_ms: int, conditions: Conditions, rules: RuleSet, rows: OrderRows
    ) -> OrderView:
        """The view after its checks that fall due before now_ms, each at its time, as check_due would have
        made them had this batch not moved event time past them: a silence between two events read in one
        batch (a vehicle quiet for an hour before the hub's scan) is found, then resolved. The checks it walks
        through are not indexed; if it walked, the view has none pending (the next assessment indexes one)."""
        pending = view.check_at_ms
        while 0 < view.check_at_ms < now_ms:
            view, _ = self._assessed(view, view.check_at_ms, conditions, rules, rows, pending_check_ms=0, index=False)
        return view if view.check_at_ms == pending else replace(view, check_at_ms=0)

    def _merged(self, view: OrderView, changes: list[OrderChange], rows: OrderRows) -> OrderView:
        for change in changes:
            if isinstance(change, OrderEvent):
                event_id = change.event_id
                updated = view.merge(change, fact_id_of(event_id))
                if updated is not view or is_passed_on_position(change):  # older fixes too are journey
                    rows.journey.append(ORDER_EVENTS.row((event_id, change)))
                view = updated
            else:
                view = view.apply(change)
        return view

    def _assessed(
        self,
        view: OrderView,
        now_ms: int,
        conditions: Conditions,
        rules: RuleSet,
        rows: OrderRows,
        pending_check_ms: int | None = None,
        index: bool = True,
    ) -> tuple[OrderView, bool]:
        """The view with its health, arrival and business rules' decisions at now_ms, its alerts followed and
        its next check indexed (its pending check is pending_check_ms, or the view's; not indexed unless index);
        whether its health, its published arrival or its decisions changed. An estimate is published when it
        moved enough from the last one published (Estimate.moved_from)."""
        policy = self._policy
        facts = view.facts_for_health(now_ms)
        fresh = view.arrival(self._context, facts, now_ms, policy, conditions)
        health = assess(facts.with_arrival(fresh), now_ms, conditions, policy)
        published = view.eta
        stale = published is None or published.is_past(now_ms)
        eta = published if fresh is not None and not stale and not fresh.moved_from(published) else fresh
        look_again = fresh.next_look_ms if fresh is not None and fresh.next_look_ms > now_ms else None
        decisions = rules.decide(Subject(facts, view.carrier_name, health, eta, conditions, now_ms))
        if decisions == view.decisions:
            decisions = view.decisions  # the same object: no new value to keep
        incidents, steps, rule_incidents = follow(
            view.order, view.incidents, health, decisions, policy, now_ms, view.rule_incidents, rules.version
        )
        leg_sent, leg_due = view.leg_sent, view.leg_due_ms(policy.eta.settle_ms)
        if leg_due is not None and leg_due <= now_ms:
            if (leg := view.leg(policy, conditions)) is not None:
                rows.legs.append(leg)
                leg_sent = True
            leg_due = None  # or it goes with the event that tells its carrier or region, if one ever comes
        check_at = view.check_at_ms if pending_check_ms is None else pending_check_ms
        ahead = view.heard_after(now_ms)
        due = min((at for at in (health.next_check_ms, leg_due, look_again, ahead) if at is not None), default=None)
        if due is None:
            check_at = 0  # a check still indexed is skipped: it would look back in time
        elif not now_ms < check_at <= ceil_minute(due):
            check_at = self._checks.add(view.order.key, due) if index else ceil_minute(due)
        assessed = view.assessed(health, eta, decisions, leg_sent, now_ms, incidents, rule_incidents, check_at)
        changed = not health.same_as(view.health) or eta is not view.eta or decisions is not view.decisions
        if changed:
            rows.health.append(assessed.health_history_row())
        rows.alerts.extend(steps)
        return assessed, changed

    def _rules(self) -> RuleSet:
        """The rule set in force: the last one published, or the one the job started with."""
        published = self._published()
        compiled = self._compiled.get(published)
        if compiled is None:
            try:
                compiled = published.compiled()
            except RuleError as error:  # kept in state by an earlier version whose fields it names
                LOG.error("rule set %s no longer compiles, the starting set is in force until another set "
                          "is published: %s", published.version, error)  # fmt: skip
                compiled = self._starting_rules.compiled()
            self._compiled = {published: compiled}
        return compiled

    def _published(self) -> PublishedRules:
        """The last rule set published, or the one the job started with."""
        published: PublishedRules = self._context.get(self.RULES, self._starting_rules)
        return published

    def _adopt(self, published: PublishedRules) -> bool:
        """A rule set read from the control topic is in force if it was published last; whether it is."""
        current = self._published()
        if (published.published_at_ms, published.spec_json) <= (current.published_at_ms, current.spec_json):
            return False
        self._context[self.RULES] = published
        return True

    def _conditions(self) -> Conditions:
        conditions: Conditions = self._context.get(self.CONDITIONS, NO_CONDITIONS)
        return conditions

    def _observe(self, signals: list[Signal], watermark_ms: int) -> tuple[set[str], set[str]]:
        """Keep the signals among the conditions; the regions whose orders a weather warning new to them, not ended
        by the watermark, changes at once (health.warned_region); the channels whose breaker opened or closed."""
        warned: set[str] = set()
        tripped: set[str] = set()
        for signal in signals:
            before = self._conditions()
            after = before.observe(signal)
            if after is before:
                continue
            self._keep(after)
            if signal.kind == BREAKER_SIGNAL:
                if "channel_breaker" in self._policy.factors:
                    tripped.add(signal.subject)
                continue
            ended = signal.until_ms is not None and signal.until_ms <= watermark_ms
            if not ended and (region := warned_region(self._policy, after, signal)) is not None:
                warned.add(region)
        return warned, tripped

    def _keep(self, conditions: Conditions) -> None:
        if conditions is not self._conditions():
            self._context[self.CONDITIONS] = conditions


NO_CONDITIONS = Conditions.none()


def _delivery_places(legs: list[Leg]) -> dict[str, tuple[int, Point]]:
    """When and where the legs were delivered, by region: the newest that told where."""
    told = sorted((leg.delivered_at_ms, leg.delivered_near, leg.region_code) for leg in legs if leg.delivered_near)
    return {region: (at, point) for at, point, region in told}


def _concerned_by(regions: set[str], channels: set[str], assessed: set[str], view: OrderView) -> bool:
    """Whether the order is on its way to one of the regions or of one of the channels, not settled, and not
    assessed already."""
    current = view.track.current
    if (view.destination not in regions and view.order.channel not in channels) or view.order.key in assessed:
        return False
    return not is_settled(current[0] if current else None, view.reached)


def _moved_while_well(before: OrderView | None, changes: list[OrderChange], now_ms: int) -> bool:
    """Whether the changes are only newer positions of an order that was well, already on a vehicle
    at now_ms (a position newer than its last scan), before its next check: such a position can only
    put the thresholds later, so an assessment would find nothing new (but see traffic, in
    OrderStage._moved_quietly). Positions are the commonest order events (one per vehicle fix passed
    on), so they skip it. Conditions that arrived since reach the order at its next assessment, as they
    reach a quiet order (signals assess no one)."""
    if before is None or before.health is None:
        return False
    if not all(isinstance(change, OrderEvent) and is_passed_on_position(change) for change in changes):
        return False
    health = before.health
    if health.findings or (health.next_check_ms is not None and now_ms >= health.next_check_ms):
        return False
    return before.located_by(now_ms) > before.scanned_by(now_ms)


@dataclass(frozen=True)
class OrderState:
    """The order stage's mappings (MapState in the job)."""

    orders: MutableMapping[str, OrderView]
    expiry: MutableMapping[str, bool]
    checks: MutableMapping[str, Any]
    context: MutableMapping[str, Any]

    @classmethod
    def in_memory(cls) -> OrderState:
        return cls({}, {}, {}, {})
