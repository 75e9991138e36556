"""Predicted arrival (R5): learned from the orders that arrived, never from constants.

Each delivered order is a leg: how long it still took from each lifecycle step it
reached (paid, packed, shipped, in transit, out for delivery...) to its delivery,
with its carrier and destination region. Legs come back to every lane of the job
(topic orderscope.eta_legs) and are folded into histograms of remaining time per
lane (carrier and region), per step, where recent legs weigh more: a leg's weight
halves every `half_life`.

External delays are learned the same way. A leg also tells, per step, the worst
external condition on its way from that step to its delivery (a weather warning at
its destination, a congested port if it crossed a border, as the health factors
rate them: `CONDITIONS`); its remaining times from those steps also go to the lanes
of that condition, at its region and anywhere.

An open order is estimated from the furthest step it reached: the remaining time
of the legs that reached the same step, given that as much time has passed already
(those that took less are left out), at its most specific lane with enough history,
else a neighbour. Under an external condition since that step, the legs to its
region that went through the same one come first (under a red one, then a yellow
one of its kind); then, and always otherwise, its carrier to its region, the
carrier anywhere, the region by any carrier, everything. A parcel held up at a closed road (schemas/health.py
traffic_on_way) waits on top until the road clears, as the incident announced. Out come the median arrival, its 10th
and 90th percentiles, and the probability of missing the channel's promise.

Histograms sum weights, relative to the newest leg, so the figures depend on the set
of legs and not on the order they arrived in.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, replace
from typing import Any

from schemas.compact import compact_pickle
from schemas.events import OrderRef
from schemas.fields import Rejected, json_object, required
from schemas.geo import Point
from schemas.lifecycle import LIFECYCLE, Status

ANY = "*"  # a lane's carrier or region when its neighbours are pooled
FLOOR_MS = 15 * 60_000  # remaining times below this share the first bucket
RATIO = 1.08  # each bucket is this much wider than the previous: about 4% error on a quantile
BUCKETS = 1 + math.ceil(math.log(90 * 24 * 60 / 15) / math.log(RATIO))  # up to 90 days
REBASE_HALF_LIVES = 64  # weights stay below 2^64: far from a float's limits, and old ones far from zero
USUAL_SHARE = 0.9  # usual: as quick as 9 in 10 recent legs of the lane (health's slower_than_usual)
# The line haul, where usual is told: before it and after it, steps have fixed limits of their own (warehouse
# dwell, pick-up, delivery dwell in schemas/health.yaml).
USUAL_STEPS = frozenset({Status.IN_TRANSIT.rank, Status.CUSTOMS.rank})
NEGLIGIBLE = 1e-6  # weights below this (about 20 half-lives old) are dropped
FIRST_STEP, LAST_STEP = Status.PAID.rank, Status.OUT_FOR_DELIVERY.rank  # the steps legs are learned from
STEP_NAMES = {status.rank: status.value for status in LIFECYCLE[FIRST_STEP : LAST_STEP + 1]}
STEPS_BY_NAME = {name: rank for rank, name in STEP_NAMES.items()}
# External conditions on an order's way, as the weather and port_congestion health factors rate them.
CONDITIONS = frozenset(f"{kind} {rating}" for kind in ("weather", "port") for rating in ("yellow", "red"))
CONDITION_WORDS = {"weather": "a weather warning at the destination", "port": "port congestion"}


def condition(kind: str, rating: str) -> str:
    """The name of an external condition: 'weather red'."""
    named = f"{kind} {rating}"
    if named not in CONDITIONS:
        raise ValueError(f"no external condition {named!r}; known: {', '.join(sorted(CONDITIONS))}")
    return named


@dataclass(frozen=True)
class EtaSettings:
    half_life_ms: int  # a leg weighs half as much as one delivered this much later
    min_legs: float  # the (weighted) legs a lane needs before its figures are used
    settle_ms: int  # a delivered order's leg goes this long after delivery, with the late events of its steps


@compact_pickle
@dataclass(frozen=True, slots=True)
class Leg:
    """A delivered order: how long it took from each step it reached to its delivery."""

    order: OrderRef
    carrier: str
    region_code: str
    delivered_at_ms: int
    remaining: tuple[tuple[int, int], ...]  # (step rank, ms from reaching it to delivery), by rank
    under: tuple[tuple[int, str], ...] = ()  # (step rank, the worst of CONDITIONS on its way), those with one
    delivered_near: Point | None = None  # where it was delivered, if its delivery scan told

    def json(self) -> str:
        remaining = {STEP_NAMES[rank]: ms for rank, ms in self.remaining}
        under = {STEP_NAMES[rank]: named for rank, named in self.under}
        return json.dumps(
            {"channel": self.order.channel, "order_id": self.order.order_id, "carrier": self.carrier,
             "region_code": self.region_code, "delivered_at": self.delivered_at_ms, "remaining_ms": remaining,
             "under": under, "delivered_near": self.delivered_near},
            ensure_ascii=False,
        )  # fmt: skip

    def row(self) -> tuple[Any, ...]:
        """The eta_legs row."""
        ranks, remaining = zip(*self.remaining, strict=True) if self.remaining else ((), ())
        order, under = self.order, dict(self.under)
        return (order.channel, order.order_id, self.carrier, self.region_code, self.delivered_at_ms,
                [STEP_NAMES[rank] for rank in ranks], list(remaining),
                [under.get(rank, "") for rank in ranks], *(self.delivered_near or (None, None)))  # fmt: skip


def leg_of(
    order: OrderRef,
    carrier: str | None,
    region_code: str | None,
    reached: tuple[int, ...],
    under: Callable[[int, int], str | None],
    delivered_near: Point | None = None,
) -> Leg | None:
    """The leg of an order that has just been delivered; None when its lane is unknown. under(from, to) names
    the worst external condition on its way between two times, if any."""
    delivered = reached[Status.DELIVERED.rank]
    if not (delivered and carrier and region_code):
        return None
    steps = [rank for rank in range(FIRST_STEP, LAST_STEP + 1) if reached[rank] and reached[rank] <= delivered]
    remaining = tuple((rank, delivered - reached[rank]) for rank in steps)
    conditions = tuple((rank, named) for rank in steps if (named := under(reached[rank], delivered)))
    return Leg(order, carrier, region_code, delivered, remaining, conditions, delivered_near) if remaining else None


def read_leg(raw: str, *_: Any) -> list[Any]:
    """The adapter of topic orderscope.eta_legs: the job's own records, checked all the same."""
    payload = json_object(raw)
    remaining = required(payload, "remaining_ms", dict)
    try:
        steps = tuple(sorted((STEPS_BY_NAME[name], int(ms)) for name, ms in remaining.items()))
    except (KeyError, TypeError, ValueError, OverflowError):
        raise Rejected("wrong_type", "remaining_ms maps lifecycle steps to whole milliseconds") from None
    under = payload.get("under", {})  # legs written before external conditions were learned have none
    if not isinstance(under, dict) or not all(
        STEPS_BY_NAME.get(name) in dict(steps) and isinstance(named, str) and named in CONDITIONS
        for name, named in under.items()
    ):
        raise Rejected("wrong_type", f"under maps steps of remaining_ms to one of {', '.join(sorted(CONDITIONS))}")
    order = OrderRef(required(payload, "channel", str), required(payload, "order_id", str))
    carrier, region = required(payload, "carrier", str), required(payload, "region_code", str)
    if not all(name and name != ANY and "|" not in name for name in (carrier, region)):
        raise Rejected("out_of_range", "carrier and region_code name a lane: not empty, not '*', no '|'")
    conditions = tuple(sorted((STEPS_BY_NAME[name], named) for name, named in under.items()))
    delivered_at = required(payload, "delivered_at", int)
    return [Leg(order, carrier, region, delivered_at, steps, conditions, _point(payload.get("delivered_near")))]


def _point(value: Any) -> Point | None:
    """A leg's delivered_near: absent or null (not told, or written before it was), else [lat, lon]."""
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(x, int | float) for x in value)):
        raise Rejected("wrong_type", "delivered_near is [lat, lon] or null")
    lat, lon = float(value[0]), float(value[1])
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise Rejected("out_of_range", f"delivered_near {value} is not a latitude and longitude")
    return lat, lon


# --- learning -------------------------------------------------------------------------------


def bucket_of(remaining_ms: int) -> int:
    if remaining_ms < FLOOR_MS:
        return 0
    return min(1 + int(math.log(remaining_ms / FLOOR_MS) / math.log(RATIO)), BUCKETS - 1)


# The remaining times (ms) each bucket spans.
EDGES = tuple((0.0 if bucket == 0 else FLOOR_MS * RATIO ** (bucket - 1), FLOOR_MS * RATIO**bucket)
              for bucket in range(BUCKETS))  # fmt: skip
# Furthest step, promise, carrier, region, the external condition on its way, and when a road holding it up clears.
MadeFor = tuple[int, int | None, str | None, str | None, str | None, int | None]
Lane = tuple[str, str, str]  # carrier, region, external condition ('' for legs under any or none)
Held = tuple[int, int, str]  # held up on the way (by a traffic incident) from, until, and why in words
Usual = tuple[int, str]  # when USUAL_SHARE of a lane's legs from a step had arrived, and that lane and step in words
Sample = tuple[int, tuple[tuple[int, int], ...]]  # a leg as learned: delivered at, (step rank, bucket) of each step


@compact_pickle
@dataclass(slots=True)
class LaneFigures:
    """What one lane learned: per step, the weight of its legs' remaining times by bucket.

    A leg delivered at t weighs 2^((t - reference) / half-life): weights need no ageing as newer legs
    come. The reference moves (every weight scaled once) only when the newest leg is REBASE_HALF_LIVES
    ahead of it, far from a float's limits. Unlike the other values kept in state, figures are changed
    in place, then written back (`learn` below): every order lane learns every leg, and copying a lane's
    histograms for each would cost more than all else an order costs."""

    half_life_ms: int
    reference_ms: int
    newest_ms: int  # delivery time of the newest leg
    steps: dict[int, dict[int, float]]  # step rank -> bucket -> weight
    totals: dict[int, float]  # step rank -> the sum of its weights

    @classmethod
    def none(cls, half_life_ms: int) -> LaneFigures:
        return cls(half_life_ms, 0, 0, {}, {})

    def learn(self, legs: list[Sample]) -> None:
        """Add the legs (a batch's at once)."""
        newest = max(delivered_at for delivered_at, _ in legs)
        if not self.steps:
            self.reference_ms = newest
        self.newest_ms = max(newest, self.newest_ms)
        if self.newest_ms - self.reference_ms > REBASE_HALF_LIVES * self.half_life_ms:
            self._rebase()
        steps, totals = self.steps, self.totals
        for delivered_at, buckets_by_step in legs:
            weight = 2.0 ** ((delivered_at - self.reference_ms) / self.half_life_ms)
            for rank, bucket in buckets_by_step:
                buckets = steps.setdefault(rank, {})
                buckets[bucket] = buckets.get(bucket, 0.0) + weight
                totals[rank] = totals.get(rank, 0.0) + weight

    def _rebase(self) -> None:
        by_ms = self.reference_ms - self.newest_ms
        self.steps = {rank: self._scaled(buckets, by_ms) for rank, buckets in self.steps.items()}
        self.totals = {rank: sum(buckets.values()) for rank, buckets in self.steps.items()}
        self.reference_ms = self.newest_ms

    def weights(self, rank: int) -> dict[int, float]:
        """The step's weights by bucket, the newest leg weighing 1."""
        return self._scaled(self.steps.get(rank, {}), self.reference_ms - self.newest_ms)

    def legs(self, rank: int, now_ms: int) -> float:
        """The number of legs that reached a step, each weighed against one delivered now (or the newest,
        if later)."""
        scale: float = 2.0 ** ((self.reference_ms - max(now_ms, self.newest_ms)) / self.half_life_ms)
        return self.totals.get(rank, 0.0) * scale  # tends to 0, never overflows, however far now is

    def _scaled(self, buckets: Mapping[int, float], by_ms: int) -> dict[int, float]:
        """Weights as if the reference were by_ms later (those left negligible dropped)."""
        scale = 2.0 ** (by_ms / self.half_life_ms)
        return {bucket: weight * scale for bucket, weight in buckets.items() if weight * scale >= NEGLIGIBLE}


def lanes_of(carrier: str, region_code: str, under: str | None = None) -> tuple[Lane, ...]:
    """A lane and its neighbours, the most specific first. Under an external condition, the legs to the same
    region that went through the same one come before; under a red one, then those through a yellow one of its
    kind (a worse storm is no quicker). Never those to other regions: their remaining times are theirs."""
    usual = (carrier, region_code, ""), (carrier, ANY, ""), (ANY, region_code, ""), (ANY, ANY, "")
    if under is None:
        return usual
    return (*((ANY, region_code, named) for named in _worst_first(under)), *usual)


def _worst_first(under: str) -> tuple[str, ...]:
    """A condition, then under a red one the yellow one of its kind (a worse storm is no quicker)."""
    kind, rating = under.split()
    return (under, condition(kind, "yellow")) if rating == "red" else (under,)


def learn(figures: MutableMapping[str, LaneFigures], legs: Iterable[Leg], settings: EtaSettings) -> None:
    """Fold legs into their lanes and every neighbour each pools into (figures by lane_key); the steps of a leg
    under an external condition also into that condition's lanes, at its region and anywhere."""
    by_lane: dict[str, list[Sample]] = defaultdict(list)
    for leg in legs:
        buckets = {rank: bucket_of(ms) for rank, ms in leg.remaining}
        lanes = {lane: tuple(buckets.items()) for lane in lanes_of(leg.carrier, leg.region_code)}
        for named in dict.fromkeys(named for _, named in leg.under):
            steps = tuple((rank, buckets[rank]) for rank, under in leg.under if under == named)
            lanes |= {(ANY, leg.region_code, named): steps, (ANY, ANY, named): steps}
        for lane, steps in lanes.items():
            by_lane[lane_key(*lane)].append((leg.delivered_at_ms, steps))
    for key, lane_legs in by_lane.items():
        learned = figures.get(key) or LaneFigures.none(settings.half_life_ms)
        learned.learn(lane_legs)
        figures[key] = learned  # written back: changed in place


def lane_key(carrier: str, region_code: str, under: str = "") -> str:
    return f"eta|{carrier}|{region_code}|{under}" if under else f"eta|{carrier}|{region_code}"


def _lane_words(lane: Lane) -> str:
    """A lane as a support agent reads it: "zhongtong to 350203", "zhongtong to any region"."""
    carrier, region_code, under = lane
    to = "any region" if region_code == ANY else region_code
    if not under:
        return f"{'any carrier' if carrier == ANY else carrier} to {to}"
    kind, rating = under.split()
    return f"legs to {to} through {CONDITION_WORDS[kind]} ({rating})"


# --- estimating -----------------------------------------------------------------------------


@compact_pickle
@dataclass(frozen=True, slots=True)
class Estimate:
    eta_ms: int  # the median
    p10_ms: int
    p90_ms: int
    promise_at_risk: float | None  # probability of arriving after the promise; None without one
    basis: str  # in words: which lane and step, from how many legs
    arrived: bool = False  # the delivery itself, no longer an estimate
    made_for: MadeFor = (0, None, None, None, None, None)
    beyond_history: bool = False  # slower already than the legs of every lane that knows its step
    usual_by_ms: int | None = None  # when USUAL_SHARE of its lane's legs from its step had arrived (USUAL_STEPS)
    usual_lane: str = ""  # that lane and step, in words
    held: Held | None = None  # a hold on the way since its step, told on top of the legs' times

    def holds_for(self, made_for: MadeFor, now_ms: int) -> bool:
        """Whether it still holds for an order now: made for the same step, promise and lane, and now before
        its p10, so that the time passed since leaves out at most a tenth of its legs (an event that changes
        none of them need not be estimated again: estimating costs as much as assessing health)."""
        return not self.arrived and self.made_for == made_for and now_ms < self.p10_ms

    def held_at(self, step: int) -> Held | None:
        """The hold it was made with, if made at the step: an order held up keeps it while it is at the step, though
        the road cleared since (its legs never waited there)."""
        return self.held if self.made_for[0] == step else None

    def usual_at(self, made_for: MadeFor) -> Usual | None:
        """What was usual from the step, if it was made there for the same lane: an order keeps the usual of its
        step while it is at it, so that lanes learning from the slow parcels of a backlog do not clear the
        backlog's own."""
        step = made_for[0]
        if self.made_for[0] != step or self.made_for[2:4] != made_for[2:4] or self.usual_by_ms is None:
            return None
        return self.usual_by_ms, self.usual_lane

    def is_past(self, now_ms: int) -> bool:
        """Whether its median has passed with the order not delivered: then it is no news to keep."""
        return not self.arrived and self.eta_ms <= now_ms

    @property
    def next_look_ms(self) -> int:
        """When to estimate again if nothing happens: once the median has passed, the time already passed
        leaves out more of the quicker legs."""
        return self.eta_ms

    @property
    def _footing(self) -> tuple[int, tuple[str | None, ...], bool, Held | None]:
        """What it stands on: its step and lane, whether it tells what is usual, and a hold."""
        return self.made_for[0], self.made_for[2:4], self.usual_by_ms is None, self.held

    def moved_from(self, other: Estimate | None) -> bool:
        """Whether it is news: the median moved by 30 minutes or more, or the risk by 5 points; or it was made for
        another step or lane, tells what is usual where the other did not, or another hold (the usual and the hold
        an order keeps at its step are the published estimate's: usual_at, held_at)."""
        if other is None or self.arrived != other.arrived:
            return True
        if self._footing != other._footing:
            return True
        risk, was = self.promise_at_risk, other.promise_at_risk
        risk_moved = (risk is None) != (was is None) or (
            risk is not None and was is not None and abs(risk - was) >= 0.05
        )
        return abs(self.eta_ms - other.eta_ms) >= 30 * 60_000 or risk_moved


def estimate(
    figures: Mapping[str, LaneFigures],
    carrier: str | None,
    region_code: str | None,
    reached: tuple[int, ...],
    promised_at_ms: int | None,
    now_ms: int,
    settings: EtaSettings,
    under: str | None = None,
    usual: Usual | None = None,
    held: Held | None = None,
) -> Estimate | None:
    """The order's arrival, from the furthest step it reached, at the most specific lane with min_legs
    legs (weighed against now) that took longer than the time already passed; None before payment or
    while no lane knows enough. under: the external condition on its way since that step, if any; usual: what
    was usual from that step when the order was first estimated there (it holds while the order is at it); held: a
    road that held it up since that step, whose whole wait comes on top. An order slower already than the legs of
    every lane that knows its step is held up: it has as long again to go from now as from its step."""
    made_for = (furthest_step(reached), promised_at_ms, carrier, region_code, under, held[1] if held else None)
    waited = (held[1] - held[0], held[2]) if held is not None else None
    lanes = tuple(dict.fromkeys(lanes_of(carrier or ANY, region_code or ANY, under)))
    known = [(lane, learned) for lane in lanes if (learned := figures.get(lane_key(*lane))) is not None]
    for rank in range(LAST_STEP, FIRST_STEP - 1, -1) if known else ():
        if not reached[rank]:
            continue
        since, beyond_history = reached[rank], None
        if usual is None and rank in USUAL_STEPS and rank == made_for[0]:
            usual = _usual(known, rank, since, now_ms, settings)
        added = _added_by(figures, under, rank, now_ms, settings) if under is not None else None
        for lane, learned in known:
            if (legs := learned.legs(rank, now_ms)) < settings.min_legs:
                continue
            # A condition's own lane has it in its legs already; no leg waited where the order was held.
            adding = _plus(None if lane[2] else added, waited)
            extra = adding[0] if adding is not None else 0.0  # of the time passed, what the condition and hold took
            pieces, left = _beyond(learned.steps[rank], max(now_ms - since - extra, 0))
            basis = f"{_lane_words(lane)}, from {STEP_NAMES[rank]}"
            if legs * left >= settings.min_legs / 4:  # a quarter of the legs a lane needs: enough to go on
                slow = f"{legs * left:.0f} of {legs:.0f} recent legs took this long or longer"
                return _estimate(pieces, f"{basis}: {slow}", since, made_for, usual, adding, held)
            if beyond_history is None:  # as long again from now as from the step: what a parcel held up has left
                whole, _ = _beyond(learned.steps[rank], 0)
                again = f"{basis}: slower already than all but {legs * left:.0f} of {legs:.0f}; as long again from now"
                waits = (max(held[1] - now_ms, 0), held[2]) if held is not None else None  # what is left of it
                estimated = _estimate(whole, again, now_ms, made_for, usual, waits, held)
                beyond_history = replace(estimated, beyond_history=True)
        if beyond_history is not None:
            return beyond_history
    return None


def _estimate(
    pieces: list[Piece],
    basis: str,
    since_ms: int,
    made_for: MadeFor,
    usual: Usual | None,
    added: Added | None,
    held: Held | None,
) -> Estimate:
    """The estimate from the remaining times of the legs that fit, delayed by what an external condition or a hold
    adds, if any."""
    extra = added[0] if added is not None else 0.0
    p10, p50, p90 = (since_ms + int(at + extra) for at in _quantiles(pieces, (0.1, 0.5, 0.9)))
    promised = made_for[1]
    risk = None if promised is None else 1.0 - _share_below(pieces, promised - since_ms - extra)
    usual_by, usual_lane = usual or (None, "")
    basis = basis if added is None else f"{basis}; {added[1]}"
    return Estimate(
        p50, p10, p90, risk, basis, made_for=made_for, usual_by_ms=usual_by, usual_lane=usual_lane, held=held
    )


Added = tuple[float, str]  # what a condition or a wait adds (ms), and in words


def _plus(added: Added | None, more: Added | None) -> Added | None:
    if added is None or more is None:
        return added or more
    return added[0] + more[0], f"{added[1]}; {more[1]}"


def _added_by(
    figures: Mapping[str, LaneFigures], under: str, rank: int, now_ms: int, settings: EtaSettings
) -> Added | None:
    """What an external condition adds to the remaining time from a step, where the order's region has too few
    legs through it: learned anywhere, as the median of the legs that went through it less that of every leg
    (never less than nothing). A delay is more alike across regions than a whole trip is (a port's delay is
    the border's, not the destination's)."""
    everyone = figures.get(lane_key(ANY, ANY))
    for named in _worst_first(under):
        through = figures.get(lane_key(ANY, ANY, named))
        if everyone is None or through is None or (legs := through.legs(rank, now_ms)) < settings.min_legs:
            continue
        slowed, usual = (_whole_quantiles(lane, rank, (0.5,))[0] for lane in (through, everyone))
        added = max(slowed - usual, 0.0)
        kind, rating = named.split()
        return added, f"{added / 3_600_000:.0f} h more through {CONDITION_WORDS[kind]} ({rating}), from {legs:.0f} legs"
    return None


def _usual(
    known: list[tuple[Lane, LaneFigures]], rank: int, since_ms: int, now_ms: int, settings: EtaSettings
) -> Usual | None:
    """What is usual from the step: when USUAL_SHARE of the legs of the most specific lane to the order's region
    with min_legs legs had arrived (all its legs, whatever the conditions on their way). Where its region has fewer
    (a quarter of min_legs at least), they tell how long the way there takes, and the most specific lane anywhere
    how widely parcels spread: its USUAL_SHARE time, scaled by the ratio of the two medians. Not the carrier's
    everywhere unscaled (far regions would be its slow tail), nor a storm's own lanes (they tell what to expect,
    not what is usual)."""
    to_region = [(lane, learned) for lane, learned in known if lane[1] != ANY and not lane[2]]
    step = STEP_NAMES[rank]
    if own := _first_with(to_region, rank, now_ms, settings.min_legs):
        (usual,) = _whole_quantiles(own[1], rank, (USUAL_SHARE,))
        return since_ms + int(usual), f"{_lane_words(own[0])}, from {step}"
    anywhere = [(lane, learned) for lane, learned in known if lane[1] == ANY and not lane[2]]
    few = _first_with(to_region, rank, now_ms, settings.min_legs / 4)
    wide = _first_with(anywhere, rank, now_ms, settings.min_legs)
    if few is None or wide is None:
        return None
    (few_median,) = _whole_quantiles(few[1], rank, (0.5,))
    wide_median, wide_usual = _whole_quantiles(wide[1], rank, (0.5, USUAL_SHARE))
    usual = wide_usual * few_median / max(wide_median, FLOOR_MS)
    return since_ms + int(usual), f"{_lane_words(few[0])}, from {step}, scaled from {_lane_words(wide[0])}"


def _first_with(
    lanes: list[tuple[Lane, LaneFigures]], rank: int, now_ms: int, legs: float
) -> tuple[Lane, LaneFigures] | None:
    """The first of the lanes with that many legs from the step, weighed against now."""
    return next(((lane, learned) for lane, learned in lanes if learned.legs(rank, now_ms) >= legs), None)


def _whole_quantiles(learned: LaneFigures, rank: int, qs: tuple[float, ...]) -> list[float]:
    """Quantiles of the remaining times of all a lane's legs from the step."""
    return _quantiles(_beyond(learned.steps[rank], 0)[0], qs)


def furthest_step(reached: tuple[int, ...]) -> int:
    """The furthest step reached that arrivals are learned from; 0 if none."""
    return next((rank for rank in range(LAST_STEP, FIRST_STEP - 1, -1) if reached[rank]), 0)


Piece = tuple[float, float, float]  # remaining ms from, to, weight (spread evenly)


def _beyond(buckets: Mapping[int, float], elapsed_ms: float) -> tuple[list[Piece], float]:
    """The histogram given that the remaining time exceeds elapsed_ms, and the share of its weight left."""
    pieces, left, total = [], 0.0, 0.0
    for bucket in sorted(buckets):
        weight = buckets[bucket]
        total += weight
        low, high = EDGES[bucket]
        if high <= elapsed_ms or weight <= 0:
            continue
        if low < elapsed_ms:
            weight *= (high - elapsed_ms) / (high - low)
            low = elapsed_ms
        pieces.append((low, high, weight))
        left += weight
    return pieces, left / total if total else 0.0


def _quantiles(pieces: list[Piece], qs: tuple[float, ...]) -> list[float]:
    """The remaining times at the given shares (ascending) of the pieces' weight, in one pass."""
    total = sum(piece[2] for piece in pieces)
    found, passed, targets = [], 0.0, iter(q * total for q in qs)
    target: float | None = next(targets)
    for low, high, weight in pieces:
        while target is not None and target <= passed + weight:
            found.append(low + (high - low) * (target - passed) / weight)
            target = next(targets, None)
        passed += weight
    return found + [pieces[-1][1]] * (len(qs) - len(found))


def _share_below(pieces: list[Piece], limit_ms: float) -> float:
    """The share of the pieces' weight below limit_ms (pieces are in order)."""
    below = 0.0
    for low, high, weight in pieces:
        if high > limit_ms:
            below += weight * max(limit_ms - low, 0.0) / (high - low)
            break
        below += weight
    return below / sum(piece[2] for piece in pieces)
