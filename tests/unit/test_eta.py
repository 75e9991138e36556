"""Predicted arrival: learned from delivered orders, conditioned on the time already passed, pooled
with neighbours where a lane knows too little."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import replace
from typing import Any

import pytest

from schemas.eta import ANY, EtaSettings, LaneFigures, Leg, estimate, lane_key, learn, leg_of, read_leg
from schemas.events import OrderEvent, OrderRef, Signal
from schemas.fields import Rejected
from schemas.health import MINUTE_MS, load_health_policy
from schemas.lifecycle import LIFECYCLE, Status
from schemas.stages import DAY_MS, OrderStage, OrderState, Retention
from schemas.tables import ORDER_HEALTH_HISTORY, ORDERS_CURRENT
from schemas.topics import RAW_CARRIER, RAW_GPS, RAW_WMS

HOUR = 60 * MINUTE_MS
T0 = 1_764_547_200_000  # 2025-12-01T00:00Z
SETTINGS = EtaSettings(half_life_ms=7 * 24 * HOUR, min_legs=20, settle_ms=3 * HOUR)
IN_TRANSIT = Status.IN_TRANSIT.rank
SHANGHAI = "310101"


def NO_CONDITION(from_ms: int, to_ms: int) -> None:  # noqa: N802 - a constant, as a function
    return None


def leg(n: int, hours: float, carrier: str = "shunfeng", region: str = SHANGHAI, at_ms: int = T0) -> Leg:
    return Leg(OrderRef("tmall", f"o{n}"), carrier, region, at_ms, ((IN_TRANSIT, int(hours * HOUR)),))


def uniform_legs(count: int, low_h: float, high_h: float, **lane: Any) -> list[Leg]:
    """Legs whose time from the pick-up is spread evenly over [low_h, high_h]."""
    return [leg(n, low_h + (high_h - low_h) * (n + 0.5) / count, **lane) for n in range(count)]


def figures_of(legs: list[Leg]) -> dict[str, LaneFigures]:
    figures: dict[str, LaneFigures] = {}
    for batch in (legs[i : i + 7] for i in range(0, len(legs), 7)):  # as batches come
        learn(figures, batch, SETTINGS)
    return figures


def reached_at(**steps: int) -> tuple[int, ...]:
    return tuple(steps.get(status.value, 0) for status in LIFECYCLE)


def hours_after(since_ms: int, at_ms: int) -> float:
    return (at_ms - since_ms) / HOUR


def test_an_order_in_transit_is_estimated_from_the_legs_of_its_lane() -> None:
    figures = figures_of(uniform_legs(100, 24, 48))
    picked_up = T0 + 2 * HOUR
    eta = estimate(figures, "shunfeng", SHANGHAI, reached_at(paid=T0, in_transit=picked_up), None, picked_up, SETTINGS)
    assert eta is not None
    assert hours_after(picked_up, eta.eta_ms) == pytest.approx(36, rel=0.04)
    assert hours_after(picked_up, eta.p10_ms) == pytest.approx(26.4, rel=0.04)
    assert hours_after(picked_up, eta.p90_ms) == pytest.approx(45.6, rel=0.04)
    assert eta.promise_at_risk is None
    assert eta.basis == "shunfeng to 310101, from in_transit: 99 of 99 recent legs took this long or longer"


def test_time_already_passed_leaves_out_the_legs_that_were_quicker() -> None:
    figures = figures_of(uniform_legs(100, 24, 48))
    reached = reached_at(paid=T0, in_transit=T0)
    eta = estimate(figures, "shunfeng", SHANGHAI, reached, None, T0 + 40 * HOUR, SETTINGS)
    assert eta is not None
    assert eta.p10_ms >= T0 + 40 * HOUR
    assert hours_after(T0, eta.eta_ms) == pytest.approx(44, rel=0.04)  # the middle of what is left: 40..48 h

    now = T0 + 60 * HOUR  # slower than any leg: held up, it has as long again to go as from its step
    late = estimate(figures, "shunfeng", SHANGHAI, reached, T0 + 72 * HOUR, now, SETTINGS)
    assert late is not None and late.beyond_history
    quantiles = [hours_after(now, at) for at in (late.p10_ms, late.eta_ms, late.p90_ms)]
    assert quantiles == pytest.approx([26.4, 36, 45.6], rel=0.04)
    assert late.promise_at_risk == 1.0  # 12 h to the promise: none of the legs took so little
    assert (
        late.basis == "shunfeng to 310101, from in_transit: slower already than all but 0 of 78; as long again from now"
    )


def test_the_risk_to_the_promise_is_the_share_of_legs_that_would_miss_it() -> None:
    figures = figures_of(uniform_legs(100, 24, 48))
    reached = reached_at(paid=T0, in_transit=T0)
    eta = estimate(figures, "shunfeng", SHANGHAI, reached, T0 + 30 * HOUR, T0, SETTINGS)
    assert eta is not None and eta.promise_at_risk == pytest.approx(0.75, abs=0.04)
    missed = estimate(figures, "shunfeng", SHANGHAI, reached, T0 + 30 * HOUR, T0 + 31 * HOUR, SETTINGS)
    assert missed is not None and missed.promise_at_risk == 1.0


def test_a_lane_with_little_history_borrows_its_neighbours_and_says_so() -> None:
    figures = figures_of([*uniform_legs(5, 70, 80), *uniform_legs(40, 24, 48, region="440305")])
    reached = reached_at(paid=T0, in_transit=T0)
    eta = estimate(figures, "shunfeng", SHANGHAI, reached, None, T0, SETTINGS)
    assert eta is not None and eta.basis.startswith("shunfeng to any region, from in_transit: 45 of 45 recent legs")
    pooled = estimate(figures, "yunda", SHANGHAI, reached, None, T0, SETTINGS)  # 5 to Shanghai, none by yunda
    assert pooled is not None and pooled.basis.startswith("any carrier to any region, from in_transit: 45 of 45")
    assert estimate({}, "yunda", SHANGHAI, reached, None, T0, SETTINGS) is None  # nothing learned yet
    assert figures[lane_key(ANY, ANY)].legs(IN_TRANSIT, T0) == pytest.approx(45)


def test_a_lane_whose_legs_were_all_quicker_than_the_time_passed_gives_way_to_one_that_knows_slow_ones() -> None:
    figures = figures_of([*uniform_legs(30, 24, 48), *uniform_legs(1000, 24, 96, region="440305")])
    eta = estimate(figures, "shunfeng", SHANGHAI, reached_at(in_transit=T0), None, T0 + 47 * HOUR, SETTINGS)
    assert eta is not None and eta.basis.startswith("shunfeng to any region")  # 1 of Shanghai's 30 was this slow
    assert hours_after(T0, eta.eta_ms) == pytest.approx(71.5, rel=0.04)


def test_a_lane_not_heard_from_for_weeks_gives_way_to_a_fresh_neighbour() -> None:
    stale = uniform_legs(30, 70, 80, at_ms=T0)
    fresh = uniform_legs(1000, 20, 30, region="440305", at_ms=T0 + 52 * 7 * DAY_MS)
    now = T0 + 52 * 7 * DAY_MS
    eta = estimate(figures_of([*stale, *fresh]), "shunfeng", SHANGHAI, reached_at(in_transit=now), None, now, SETTINGS)
    assert eta is not None and eta.basis.startswith("shunfeng to any region")  # a year on, Shanghai's 30 weigh nothing


def test_an_order_is_estimated_from_the_furthest_step_learned_enough() -> None:
    legs = [
        Leg(OrderRef("app", f"o{n}"), "jd", SHANGHAI, T0, ((Status.PAID.rank, 50 * HOUR), (IN_TRANSIT, 30 * HOUR)))
        for n in range(30)
    ]
    figures = figures_of(legs)
    reached = reached_at(paid=T0, in_transit=T0 + 20 * HOUR, out_for_delivery=T0 + 45 * HOUR)
    eta = estimate(figures, "jd", SHANGHAI, reached, None, T0 + 45 * HOUR, SETTINGS)
    assert eta is not None and "from in_transit" in eta.basis  # no leg taught out_for_delivery
    assert hours_after(T0, eta.eta_ms) == pytest.approx(50, rel=0.05)
    assert estimate(figures, "jd", SHANGHAI, reached_at(created=T0), None, T0, SETTINGS) is None  # not paid


def test_what_is_learned_does_not_depend_on_the_order_legs_arrive_in() -> None:
    legs = [leg(n, 10 + n % 37, at_ms=T0 + (n % 11) * DAY_MS) for n in range(200)]
    shuffled = legs[:]
    random.Random(7).shuffle(shuffled)
    first, second = figures_of(legs), figures_of(shuffled)
    assert first.keys() == second.keys()
    for key, learned in first.items():
        for rank in learned.steps:
            mine, theirs = learned.weights(rank), second[key].weights(rank)
            assert mine.keys() == theirs.keys()
            assert all(weight == pytest.approx(theirs[bucket], rel=1e-9) for bucket, weight in mine.items())


def test_weights_stay_finite_over_years_of_legs() -> None:
    figures: dict[str, LaneFigures] = {}
    for week in range(52 * 10):  # ten years, a leg a week
        learn(figures, [leg(week, 10 + week % 3, at_ms=T0 + week * 7 * DAY_MS)], SETTINGS)
    learned = figures[lane_key(ANY, ANY)]
    assert max(learned.steps[IN_TRANSIT].values()) < 2.0**65
    assert learned.legs(IN_TRANSIT, T0) == pytest.approx(2, rel=0.01)  # 1 + 1/2 + 1/4 + ...


def test_recent_legs_weigh_more() -> None:
    old, new = leg(1, 10, at_ms=T0), leg(2, 40, at_ms=T0 + 7 * 24 * HOUR)
    learned = figures_of([new, old])[lane_key("shunfeng", SHANGHAI)]
    assert learned.legs(IN_TRANSIT, T0) == pytest.approx(1.5)  # the newest weighs 1, one a half-life older 0.5
    assert learned.legs(IN_TRANSIT, T0 + 14 * DAY_MS) == pytest.approx(0.75)  # weighed against now
    figures = figures_of([*uniform_legs(30, 10, 12, at_ms=T0), *uniform_legs(30, 40, 42, at_ms=T0 + 28 * DAY_MS)])
    eta = estimate(figures, "shunfeng", SHANGHAI, reached_at(in_transit=T0), None, T0, SETTINGS)
    assert eta is not None and hours_after(T0, eta.eta_ms) > 38  # four half-lives on, the old legs hardly count


def test_a_delivered_order_makes_a_leg_from_each_step_it_reached_before_delivery() -> None:
    order = OrderRef("tmall", "9")
    reached = reached_at(paid=T0, shipped=T0 + 5 * HOUR, in_transit=T0 + 7 * HOUR, delivered=T0 + 40 * HOUR)
    storm_from_hour_6 = lambda from_ms, to_ms: "weather red" if to_ms > T0 + 6 * HOUR else None  # noqa: E731
    made = leg_of(order, "yuantong", SHANGHAI, reached, storm_from_hour_6)
    assert made is not None
    assert made.remaining == ((Status.PAID.rank, 40 * HOUR), (Status.SHIPPED.rank, 35 * HOUR), (IN_TRANSIT, 33 * HOUR))
    assert made.under == ((Status.PAID.rank, "weather red"), (Status.SHIPPED.rank, "weather red"),
                          (IN_TRANSIT, "weather red"))  # fmt: skip
    assert leg_of(order, None, SHANGHAI, reached, NO_CONDITION) is None  # no carrier: no lane to learn it for
    assert leg_of(order, "yuantong", SHANGHAI, reached_at(paid=T0), NO_CONDITION) is None  # not delivered


def test_a_leg_read_back_from_its_topic_is_the_leg_sent() -> None:
    remaining = ((Status.PAID.rank, 40 * HOUR), (IN_TRANSIT, 3))
    sent = Leg(OrderRef("tmall", "9"), "yuantong", SHANGHAI, T0, remaining, ((IN_TRANSIT, "port yellow"),))
    assert read_leg(sent.json()) == [sent]
    written_before_conditions = {k: v for k, v in json.loads(sent.json()).items() if k != "under"}
    assert read_leg(json.dumps(written_before_conditions)) == [Leg(sent.order, "yuantong", SHANGHAI, T0, remaining)]
    for broken in (
        {"channel": "tmall"},
        {**json.loads(sent.json()), "remaining_ms": {"teleported": 5}},
        {**json.loads(sent.json()), "remaining_ms": {"paid": "soon"}},
        {**json.loads(sent.json()), "carrier": "*"},
        {**json.loads(sent.json()), "under": {"in_transit": "hail"}},  # no such condition
        {**json.loads(sent.json()), "under": {"in_transit": ["weather red"]}},
        {**json.loads(sent.json()), "under": {"shipped": "weather red"}},  # a step it has no time for
    ):
        with pytest.raises(Rejected):
            read_leg(json.dumps(broken))


# --- external conditions -----------------------------------------------------------------------


def test_legs_through_a_condition_are_learned_apart_and_estimate_the_orders_under_it_first() -> None:
    fair = [*uniform_legs(40, 10, 12), *uniform_legs(40, 20, 22, region="440305")]
    stormy = [  # to Shanghai, 40 to 44 h
        replace(one, order=OrderRef("tmall", f"storm{n}"), remaining=((IN_TRANSIT, ms + 30 * HOUR),),
                under=((IN_TRANSIT, "weather yellow"),))
        for n, one in enumerate(uniform_legs(25, 10, 14)) for _, ms in one.remaining
    ]  # fmt: skip
    figures = figures_of([*fair, *stormy])
    assert figures[lane_key(ANY, SHANGHAI, "weather yellow")].legs(IN_TRANSIT, T0) == pytest.approx(25)
    assert figures[lane_key(ANY, ANY, "weather yellow")].legs(IN_TRANSIT, T0) == pytest.approx(25)
    assert figures[lane_key("shunfeng", SHANGHAI)].legs(IN_TRANSIT, T0) == pytest.approx(65)  # every leg
    picked_up = reached_at(in_transit=T0)

    usual = estimate(figures, "shunfeng", SHANGHAI, picked_up, None, T0, SETTINGS)
    assert usual is not None and usual.basis.startswith("shunfeng to 310101,") and hours_after(T0, usual.eta_ms) < 20
    under_storm = estimate(figures, "shunfeng", SHANGHAI, picked_up, None, T0, SETTINGS, under="weather yellow")
    assert under_storm is not None and 40 <= hours_after(T0, under_storm.eta_ms) <= 44
    assert under_storm.basis.startswith("legs to 310101 through a weather warning at the destination (yellow), from")
    worse = estimate(figures, "shunfeng", SHANGHAI, picked_up, None, T0, SETTINGS, under="weather red")
    assert worse is not None and worse.basis == under_storm.basis  # no red storm learned: a worse one is no quicker

    # Shenzhen has no leg through a storm: its own lane, plus what a storm added anywhere (medians 42 h against
    # 21 h of every leg: 21 h more), not Shanghai's whole trip
    elsewhere = estimate(figures, "shunfeng", "440305", picked_up, None, T0, SETTINGS, under="weather yellow")
    own = estimate(figures, "shunfeng", "440305", picked_up, None, T0, SETTINGS)
    assert elsewhere is not None and own is not None
    assert hours_after(own.eta_ms, elsewhere.eta_ms) == pytest.approx(21, abs=1.5)
    assert elsewhere.p10_ms - own.p10_ms == pytest.approx(elsewhere.eta_ms - own.eta_ms, abs=1)  # shifted whole
    assert elsewhere.basis.startswith("shunfeng to 440305, from in_transit: 40 of 40 recent legs took this long")
    assert elsewhere.basis.endswith("; 21 h more through a weather warning at the destination (yellow), from 25 legs")
    for hours_on in (10, 30, 40):  # the time the storm took is not left out of its own lane's legs, nor added twice
        later = estimate(figures, "shunfeng", "440305", picked_up, None, T0 + hours_on * HOUR, SETTINGS,
                         under="weather yellow")  # fmt: skip
        assert later is not None and later.eta_ms == pytest.approx(elsewhere.eta_ms, abs=1.5 * HOUR)
    unlearned = estimate(figures, "shunfeng", SHANGHAI, picked_up, None, T0, SETTINGS, under="port red")
    assert unlearned is not None and unlearned.eta_ms == usual.eta_ms  # no leg went through it: the usual lanes


def test_an_order_delivered_through_a_storm_teaches_it_and_the_next_order_under_it_is_estimated_from_it() -> None:
    orders = OrderStage(OrderState.in_memory(), RETENTION, load_health_policy())
    orders.apply(uniform_legs(40, 24, 26))  # fair weather: a day from the pick-up
    storm = Signal("weather_rainstorm", SHANGHAI, T0 + 10 * HOUR, T0 + 22 * HOUR, "orange")  # health: yellow
    orders.apply([storm], T0 + 10 * HOUR)
    caught = [OrderRef("tmall", f"caught{n}") for n in range(25)]
    told = [e for n, o in enumerate(caught) for e in order_events(o, T0, T0 + (50 + n % 5) * HOUR)]
    orders.apply(told, T0 + 50 * HOUR)
    legs = orders.check_due(T0 + 60 * HOUR).legs  # three hours after each delivery
    assert len(legs) == len(caught) and all(dict(one.under) == {
        Status.PAID.rank: "weather yellow", Status.SHIPPED.rank: "weather yellow", IN_TRANSIT: "weather yellow"}
        for one in legs)  # fmt: skip
    orders.apply(legs)  # back from the topic

    late = OrderRef("tmall", "late")  # paid after the storm ended: its way met none
    shown = orders.apply(order_events(late, T0 + 30 * HOUR, None), watermark_ms=T0 + 36 * HOUR)
    fair = dict(zip(ORDERS_CURRENT.column_names, shown.current[-1], strict=True))
    assert fair["eta_basis"].startswith("shunfeng to 310101,") and hours_after(T0 + 35 * HOUR, fair["eta"]) < 30

    def shown_after_scan(at_ms: int) -> dict[str, Any]:  # the row its next scan makes
        scan = OrderEvent(late, at_ms, RAW_CARRIER, Status.IN_TRANSIT, detail=f"hub {at_ms}", carrier="shunfeng")
        return dict(zip(ORDERS_CURRENT.column_names, orders.apply([scan], at_ms).current[-1], strict=True))

    orders.apply([Signal("weather_rainstorm", SHANGHAI, T0 + 40 * HOUR, T0 + 52 * HOUR, "orange")], T0 + 40 * HOUR)
    row = shown_after_scan(T0 + 41 * HOUR)
    assert row["eta_basis"].startswith("legs to 310101 through a weather warning at the destination (yellow)")
    assert hours_after(T0 + 35 * HOUR, row["eta"]) > 40  # 45 to 49 h from the pick-up, as the storm's legs took
    orders.apply([Signal("weather_rainstorm", SHANGHAI, T0 + 44 * HOUR, T0 + 52 * HOUR, "red")], T0 + 44 * HOUR)
    row = shown_after_scan(T0 + 45 * HOUR)  # rated red: no leg went through one yet, and a worse storm is no quicker
    assert row["eta_basis"].startswith("legs to 310101 through a weather warning at the destination (yellow)")
    out = OrderEvent(late, T0 + 60 * HOUR, RAW_CARRIER, Status.OUT_FOR_DELIVERY, carrier="shunfeng")
    shown = orders.apply([out], T0 + 60 * HOUR)  # its step began after the storm ended
    row = dict(zip(ORDERS_CURRENT.column_names, shown.current[-1], strict=True))
    assert row["eta_basis"].startswith("shunfeng to 310101, from in_transit")  # no leg learned from out_for_delivery


def test_a_hold_comes_on_top_of_the_legs_times_while_held_and_after_the_road_cleared() -> None:
    figures = figures_of(uniform_legs(40, 24, 26))
    reached = reached_at(in_transit=T0)
    held = (T0 + 7 * HOUR, T0 + 15 * HOUR, "held up by a traffic incident on G4 until 12-01 23:00 China time")

    def hours(now_ms: int, hold: tuple[int, int, str] | None) -> float:
        estimated = estimate(figures, "shunfeng", SHANGHAI, reached, None, now_ms, SETTINGS, held=hold)
        assert estimated is not None
        return hours_after(T0, estimated.eta_ms)

    assert hours(T0 + 8 * HOUR, held) == pytest.approx(25 + 8, abs=0.5)  # the legs' 25 h and the 8 h held
    assert hours(T0 + 20 * HOUR, held) == pytest.approx(25 + 8, abs=0.5)  # cleared: the time held was no travel
    assert hours(T0 + 20 * HOUR, None) == pytest.approx(25, abs=0.5)


# --- in the order stage ------------------------------------------------------------------------

RETENTION = Retention(7 * DAY_MS, 30 * DAY_MS, 3 * DAY_MS, 30 * DAY_MS, 7 * DAY_MS)


def order_events(order: OrderRef, paid_ms: int, delivered_ms: int | None) -> list[OrderEvent]:
    events = [
        OrderEvent(order, paid_ms, "raw.orders.tmall", Status.PAID, region_code=SHANGHAI),
        OrderEvent(order, paid_ms + 3 * HOUR, RAW_WMS, Status.SHIPPED, carrier="shunfeng"),
        OrderEvent(order, paid_ms + 5 * HOUR, RAW_CARRIER, Status.IN_TRANSIT, carrier="shunfeng"),
    ]
    if delivered_ms is not None:
        events.append(OrderEvent(order, delivered_ms, RAW_CARRIER, Status.DELIVERED, carrier="shunfeng"))
    return events


def test_deliveries_teach_every_lane_and_an_open_order_gets_its_eta_and_curve() -> None:
    here = OrderStage(OrderState.in_memory(), RETENTION, load_health_policy())
    delivered = [OrderRef("tmall", f"d{n}") for n in range(25)]
    told = [e for n, o in enumerate(delivered) for e in order_events(o, T0, T0 + (30 + n % 5) * HOUR)]
    payments = [e for e in told if e.status == Status.PAID]
    assert here.apply([e for e in told if e.status != Status.PAID], T0 + 30 * HOUR).legs == []  # not settled yet
    assert here.apply(payments, T0 + 30 * HOUR).legs == []  # the payments (and the region) come late
    rows = here.check_due(T0 + 37 * HOUR)  # three hours after the last delivery
    assert sorted(one.order.order_id for one in rows.legs) == sorted(o.order_id for o in delivered)  # once each
    assert all(one.remaining[0][0] == Status.PAID.rank for one in rows.legs)  # with the late payment
    assert here.check_due(T0 + 40 * HOUR).legs == here.apply(told, T0 + 40 * HOUR).legs == []  # taught once

    elsewhere = OrderStage(OrderState.in_memory(), RETENTION, load_health_policy())  # another lane
    elsewhere.apply(rows.legs)
    open_order = OrderRef("tmall", "open")
    shown = elsewhere.apply(order_events(open_order, T0 + DAY_MS, None), watermark_ms=T0 + DAY_MS + 5 * HOUR)
    row = dict(zip(ORDERS_CURRENT.column_names, shown.current[-1], strict=True))
    assert row["eta_p10"] <= row["eta"] <= row["eta_p90"]
    assert hours_after(T0 + DAY_MS, row["eta"]) == pytest.approx(32, abs=2)  # 30..34 h after payment
    assert row["eta_basis"] == "shunfeng to 310101, from in_transit: 25 of 25 recent legs took this long or longer"
    history = [dict(zip(ORDER_HEALTH_HISTORY.column_names, r, strict=True)) for r in shown.health]
    assert history[-1]["eta"] == row["eta"]

    # Quiet, it is estimated again once the median has passed: its ETA never stays in the past.
    again = elsewhere.check_due(row["eta"] + MINUTE_MS)  # checks fall due by the minute
    later = dict(zip(ORDERS_CURRENT.column_names, again.current[-1], strict=True))
    assert later["eta"] > later["health_at"] >= row["eta"]
    assert [r[ORDER_HEALTH_HISTORY.column_names.index("eta")] for r in again.health] == [later["eta"]]

    delivered_at = T0 + DAY_MS + 33 * HOUR
    arrived = elsewhere.apply(
        [OrderEvent(open_order, delivered_at, RAW_CARRIER, Status.DELIVERED, carrier="shunfeng")], delivered_at
    )
    final = dict(zip(ORDERS_CURRENT.column_names, arrived.current[-1], strict=True))
    settled = (final["eta"], final["eta_p10"], final["eta_p90"], final["eta_basis"])
    assert settled == (delivered_at, delivered_at, delivered_at, "delivered")


def test_a_cancelled_order_has_no_arrival() -> None:
    orders = OrderStage(OrderState.in_memory(), RETENTION, load_health_policy())
    orders.apply(uniform_legs(30, 24, 48))
    order = OrderRef("tmall", "cancelled")
    shown = orders.apply(order_events(order, T0, None), T0 + 6 * HOUR)
    assert dict(zip(ORDERS_CURRENT.column_names, shown.current[-1], strict=True))["eta"] is not None
    cancelled = orders.apply([OrderEvent(order, T0 + 7 * HOUR, "raw.orders.tmall", Status.CANCELLED)], T0 + 7 * HOUR)
    assert dict(zip(ORDERS_CURRENT.column_names, cancelled.current[-1], strict=True))["eta"] is None


def test_an_estimate_creeping_by_small_steps_is_published_once_it_has_moved_half_an_hour() -> None:
    orders = OrderStage(OrderState.in_memory(), RETENTION, load_health_policy())
    orders.apply(uniform_legs(100, 24, 48))
    order = OrderRef("tmall", "creeping")
    published = orders.apply(order_events(order, T0, None), T0 + 5 * HOUR)
    eta_column = ORDERS_CURRENT.column_names.index("eta")
    shown = [published.current[-1][eta_column]]
    for minutes in range(24 * 60, 44 * 60, 20):  # a scan every 20 minutes as the quicker legs drop out
        at = T0 + 5 * HOUR + minutes * MINUTE_MS
        scan = OrderEvent(order, at, RAW_CARRIER, Status.IN_TRANSIT, detail=f"hub {minutes}", carrier="shunfeng")
        shown.append(orders.apply([scan], at).current[-1][eta_column])
    published_moves = [b - a for a, b in itertools.pairwise(shown) if b != a]
    assert len(published_moves) >= 3 and all(move >= 30 * MINUTE_MS for move in published_moves)
    assert shown[-1] - shown[0] > 2 * HOUR  # the small moves add up


def test_a_delivery_read_before_the_payment_that_names_the_region_is_taught_when_the_payment_comes() -> None:
    orders = OrderStage(OrderState.in_memory(), RETENTION, load_health_policy())
    order = OrderRef("app", "late-payment")
    paid, *logistics = order_events(order, T0, T0 + 30 * HOUR)
    assert orders.apply(logistics, T0 + 30 * HOUR).legs == []
    assert orders.check_due(T0 + 40 * HOUR).legs == []  # settled, but no region: nothing to learn for
    assert orders.check_due(T0 + 80 * HOUR).current == []  # and no check looks again and again
    (taught,) = orders.apply([paid], T0 + 80 * HOUR).legs
    assert (taught.region_code, taught.remaining[0]) == (SHANGHAI, (Status.PAID.rank, 30 * HOUR))


def test_an_event_that_changes_neither_step_nor_promise_before_the_p10_keeps_the_estimate() -> None:
    state = OrderState.in_memory()
    orders = OrderStage(state, RETENTION, load_health_policy())
    orders.apply(uniform_legs(100, 24, 48))
    order = OrderRef("tmall", "steady")
    orders.apply(order_events(order, T0, None), T0 + 5 * HOUR)
    made = state.orders[order.key].eta
    assert made is not None
    scan = OrderEvent(order, T0 + 9 * HOUR, RAW_CARRIER, Status.IN_TRANSIT, detail="hub", carrier="shunfeng")
    orders.apply([scan], T0 + 9 * HOUR)
    assert state.orders[order.key].eta is made  # not estimated again
    later = OrderEvent(order, T0 + 33 * HOUR, RAW_CARRIER, Status.IN_TRANSIT, detail="hub 2", carrier="shunfeng")
    orders.apply([later], later.at_ms)
    assert state.orders[order.key].eta is not made  # past its p10: estimated again (and moved)


def test_a_leg_from_a_clock_gone_wrong_is_not_learned_and_no_time_overflows_the_weights() -> None:
    orders = OrderStage(OrderState.in_memory(), RETENTION, load_health_policy())
    year_2096 = T0 + 70 * 365 * DAY_MS
    orders.apply([*uniform_legs(30, 24, 48), leg(99, 30, at_ms=year_2096)], watermark_ms=T0 + HOUR)
    order = OrderRef("tmall", "after")
    shown = orders.apply(order_events(order, T0, None), T0 + 6 * HOUR)
    row = dict(zip(ORDERS_CURRENT.column_names, shown.current[-1], strict=True))
    assert row["eta_basis"].startswith("shunfeng to 310101, from in_transit: 29 of 29")  # not the 2096 leg
    assert figures_of(uniform_legs(30, 24, 48))[lane_key(ANY, ANY)].legs(IN_TRANSIT, year_2096) == 0.0


def test_a_completed_order_never_told_delivered_has_no_arrival() -> None:
    orders = OrderStage(OrderState.in_memory(), RETENTION, load_health_policy())
    orders.apply(uniform_legs(30, 24, 48))
    order = OrderRef("tmall", "confirmed")
    completed = OrderEvent(order, T0 + 40 * HOUR, "raw.orders.tmall", Status.COMPLETED)
    shown = orders.apply([*order_events(order, T0, None), completed], T0 + 40 * HOUR)
    assert dict(zip(ORDERS_CURRENT.column_names, shown.current[-1], strict=True))["eta"] is None


def test_an_order_slower_than_its_lane_usually_is_yellow_then_red_and_alerted_when_no_event_comes() -> None:
    state = OrderState.in_memory()
    orders = OrderStage(state, RETENTION, load_health_policy())
    legs = [replace(one, remaining=((Status.SHIPPED.rank, ms + 2 * HOUR), (IN_TRANSIT, ms)))
            for one in uniform_legs(100, 10, 40) for _, ms in one.remaining]  # fmt: skip
    orders.apply(legs)  # from the pick-up: 9 in 10 within 37 h (8 in 10 34 h, 19 in 20 38.5 h)
    order = OrderRef("tmall", "backlogged")
    picked_up = T0 + 5 * HOUR
    paid, shipped, in_transit = order_events(order, T0, None)
    orders.apply([paid, shipped], T0 + 3 * HOUR)  # estimated (and published) at the step before first
    orders.apply([in_transit], picked_up)
    usual_by = state.orders[order.key].eta.usual_by_ms  # type: ignore[union-attr]
    assert usual_by is not None and abs(usual_by - (picked_up + 37 * HOUR)) < 20 * MINUTE_MS

    def slow_at(at_ms: int) -> tuple[list[str], list[str]]:
        rows = orders.check_due(at_ms)
        reasons = rows.current[-1][ORDERS_CURRENT.column_names.index("health_reasons")] if rows.current else []
        steps = [f"{step.step} {step.incident.severity.label}" for step in rows.alerts]
        return [reason for reason in reasons if "recent parcels" in reason], steps

    assert slow_at(usual_by + 3 * HOUR) == ([], [])  # late, but within the allowance
    assert slow_at(usual_by + 5 * HOUR) == (
        ["not delivered 4 h after 9 in 10 recent parcels (shunfeng to 310101, from in_transit) were"],
        [],
    )  # looked at when it turned yellow (checks fall due by the minute), no alert yet
    rows = orders.check_due(usual_by + 13 * HOUR)
    (opened,) = rows.alerts
    assert (opened.step, opened.incident.severity.label, opened.incident.opened_at_ms) == ("opened", "red", picked_up)
    assert opened.incident.reason == (
        "not delivered 12 h after 9 in 10 recent parcels (shunfeng to 310101, from in_transit) were"
    )  # dated from the pick-up: when the threshold was crossed depends on the legs learned by then

    orders.apply(uniform_legs(300, 60, 70, at_ms=usual_by))  # the backlog's own slow parcels are learned
    later = orders.check_due(usual_by + 40 * HOUR)
    slow_steps = [step.step for step in later.alerts if step.incident.alert_type == "slower_than_usual"]
    assert slow_steps == []  # still open (not resolved, nor opened again): its step's usual is kept while it is at it
    reasons = later.current[-1][ORDERS_CURRENT.column_names.index("health_reasons")]
    kept = "after 9 in 10 recent parcels (shunfeng to 310101, from in_transit) were"  # the usual of its first estimate
    assert any(reason.startswith("not delivered 1 d") and reason.endswith(kept) for reason in reasons)


def test_a_region_few_legs_went_to_is_usual_as_its_legs_median_spread_as_the_carriers_legs_anywhere() -> None:
    anywhere = uniform_legs(100, 10, 40, region="440305")  # the carrier's legs elsewhere: median 25 h, 9 in 10 by 37 h
    few = [leg(200 + n, 48 + n, region="350203") for n in range(5)]  # to Xiamen: median 50 h, twice as far
    figures = figures_of(anywhere + few)
    picked_up = reached_at(in_transit=T0)

    def usual(region: str, figures: dict[str, LaneFigures] = figures) -> tuple[float, str] | None:
        estimated = estimate(figures, "shunfeng", region, picked_up, None, T0, SETTINGS)
        assert estimated is not None
        by = estimated.usual_by_ms
        return None if by is None else (hours_after(T0, by), estimated.usual_lane)

    scaled = (
        pytest.approx(37 * 50 / 25, abs=1.5),
        "shunfeng to 350203, from in_transit, scaled from shunfeng to any region",
    )
    assert usual("350203") == scaled
    assert usual("440305") == (pytest.approx(37, abs=1), "shunfeng to 440305, from in_transit")  # enough of its own
    assert usual("350203", figures_of(anywhere + few[:4])) is None  # 4 legs are fewer than a quarter of 20
    assert usual("110101") is None  # none went there


def test_slower_than_usual_is_told_on_the_line_haul_only() -> None:
    orders = OrderStage(OrderState.in_memory(), RETENTION, load_health_policy())
    orders.apply([replace(one, remaining=((Status.SHIPPED.rank, ms),)) for one in uniform_legs(100, 10, 40)
                  for _, ms in one.remaining])  # fmt: skip
    order = OrderRef("tmall", "left-behind")
    paid, shipped, _ = order_events(order, T0, None)  # never picked up: no_pickup tells it, red after 4 h
    orders.apply([paid, shipped], T0 + 3 * HOUR)
    rows = orders.check_due(T0 + 4 * DAY_MS)
    assert {step.incident.alert_type for step in rows.alerts} == {"no_pickup"}


# --- traffic on the way ---------------------------------------------------------------------------

SHANGHAI_AT, HANGZHOU_AT, BEIJING_AT = (31.2304, 121.4737), (30.2592, 120.1302), (39.9219, 116.4436)
G15_AT = (30.91, 121.12)
G15_CLOSED = Signal("traffic_incident", "G15", T0 + 6 * HOUR, None, "4", lat=30.91, lon=121.12, delay_min=8 * 60)


def test_a_parcel_held_up_at_a_closed_road_is_red_and_arrives_when_it_clears_one_ahead_is_yellow() -> None:
    state = OrderState.in_memory()
    orders = OrderStage(state, RETENTION, load_health_policy())
    orders.apply([replace(one, delivered_near=SHANGHAI_AT) for one in uniform_legs(40, 24, 26)])
    assert state.context["conditions"].places == {SHANGHAI: (T0, SHANGHAI_AT)}  # when and where parcels arrived
    orders.apply([G15_CLOSED], T0 + 6 * HOUR)

    def shown(name: str, seen_at: tuple[float, float]) -> dict[str, Any]:
        order, at_ms = OrderRef("tmall", name), T0 + 7 * HOUR
        scan = OrderEvent(
            order, at_ms, RAW_CARRIER, Status.IN_TRANSIT, detail="hub", position=seen_at, carrier="shunfeng"
        )
        rows = orders.apply([*order_events(order, T0, None), scan], at_ms)
        return dict(zip(ORDERS_CURRENT.column_names, rows.current[-1], strict=True)) | {"alerts": rows.alerts}

    held, ahead = shown("held", G15_AT), shown("ahead", HANGZHOU_AT)
    passed, clear = shown("passed", (31.0, 121.3)), shown("clear", BEIJING_AT)  # towards Shanghai past it; 49 km off
    told = "(severity 4 of 4, 8 h delay expected from 12-01 14:00 China time)"
    assert held["health_reasons"] == [f"held up at a traffic incident on G15 {told}"]
    assert ahead["health_reasons"] == [f"traffic incident on G15 6 km from the parcel's way ahead {told}"]
    assert passed["health_reasons"] == clear["health_reasons"] == []
    assert [(step.step, step.incident.alert_type, step.incident.opened_at_ms) for step in held["alerts"]] == [
        ("opened", "traffic_on_way", T0 + 6 * HOUR)
    ]
    assert ahead["alerts"] == passed["alerts"] == clear["alerts"] == []  # alerted from red
    assert held["eta_basis"].endswith("; held up by a traffic incident on G15 until 12-01 22:00 China time")
    assert held["eta"] - clear["eta"] == pytest.approx(7 * HOUR, abs=MINUTE_MS)  # the road clears 7 h after now
    assert ahead["eta"] == clear["eta"]  # it may be through before the road clears: no wait told

    cleared = orders.check_due(T0 + 14 * HOUR + MINUTE_MS)  # looked at again when the road clears
    assert [(step.step, step.order.order_id) for step in cleared.alerts] == [("resolved", "held")]
    again = orders.check_due(held["eta"] + MINUTE_MS)  # estimated again once its median passed: the hold stays
    row = {row[1]: dict(zip(ORDERS_CURRENT.column_names, row, strict=True)) for row in again.current}["held"]
    assert row["eta_basis"].endswith("held up by a traffic incident on G15 until 12-01 22:00 China time")
    assert hours_after(held["eta"], row["eta"]) < 2  # not "as long again": the 7 h held were no travel


def test_a_parcel_not_seen_lately_or_a_minor_incident_or_an_unknown_destination_is_not_held() -> None:
    orders = OrderStage(OrderState.in_memory(), RETENTION, load_health_policy())
    orders.apply([replace(one, delivered_near=SHANGHAI_AT) for one in uniform_legs(40, 24, 26)])
    minor = replace(G15_CLOSED, subject="S32", level="1")
    closed_later = Signal("traffic_incident", "G60", T0 + 10 * HOUR, None, "4", lat=30.91, lon=121.12, delay_min=60)
    orders.apply([minor, closed_later], T0 + 6 * HOUR)
    order, to_beijing = OrderRef("tmall", "seen"), OrderRef("tmall", "to Beijing")

    def reasons_after(*events: OrderEvent) -> list[str]:
        rows = orders.apply(list(events), max(e.at_ms for e in events))
        reasons: list[str] = rows.current[-1][ORDERS_CURRENT.column_names.index("health_reasons")]
        return reasons

    def scan(at_ms: int, position: tuple[float, float] | None, of: OrderRef = order) -> OrderEvent:
        return OrderEvent(of, at_ms, RAW_CARRIER, Status.IN_TRANSIT, detail=f"hub {at_ms}", position=position)

    assert reasons_after(*order_events(order, T0, None), scan(T0 + 6 * HOUR, HANGZHOU_AT)) == []  # only minor
    assert reasons_after(scan(T0 + 10 * HOUR, None)) == []  # G60 closed: last seen 4 h ago, where is it now?
    seen_again = reasons_after(scan(T0 + 10 * HOUR + MINUTE_MS, HANGZHOU_AT))
    assert [reason.split(" km ")[0] for reason in seen_again] == ["traffic incident on G60 6"]
    paid, *rest = order_events(to_beijing, T0, None)
    unknown = reasons_after(replace(paid, region_code="110105"), *rest, scan(T0 + 10 * HOUR, HANGZHOU_AT, to_beijing))
    assert unknown == []  # no parcel to Beijing was delivered yet: where it goes is unknown


def test_a_leg_tells_where_it_was_delivered_when_its_delivery_scan_did() -> None:
    orders = OrderStage(OrderState.in_memory(), RETENTION, load_health_policy())
    told, untold = OrderRef("tmall", "told"), OrderRef("tmall", "untold")
    delivered_at = T0 + 30 * HOUR
    signed = OrderEvent(told, delivered_at, RAW_CARRIER, Status.DELIVERED, position=SHANGHAI_AT, carrier="shunfeng")
    ping = OrderEvent(untold, T0 + 20 * HOUR, "raw.logistics.gps", position=HANGZHOU_AT)  # a vehicle's, hours before
    no_place = OrderEvent(untold, delivered_at, RAW_CARRIER, Status.DELIVERED, carrier="shunfeng")
    orders.apply([*order_events(told, T0, None), signed, *order_events(untold, T0, None), ping, no_place], delivered_at)
    legs = {one.order.order_id: one for one in orders.check_due(delivered_at + 3 * HOUR).legs}
    assert (legs["told"].delivered_near, legs["untold"].delivered_near) == (SHANGHAI_AT, None)
    assert read_leg(legs["told"].json()) == [legs["told"]]


def test_a_vehicles_position_that_brings_a_well_parcels_way_near_a_traffic_incident_is_news() -> None:
    orders = OrderStage(OrderState.in_memory(), RETENTION, load_health_policy())
    orders.apply([replace(one, delivered_near=SHANGHAI_AT) for one in uniform_legs(40, 24, 26)])
    orders.apply([G15_CLOSED], T0 + 6 * HOUR)
    order = OrderRef("tmall", "on a vehicle")
    scan = OrderEvent(order, T0 + 5 * HOUR, RAW_CARRIER, Status.IN_TRANSIT, detail="hub", position=BEIJING_AT)
    well = orders.apply([*order_events(order, T0, None), scan], T0 + 6 * HOUR)
    assert well.current[-1][ORDERS_CURRENT.column_names.index("health_reasons")] == []  # its way is 49 km off

    def moved_to(at_ms: int, where: tuple[float, float]) -> list[str]:
        fix = OrderEvent(order, at_ms, RAW_GPS, detail="vehicle 浙A·SF0001", position=where)
        reasons: list[str] = orders.apply([fix], at_ms).current[-1][ORDERS_CURRENT.column_names.index("health_reasons")]
        return reasons

    assert moved_to(T0 + 6 * HOUR + 10 * MINUTE_MS, (39.0, 117.0)) == []  # further on: no news, not assessed
    assert [reason.split(" km ")[0] for reason in moved_to(T0 + 6 * HOUR + 20 * MINUTE_MS, HANGZHOU_AT)] == [
        "traffic incident on G15 6"
    ]


def test_health_reads_where_the_parcel_was_at_its_time_though_later_positions_were_read_ahead() -> None:
    orders = OrderStage(OrderState.in_memory(), RETENTION, load_health_policy())
    orders.apply([replace(one, delivered_near=SHANGHAI_AT) for one in uniform_legs(40, 24, 26)])
    orders.apply([G15_CLOSED], T0 + 6 * HOUR)
    order = OrderRef("tmall", "standing")
    standing = [OrderEvent(order, T0 + 7 * HOUR + n * 10 * MINUTE_MS, RAW_GPS, detail="vehicle", position=G15_AT)
                for n in range(12)]  # two hours standing: its places are kept (the newest 16)  # fmt: skip
    on_again = OrderEvent(order, T0 + 12 * HOUR, RAW_GPS, detail="vehicle", position=SHANGHAI_AT)  # read ahead
    scan = OrderEvent(order, T0 + 5 * HOUR, RAW_CARRIER, Status.IN_TRANSIT, detail="hub", position=HANGZHOU_AT)
    rows = orders.apply([*order_events(order, T0, None), scan, *standing, on_again], T0 + 8 * HOUR)
    reasons = rows.current[-1][ORDERS_CURRENT.column_names.index("health_reasons")]
    assert [reason.split(" (")[0] for reason in reasons] == ["held up at a traffic incident on G15"]
    columns = dict(zip(ORDERS_CURRENT.column_names, rows.current[-1], strict=True))
    assert (columns["position_lat"], columns["position_lon"], columns["position_at"]) == (
        *SHANGHAI_AT,
        T0 + 12 * HOUR,
    )  # the newest
