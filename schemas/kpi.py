"""Windowed KPIs in event time, and the experience circuit breaker (R3, R9, R13).

The order stage tells what each order's news means for the KPIs as *facts*
(`order_facts`): an order bought, its first logistics update and how long after
payment, a step reached and how long the one before lasted, a delivery and whether
it kept the promise, a carrier exception, a modification and whether it failed.
Each is counted at its own event time, once: a fact is derived from an order's
view before and after its news, so a replayed or repeated event makes none.

`KpiWindows` counts the facts per channel, carrier, warehouse and destination region in
1-minute tumbling windows and 5-minute windows sliding by a minute. A window is
emitted once the watermark passes its end; a fact that comes later, but within the
allowed lateness, updates its windows, which are emitted again (kpi_windows keeps
the version with the most facts); a fact later still is counted in kpi_late_facts,
never dropped unseen. Each channel's modification failure rate over each sliding
window drives its breaker (`Breaker`): opened and closed with hysteresis, told as
an alert, as a row of channel_breakers, and as a record that every order lane
reads back (health's channel_breaker factor).

Configuration: schemas/kpi.yaml.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

from schemas.alerts import AlertStep, Incident
from schemas.compact import compact_pickle
from schemas.event_time import UNKNOWN
from schemas.events import CanonicalEvent, OrderRef, Signal
from schemas.fields import Refuse, Rejected, json_object, required, versioned_config
from schemas.health import BREAKER_SIGNAL, MINUTE_MS, SLIDING_WINDOW_MIN, Severity, china_time
from schemas.lifecycle import LIFECYCLE, Status
from schemas.order_view import NOT_REACHED, OrderView
from schemas.tables import CHANNEL_BREAKERS, KPI_LATE_FACTS, KPI_WINDOWS, Row

KPI_CONFIG = Path(__file__).with_name("kpi.yaml")
DAY_MS = 86_400_000
SLIDING_MINUTES = SLIDING_WINDOW_MIN  # the sliding window's length, in its 1-minute slides
LATE_DAYS_KEPT = 7  # too-late facts are counted per day of their event time, for this many days
BREAKER_ALERT = "channel_breaker_open"

# Measures: a fact's value is 1 unless said.
ORDERS = "orders"  # bought (paid, or a sale that tells no payment)
GMV = "gmv_fen"  # value: the order's amount, once both purchase and amount are known
FIRST_UPDATE = "first_update_ms"  # value: payment to the first logistics update
SHIPPED = "shipped"
EXCEPTIONS = "exceptions"  # a carrier exception scan
DELIVERED = "delivered"
PROMISED = "delivered_with_promise"
ON_TIME = "on_time"  # delivered by the promise
MODIFICATIONS = "modifications"
MODIFICATIONS_FAILED = "modifications_failed"
DWELL = "dwell:"  # dwell:<step>, value: how long the order stayed at the step before the next one it reached


@compact_pickle
@dataclass(frozen=True, slots=True)
class KpiFact:
    at_ms: int
    channel: str
    carrier: str  # '' until a scan names it; so are the warehouse and region until an event tells them
    warehouse: str
    region: str
    measure: str
    value: int = 1

    def counted_in(self) -> tuple[tuple[str, str], ...]:
        """(dimension, key) of each window it counts in."""
        return (
            ("channel", self.channel), ("carrier", self.carrier), ("warehouse", self.warehouse), ("region", self.region)
        )  # fmt: skip


NO_MILESTONES = (None, None, None, None)


def order_facts(before: OrderView | None, after: OrderView) -> list[KpiFact]:
    """The facts an order's news made: what the view after it knows and the view before did not. Each is counted
    once, from what is known when it is first known: a step read late between two known ones counts its own dwell,
    and the dwell before it stays as counted; the first logistics update is the first later step known."""
    if before is not None and after.facts is before.facts:
        return []  # no new fact (a position passed on, a customer assigned): nothing to count
    order, facts = after.order, []
    carrier, warehouse, region = after.carrier_name or "", after.warehouse_name or "", after.destination or ""

    def fact(at_ms: int, measure: str, value: int = 1) -> None:
        facts.append(KpiFact(at_ms, order.channel, carrier, warehouse, region, measure, value))

    paid, purchased, first_update, delivered = after.milestone_columns()
    was = before.milestone_columns() if before is not None else NO_MILESTONES
    if purchased and not was[1]:
        fact(purchased, ORDERS)
    amount = after.amount_fen[1] if after.amount_fen else None
    had_amount = before is not None and before.amount_fen is not None
    if purchased and amount is not None and not (was[1] and had_amount):
        fact(purchased, GMV, amount)
    if paid and first_update and not was[2]:
        fact(first_update, FIRST_UPDATE, first_update - paid)
    if delivered and not was[3]:
        fact(delivered, DELIVERED)
        if (promise := after.promised_at_ms[1] if after.promised_at_ms else None) is not None:
            fact(delivered, PROMISED)
            if delivered <= promise:
                fact(delivered, ON_TIME)
    _step_facts(before, after, fact)
    if before is None or after.track.sides != before.track.sides:
        known = set(before.track.sides) if before is not None else set()
        for side in after.track.sides:
            if side[2] == Status.EXCEPTION and side not in known:
                fact(side[0], EXCEPTIONS)
    if before is None or after.changes != before.changes:
        for at_ms, _, succeeded, _ in set(after.changes) - set(before.changes if before is not None else ()):
            fact(at_ms, MODIFICATIONS)
            if not succeeded:
                fact(at_ms, MODIFICATIONS_FAILED)
    return facts


def _step_facts(before: OrderView | None, after: OrderView, fact: Callable[[int, str, int], None]) -> None:
    """Each step first reached: shipped is counted. A step's dwell, until the next step reached, is counted once,
    when a next step is first known: not again when a step read late comes between them."""
    if before is not None and after.reached == before.reached:
        return
    known = before.reached if before is not None else NOT_REACHED
    reached = [(rank, at_ms) for rank, at_ms in enumerate(after.reached) if at_ms]
    for (rank, at_ms), (_, next_at_ms) in pairwise(reached):
        counted = known[rank] and any(known[rank + 1 :])
        if not counted and at_ms <= next_at_ms:
            fact(next_at_ms, DWELL + LIFECYCLE[rank].value, next_at_ms - at_ms)
    if after.reached[SHIPPED_RANK] and not known[SHIPPED_RANK]:
        fact(after.reached[SHIPPED_RANK], SHIPPED, 1)


SHIPPED_RANK = Status.SHIPPED.rank


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BreakerLimits:
    open_above_rate: float
    min_modifications: int
    close_at_or_below_rate: float
    close_after_windows: int


@dataclass(frozen=True)
class KpiSettings:
    version: str
    lateness_ms: int
    breaker: BreakerLimits
    breaker_by_channel: dict[str, BreakerLimits] = field(default_factory=dict)

    def limits(self, channel: str) -> BreakerLimits:
        return self.breaker_by_channel.get(channel, self.breaker)


def load_kpi_settings(path: Path = KPI_CONFIG) -> KpiSettings:
    """The settings in a kpi.yaml, checked: errors name the file and the key."""
    spec, fail = versioned_config(path)
    lateness = spec.get("allowed_lateness_min")
    if not isinstance(lateness, int) or isinstance(lateness, bool) or lateness < 0:
        raise fail("allowed_lateness_min", "required, a whole number of minutes, 0 or more")
    breaker = spec.get("breaker")
    if not isinstance(breaker, dict) or not isinstance(breaker.get("default"), dict):
        raise fail("breaker.default", "required: open_above_rate, min_modifications, close_at_or_below_rate, "
                                      "close_after_windows")  # fmt: skip
    default = _limits({}, breaker["default"], "breaker.default", fail)
    channels = breaker.get("channels") or {}
    if not isinstance(channels, dict) or not all(isinstance(given, dict) for given in channels.values()):
        raise fail("breaker.channels", "a mapping of channel to its settings")
    by_channel = {
        str(channel): _limits(default.__dict__, given, f"breaker.channels.{channel}", fail)
        for channel, given in channels.items()
    }
    return KpiSettings(spec["version"], lateness * MINUTE_MS, default, by_channel)


def _limits(defaults: dict[str, Any], given: dict[str, Any], key: str, fail: Refuse) -> BreakerLimits:
    names = BreakerLimits.__dataclass_fields__
    if unknown := set(given) - set(names):
        raise fail(key, f"unknown setting {', '.join(sorted(unknown))}; known: {', '.join(names)}")
    merged = {**defaults, **given}
    if missing := [name for name in names if name not in merged]:
        raise fail(key, f"missing {', '.join(missing)}")
    rates = (merged["open_above_rate"], merged["close_at_or_below_rate"])
    if not all(isinstance(rate, int | float) and not isinstance(rate, bool) for rate in rates) or not (
        0 <= rates[1] <= rates[0] < 1
    ):
        raise fail(key, "rates are fractions with 0 <= close_at_or_below_rate <= open_above_rate < 1")
    counts = (merged["min_modifications"], merged["close_after_windows"])
    if not all(isinstance(count, int) and not isinstance(count, bool) and count >= 1 for count in counts):
        raise fail(key, "min_modifications and close_after_windows are whole numbers of at least 1")
    return BreakerLimits(float(rates[0]), counts[0], float(rates[1]), counts[1])


# --- windows ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Cell:
    """What one window (or minute) counted for one dimension's key."""

    sums: dict[str, int] = field(default_factory=dict)  # measure -> sum of values
    counts: dict[str, int] = field(default_factory=dict)  # measure -> number of facts
    samples: list[int] = field(default_factory=list)  # first-update latencies, for percentiles

    def add(self, fact: KpiFact) -> None:
        measure = fact.measure
        self.sums[measure] = self.sums.get(measure, 0) + fact.value
        self.counts[measure] = self.counts.get(measure, 0) + 1
        if measure == FIRST_UPDATE:
            self.samples.append(fact.value)

    def absorb(self, other: Cell) -> None:
        for measure, total in other.sums.items():
            self.sums[measure] = self.sums.get(measure, 0) + total
            self.counts[measure] = self.counts.get(measure, 0) + other.counts[measure]
        self.samples.extend(other.samples)

    def count(self, measure: str) -> int:
        return self.counts.get(measure, 0)

    def row(self, window: str, start_ms: int, dimension: str, key: str) -> Row:
        """Its kpi_windows row (schemas/tables.py KPI_WINDOWS): percentiles by nearest rank."""
        samples = sorted(self.samples)
        dwell = {
            measure.removeprefix(DWELL): self.sums[measure] // self.counts[measure]
            for measure in sorted(self.sums)
            if measure.startswith(DWELL)
        }
        length = MINUTE_MS if window == "1m" else SLIDING_MINUTES * MINUTE_MS
        return (
            window, start_ms, start_ms + length, dimension, key, self.count(ORDERS), self.sums.get(GMV, 0),
            len(samples), _percentile(samples, 0.5), _percentile(samples, 0.95), self.count(SHIPPED),
            self.count(EXCEPTIONS), self.count(DELIVERED), self.count(PROMISED), self.count(ON_TIME),
            self.count(MODIFICATIONS), self.count(MODIFICATIONS_FAILED), dwell, sum(self.counts.values()),
        )  # fmt: skip


def _percentile(ordered: list[int], share: float) -> int | None:
    return ordered[max(math.ceil(share * len(ordered)), 1) - 1] if ordered else None


Minute = dict[tuple[str, str], Cell]  # (dimension, key) -> what the minute counted
MINUTES = "minutes"  # the state key of the numbers of the minutes kept, sorted


@compact_pickle
@dataclass(frozen=True, slots=True)
class Breaker:
    """A channel's open breaker: since when (the end of the window that opened it), what that window counted,
    and how many windows in a row since were calm."""

    opened_at_ms: int
    modifications: int
    failed: int
    calm_windows: int = 0


@dataclass
class KpiOutput:
    rows: dict[str, list[Row]] = field(default_factory=lambda: defaultdict(list))
    alerts: list[AlertStep] = field(default_factory=list)
    breakers: list[str] = field(default_factory=list)  # records for orderscope.breakers, read back by every lane


class KpiWindows:
    """The windows of every fact, in one mapping (MapState in the job): each minute's counts by its number, the
    last window end emitted, the open breakers, and the too-late counts."""

    FIRED = "fired"  # the last minute whose windows (those ending with it) were emitted
    BREAKERS = "breakers"
    LATE = "late"

    def __init__(self, state: MutableMapping[str, Any], settings: KpiSettings) -> None:
        self._state = state
        self._settings = settings

    def apply(self, facts: Iterable[KpiFact], watermark_ms: int) -> KpiOutput:
        """Count the facts; emit the windows the watermark passed, and again those that late facts changed (their
        keys only); step the breakers at each sliding window's end; forget minutes no window can change any more.
        A late fact corrects its windows, not the breakers' past steps: a breaker decides as each window ends."""
        out = KpiOutput()
        fired = self._state.get(self.FIRED, UNKNOWN)
        windowed, apart = self._split(facts, watermark_ms)
        if apart:
            self._count_apart(apart, watermark_ms, out)
        again: dict[tuple[int, bool], set[tuple[str, str]]] = defaultdict(set)  # (end, tumbling) -> keys
        for minute, keys in self._count(windowed).items():
            if minute <= fired:  # emitted already: its windows again, with the late facts
                again[minute, True] |= keys
                for end in range(minute, min(minute + SLIDING_MINUTES - 1, fired) + 1):
                    again[end, False] |= keys
        for (end, tumbling), keys in sorted(again.items()):
            self._emit(end, out, tumbling=tumbling, only=keys)
        if watermark_ms != UNKNOWN:
            done = watermark_ms // MINUTE_MS - 1  # the last minute that ended
            for end in self._ends_due(fired, done):
                self._emit(end, out, tumbling=True)
                self._step_breakers(end, self._emit(end, out, tumbling=False), out)
            if done > fired:
                self._state[self.FIRED] = done
            self._forget(watermark_ms)
        return out

    def _split(self, facts: Iterable[KpiFact], watermark_ms: int) -> tuple[list[KpiFact], list[KpiFact]]:
        """The facts their windows can still take, and those counted apart: past their windows' allowed lateness,
        or stamped more than a day ahead of event time (a clock gone wrong, which would hold a minute for long)."""
        if watermark_ms == UNKNOWN:
            return list(facts), []
        windowed: list[KpiFact] = []
        apart: list[KpiFact] = []
        closed_before = watermark_ms - self._settings.lateness_ms  # a minute ended by then takes no more facts
        for fact in facts:
            ended_at = (fact.at_ms // MINUTE_MS + 1) * MINUTE_MS
            (apart if ended_at <= closed_before or fact.at_ms > watermark_ms + DAY_MS else windowed).append(fact)
        return windowed, apart

    def _count(self, facts: list[KpiFact]) -> dict[int, set[tuple[str, str]]]:
        """The (dimension, key)s each minute counted facts for; the minutes written back."""
        touched: dict[int, Minute] = {}
        keys: dict[int, set[tuple[str, str]]] = defaultdict(set)
        for fact in facts:
            minute = fact.at_ms // MINUTE_MS
            cells = touched.get(minute)
            if cells is None:
                cells = touched[minute] = self._state.get(_minute_key(minute)) or {}
            for dimension_key in fact.counted_in():
                cell = cells.get(dimension_key)
                if cell is None:
                    cell = cells[dimension_key] = Cell()
                cell.add(fact)
                keys[minute].add(dimension_key)
        for minute, cells in touched.items():
            self._state[_minute_key(minute)] = cells
        if touched:
            self._state[MINUTES] = tuple(sorted({*self._minutes(), *touched}))
        return keys

    def _count_apart(self, facts: list[KpiFact], watermark_ms: int, out: KpiOutput) -> None:
        """kpi_late_facts: per (dimension, key, day of event time), how many and the furthest behind."""
        late: dict[tuple[str, str, int], tuple[int, int]] = dict(self._state.get(self.LATE, {}))
        changed = set()
        for fact in facts:
            day, behind = fact.at_ms // DAY_MS * DAY_MS, watermark_ms - fact.at_ms
            for dimension, key in fact.counted_in():
                counted, furthest = late.get((dimension, key, day), (0, 0))
                late[dimension, key, day] = (counted + 1, max(furthest, behind))
                changed.add((dimension, key, day))
        out.rows[KPI_LATE_FACTS.name].extend((*counted, *late[counted]) for counted in sorted(changed))
        self._state[self.LATE] = late

    def _minutes(self) -> tuple[int, ...]:
        minutes: tuple[int, ...] = self._state.get(MINUTES, ())
        return minutes

    def _ends_due(self, fired: int, done: int) -> list[int]:
        """The minutes, after fired and up to done, that end a window with facts, or one that an open breaker must
        see (it closes on calm windows, empty ones too)."""
        minutes = self._minutes()
        ends = {minute + slide for minute in minutes for slide in range(SLIDING_MINUTES)}
        breakers: dict[str, Breaker] = self._state.get(self.BREAKERS, {})
        if breakers and fired != UNKNOWN:  # the empty windows after the last with facts, as many as may close one
            longest = max(self._settings.limits(channel).close_after_windows for channel in breakers)
            last = max(fired, minutes[-1] + SLIDING_MINUTES - 1) if minutes else fired
            ends.update(range(fired + 1, min(done, last + longest) + 1))
        return sorted(end for end in ends if fired < end <= done)

    def _emit(self, end: int, out: KpiOutput, *, tumbling: bool, only: set[tuple[str, str]] | None = None) -> Minute:
        """The rows of the window ending with minute `end` (the minute itself, or the SLIDING_MINUTES to it), of
        every (dimension, key) or only those; its counts."""
        first = end if tumbling else end - SLIDING_MINUTES + 1
        merged: Minute = {}
        for minute in range(first, end + 1):
            for dimension_key, cell in (self._state.get(_minute_key(minute)) or {}).items():
                if only is not None and dimension_key not in only:
                    continue
                into = merged.get(dimension_key)
                if into is None:
                    into = merged[dimension_key] = Cell()
                into.absorb(cell)
        window = "1m" if tumbling else f"{SLIDING_MINUTES}m"
        rows = out.rows[KPI_WINDOWS.name]
        for (dimension, key), cell in sorted(merged.items()):
            rows.append(cell.row(window, first * MINUTE_MS, dimension, key))
        return merged

    def _step_breakers(self, end: int, window: Minute, out: KpiOutput) -> None:
        """Each channel's breaker after the sliding window ending with minute `end`."""
        breakers: dict[str, Breaker] = dict(self._state.get(self.BREAKERS, {}))
        at_ms = (end + 1) * MINUTE_MS
        channels = {key for dimension, key in window if dimension == "channel"} | set(breakers)
        for channel in sorted(channels):
            cell = window.get(("channel", channel), Cell())
            modifications, failed = cell.count(MODIFICATIONS), cell.count(MODIFICATIONS_FAILED)
            limits = self._settings.limits(channel)
            counted = modifications >= limits.min_modifications
            rate = failed / modifications if counted else 0.0  # min_modifications is at least 1
            breaker = breakers.get(channel)
            if breaker is None:
                if rate > limits.open_above_rate:
                    breakers[channel] = Breaker(at_ms, modifications, failed)
                    self._tell(channel, breakers[channel], None, limits, out)
            elif rate > limits.close_at_or_below_rate:
                breakers[channel] = replace(breaker, calm_windows=0)
            elif breaker.calm_windows + 1 >= limits.close_after_windows:
                del breakers[channel]
                self._tell(channel, breaker, at_ms, limits, out)
            else:
                breakers[channel] = replace(breaker, calm_windows=breaker.calm_windows + 1)
        self._state[self.BREAKERS] = breakers

    def _tell(self, channel: str, breaker: Breaker, closed_at_ms: int | None, limits: BreakerLimits,
              out: KpiOutput) -> None:  # fmt: skip
        """A breaker opened or closed: its history row, its alert step, its record for every order lane."""
        version, opened = self._settings.version, breaker.opened_at_ms
        at_ms = opened if closed_at_ms is None else closed_at_ms
        out.rows[CHANNEL_BREAKERS.name].append((
            channel, opened, closed_at_ms, breaker.failed / breaker.modifications, breaker.modifications,
            breaker.failed, limits.open_above_rate, limits.min_modifications, version, at_ms,
        ))  # fmt: skip
        reason = (
            f"{breaker.failed} of {breaker.modifications} order changes on {channel} failed in the "
            f"{SLIDING_MINUTES} min to {china_time(opened)} (limit {limits.open_above_rate:.0%} of at least "
            f"{limits.min_modifications}): its changes go to manual review"
            if closed_at_ms is None
            else f"order changes on {channel} failed no more than {limits.close_at_or_below_rate:.1%} in "
            f"{limits.close_after_windows} windows in a row to {china_time(closed_at_ms)}: back from manual review"
        )
        incident = Incident(BREAKER_ALERT, Severity.RED, opened, 1 if closed_at_ms is None else 2, reason,
                            "kpi.breaker")  # fmt: skip
        step = "opened" if closed_at_ms is None else "resolved"
        out.alerts.append(AlertStep(OrderRef(channel, ""), incident, step, at_ms, version))
        out.breakers.append(breaker_record(channel, breaker, closed_at_ms, version))

    def _forget(self, watermark_ms: int) -> None:
        """Minutes whose every window is past the allowed lateness; too-late counts of days long past."""
        horizon = (watermark_ms - self._settings.lateness_ms) // MINUTE_MS - SLIDING_MINUTES  # windows to it are final
        minutes = self._minutes()
        if minutes and minutes[0] <= horizon:
            for minute in minutes:
                if minute <= horizon:
                    del self._state[_minute_key(minute)]
            self._state[MINUTES] = tuple(minute for minute in minutes if minute > horizon)
        late: dict[tuple[str, str, int], tuple[int, int]] = self._state.get(self.LATE, {})
        oldest = watermark_ms - LATE_DAYS_KEPT * DAY_MS
        if any(day < oldest for _, _, day in late):
            self._state[self.LATE] = {counted: n for counted, n in late.items() if counted[2] >= oldest}


def _minute_key(minute: int) -> str:
    return f"minute:{minute}"


# --- the breakers' records, read back by every order lane ---------------------------------------


def breaker_record(channel: str, breaker: Breaker, closed_at_ms: int | None, version: str) -> str:
    return json.dumps(
        {"channel": channel, "opened_at": breaker.opened_at_ms, "closed_at": closed_at_ms,
         "modifications": breaker.modifications, "failed": breaker.failed, "config_version": version},
        ensure_ascii=False,
    )  # fmt: skip


def read_breaker(raw: str, *_: Any) -> list[CanonicalEvent]:
    """The adapter of topic orderscope.breakers: the job's own records, checked all the same."""
    return [breaker_signal(raw)]


def breaker_signal(raw: str) -> Signal:
    """A breaker's record as a condition of its channel's orders (schemas/health.py channel_breaker), from its
    opening to its closing."""
    payload = json_object(raw)
    channel = required(payload, "channel", str)
    opened_at, modifications, failed = (required(payload, name, int) for name in ("opened_at", "modifications",
                                                                                    "failed"))  # fmt: skip
    closed_at = payload.get("closed_at")
    if closed_at is not None and (not isinstance(closed_at, int) or isinstance(closed_at, bool)):
        raise Rejected("wrong_type", "closed_at is epoch milliseconds or null")
    if not channel or not 0 <= failed <= modifications or modifications == 0:
        raise Rejected("out_of_range", "a channel, and 0 <= failed <= modifications, modifications > 0")
    return Signal(BREAKER_SIGNAL, channel, opened_at, closed_at, f"{failed}/{modifications}")
