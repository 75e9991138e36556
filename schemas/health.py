"""Order health: a score from 0 to 100, a colour, and the reasons for both, in words.

Each factor looks at one thing that can go wrong with an order (a step overdue,
a promise at risk, a buyer complaining, a storm at the destination) and finds
it yellow or red, with a penalty and a sentence a support agent understands.
Overdue steps are found by time alone: an assessment also says when the next
threshold will be crossed (`next_check_ms`), so the job can look again at that
event time even if nothing more is ever heard about the order.

Thresholds, penalties and alerting are configuration (schemas/health.yaml);
every assessment carries the configuration's version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from enum import IntEnum
from pathlib import Path
from typing import Any, TypeVar

from schemas.compact import compact_pickle
from schemas.eta import Estimate, EtaSettings, condition
from schemas.events import Signal
from schemas.fields import versioned_config
from schemas.geo import Point, km_between, km_from_way
from schemas.lifecycle import Status

HEALTH_CONFIG = Path(__file__).with_name("health.yaml")
MINUTE_MS = 60_000
CHINA = timezone(timedelta(hours=8))


class Severity(IntEnum):
    YELLOW = 1
    RED = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@compact_pickle
@dataclass(frozen=True, slots=True)
class Finding:
    factor: str
    severity: Severity
    penalty: int
    reason: str
    since_ms: int  # event time from which the facts show it at this severity: incidents open there
    subject: str  # what it is about, without the time elapsed: a change of subject is a change of health


@compact_pickle
@dataclass(frozen=True, slots=True)
class Health:
    score: int
    color: str  # green, yellow or red
    findings: tuple[Finding, ...]
    next_check_ms: int | None  # event time at which a threshold will be crossed if nothing happens
    config_version: str

    @property
    def reasons(self) -> list[str]:
        return [finding.reason for finding in self.findings]

    def same_as(self, other: Health | None) -> bool:
        """Whether the health is unchanged: the same score, colour, and findings of the same factors,
        severities and subjects (the time elapsed in a reason's words is no change; nor is the next check)."""
        return (
            other is not None
            and (self.score, self.color) == (other.score, other.color)
            and [(f.factor, f.severity, f.subject) for f in self.findings]
            == [(f.factor, f.severity, f.subject) for f in other.findings]
        )


@dataclass(frozen=True)
class Facts:
    """What an assessment reads about one order (schemas/order_view.py makes it)."""

    channel: str
    status: Status | None
    status_at_ms: int
    reached: tuple[int, ...]  # when each lifecycle step (by rank) was first reached; 0 if not

    def reached_at(self, status: Status) -> int | None:
        return self.reached[status.rank] or None

    scanned_at_ms: int  # newest scan by a warehouse or carrier, at or before the assessment
    position_at_ms: int  # newest position of the vehicle carrying it (or of a scan) by then; 0 if none
    promised_at_ms: int | None
    region_code: str | None
    intents: tuple[tuple[int, str], ...]  # (event time, intent) of the buyer's messages
    failed_changes: tuple[tuple[int, str, str], ...]  # (event time, kind, error)
    position: Point | None = None  # where its newest position by the assessment (position_at_ms) put it
    arrival: Estimate | None = None  # as estimated at the same time (schemas/eta.py)

    def with_arrival(self, arrival: Estimate | None) -> Facts:
        """The facts with the arrival estimated from them (positional, not dataclasses.replace: once per
        assessment)."""
        return Facts(self.channel, self.status, self.status_at_ms, self.reached, self.scanned_at_ms,
                     self.position_at_ms, self.promised_at_ms, self.region_code, self.intents, self.failed_changes,
                     self.position, arrival)  # fmt: skip


BREAKER_SIGNAL = "channel_breaker"  # the job's own: a channel's breaker, read back (schemas/kpi.py)
SLIDING_WINDOW_MIN = 5  # the KPI windows that slide by a minute, whose failure rate trips a breaker, are this long


def is_condition(signal: Signal) -> bool:
    """Whether health reads the signal."""
    return signal.kind.startswith("weather_") or signal.kind in ("port_congestion", "traffic_incident", BREAKER_SIGNAL)


WeatherWarning = tuple[int, str, str, int | None]  # issued at, level, phenomenon, until
# Reported at, severity (1..4), where (lat, lon), the delay it announces in minutes: the road is held up until
# then, or until a later report of the road says otherwise.
TrafficReport = tuple[int, int, float, float, int]
BreakerSpan = tuple[int, int | None, str]  # opened at, closed at (None while open), failed/modifications when opened


@compact_pickle
@dataclass(frozen=True, slots=True)
class Conditions:
    """External conditions (R7): the latest signals of each subject, in event time, whatever the arrival
    order, so that an assessment reads the ones in force at its own time; and where each region's parcels
    arrive, learned from delivered orders (the newest, whatever the arrival order)."""

    weather: Mapping[str, tuple[WeatherWarning, ...]]  # region -> its latest warnings, by issue time
    ports: Mapping[str, tuple[tuple[int, float], ...]]  # port code -> its latest (at, congestion index)
    # Road -> its latest incident reports, by time (one report per road: a newer one anywhere on it replaces the last).
    traffic: Mapping[str, tuple[TrafficReport, ...]]
    # Region -> when and where (the delivery scan of its newest leg that told one) its parcels were delivered: the
    # end of a parcel's way (traffic_on_way).
    places: Mapping[str, tuple[int, Point]]
    traffic_until_ms: int = 0  # when the last report known ends: no traffic counts from then on
    breakers: Mapping[str, tuple[BreakerSpan, ...]] = field(default_factory=dict)  # channel -> its latest, by opening

    @classmethod
    def none(cls) -> Conditions:
        return cls({}, {}, {}, {})

    def observe(self, signal: Signal) -> Conditions:
        """The conditions with the signal (the same object when it was known)."""
        if signal.kind.startswith("weather_"):
            warning = (signal.at_ms, signal.level, signal.kind.removeprefix("weather_"), signal.until_ms)
            kept = _latest(self.weather.get(signal.subject, ()), warning)
            return self if kept is None else replace(self, weather={**self.weather, signal.subject: kept})
        if signal.kind == "port_congestion":
            reading = (signal.at_ms, float(signal.level))
            readings = _latest(self.ports.get(signal.subject, ()), reading)
            return self if readings is None else replace(self, ports={**self.ports, signal.subject: readings})
        if signal.kind == "traffic_incident" and signal.lat is not None and signal.lon is not None:
            report = (signal.at_ms, int(signal.level), signal.lat, signal.lon, signal.delay_min or 0)
            reports = _latest(self.traffic.get(signal.subject, ()), report)
            return self if reports is None else self._with_traffic(signal.subject, reports)
        if signal.kind == BREAKER_SIGNAL:
            return self._with_breaker(signal.subject, (signal.at_ms, signal.until_ms, signal.level))
        return self

    def _with_breaker(self, channel: str, span: BreakerSpan) -> Conditions:
        """The conditions with a breaker's opening or closing (a closing, read before or after it, wins)."""
        spans = {opened: (opened, until, level) for opened, until, level in self.breakers.get(channel, ())}
        known = spans.get(span[0])
        if known == span or (known is not None and known[1] is not None and span[1] is None):
            return self
        spans[span[0]] = span
        kept = tuple(sorted(spans.values(), key=lambda told: told[0]))[-KEPT_PER_SUBJECT:]
        return replace(self, breakers={**self.breakers, channel: kept})

    def _with_traffic(self, road: str, reports: tuple[TrafficReport, ...]) -> Conditions:
        """The conditions with a road's reports, without the roads whose last report ended KEPT_MS before the newest
        report known (every assessment of an order on the line haul reads every road kept)."""
        traffic = {**self.traffic, road: reports}
        last_end = {name: max(end for _, end in _spans(told)) for name, told in traffic.items()}
        newest = max(told[-1][0] for told in traffic.values())
        kept = {name: told for name, told in traffic.items() if last_end[name] >= newest - KEPT_MS}
        return replace(self, traffic=kept, traffic_until_ms=max(last_end[name] for name in kept))

    def with_places(self, delivered: Mapping[str, tuple[int, Point]]) -> Conditions:
        """The conditions with when and where parcels to these regions were delivered, where newer than those known
        (the same object if none is)."""
        newer = {region: place for region, place in delivered.items() if place > self.places.get(region, (0, (0, 0)))}
        return replace(self, places={**self.places, **newer}) if newer else self


KEPT_MS = 3 * 24 * 60 * MINUTE_MS  # signals older than the subject's newest by more than this are dropped
KEPT_PER_SUBJECT = 64  # a bound, should a source flood one subject
T = TypeVar("T", bound=tuple[Any, ...])


def _latest(known: tuple[T, ...], new: T) -> tuple[T, ...] | None:
    """The subject's signals with the new one, by time, those of the last KEPT_MS (at most
    KEPT_PER_SUBJECT); None when it changes nothing."""
    if new in known:
        return None
    signals = sorted((*known, new), key=lambda signal: tuple(-1 if part is None else part for part in signal))
    newest = signals[-1][0]
    kept = tuple(signal for signal in signals if signal[0] >= newest - KEPT_MS)[-KEPT_PER_SUBJECT:]
    return None if kept == known else kept


@dataclass(frozen=True)
class Factor:
    name: str
    penalties: Mapping[Severity, int]
    alert_from: Severity | None
    settings: Mapping[str, Any]

    def minutes(self, key: str) -> int:
        return int(self.settings[key]) * MINUTE_MS

    def finding(self, severity: Severity, reason: str, since_ms: int, subject: str | None = None) -> Finding:
        """A finding; its subject is its reason unless the reason holds a time elapsed."""
        return Finding(self.name, severity, self.penalties[severity], reason, since_ms,
                       reason if subject is None else subject)  # fmt: skip


@dataclass(frozen=True)
class HealthPolicy:
    version: str
    yellow_below: int
    red_below: int
    factors: Mapping[str, Factor]
    eta: EtaSettings
    rules: tuple[tuple[Rule, Factor], ...] = field(init=False, repr=False, compare=False)  # in RULES order

    def __post_init__(self) -> None:
        rules = tuple((rule, self.factors[name]) for name, rule in RULES.items() if name in self.factors)
        object.__setattr__(self, "rules", rules)


Assessed = tuple[Finding | None, int | None]  # a finding, and when the factor should be looked at again


def assess(facts: Facts, now_ms: int, conditions: Conditions, policy: HealthPolicy) -> Health:
    """The order's health at event time now_ms: a function of what is known and the time alone, so a
    replay or restore assesses every order as the first run did."""
    findings: list[Finding] = []
    checks: list[int] = []
    if not is_settled(facts.status, facts.reached):
        for rule, factor in policy.rules:
            finding, check = rule(factor, facts, now_ms, conditions)
            if finding is not None:
                findings.append(finding)
            if check is not None and check > now_ms:
                checks.append(check)
    findings.sort(key=lambda finding: (-finding.penalty, finding.factor))
    score = max(0, 100 - sum(finding.penalty for finding in findings))
    color = "red" if score < policy.red_below else "yellow" if score < policy.yellow_below else "green"
    return Health(score, color, tuple(findings), min(checks, default=None), policy.version)


# --- the factors ------------------------------------------------------------------------------


def duration(ms: int) -> str:
    """A duration as people say it: '3 h 10 min', '45 min', '2 d 4 h'."""
    minutes = max(ms, 0) // MINUTE_MS
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


def china_time(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, CHINA).strftime("%m-%d %H:%M China time")


def overdue(factor: Factor, since_ms: int, now_ms: int, what: Callable[[str], str], subject: str = "") -> Assessed:
    """A step expected within the factor's yellow_after_min of since_ms; red after red_after_min.
    `what` words the finding given the time elapsed."""
    yellow_after = factor.minutes("yellow_after_min")
    yellow_at, red_at = since_ms + yellow_after, since_ms + factor.minutes("red_after_min")
    if now_ms < yellow_at:
        return None, yellow_at
    reason = f"{what(duration(now_ms - since_ms))} (SLA {duration(yellow_after)})"
    if now_ms >= red_at:
        return factor.finding(Severity.RED, reason, red_at, subject), None
    return factor.finding(Severity.YELLOW, reason, yellow_at, subject), red_at


# Nothing more is expected of these: no factor applies (open incidents resolve).
SETTLED = frozenset({Status.CANCELLED, Status.RETURNING, Status.RETURNED, Status.DELIVERED, Status.COMPLETED})
DELIVERED_RANK = Status.DELIVERED.rank  # an order delivered (or completed) is settled, whatever follows


def is_settled(status: Status | None, reached: tuple[int, ...]) -> bool:
    """Whether nothing more is expected of an order (or nothing is known of it yet): no factor applies."""
    return status is None or status in SETTLED or any(reached[DELIVERED_RANK:])


WAREHOUSE = (Status.ALLOCATED, Status.PICKED, Status.PACKED)
IN_TRANSIT = (Status.IN_TRANSIT, Status.CUSTOMS)


def _still_at(factor: Factor, facts: Facts, now_ms: int, status: Status, what: Callable[[str], str]) -> Assessed:
    """overdue() for an order still at the step it reached: the next one is late."""
    reached_at = facts.reached_at(status)
    if reached_at is None or facts.status != status:
        return None, None
    return overdue(factor, reached_at, now_ms, what)


def first_update_late(factor: Factor, facts: Facts, now_ms: int, conditions: Conditions) -> Assessed:
    return _still_at(factor, facts, now_ms, Status.PAID, lambda late: f"no logistics update {late} after payment")


def warehouse_dwell(factor: Factor, facts: Facts, now_ms: int, conditions: Conditions) -> Assessed:
    if facts.status not in WAREHOUSE:
        return None, None
    entered = min(facts.reached_at(step) or facts.status_at_ms for step in WAREHOUSE)
    status = facts.status
    return overdue(
        factor, entered, now_ms, lambda long: f"{long} in the warehouse, now at {status.value}", status.value
    )


def no_pickup(factor: Factor, facts: Facts, now_ms: int, conditions: Conditions) -> Assessed:
    return _still_at(
        factor, facts, now_ms, Status.SHIPPED, lambda late: f"no carrier pick-up {late} after the outbound scan"
    )


def gps_stale(factor: Factor, facts: Facts, now_ms: int, conditions: Conditions) -> Assessed:
    """On a vehicle since the last scan (its positions are newer), and the vehicle went quiet."""
    if facts.status not in IN_TRANSIT or facts.position_at_ms <= facts.scanned_at_ms:
        return None, None
    return overdue(
        factor, facts.position_at_ms, now_ms, lambda quiet: f"the vehicle carrying the parcel silent for {quiet}"
    )


def scans_stale(factor: Factor, facts: Facts, now_ms: int, conditions: Conditions) -> Assessed:
    if facts.status not in IN_TRANSIT:
        return None, None
    heard_at = max(facts.scanned_at_ms, facts.position_at_ms, facts.status_at_ms)
    return overdue(factor, heard_at, now_ms, lambda quiet: f"no carrier scan for {quiet} in transit")


def delivery_dwell(factor: Factor, facts: Facts, now_ms: int, conditions: Conditions) -> Assessed:
    if facts.status != Status.OUT_FOR_DELIVERY:
        return None, None
    return overdue(factor, facts.status_at_ms, now_ms, lambda long: f"out for delivery for {long} without signature")


def promise(factor: Factor, facts: Facts, now_ms: int, conditions: Conditions) -> Assessed:
    promised = facts.promised_at_ms
    if promised is None:
        return None, None
    if now_ms >= promised:
        return factor.finding(Severity.RED, f"promised arrival missed ({china_time(promised)})", promised), None
    warn_at = promised - factor.minutes("warn_before_min")
    if facts.status is not None and facts.status.rank >= Status.OUT_FOR_DELIVERY.rank:
        return None, promised
    if now_ms >= warn_at:
        reason = f"promised arrival {china_time(promised)} and not yet out for delivery"
        return factor.finding(Severity.YELLOW, reason, warn_at), promised
    return None, warn_at


def slower_than_usual(factor: Factor, facts: Facts, now_ms: int, conditions: Conditions) -> Assessed:
    """On the line haul, not delivered a while after 9 in 10 recent parcels of its lane had been, from the step
    it is at (learned from the traffic, schemas/eta.py): a delay that no signal announces (a carrier's backlog)
    shows here. It dates from the step: when the threshold was crossed depends on which legs had been learned
    then, and an incident's key must not."""
    arrival = facts.arrival
    if arrival is None or arrival.arrived or arrival.usual_by_ms is None:
        return None, None
    usual_by = arrival.usual_by_ms
    yellow_at, red_at = usual_by + factor.minutes("yellow_after_min"), usual_by + factor.minutes("red_after_min")
    if now_ms < yellow_at:
        return None, yellow_at
    severity, later = (Severity.RED, None) if now_ms >= red_at else (Severity.YELLOW, red_at)
    usual = f"9 in 10 recent parcels ({arrival.usual_lane}) were"
    reason = f"not delivered {duration(now_ms - usual_by)} after {usual}"
    return factor.finding(severity, reason, facts.reached[arrival.made_for[0]], usual), later


def carrier_exception(factor: Factor, facts: Facts, now_ms: int, conditions: Conditions) -> Assessed:
    if facts.status != Status.EXCEPTION:
        return None, None
    reason = f"the carrier reported an exception ({china_time(facts.status_at_ms)})"
    return factor.finding(Severity.RED, reason, facts.status_at_ms), None


INTENT_WORDS = {
    "chase": "chased delivery (催单)",
    "urgent": "needs it urgently (急用)",
    "complaint": "complained (投诉)",
}


def service_intents(factor: Factor, facts: Facts, now_ms: int, conditions: Conditions) -> Assessed:
    if not facts.intents:
        return None, None
    levels = factor.settings["severity"]
    said = {intent: at for at, intent in reversed(facts.intents) if at <= now_ms and intent in levels}  # first
    # A message stamped after now (read ahead of event time) counts once event time reaches it.
    later = min((at for at, intent in facts.intents if at > now_ms and intent in levels), default=None)
    if not said:
        return None, later
    severity = max(Severity[levels[intent].upper()] for intent in said)
    since = min(at for intent, at in said.items() if Severity[levels[intent].upper()] == severity)
    words = ", ".join(INTENT_WORDS.get(intent, intent) for intent in sorted(said))
    return factor.finding(severity, f"the buyer {words}", since), later


def modification_failed(factor: Factor, facts: Facts, now_ms: int, conditions: Conditions) -> Assessed:
    if not facts.failed_changes:
        return None, None
    failed = [change for change in facts.failed_changes if change[0] <= now_ms]
    later = min((change[0] for change in facts.failed_changes if change[0] > now_ms), default=None)
    if not failed:
        return None, later
    red_from = int(factor.settings["red_from_count"])
    severity = Severity.RED if len(failed) >= red_from else Severity.YELLOW
    since = failed[red_from - 1][0] if severity == Severity.RED else failed[0][0]
    words = "; ".join(f"{kind.replace('_', ' ')} failed ({error or 'no reason given'})" for _, kind, error in failed)
    return factor.finding(severity, words, since), later


def channel_breaker(factor: Factor, facts: Facts, now_ms: int, conditions: Conditions) -> Assessed:
    """The order's channel had its breaker open (R9): too many of its order changes failed lately, so they go to
    manual review; a rough time for every order of the channel."""
    spans = conditions.breakers.get(facts.channel)
    if not spans:
        return None, None
    in_force = [span for span in spans if span[0] <= now_ms and (span[1] is None or now_ms < span[1])]
    changes = [at for opened, until, _ in spans for at in (opened, until) if at is not None and at > now_ms]
    next_change = min(changes, default=None)
    if not in_force:
        return None, next_change
    opened, _, level = in_force[-1]
    failed, modifications = level.split("/")
    reason = (f"{facts.channel}'s order changes go to manual review: {failed} of {modifications} failed in "
              f"{SLIDING_WINDOW_MIN} min (breaker open since {china_time(opened)})")  # fmt: skip
    return factor.finding(Severity.YELLOW, reason, opened), next_change


def warned_region(policy: HealthPolicy, conditions: Conditions, signal: Signal) -> str | None:
    """The region whose orders a weather warning (kept in conditions) changes at once, not at their next event
    (OrderStage): one the weather factor rates, or one that lowers or ends a warning it rated there."""
    factor = policy.factors.get("weather")
    if factor is None or not signal.kind.startswith("weather_"):
        return None
    rated = factor.settings["severity"]
    phenomenon = signal.kind.removeprefix("weather_")
    told = conditions.weather.get(signal.subject, ())
    if signal.level in rated or any(kind == phenomenon and level in rated for _, level, kind, _ in told):
        return signal.subject
    return None


def weather_in_force(conditions: Conditions, region_code: str | None, now_ms: int) -> list[WeatherWarning]:
    """Per phenomenon, the newest warning issued by now (a downgrade replaces a red warning), unless it ended."""
    current: dict[str, WeatherWarning] = {}
    for warning in conditions.weather.get(region_code or "", ()):  # by issue time: the last one issued wins
        if warning[0] <= now_ms:
            current[warning[2]] = warning
    return [warning for warning in current.values() if warning[3] is None or now_ms < warning[3]]


def weather(factor: Factor, facts: Facts, now_ms: int, conditions: Conditions) -> Assessed:
    """The worst warning in force at the destination counts."""
    warnings = conditions.weather.get(facts.region_code or "")
    if not warnings:
        return None, None
    levels = factor.settings["severity"]
    in_force = [w for w in weather_in_force(conditions, facts.region_code, now_ms) if w[1] in levels]
    changes = [w[0] for w in warnings if w[0] > now_ms] + [w[3] for w in in_force if w[3] is not None]
    next_change = min(changes, default=None)
    if not in_force:
        return None, next_change
    worst: WeatherWarning = max(in_force, key=lambda w: (Severity[levels[w[1]].upper()], w[0]))
    issued_at, level, phenomenon = worst[0], worst[1], worst[2]
    reason = f"{level} {phenomenon} warning at the destination"
    return factor.finding(Severity[levels[level].upper()], reason, issued_at), next_change


def ports_in_force(conditions: Conditions, now_ms: int) -> dict[str, tuple[float, int]]:
    """Each port's newest reading at or before now: (congestion index, reported at)."""
    in_force: dict[str, tuple[float, int]] = {}
    for port, readings in conditions.ports.items():
        past = [reading for reading in readings if reading[0] <= now_ms]
        if past:
            in_force[port] = (past[-1][1], past[-1][0])
    return in_force


def port_congestion(factor: Factor, facts: Facts, now_ms: int, conditions: Conditions) -> Assessed:
    """The worst port in force, for every cross-border order until it is out for delivery (orders do not name
    their port yet)."""
    if not conditions.ports or not _is_cross_border(factor, facts.channel, facts.reached):
        return None, None
    if facts.reached[Status.OUT_FOR_DELIVERY.rank]:
        return None, None  # past the port
    in_force = ports_in_force(conditions, now_ms)
    changes = [reading[0] for readings in conditions.ports.values() for reading in readings if reading[0] > now_ms]
    next_change = min(changes, default=None)
    if not in_force:
        return None, next_change
    port, (index, reported_at) = max(in_force.items(), key=lambda item: item[1])
    if index >= float(factor.settings["red_from_index"]):
        severity = Severity.RED
    elif index >= float(factor.settings["yellow_from_index"]):
        severity = Severity.YELLOW
    else:
        return None, next_change
    return factor.finding(severity, f"port {port} congested (index {index:g} of 100)", reported_at), next_change


def _is_cross_border(factor: Factor, channel: str, reached: tuple[int, ...]) -> bool:
    return channel in factor.settings["cross_border_channels"] or bool(reached[Status.CUSTOMS.rank])


def traffic_on_way(factor: Factor, facts: Facts, now_ms: int, conditions: Conditions) -> Assessed:
    """A traffic incident in force on the parcel's way ahead, from where it was seen lately to where parcels to its
    region are delivered (yellow); red once it is held up at one that closes the road. The worst counts, then the
    nearest."""
    found, next_change = _traffic_on_way(factor, facts, now_ms, conditions)
    if found is None:
        return None, next_change
    severity, km, road, (at, level, _, _, delay_min) = found
    told = f"severity {level} of 4, {duration(delay_min * MINUTE_MS)} delay expected from {china_time(at)}"
    if severity == Severity.RED:
        reason = f"held up at a traffic incident on {road} ({told})"
    else:
        reason = f"traffic incident on {road} {km:.0f} km from the parcel's way ahead ({told})"
    return factor.finding(severity, reason, at, f"traffic incident on {road}, severity {level}"), next_change


OnWay = tuple[Severity, float, str, TrafficReport]  # rated, km (from the way; from the parcel if red), road, report


def _traffic_on_way(
    factor: Factor, facts: Facts, now_ms: int, conditions: Conditions
) -> tuple[OnWay | None, int | None]:
    """The worst (then nearest) traffic incident in force that the factor rates on an order's way, while its
    position is at most fresh_min old (an older one no longer tells where it is); and when that may change: a
    report that would count begins, the one found ends, or the position grows stale. On the line haul only: a
    city's delivery rounds are not its way between cities."""
    if now_ms >= conditions.traffic_until_ms or facts.status not in IN_TRANSIT or facts.position is None:
        return None, None
    known = conditions.places.get(facts.region_code or "")
    seen_until = facts.position_at_ms + factor.minutes("fresh_min")
    if known is None or now_ms >= seen_until:
        return None, None
    found: list[tuple[OnWay, int]] = []
    begins: list[int] = []
    for road, reports in conditions.traffic.items():
        for report, ends in _spans(reports):
            if ends <= now_ms or (rated := _rated(factor, report, facts.position, known[1])) is None:
                continue
            if report[0] > now_ms:
                begins.append(report[0])
            else:
                found.append(((*rated, road, report), ends))
    worst = max(found, key=lambda on_way: (on_way[0][0], -on_way[0][1], on_way[0][2]), default=None)
    if worst is None:
        return None, min(begins, default=None)
    return worst[0], min((*begins, worst[1], seen_until))


def _rated(factor: Factor, report: TrafficReport, position: Point, destination: Point) -> tuple[Severity, float] | None:
    """How the factor rates an incident for a parcel at a position, on its way to a destination, and how far it is;
    None if it does not count (too mild, behind the parcel, or too far from its way)."""
    settings, level, where = factor.settings, report[1], (report[2], report[3])
    if level < settings["yellow_from_severity"] or (ahead := km_from_way(where, position, destination)) is None:
        return None
    if level >= settings["red_from_severity"] and (near := km_between(where, position)) <= settings["held_km"]:
        return Severity.RED, near
    return (Severity.YELLOW, ahead) if ahead <= settings["near_km"] else None


def _spans(reports: tuple[TrafficReport, ...]) -> list[tuple[TrafficReport, int]]:
    """A road's reports (by time), each with when it ends: when the delay it announced is over, or the road's next
    report begins."""
    ends = [report[0] + report[4] * MINUTE_MS for report in reports]
    return [(report, min(end, nxt[0]) if nxt else end)
            for report, end, nxt in zip(reports, ends, (*reports[1:], None), strict=True)]  # fmt: skip


# --- external delays on an order's way, for its arrival estimate (schemas/eta.py) --------------


def delay_on_way(
    policy: HealthPolicy,
    conditions: Conditions,
    channel: str,
    region_code: str | None,
    reached: tuple[int, ...],
    from_ms: int,
    to_ms: int,
) -> str | None:
    """The worst external condition the weather and port_congestion factors rate, in force at some time from
    from_ms to to_ms on an order's way: a warning at its destination, or a congested port if it crosses a
    border (until it is out for delivery). Named as eta.CONDITIONS name it ('weather red'); None if none."""
    warnings = conditions.weather.get(region_code or "")
    port_factor = policy.factors.get("port_congestion")
    crosses = port_factor is not None and bool(conditions.ports) and _is_cross_border(port_factor, channel, reached)
    if not warnings and not crosses:
        return None  # the usual case: nothing in force that it could meet
    to_ms = max(from_ms, to_ms)  # a step read just ahead of event time: the conditions at its time
    weather_factor, weather, port = policy.factors.get("weather"), None, None
    if weather_factor is not None and warnings:
        weather = _worst_warning(weather_factor, warnings, from_ms, to_ms)
    port_until = min(to_ms, reached[Status.OUT_FOR_DELIVERY.rank] or to_ms)  # then the port is behind it
    if port_factor is not None and crosses and (from_ms < port_until or not reached[Status.OUT_FOR_DELIVERY.rank]):
        port = _worst_congestion(port_factor, conditions, from_ms, port_until)
    found = [(severity, kind) for severity, kind in ((weather, "weather"), (port, "port")) if severity is not None]
    if not found:
        return None
    severity, kind = max(found)
    return condition(kind, severity.label)


def _worst_warning(factor: Factor, warnings: tuple[WeatherWarning, ...], from_ms: int, to_ms: int) -> Severity | None:
    """The worst rating of the warnings in force at some time from from_ms to to_ms: each lasts until it ends or
    a later warning of its phenomenon replaces it."""
    levels, worst = factor.settings["severity"], None
    later: dict[str, tuple[int, int | None]] = {}  # phenomenon -> (earliest issue seen, the next issue after it)
    for issued, level, phenomenon, until in reversed(warnings):  # by issue time, the latest first
        earliest, following = later.get(phenomenon, (None, None))
        replaced = following if earliest == issued else earliest
        if earliest != issued:
            later[phenomenon] = (issued, earliest)
        ends = min((at for at in (until, replaced) if at is not None), default=None)
        if level in levels and issued <= to_ms and (ends is None or ends > from_ms):
            worst = max(worst or Severity.YELLOW, Severity[levels[level].upper()])
    return worst


def _worst_congestion(factor: Factor, conditions: Conditions, from_ms: int, to_ms: int) -> Severity | None:
    """The worst rating of any port's readings in force at some time from from_ms to to_ms (each until the next)."""
    in_force = [
        index
        for readings in conditions.ports.values()  # by time
        for position, (at, index) in enumerate(readings)
        if at <= to_ms and (position + 1 == len(readings) or readings[position + 1][0] > from_ms)
    ]
    highest = max(in_force, default=None)
    if highest is None or highest < float(factor.settings["yellow_from_index"]):
        return None
    return Severity.RED if highest >= float(factor.settings["red_from_index"]) else Severity.YELLOW


def traffic_hold(policy: HealthPolicy, conditions: Conditions, facts: Facts, now_ms: int) -> tuple[int, str] | None:
    """A parcel held up at a traffic incident (traffic_on_way, red), as its arrival takes it: it goes on when the
    road clears, once the delay the incident announced is over; when, and why in words."""
    found = traffic_found(policy, conditions, facts, now_ms)
    if found is None or found[0] != Severity.RED:
        return None
    _, _, road, (at, _, _, _, delay_min) = found
    clears_at = at + delay_min * MINUTE_MS
    return clears_at, f"held up by a traffic incident on {road} until {china_time(clears_at)}"


def traffic_found(policy: HealthPolicy, conditions: Conditions, facts: Facts, now_ms: int) -> OnWay | None:
    """What the traffic_on_way factor finds on an order's way, if it is configured."""
    factor = policy.factors.get("traffic_on_way")
    return _traffic_on_way(factor, facts, now_ms, conditions)[0] if factor is not None else None


Rule = Callable[[Factor, Facts, int, Conditions], Assessed]
RULES: dict[str, Rule] = {rule.__name__: rule for rule in (
    first_update_late, warehouse_dwell, no_pickup, gps_stale, scans_stale, delivery_dwell, promise,
    slower_than_usual, carrier_exception, service_intents, modification_failed, weather, port_congestion,
    traffic_on_way, channel_breaker,
)}  # fmt: skip


# --- configuration ----------------------------------------------------------------------------


# An order keeps its positions' times as runs, and only the silences between runs (schemas/order_view.py).
KEPT_SILENCE_MS = 15 * 60_000

REQUIRED_SETTINGS = {
    "first_update_late": ("yellow_after_min", "red_after_min"),
    "warehouse_dwell": ("yellow_after_min", "red_after_min"),
    "no_pickup": ("yellow_after_min", "red_after_min"),
    "gps_stale": ("yellow_after_min", "red_after_min"),
    "scans_stale": ("yellow_after_min", "red_after_min"),
    "delivery_dwell": ("yellow_after_min", "red_after_min"),
    "promise": ("warn_before_min",),
    "slower_than_usual": ("yellow_after_min", "red_after_min"),
    "service_intents": ("severity",),
    "modification_failed": ("red_from_count",),
    "weather": ("severity",),
    "port_congestion": ("yellow_from_index", "red_from_index", "cross_border_channels"),
    "traffic_on_way": ("yellow_from_severity", "red_from_severity", "near_km", "held_km", "fresh_min"),
}


def load_health_policy(path: Path = HEALTH_CONFIG) -> HealthPolicy:
    """The policy in a health.yaml, checked: errors name the file and the key."""
    spec, fail = versioned_config(path)
    colors = spec.get("colors")
    if not isinstance(colors, dict) or not all(isinstance(colors.get(k), int) for k in ("yellow_below", "red_below")):
        raise fail("colors", "required: yellow_below and red_below, whole numbers")
    if not 0 < colors["red_below"] <= colors["yellow_below"] <= 100:
        raise fail("colors", "need 0 < red_below <= yellow_below <= 100")
    factors = spec.get("factors")
    if not isinstance(factors, dict) or not factors:
        raise fail("factors", "required, a mapping of factor name to its settings")
    return HealthPolicy(
        spec["version"],
        colors["yellow_below"],
        colors["red_below"],
        {name: _factor(name, settings, fail) for name, settings in factors.items()},
        _eta_settings(spec.get("eta"), fail),
    )


def _eta_settings(settings: Any, fail: Callable[[str, str], ValueError]) -> EtaSettings:
    if not isinstance(settings, dict) or not all(
        isinstance(settings.get(k), int | float) and settings[k] > 0
        for k in ("half_life_days", "min_legs", "settle_min")
    ):
        raise fail("eta", "required: half_life_days, min_legs and settle_min, numbers above 0")
    return EtaSettings(
        int(settings["half_life_days"] * 24 * 60 * MINUTE_MS),
        float(settings["min_legs"]),
        int(settings["settle_min"] * MINUTE_MS),
    )


def _factor(name: str, settings: Any, fail: Callable[[str, str], ValueError]) -> Factor:
    key = f"factors.{name}"
    if name not in RULES:
        raise fail(key, f"unknown factor; known: {', '.join(RULES)}")
    if not isinstance(settings, dict):
        raise fail(key, "a mapping of settings")
    penalties = settings.get("penalties")
    if not isinstance(penalties, dict) or not all(
        isinstance(penalties.get(level), int) and 0 <= penalties[level] <= 100 for level in ("yellow", "red")
    ):
        raise fail(f"{key}.penalties", "required: yellow and red, whole numbers 0..100")
    if missing := [setting for setting in REQUIRED_SETTINGS.get(name, ()) if setting not in settings]:
        raise fail(key, f"missing {', '.join(missing)}")
    for level in (settings.get("severity") or {}).values():
        if str(level).upper() not in Severity.__members__:
            raise fail(f"{key}.severity", f"{level!r} is not yellow or red")
    numbers = [
        settings[k]
        for k in ("yellow_after_min", "red_after_min", "warn_before_min", "red_from_count", "fresh_min")
        if k in settings
    ]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in numbers):
        raise fail(key, "minutes and counts are whole numbers of at least 1")
    severities = [settings[k] for k in ("yellow_from_severity", "red_from_severity") if k in settings]
    if severities and not (all(isinstance(n, int) for n in severities) and 1 <= severities[0] <= severities[1] <= 5):
        raise fail(key, "need whole numbers 1 <= yellow_from_severity <= red_from_severity <= 5 (5: never red)")
    distances = [settings[k] for k in ("near_km", "held_km") if k in settings]
    if not all(isinstance(km, int | float) and not isinstance(km, bool) and km > 0 for km in distances):
        raise fail(key, "distances (km) are numbers above 0")
    if "yellow_after_min" in settings and settings["yellow_after_min"] > settings["red_after_min"]:
        raise fail(key, "yellow_after_min must not exceed red_after_min")
    if name == "gps_stale" and settings["yellow_after_min"] * MINUTE_MS <= KEPT_SILENCE_MS:
        raise fail(key, f"yellow_after_min must exceed {KEPT_SILENCE_MS // MINUTE_MS}: shorter silences are not kept")
    alert = settings.get("alert", "never")
    if alert not in ("yellow", "red", "never"):
        raise fail(f"{key}.alert", "yellow, red or never")
    return Factor(
        name,
        {Severity.YELLOW: penalties["yellow"], Severity.RED: penalties["red"]},
        None if alert == "never" else Severity[alert.upper()],
        {k: v for k, v in settings.items() if k not in ("penalties", "alert")},
    )
