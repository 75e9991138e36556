"""Predicted arrival (R5): learned from the orders that arrived, never from constants.

Each delivered order is a leg: how long it still took from each lifecycle step it
reached (paid, packed, shipped, in transit, out for delivery...) to its delivery,
with its carrier and destination region. Legs come back to every lane of the job
(topic orderscope.eta_legs) and are folded into histograms of remaining time per
lane (carrier and region), per step, where recent legs weigh more: a leg's weight
halves every `half_life`.

An open order is estimated from the furthest step it reached: the remaining time
of the legs that reached the same step, given that as much time has passed already
(those that took less are left out), at its most specific lane with enough history,
else a neighbour (the carrier anywhere, the region by any carrier, everything).
Out come the median arrival, its 10th and 90th percentiles, and the probability of
missing the channel's promise.

Histograms sum weights, relative to the newest leg, so the figures depend on the set
of legs and not on the order they arrived in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from schemas.compact import compact_pickle
from schemas.events import OrderRef
from schemas.fields import Rejected, json_object, required
from schemas.lifecycle import LIFECYCLE, Status

ANY = "*"  # a lane's carrier or region when its neighbours are pooled
FLOOR_MS = 15 * 60_000  # remaining times below this share the first bucket
RATIO = 1.08  # each bucket is this much wider than the previous: about 4% error on a quantile
BUCKETS = 1 + math.ceil(math.log(90 * 24 * 60 / 15) / math.log(RATIO))  # up to 90 days
NEGLIGIBLE = 1e-6  # weights below this (about 20 half-lives old) are dropped
FIRST_STEP, LAST_STEP = Status.PAID.rank, Status.OUT_FOR_DELIVERY.rank  # the steps legs are learned from
STEP_NAMES = {status.rank: status.value for status in LIFECYCLE[FIRST_STEP : LAST_STEP + 1]}
STEPS_BY_NAME = {name: rank for rank, name in STEP_NAMES.items()}


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

    def json(self) -> str:
        remaining = {STEP_NAMES[rank]: ms for rank, ms in self.remaining}
        return json.dumps(
            {"channel": self.order.channel, "order_id": self.order.order_id, "carrier": self.carrier,
             "region_code": self.region_code, "delivered_at": self.delivered_at_ms, "remaining_ms": remaining},
            ensure_ascii=False,
        )  # fmt: skip

    def row(self) -> tuple[Any, ...]:
        """The eta_legs row."""
        ranks, remaining = zip(*self.remaining, strict=True) if self.remaining else ((), ())
        order = self.order
        return (order.channel, order.order_id, self.carrier, self.region_code, self.delivered_at_ms,
                [STEP_NAMES[rank] for rank in ranks], list(remaining))  # fmt: skip


def leg_of(order: OrderRef, carrier: str | None, region_code: str | None, reached: tuple[int, ...]) -> Leg | None:
    """The leg of an order that has just been delivered; None when its lane is unknown."""
    delivered = reached[Status.DELIVERED.rank]
    if not (delivered and carrier and region_code):
        return None
    remaining = tuple(
        (rank, delivered - reached[rank])
        for rank in range(FIRST_STEP, LAST_STEP + 1)
        if reached[rank] and reached[rank] <= delivered
    )
    return Leg(order, carrier, region_code, delivered, remaining) if remaining else None


def read_leg(raw: str, *_: Any) -> list[Any]:
    """The adapter of topic orderscope.eta_legs: the job's own records, checked all the same."""
    payload = json_object(raw)
    remaining = required(payload, "remaining_ms", dict)
    try:
        steps = tuple(sorted((STEPS_BY_NAME[name], int(ms)) for name, ms in remaining.items()))
    except (KeyError, TypeError, ValueError, OverflowError):
        raise Rejected("wrong_type", "remaining_ms maps lifecycle steps to whole milliseconds") from None
    order = OrderRef(required(payload, "channel", str), required(payload, "order_id", str))
    carrier, region = required(payload, "carrier", str), required(payload, "region_code", str)
    return [Leg(order, carrier, region, required(payload, "delivered_at", int), steps)]


# --- learning -------------------------------------------------------------------------------


def bucket_of(remaining_ms: int) -> int:
    if remaining_ms < FLOOR_MS:
        return 0
    return min(1 + int(math.log(remaining_ms / FLOOR_MS) / math.log(RATIO)), BUCKETS - 1)


def bucket_edges(bucket: int) -> tuple[float, float]:
    """The remaining times (ms) a bucket spans."""
    return (0.0 if bucket == 0 else FLOOR_MS * RATIO ** (bucket - 1)), FLOOR_MS * RATIO**bucket


@compact_pickle
@dataclass(frozen=True, slots=True)
class LaneFigures:
    """What one lane learned: per step, the weight of its legs' remaining times by bucket."""

    newest_ms: int  # delivery time of the newest leg: weights are relative to it (that leg weighs 1)
    steps: Mapping[int, Mapping[int, float]]  # step rank -> bucket -> weight

    def learn(self, leg: Leg, half_life_ms: int) -> LaneFigures:
        newest = max(self.newest_ms, leg.delivered_at_ms)
        aged = 0.5 ** ((newest - self.newest_ms) / half_life_ms)  # the older weights, relative to the newest
        weight = 0.5 ** ((newest - leg.delivered_at_ms) / half_life_ms)
        steps: dict[int, dict[int, float]] = {
            rank: {bucket: w * aged for bucket, w in buckets.items() if w * aged >= NEGLIGIBLE}
            for rank, buckets in self.steps.items()
        }
        for rank, remaining_ms in leg.remaining:
            buckets = steps.setdefault(rank, {})
            bucket = bucket_of(remaining_ms)
            buckets[bucket] = buckets.get(bucket, 0.0) + weight
        return LaneFigures(newest, steps)

    def legs(self, rank: int) -> float:
        """The weighted number of legs that reached a step."""
        return sum(self.steps.get(rank, {}).values())


NO_FIGURES = LaneFigures(0, {})


def lanes_of(carrier: str, region_code: str) -> tuple[tuple[str, str], ...]:
    """A lane and its neighbours, the most specific first."""
    return (carrier, region_code), (carrier, ANY), (ANY, region_code), (ANY, ANY)


def learn(figures: MutableMapping[str, LaneFigures], leg: Leg, settings: EtaSettings) -> None:
    """Fold a leg into its lane and every neighbour it pools into (figures by lane_key)."""
    for lane in lanes_of(leg.carrier, leg.region_code):
        key = lane_key(*lane)
        figures[key] = figures.get(key, NO_FIGURES).learn(leg, settings.half_life_ms)


def lane_key(carrier: str, region_code: str) -> str:
    return f"eta|{carrier}|{region_code}"


# --- estimating -----------------------------------------------------------------------------


@compact_pickle
@dataclass(frozen=True, slots=True)
class Estimate:
    eta_ms: int  # the median
    p10_ms: int
    p90_ms: int
    promise_at_risk: float | None  # probability of arriving after the promise; None without one
    basis: str  # in words: which lane and step, from how many legs

    def moved_from(self, other: Estimate | None) -> bool:
        """Whether it is news: the median moved by 30 minutes or more, or the risk by 5 points."""
        if other is None:
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
) -> Estimate | None:
    """The order's arrival, from the furthest step it reached that some lane has learned enough of;
    None before payment or while no lane has."""
    lanes = lanes_of(carrier or ANY, region_code or ANY)
    for rank in range(LAST_STEP, FIRST_STEP - 1, -1):
        if not reached[rank]:
            continue
        for lane in dict.fromkeys(lanes):
            learned = figures.get(lane_key(*lane))
            if learned is None or learned.legs(rank) < settings.min_legs:
                continue
            return _estimate(learned.steps[rank], lane, rank, reached[rank], promised_at_ms, now_ms)
    return None


def _estimate(
    buckets: Mapping[int, float], lane: tuple[str, str], rank: int, since_ms: int, promised: int | None, now_ms: int
) -> Estimate:
    elapsed = max(now_ms - since_ms, 0)
    pieces = _beyond(buckets, elapsed)
    basis = f"{' to '.join(lane)}, from {STEP_NAMES[rank]}, {sum(buckets.values()):.0f} recent legs"
    if not pieces:  # longer already than any leg took: due now, as far as history can tell
        return Estimate(now_ms, now_ms, now_ms, None if promised is None else float(now_ms > promised),
                        f"{basis}; later than any of them")  # fmt: skip
    p10, p50, p90 = (since_ms + int(_quantile(pieces, q)) for q in (0.1, 0.5, 0.9))
    risk = None if promised is None else 1.0 - _share_below(pieces, promised - since_ms)
    return Estimate(p50, p10, p90, risk, basis)


Piece = tuple[float, float, float]  # remaining ms from, to, weight (spread evenly)


def _beyond(buckets: Mapping[int, float], elapsed_ms: float) -> list[Piece]:
    """The histogram given that the remaining time exceeds elapsed_ms."""
    pieces = []
    for bucket in sorted(buckets):
        low, high = bucket_edges(bucket)
        if high <= elapsed_ms:
            continue
        weight = buckets[bucket]
        if low < elapsed_ms:
            weight *= (high - elapsed_ms) / (high - low)
            low = elapsed_ms
        pieces.append((low, high, weight))
    return pieces if sum(piece[2] for piece in pieces) > NEGLIGIBLE else []


def _quantile(pieces: list[Piece], q: float) -> float:
    target = q * sum(piece[2] for piece in pieces)
    for low, high, weight in pieces:
        if target <= weight:
            return low + (high - low) * target / weight
        target -= weight
    return pieces[-1][1]


def _share_below(pieces: list[Piece], limit_ms: float) -> float:
    total = sum(piece[2] for piece in pieces)
    below = sum(weight * min(max((limit_ms - low) / (high - low), 0.0), 1.0) for low, high, weight in pieces)
    return below / total
