"""What orderscope knows about one order, merged from every event about it.

The merge depends only on the set of facts seen, never on their arrival order:
the status follows the lifecycle (schemas/lifecycle.py), and every other field
takes the value of the newest event (by event time) that carries it. So does
the row's version: the number of distinct facts merged (positions passed on
from a vehicle are not counted; at most 2,047), then the customer's rank
(schemas/identity.py, its top 24 bits), then the minute of the latest health
assessment (which never goes back, schemas/stages.py). Each only grows and the
first two are highest for the complete view, so after a replay, restore or
fresh run in any order the complete row wins in ReplacingMergeTree(version).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from schemas.alerts import Incident
from schemas.compact import compact_pickle
from schemas.eta import Estimate, Held, LaneFigures, Leg, estimate, furthest_step, leg_of
from schemas.events import CustomerAssignment, OrderEvent, OrderModification, OrderRef, ServiceMessage
from schemas.geo import Point
from schemas.health import KEPT_SILENCE_MS, Conditions, Facts, Health, HealthPolicy, delay_on_way, traffic_hold
from schemas.identity import RANK_LIMIT, customer_rank
from schemas.lifecycle import LIFECYCLE, Status, StatusTrack, shown
from schemas.rules import NO_DECISIONS, Decisions
from schemas.tables import Row
from schemas.topics import RAW_CARRIER, RAW_GPS, RAW_WMS

if TYPE_CHECKING:
    from _typeshed import SupportsDunderLT

# Delivered is not final: the buyer's confirmation, an exchange or a return may follow days later.
FINAL_STATUSES = frozenset({Status.COMPLETED, Status.CANCELLED, Status.RETURNED})
Stamped = tuple[int, Any]  # (event time, value): the newest wins, the larger value on a tie
Mark = ServiceMessage | OrderModification  # what else is said about an order, kept for its health
SCANNING_SOURCES = frozenset({RAW_WMS, RAW_CARRIER})
NOT_REACHED = (0,) * len(LIFECYCLE)
PAID_RANK, DELIVERED_RANK, COMPLETED_RANK = Status.PAID.rank, Status.DELIVERED.rank, Status.COMPLETED.rank
NOT_ARRIVING = frozenset({Status.CANCELLED, Status.RETURNING, Status.RETURNED})
# A step or scan more than this after the event time an order is assessed at was read ahead of the other
# sources (a replay): it is not yet news to health or the arrival estimate, and the order is assessed again
# when event time gets there (schemas/stages.py), as it would have been live. Those just ahead (live traffic:
# seconds behind the watermark's out-of-orderness) count at once.
READ_AHEAD_MS = 10 * 60_000
# The row version packs, most significant first: facts merged (11 bits), the customer's rank
# (its top 24 bits) and the minute of the health assessment (29 bits, minutes since 2000).
FACT_BITS, RANK_BITS, MINUTE_BITS = 11, 24, 29
EPOCH_2000_MS = 946_684_800_000


def _newest(current: Stamped | None, at_ms: int, value: Any) -> Stamped | None:
    if value is None or (current is not None and (current[0], current[1]) >= (at_ms, value)):
        return current
    return (at_ms, value)


def _value(stamped: Stamped | None) -> Any:
    return stamped[1] if stamped is not None else None


def is_passed_on_position(event: OrderEvent) -> bool:
    """A vehicle's position passed on to the orders on board: journey, not a fact of the version."""
    return event.source == RAW_GPS


@compact_pickle
@dataclass(frozen=True, slots=True)
class OrderView:
    order: OrderRef
    track: StatusTrack = StatusTrack()  # noqa: RUF009 - immutable, so one shared default is safe
    facts: frozenset[int] = frozenset()  # fact ids of every event merged (OrderEvent.fact_id)
    customer_id: str = ""
    assigned_at_ms: int = 0  # event time of the customer's assignment
    waybills: tuple[str, ...] = ()  # sorted
    amount_fen: Stamped | None = None
    region_code: Stamped | None = None
    promised_at_ms: Stamped | None = None
    updated_at_ms: int = 0
    places: tuple[Place, ...] = ()  # where its newest positions put it, and when: see _with_place
    reached: tuple[int, ...] = NOT_REACHED  # event time each lifecycle step was first reached; 0 if not
    scans: tuple[int, ...] = ()  # event times of the newest SCANS_KEPT events from a warehouse or carrier, sorted
    fixes: tuple[tuple[int, int], ...] = ()  # its positions' times (vehicle's or scan's), as runs: see _with_fix
    intents: tuple[tuple[int, str], ...] = ()  # (event time, intent) of the buyer's messages, sorted
    changes: tuple[tuple[int, str, bool, str], ...] = ()  # modifications: (event time, kind, succeeded, error)
    carrier: Stamped | None = None  # from warehouse and carrier scans (channels name carriers their own way)
    warehouse: Stamped | None = None  # the warehouse that fulfils it, as the WMS last named it
    # Derived, not merged: the latest assessment and arrival estimate, the incidents it keeps open,
    # the pending check.
    health: Health | None = None
    eta: Estimate | None = None
    decisions: Decisions = NO_DECISIONS  # of the business rules (schemas/rules.py)
    leg_sent: bool = False  # whether its delivery was taught as a leg
    assessed_at_ms: int = 0
    incidents: tuple[Incident, ...] = ()
    rule_incidents: int = 0  # how many incidents business rules have opened on it (their keys count them)
    check_at_ms: int = 0  # event time of the order's entry in the check index; 0 if none

    @property
    def version(self) -> int:
        """Rows of more facts win; then the customer of higher rank; then the later assessment."""
        facts = min(len(self.facts), (1 << FACT_BITS) - 1)
        rank = customer_rank(self.customer_id) * (1 << RANK_BITS) // (RANK_LIMIT + 1)
        minute = max(self.assessed_at_ms - EPOCH_2000_MS, 0) // 60_000
        return (facts << (RANK_BITS + MINUTE_BITS)) | (min(rank, (1 << RANK_BITS) - 1) << MINUTE_BITS) | minute

    @property
    def is_heard_from(self) -> bool:
        """Whether an event about the order itself (a fact or a position) has reached the view."""
        return bool(self.facts) or bool(self.places)

    @property
    def is_final(self) -> bool:
        current = self.track.current
        return current is not None and current[0] in FINAL_STATUSES

    def apply(self, event: OrderEvent | CustomerAssignment | Mark) -> OrderView:
        """The view after the event; the same object when the event changes nothing (a fact seen before)."""
        if isinstance(event, CustomerAssignment):
            if self.customer_id and event.customer_id >= self.customer_id:
                return self  # not a merge: an older assignment arriving late
            return replace(self, customer_id=event.customer_id, assigned_at_ms=event.at_ms)
        if isinstance(event, OrderEvent):
            return self.merge(event, event.fact_id)
        return self.note(event)

    def note(self, mark: Mark) -> OrderView:
        """A buyer's message or a modification's outcome: a fact, kept for what it says about health."""
        fact_id = mark.fact_id
        if fact_id in self.facts:
            return self
        noted = replace(self, facts=self.facts | {fact_id}, updated_at_ms=max(self.updated_at_ms, mark.at_ms))
        if isinstance(mark, ServiceMessage):
            said = {(mark.at_ms, intent) for intent in mark.intents}
            return replace(noted, intents=tuple(sorted(set(self.intents) | said)))
        change = (mark.at_ms, mark.kind, mark.succeeded, mark.error)
        return replace(noted, changes=tuple(sorted({*self.changes, change})))

    def merge(self, event: OrderEvent, fact_id: int) -> OrderView:
        """apply() for an event whose fact id the caller has computed already."""
        if is_passed_on_position(event):
            return self._located(event)
        if fact_id in self.facts:
            return self
        at = event.at_ms
        return OrderView(  # positional, not dataclasses.replace: this is the hottest line of the job
            self.order,
            self.track.observe(event.status, at) if event.status else self.track,
            self.facts | {fact_id},
            self.customer_id,
            self.assigned_at_ms,
            tuple(sorted(set(self.waybills).union(event.waybills))) if event.waybills else self.waybills,
            _newest(self.amount_fen, at, event.amount_fen),
            _newest(self.region_code, at, event.region_code or None),
            _newest(self.promised_at_ms, at, event.promised_at_ms or None),
            max(self.updated_at_ms, at),
            _with_place(self.places, at, event.position),
            _reach(self.reached, event.status, at),
            _scanned(self.scans, at) if event.source in SCANNING_SOURCES else self.scans,
            self.fixes if event.position is None else _with_fix(self.fixes, at),
            self.intents,
            self.changes,
            _newest(self.carrier, at, event.carrier or None) if event.source in SCANNING_SOURCES else self.carrier,
            _newest(self.warehouse, at, event.warehouse or None) if event.warehouse else self.warehouse,
            self.health,
            self.eta,
            self.decisions,
            self.leg_sent,
            self.assessed_at_ms,
            self.incidents,
            self.rule_incidents,
            self.check_at_ms,
        )

    def _located(self, event: OrderEvent) -> OrderView:
        """A position passed on from the order's vehicle moves the order but is no fact of the version:
        how many pings reach an order depends on how manifests and pings interleave."""
        fixes, places = _with_fix(self.fixes, event.at_ms), _with_place(self.places, event.at_ms, event.position)
        if fixes is self.fixes and places is self.places:
            return self
        return replace(self, places=places, fixes=fixes, updated_at_ms=max(self.updated_at_ms, event.at_ms))

    def assessed(
        self,
        health: Health,
        eta: Estimate | None,
        decisions: Decisions,
        leg_sent: bool,
        at_ms: int,
        incidents: tuple[Incident, ...],
        rule_incidents: int,
        check_at_ms: int,
    ) -> OrderView:
        """The view with its latest assessment (positional, not dataclasses.replace: once per changed order)."""
        return OrderView(
            self.order, self.track, self.facts, self.customer_id, self.assigned_at_ms, self.waybills,
            self.amount_fen, self.region_code, self.promised_at_ms, self.updated_at_ms, self.places, self.reached,
            self.scans, self.fixes, self.intents, self.changes, self.carrier, self.warehouse, health, eta, decisions,
            leg_sent, at_ms, incidents, rule_incidents, check_at_ms,
        )  # fmt: skip

    def arrival(
        self,
        figures: Mapping[str, LaneFigures],
        facts: Facts,
        now_ms: int,
        policy: HealthPolicy,
        conditions: Conditions,
    ) -> Estimate | None:
        """Its arrival as estimated at now_ms from what its lane (carrier, region) learned (schemas/eta.py), and
        the lanes of the external condition on its way since its furthest step, if any, and the wait of a road
        that holds it up (a traffic incident health finds on its way); once delivered, its
        delivery; none while cancelled or on its way back. It reads the facts health read at now_ms
        (facts_for_health): only the steps reached by then (or just after: READ_AHEAD_MS) count, since an order is
        assessed at the watermark, and on a replay its scans of later steps may have been read already."""
        promised = _value(self.promised_at_ms)
        reached = facts.reached
        if delivered := reached[DELIVERED_RANK]:
            late = None if promised is None else float(delivered > promised)
            return Estimate(delivered, delivered, delivered, late, "delivered", arrived=True)
        if reached[COMPLETED_RANK] or facts.status in NOT_ARRIVING:
            return None  # completed with no delivery told: its arrival is unknown, and past
        step = furthest_step(reached)
        if not step:
            return None  # not paid yet
        under = delay_on_way(policy, conditions, facts.channel, facts.region_code, reached, reached[step], now_ms)
        previous = self.eta
        held = _held(
            previous.held_at(step) if previous else None, traffic_hold(policy, conditions, facts, now_ms), now_ms
        )
        made_for = (step, promised, *self._lane, under, held[1] if held else None)
        if previous is not None and previous.holds_for(made_for, now_ms):
            return previous
        usual = previous.usual_at(made_for) if previous is not None else None
        return estimate(figures, *self._lane, reached, promised, now_ms, policy.eta, under, usual, held)

    def _reached_by(self, at_ms: int) -> tuple[int, ...]:
        """The time of each lifecycle step reached by at_ms; 0 for the others."""
        if max(self.reached) <= at_ms:
            return self.reached
        return tuple(at if at <= at_ms else 0 for at in self.reached)

    def heard_after(self, now_ms: int) -> int | None:
        """The event time of the first news of it read ahead of event time now_ms, if any: a lifecycle step, a
        side state or a scan more than READ_AHEAD_MS after it, or the moment after it that it is on a vehicle
        again (its vehicle's silence counts from there: on the vehicle, health looks again when that silence
        would be overdue)."""
        sides = (side[0] for side in self.track.sides)
        steps = min((at for at in (*self.reached, *sides, *self.scans) if at > now_ms + READ_AHEAD_MS), default=None)
        if not self.fixes or self.fixes[-1][1] <= now_ms:  # live traffic: no position read ahead
            return steps
        boarded = next((at for at in self._moving_from(now_ms) if self.located_by(at) > self.scanned_by(at)), None)
        return min((at for at in (steps, boarded) if at is not None), default=None)

    def _moving_from(self, now_ms: int) -> Iterator[int]:
        """The moments after now_ms that its positions may put it on a vehicle: where each run of them starts (or
        goes on), and just after each scan within one."""
        for first, last in self.fixes:
            if last > now_ms:
                start = max(first, now_ms + 1)
                yield start
                yield from (scan + 1 for scan in self.scans if start <= scan < last)

    def leg(self, policy: HealthPolicy, conditions: Conditions) -> Leg | None:
        """What its delivery teaches about arrivals, and the external conditions on its way."""
        carrier, region_code = self._lane
        channel, reached = self.order.channel, self.reached

        def under(from_ms: int, to_ms: int) -> str | None:
            return delay_on_way(policy, conditions, channel, region_code, reached, from_ms, to_ms)

        return leg_of(self.order, carrier, region_code, reached, under, self._delivered_near())

    def _delivered_near(self) -> Point | None:
        """Where it was delivered: where a position taken at its delivery (the delivery scan's area) put it."""
        delivered = self.reached[DELIVERED_RANK]
        return next(((lat, lon) for at, lat, lon in self.places if at == delivered), None)

    def leg_due_ms(self, settle_ms: int) -> int | None:
        """When its leg may go: a while after its delivery, so that late events of its earlier steps are in it
        (sources are read at their own pace: a delivery scan may come before the payment that names the region;
        a leg not known whole then goes with the event that completes it)."""
        delivered = self.reached[DELIVERED_RANK]
        return delivered + settle_ms if delivered and not self.leg_sent else None

    @property
    def carrier_name(self) -> str | None:
        carrier: str | None = _value(self.carrier)
        return carrier

    @property
    def warehouse_name(self) -> str | None:
        warehouse: str | None = _value(self.warehouse)
        return warehouse

    @property
    def destination(self) -> str | None:
        """The region code it is delivered to."""
        region: str | None = _value(self.region_code)
        return region

    @property
    def _lane(self) -> tuple[str | None, str | None]:
        return _value(self.carrier), self.destination

    def scanned_by(self, at_ms: int) -> int:
        """Its newest scan at or before at_ms (scans read ahead of event time are not yet news); 0 if none."""
        return _newest_by(self.scans, at_ms)

    def status_by(self, at_ms: int) -> tuple[Status, int] | None:
        """Its status at at_ms and when that began, as StatusTrack.current tells it of the steps and side states
        begun by then. On a replay a later status may have been read ahead of event time (a completion days
        later): it is not yet news."""
        current = self.track.current
        if current is None or current[1] <= at_ms:  # live traffic: nothing read ahead
            return current
        steps = [(rank, at) for rank, at in enumerate(self.reached) if 0 < at <= at_ms]
        furthest = (LIFECYCLE[steps[-1][0]], steps[-1][1]) if steps else None
        return shown(furthest, self.track.side_by(at_ms))

    def located_by(self, at_ms: int) -> int:
        """The time of its newest position at or before at_ms (on a replay, later positions were read ahead
        of the scans, and a vehicle's silence before them was real); within a run of positions, at_ms itself
        (the newest then is less than RUN_GAP_MS old); 0 if none."""
        for first, last in reversed(self.fixes):
            if first <= at_ms:
                return min(last, at_ms)
        return 0

    def facts_for_health(self, now_ms: int) -> Facts:
        """What health reads at now_ms: what had happened by then (or just after: READ_AHEAD_MS, as arrival)."""
        known_by = now_ms + READ_AHEAD_MS
        current = self.status_by(known_by)
        return Facts(
            channel=self.order.channel,
            status=current[0] if current else None,
            status_at_ms=current[1] if current else 0,
            reached=self._reached_by(known_by),
            scanned_at_ms=self.scanned_by(now_ms),
            position_at_ms=self.located_by(now_ms),
            promised_at_ms=_value(self.promised_at_ms),
            region_code=_value(self.region_code),
            intents=self.intents,
            failed_changes=_still_failed(self.changes),
            position=self._position_by(now_ms),  # as of position_at_ms
        )

    def _position_by(self, at_ms: int) -> Point | None:
        """Where its newest position by at_ms put it (on a replay, later ones may have been read already); None if
        it had none then, or if those were no longer kept."""
        for since, lat, lon in reversed(self.places):
            if since <= at_ms:
                return lat, lon
        return None

    def row(self) -> Row | None:
        """The orders_current row, or None while no source has said what state the order is in."""
        current = self.track.current
        if current is None:
            return None
        status, status_at_ms = current
        place = self.places[-1] if self.places else None
        return (
            self.order.channel,
            self.order.order_id,
            self.customer_id,
            status.value,
            status_at_ms,
            self.updated_at_ms,
            list(self.waybills),
            _value(self.amount_fen),
            _value(self.region_code),
            _value(self.promised_at_ms),
            self.version,
            *((place[1], place[2], place[0]) if place else (None, None, None)),
            *self.health_columns(),
            self.carrier_name or "",
            *self.milestone_columns(),
        )

    def milestone_columns(self) -> Row:
        """schemas/tables.py MILESTONES, each the first time the step was reached (None if not): payment as told;
        purchase (payment, or for a sale that told none, as a POS sale, its first later step); the first logistics
        update after a told payment (its first later step, never before it); delivery."""
        paid, later = self.reached[PAID_RANK], [at for at in self.reached[PAID_RANK + 1 :] if at]
        first_later = min(later, default=0)
        first_update = max(first_later, paid) if paid and first_later else 0
        return tuple(at or None for at in (paid, paid or first_later, first_update, self.reached[DELIVERED_RANK]))

    def health_columns(self) -> Row:
        """health_score, health_color, health_reasons, health_at, health_config, the ETA's columns, then the
        business rules' (schemas/tables.py RULE_COLUMNS)."""
        health, eta = self.health, self.eta
        if health is None:
            return (None, None, [], None, "", *NO_ETA, *NO_DECISIONS.columns())
        estimated = (eta.eta_ms, eta.p10_ms, eta.p90_ms, eta.promise_at_risk, eta.basis) if eta else NO_ETA
        return (health.score, health.color, health.reasons, self.assessed_at_ms, health.config_version, *estimated,
                *self.decisions.columns())  # fmt: skip

    def health_history_row(self) -> Row:
        order = self.order
        return (order.channel, order.order_id, *self.health_columns())


NO_ETA = (None, None, None, None, "")


SCANS_KEPT = 16  # health reads the newest scan at or before its time: enough to pass over the scans read ahead
PLACES_KEPT = 16  # health reads where it was at its time: enough to pass over a trip's positions read ahead
Place = tuple[int, float, float]  # when, lat, lon
# Positions closer than this make one run: only silences longer than this are kept (health.py refuses a GPS
# threshold below it), so a trip of any length takes a few runs.
RUN_GAP_MS = KEPT_SILENCE_MS
RUNS_KEPT = 8


def _scanned(scans: tuple[int, ...], at_ms: int) -> tuple[int, ...]:
    """The newest scan times with this one (carriers repeat scans in every push: one time is kept once)."""
    return _newest_kept(scans, at_ms, SCANS_KEPT)


K = TypeVar("K", bound="SupportsDunderLT[Any]")  # scan times, places


def _newest_kept(kept: tuple[K, ...], item: K, limit: int) -> tuple[K, ...]:
    """The newest `limit` of the items kept and this one, sorted, each once: the same whatever the order they came
    in; the same tuple if it changes nothing."""
    if kept and kept[-1] < item:  # live traffic: the newest
        return (*kept[1 - limit :], item)
    if item in kept or (len(kept) >= limit and item < kept[0]):
        return kept
    return tuple(sorted((*kept, item))[-limit:])


def _with_fix(runs: tuple[tuple[int, int], ...], at_ms: int) -> tuple[tuple[int, int], ...]:
    """The runs of position times (first, last; sorted, each gap within one at most RUN_GAP_MS) with this one,
    the newest RUNS_KEPT; the same tuple if it changes nothing (a vehicle's positions reach an order again
    through each of its waybills, and one within a run adds nothing)."""
    if runs and runs[-1][1] < at_ms <= runs[-1][1] + RUN_GAP_MS:  # live traffic: the newest run goes on
        return (*runs[:-1], (runs[-1][0], at_ms))
    if any(first <= at_ms <= last for first, last in runs) or (
        len(runs) >= RUNS_KEPT and at_ms < runs[0][0] - RUN_GAP_MS
    ):
        return runs
    merged: list[tuple[int, int]] = []
    for first, last in sorted((*runs, (at_ms, at_ms))):
        if merged and first - merged[-1][1] <= RUN_GAP_MS:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return tuple(merged[-RUNS_KEPT:])


def _held(kept: Held | None, holding: tuple[int, str] | None, now_ms: int) -> Held | None:
    """The hold an order's arrival takes: the one it kept at its step (the road may have cleared since), unless a
    road holds it up now that did not then (it is held from now)."""
    if holding is None or (kept is not None and kept[1] == holding[0]):
        return kept
    return now_ms, *holding


def _with_place(places: tuple[Place, ...], at_ms: int, where: Point | None) -> tuple[Place, ...]:
    """Where its positions put it, with this one (the newest PLACES_KEPT)."""
    return places if where is None else _newest_kept(places, (at_ms, *where), PLACES_KEPT)


def _newest_by(times: tuple[int, ...], at_ms: int) -> int:
    """The newest of the sorted times at or before at_ms; 0 if none."""
    earlier = [at for at in times if at <= at_ms]
    return earlier[-1] if earlier else 0


def _still_failed(changes: tuple[tuple[int, str, bool, str], ...]) -> tuple[tuple[int, str, str], ...]:
    """The failed modifications that no later success of the same kind made good."""
    if not changes:
        return ()
    made_good = {kind: at for at, kind, succeeded, _ in changes if succeeded}  # sorted: the latest success
    return tuple(
        (at, kind, error) for at, kind, succeeded, error in changes if not succeeded and at > made_good.get(kind, -1)
    )


def _reach(reached: tuple[int, ...], status: Status | None, at_ms: int) -> tuple[int, ...]:
    """The first time of each lifecycle step, with this event's."""
    if status is None or status.is_side_state:
        return reached
    rank = status.rank
    first = reached[rank]
    if first and first <= at_ms:
        return reached
    return (*reached[:rank], at_ms, *reached[rank + 1 :])
