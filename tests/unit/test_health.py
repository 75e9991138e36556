"""Order health: reasons in words, silence found by event time alone, alerts once per incident."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from schemas.alerts import follow
from schemas.events import OrderEvent, OrderModification, OrderRef, ServiceMessage, Signal
from schemas.health import (
    MINUTE_MS,
    Conditions,
    Finding,
    Health,
    Severity,
    assess,
    delay_on_way,
    duration,
    load_health_policy,
)
from schemas.lifecycle import LIFECYCLE, Status
from schemas.order_view import OrderView
from schemas.rules import NO_DECISIONS
from schemas.stages import DAY_MS, CheckIndex, OrderRows, OrderStage, OrderState, Retention
from schemas.tables import ORDERS_CURRENT
from schemas.topics import RAW_CARRIER, RAW_GPS, RAW_WMS

POLICY = load_health_policy()
ORDER = OrderRef("douyin", "6921")
HOUR = 60 * MINUTE_MS
T0 = 1_764_547_200_000  # 2025-12-01T00:00Z
RETENTION = Retention(7 * DAY_MS, 30 * DAY_MS, 3 * DAY_MS, 30 * DAY_MS, 7 * DAY_MS)


def stage(state: dict[str, Any] | None = None) -> OrderStage:
    return OrderStage(OrderState(state if state is not None else {}, {}, {}, {}), RETENTION, POLICY)


def event(at_ms: int, status: Status | None, source: str = "raw.orders.douyin", **fields: Any) -> OrderEvent:
    return OrderEvent(ORDER, at_ms, source, status, **fields)


def health_of(rows: OrderRows) -> dict[str, Any]:
    """The latest orders_current row of the order, by column name."""
    named = dict(zip(ORDERS_CURRENT.column_names, rows.current[-1], strict=True))
    return {key: named[key] for key in ("status", "health_score", "health_color", "health_reasons", "health_at")}


def test_an_order_shipped_and_never_picked_up_turns_yellow_then_red_without_another_event() -> None:
    orders = stage()
    shipped = T0 + HOUR
    first = orders.apply([event(T0, Status.PAID), event(T0 + 30 * MINUTE_MS, Status.ALLOCATED, RAW_WMS),
                          event(shipped, Status.SHIPPED, RAW_WMS)], watermark_ms=shipped)  # fmt: skip
    assert health_of(first)["health_color"] == "green"

    assert orders.check_due(shipped + 119 * MINUTE_MS).current == []  # within the 2 h SLA: nothing to say
    yellow = orders.check_due(shipped + 150 * MINUTE_MS)
    assert health_of(yellow) == {
        "status": "shipped",
        "health_score": 80,
        "health_color": "yellow",
        "health_reasons": ["no carrier pick-up 2 h after the outbound scan (SLA 2 h)"],
        "health_at": shipped + 2 * HOUR,  # assessed when the threshold was crossed, not when looked at
    }
    assert yellow.alerts == []  # no_pickup alerts from red
    red = orders.check_due(shipped + 10 * HOUR)
    assert health_of(red)["health_color"] == "red"
    assert health_of(red)["health_reasons"] == ["no carrier pick-up 4 h after the outbound scan (SLA 2 h)"]
    assert [(step.step, step.incident.alert_type, step.incident.opened_at_ms) for step in red.alerts] == [
        ("opened", "no_pickup", shipped + 4 * HOUR)
    ]
    assert orders.check_due(shipped + 20 * HOUR).current == []  # red stays red: no row, no second alert

    picked_up = orders.apply([event(shipped + 11 * HOUR, Status.IN_TRANSIT, RAW_CARRIER)], shipped + 11 * HOUR)
    assert [step.step for step in picked_up.alerts] == ["resolved"]
    assert health_of(picked_up)["health_color"] == "green"


def test_a_quiet_order_is_assessed_later_at_a_higher_version_than_its_last_event() -> None:
    orders = stage()
    paid = orders.apply([event(T0, Status.PAID)], watermark_ms=T0)
    quiet = orders.check_due(T0 + HOUR)
    version = ORDERS_CURRENT.column_names.index("version")
    assert quiet.current[-1][version] > paid.current[-1][version]
    assert health_of(quiet)["health_reasons"] == ["no logistics update 15 min after payment (SLA 15 min)"]


def test_each_order_has_at_most_one_live_check_and_moved_checks_are_skipped() -> None:
    state: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    orders = OrderStage(OrderState(state, {}, checks, {}), RETENTION, POLICY)
    orders.apply([event(T0, Status.PAID)], T0)  # first update due at 15 min
    orders.apply([event(T0 + 5 * MINUTE_MS, Status.ALLOCATED, RAW_WMS)], T0 + 5 * MINUTE_MS)  # due at 2 h 5 min
    assert state[ORDER.key].check_at_ms == T0 + 15 * MINUTE_MS  # the earlier check stays; it re-indexes when due
    assessed = orders.check_due(T0 + 16 * MINUTE_MS)
    assert assessed.current == []  # nothing changed at 15 min: the order is allocated
    assert state[ORDER.key].check_at_ms == T0 + 305 * MINUTE_MS  # 5 h from the first warehouse step
    late = orders.check_due(T0 + 6 * HOUR)
    assert health_of(late)["health_reasons"] == ["5 h in the warehouse, now at allocated (SLA 5 h)"]


def test_a_check_left_behind_by_a_later_assessment_never_looks_back_in_time() -> None:
    orders = stage()
    orders.apply([event(T0, Status.PAID)], T0)  # a check is indexed at 15 min
    message = ServiceMessage("douyin", "6921", "id", T0 + 40 * HOUR, ("exchange",))  # stamped far later
    red = orders.apply([message], T0 + 40 * HOUR)  # read when event time is there
    assert health_of(red)["health_color"] == "red" and [s.step for s in red.alerts] == ["opened"]
    assert orders.check_due(T0 + 41 * HOUR) == OrderRows()  # the 15 min check is skipped: no step back to yellow


def test_an_event_read_ahead_of_event_time_does_not_make_the_unread_steps_overdue() -> None:
    """A replay reads topics at their own pace: a buyer's message stamped a day on, or a vehicle position, can
    reach an order before the carrier's pick-up scan that came hours earlier. The order is assessed at the
    watermark, not at its newest event: nothing is overdue before event time gets there."""
    orders = stage()
    shipped = T0 + HOUR
    orders.apply([event(T0, Status.PAID), event(shipped, Status.SHIPPED, RAW_WMS)], shipped)
    ahead = [ServiceMessage("douyin", "6921", "id", shipped + 30 * HOUR, ("complaint",)),
             OrderEvent(ORDER, shipped + 5 * HOUR, RAW_GPS, detail="vehicle V1", position=(31.0, 121.0))]  # fmt: skip
    early = orders.apply(ahead, shipped + 30 * MINUTE_MS)
    assert early.alerts == [] and health_of(early)["health_color"] == "green"
    picked_up = orders.apply([event(shipped + 90 * MINUTE_MS, Status.IN_TRANSIT, RAW_CARRIER)], shipped + HOUR)
    assert picked_up.alerts == []
    complained = orders.check_due(shipped + 31 * HOUR)  # the message counts once event time reaches it
    assert ("opened", "service_intents") in [(s.step, s.incident.alert_type) for s in complained.alerts]


def test_before_event_time_is_known_an_order_is_assessed_once_it_is_from_its_first_event() -> None:
    orders = stage()
    shipped = T0 + HOUR
    unknown = orders.apply(
        [
            event(T0, Status.PAID),
            event(shipped, Status.SHIPPED, RAW_WMS),
            ServiceMessage("douyin", "6921", "id", shipped + 30 * HOUR, ()),
        ]
    )  # no watermark yet
    assert unknown.alerts == [] and health_of(unknown)["health_color"] is None
    orders.apply([event(shipped + 90 * MINUTE_MS, Status.IN_TRANSIT, RAW_CARRIER)])
    walked = orders.check_due(shipped + 10 * HOUR)  # from the payment on, every threshold up to the watermark
    assert walked.alerts == [] and health_of(walked)["health_color"] == "green"


def test_an_incident_opens_when_the_facts_show_it_began_whatever_the_watermark_at_reading() -> None:
    keys = set()
    for watermark in (T0 + HOUR, T0 + HOUR + 90_000, T0 + 7 * HOUR):
        orders = stage()
        complaint = ServiceMessage("douyin", "6921", "id", T0 + HOUR, ("complaint",))
        rows = orders.apply([event(T0, Status.PAID), event(T0 + MINUTE_MS, Status.ALLOCATED, RAW_WMS), complaint],
                            watermark)  # fmt: skip
        keys |= {step.incident_key for step in rows.alerts if step.incident.alert_type == "service_intents"}
    assert keys == {f"douyin|6921|service_intents|{T0 + HOUR}"}


def test_a_cancelled_or_delivered_order_is_not_held_to_its_promise() -> None:
    for settled in (Status.CANCELLED, Status.DELIVERED):
        orders = stage()
        orders.apply([event(T0, Status.PAID, promised_at_ms=T0 + HOUR), event(T0 + MINUTE_MS, settled)], T0 + MINUTE_MS)
        assert orders.check_due(T0 + 30 * HOUR) == OrderRows()


def test_an_order_leaving_state_closes_its_open_incidents_as_expired() -> None:
    orders = stage()
    orders.apply([event(T0, Status.PAID)], T0)
    opened = orders.check_due(T0 + 4 * HOUR).alerts
    assert [step.step for step in opened] == ["opened"]
    assert orders.sweep(T0 + 40 * DAY_MS) == 1
    expired = orders.take_expired()
    assert [(step.step, step.incident_key) for step in expired] == [("expired", opened[0].incident_key)]
    assert expired[0].resolved_at_ms == T0 + 30 * DAY_MS  # when its order's retention ran out
    assert orders.take_expired() == []


def test_a_vehicle_going_silent_after_the_last_scan_is_found_when_its_first_fix_came_in_a_later_batch() -> None:
    orders = stage()
    scanned = T0 + 3 * HOUR
    orders.apply([event(T0, Status.PAID), event(T0 + HOUR, Status.SHIPPED, RAW_WMS),
                  event(scanned, Status.IN_TRANSIT, RAW_CARRIER)], scanned)  # fmt: skip
    fix = OrderEvent(ORDER, scanned + 5 * MINUTE_MS, RAW_GPS, detail="vehicle V1", position=(31.0, 121.0))
    orders.apply([fix], scanned + 5 * MINUTE_MS)
    silent = orders.check_due(scanned + 2 * HOUR)
    assert [step.incident.alert_type for step in silent.alerts] == ["gps_stale"]
    assert health_of(silent)["health_reasons"] == ["the vehicle carrying the parcel silent for 1 h (SLA 40 min)"]


def test_a_new_subject_at_the_same_severity_is_a_change_of_health_but_time_passing_is_not() -> None:
    orders = stage()
    orders.apply([event(T0, Status.PAID), event(T0 + MINUTE_MS, Status.ALLOCATED, RAW_WMS)], T0)
    chased = orders.apply([ServiceMessage("douyin", "6921", "id", T0 + 2 * MINUTE_MS, ("chase",))], T0 + 2 * MINUTE_MS)
    urgent = orders.apply([ServiceMessage("douyin", "6921", "id", T0 + 3 * MINUTE_MS, ("urgent",))], T0 + 3 * MINUTE_MS)
    assert len(chased.health) == len(urgent.health) == 1  # both yellow; the second says more
    dwelling = orders.check_due(T0 + 5 * HOUR + 30 * MINUTE_MS)
    assert len(dwelling.health) == 1  # warehouse dwell found
    later = orders.apply([ServiceMessage("douyin", "6921", "id", T0 + 6 * HOUR, ())], T0 + 6 * HOUR)
    assert later.health == []  # "5 h 59 min in the warehouse" instead of "5 h": the same health


def test_an_order_has_one_check_entry_whatever_the_second_its_threshold_falls_on() -> None:
    checks: dict[str, Any] = {}
    orders = OrderStage(OrderState({}, {}, checks, {}), RETENTION, POLICY)
    paid = T0 + 17_000  # not on a whole minute
    orders.apply([event(paid, Status.PAID)], paid)
    for i in range(5):
        orders.apply([ServiceMessage("douyin", "6921", "id", paid + i * 1000, ("exchange",))], paid)
    entries = [keys for minute, keys in checks.items() if minute != CheckIndex.PENDING]
    assert entries == [(ORDER.key,)]


def test_many_quiet_orders_all_fall_due_in_one_pass() -> None:
    orders = stage()
    refs = [OrderRef("app", f"A{i}") for i in range(500)]
    orders.apply([OrderEvent(ref, T0 + i * 1000, "raw.orders.app", Status.PAID) for i, ref in enumerate(refs)], T0)
    rows = orders.check_due(T0 + 6 * HOUR)
    red = {row[1] for row in rows.current if row[ORDERS_CURRENT.column_names.index("health_color")] == "red"}
    assert red == {ref.order_id for ref in refs}
    assert {step.order for step in rows.alerts if step.step == "opened"} == set(refs)


def test_buyer_messages_failed_changes_and_weather_count_with_reasons() -> None:
    orders = stage()
    orders.apply([event(T0, Status.PAID, region_code="310115")], T0)
    storm = Signal("weather_rainstorm", "310115", T0 + MINUTE_MS, T0 + 12 * HOUR, "red")
    rows = orders.apply(
        [
            storm,
            ServiceMessage("douyin", "6921", "id", T0 + 2 * MINUTE_MS, ("chase",)),
            OrderModification(ORDER, T0 + 3 * MINUTE_MS, "address_change", False, "SYSTEM_LOCKED", "oms"),
            event(T0 + 4 * MINUTE_MS, Status.ALLOCATED, RAW_WMS),
        ],
        watermark_ms=T0 + 4 * MINUTE_MS,
    )
    health = health_of(rows)
    assert health["health_reasons"] == [
        "red rainstorm warning at the destination",
        "address change failed (SYSTEM_LOCKED)",  # equal penalties: by factor name
        "the buyer chased delivery (催单)",
    ]
    assert health["health_score"] == 100 - 35 - 15 - 15
    assert health["health_color"] == "red"


def test_a_weather_warning_reaches_the_quiet_parcels_heading_into_it_at_once_and_no_others() -> None:
    orders = stage()
    for name, region in (("into", "310115"), ("elsewhere", "440305"), ("delivered", "310115")):
        steps = [(T0, Status.PAID), (T0 + HOUR, Status.SHIPPED), (T0 + 2 * HOUR, Status.IN_TRANSIT)]
        steps += [(T0 + 3 * HOUR, Status.DELIVERED)] if name == "delivered" else []
        ref = OrderRef("douyin", name)
        orders.apply(
            [OrderEvent(ref, at, RAW_CARRIER, status, region_code=region) for at, status in steps], T0 + 3 * HOUR
        )
    assessed: list[str] = []
    reassess = orders._reassess

    def counted(key: str, *rest: Any, **named: Any) -> None:
        assessed.append(key)
        reassess(key, *rest, **named)

    orders._reassess = counted  # type: ignore[method-assign]

    def told(signal: Signal, watermark_ms: int) -> tuple[list[str], set[tuple[str, str, Severity]]]:
        """The orders the signal had assessed, and the weather alert steps it caused."""
        assessed.clear()
        rows = orders.apply([signal], watermark_ms)
        return assessed[:], {(s.order.order_id, s.step, s.incident.severity) for s in rows.alerts}

    def warning(level: str, from_h: int, until_h: int, kind: str = "rainstorm") -> Signal:
        return Signal(f"weather_{kind}", "310115", T0 + from_h * HOUR, T0 + until_h * HOUR, level)

    assert told(warning("orange", 4, 16), T0 + 4 * HOUR) == (["douyin|into"], {("into", "opened", Severity.YELLOW)})
    assert told(warning("red", 8, 20, "typhoon"), T0 + 5 * HOUR) == (["douyin|into"], set())  # read before its time
    due = orders.check_due(T0 + 8 * HOUR)  # the assessment it caused set a check at its issue
    assert {(s.order.order_id, s.step, s.incident.severity) for s in due.alerts} == {("into", "updated", Severity.RED)}
    assert told(warning("blue", 9, 20, "fog"), T0 + 9 * HOUR) == ([], set())  # a level the factor does not rate
    assert told(warning("red", 1, 3, "hail"), T0 + 9 * HOUR) == ([], set())  # over before event time got here
    lowered = told(warning("blue", 10, 20, "typhoon"), T0 + 10 * HOUR)  # the red typhoon is over: the storm is left
    assert lowered == (["douyin|into"], {("into", "updated", Severity.YELLOW)})


def test_an_alert_stays_one_incident_while_its_factor_hovers_and_resolves_when_it_clears() -> None:
    def health(*findings: Finding) -> Health:
        return Health(50, "yellow", findings, None, POLICY.version)

    red = Finding("no_pickup", Severity.RED, 55, "late", 2, "")
    yellow = Finding("no_pickup", Severity.YELLOW, 20, "late", 1, "")
    incidents: tuple[Any, ...] = ()
    steps = []
    for at, assessed in enumerate([health(yellow), health(red), health(yellow), health(red), health(), health()]):
        incidents, taken, _ = follow(ORDER, incidents, assessed, NO_DECISIONS, POLICY, at, 0, "")
        steps.extend(taken)
    assert [(s.step, s.incident.severity.label, s.incident.revision) for s in steps] == [
        ("opened", "red", 1),
        ("updated", "yellow", 2),
        ("updated", "red", 3),
        ("resolved", "red", 4),
    ]
    assert len({step.incident_key for step in steps}) == 1
    assert {step.json().count("idempotency_key") for step in steps} == {1}


def test_a_failed_change_made_good_by_a_later_success_no_longer_counts() -> None:
    orders = stage()
    failed = OrderModification(ORDER, T0 + MINUTE_MS, "address_change", False, "TIMEOUT", "oms")
    retried = OrderModification(ORDER, T0 + 2 * MINUTE_MS, "address_change", True, "", "oms")
    rows = orders.apply(
        [event(T0, Status.PAID), event(T0 + MINUTE_MS, Status.ALLOCATED, RAW_WMS), failed], T0 + MINUTE_MS
    )
    assert health_of(rows)["health_reasons"] == ["address change failed (TIMEOUT)"]
    assert health_of(orders.apply([retried], T0 + 2 * MINUTE_MS))["health_reasons"] == []


def test_a_delivered_order_is_green_and_opens_nothing() -> None:
    view = OrderView(ORDER).apply(event(T0, Status.PAID, promised_at_ms=T0 + HOUR))
    view = view.apply(event(T0 + 5 * HOUR, Status.DELIVERED, RAW_CARRIER))
    orders = stage({ORDER.key: view})
    rows = orders.apply([event(T0 + 6 * HOUR, None, detail="note")], T0 + 30 * HOUR)
    assert health_of(rows)["health_color"] == "green" and rows.alerts == []


def test_a_missed_promise_is_red_and_says_when_it_was() -> None:
    orders = stage()
    orders.apply([event(T0, Status.PAID, promised_at_ms=T0 + 24 * HOUR), event(T0 + MINUTE_MS, Status.ALLOCATED,
                  RAW_WMS), event(T0 + 2 * MINUTE_MS, Status.SHIPPED, RAW_WMS),
                  event(T0 + 3 * MINUTE_MS, Status.IN_TRANSIT, RAW_CARRIER)], T0)  # fmt: skip
    warned = health_of(orders.check_due(T0 + 13 * HOUR))  # assessed when the warning began: 12 h before
    assert "promised arrival 12-02 08:00 China time and not yet out for delivery" in warned["health_reasons"]
    late = health_of(orders.check_due(T0 + 27 * HOUR))
    assert "promised arrival missed (12-02 08:00 China time)" in late["health_reasons"]


@pytest.mark.parametrize(
    ("ms", "words"),
    [(0, "0 min"), (45 * MINUTE_MS, "45 min"), (190 * MINUTE_MS, "3 h 10 min"), (2 * HOUR, "2 h"),
     (52 * HOUR, "2 d 4 h"), (48 * HOUR, "2 d")],
)  # fmt: skip
def test_durations_read_as_people_say_them(ms: int, words: str) -> None:
    assert duration(ms) == words


def test_conditions_are_the_same_whatever_the_arrival_order_of_their_signals() -> None:
    older = Signal("weather_rainstorm", "310115", T0, T0 + HOUR, "orange")
    newer = Signal("weather_rainstorm", "310115", T0 + MINUTE_MS, T0 + HOUR, "red")
    one_way = Conditions.none().observe(older).observe(newer)
    other_way = Conditions.none().observe(newer).observe(older)
    assert one_way == other_way and [warning[1] for warning in one_way.weather["310115"]] == ["orange", "red"]


def test_a_weaker_warning_of_another_kind_does_not_hide_one_in_force_and_a_downgrade_replaces_it() -> None:
    typhoon = Signal("weather_typhoon", "310115", T0, T0 + 24 * HOUR, "red")
    rain = Signal("weather_rainstorm", "310115", T0 + 6 * HOUR, T0 + 12 * HOUR, "orange")
    downgrade = Signal("weather_typhoon", "310115", T0 + 9 * HOUR, T0 + 24 * HOUR, "orange")
    conditions = Conditions.none().observe(downgrade).observe(rain).observe(typhoon)
    facts = OrderView(ORDER).apply(event(T0, Status.PAID, region_code="310115")).facts_for_health(T0)

    def warnings_at(at_ms: int) -> list[str]:
        return [f.reason for f in assess(facts, at_ms, conditions, POLICY).findings if f.factor == "weather"]

    assert warnings_at(T0 + 7 * HOUR) == ["red typhoon warning at the destination"]  # the orange rain hides nothing
    assert warnings_at(T0 + 10 * HOUR) == ["orange typhoon warning at the destination"]  # downgraded
    assert warnings_at(T0 + 25 * HOUR) == []  # lifted


def test_the_delay_on_an_orders_way_is_the_worst_condition_in_force_at_some_time_between_two_times() -> None:
    typhoon = Signal("weather_typhoon", "310115", T0, T0 + 24 * HOUR, "red")
    downgrade = Signal("weather_typhoon", "310115", T0 + 9 * HOUR, T0 + 24 * HOUR, "orange")
    fog = Signal("weather_fog", "310115", T0, T0 + 30 * HOUR, "blue")  # not rated by the weather factor
    port = Signal("port_congestion", "CNSHA", T0 + 2 * HOUR, None, "85")
    conditions = Conditions.none().observe(downgrade).observe(typhoon).observe(fog).observe(port)
    nothing_reached = (0,) * len(LIFECYCLE)

    def delay(channel: str, from_h: float, to_h: float, region: str | None = "310115") -> str | None:
        from_ms, to_ms = T0 + int(from_h * HOUR), T0 + int(to_h * HOUR)
        return delay_on_way(POLICY, conditions, channel, region, nothing_reached, from_ms, to_ms)

    assert delay("douyin", 1, 3) == "weather red"
    assert delay("douyin", 10, 12) == "weather yellow"  # the downgrade replaced it
    assert delay("douyin", 8, 10) == "weather red"  # in force for part of the way
    assert (delay("douyin", 25, 40), delay("douyin", 1, 3, region="440305")) == (None, None)  # lifted; elsewhere
    assert delay("xiaohongshu", 25, 40) == "port yellow"  # cross-border: the reading of 2 h still in force
    customs = tuple(T0 + 26 * HOUR if status == Status.CUSTOMS else 0 for status in LIFECYCLE)
    assert delay_on_way(POLICY, conditions, "douyin", None, customs, T0 + 25 * HOUR, T0 + 30 * HOUR) == "port yellow"
    assert delay("xiaohongshu", 0, 1, region=None) is None  # before the port's first reading
    out_for_delivery = tuple(T0 + 30 * HOUR if status == Status.OUT_FOR_DELIVERY else 0 for status in LIFECYCLE)
    for from_h in (30, 31):  # from the moment it is out for delivery, the port is behind it
        at_ms = T0 + from_h * HOUR
        assert delay_on_way(POLICY, conditions, "xiaohongshu", None, out_for_delivery, at_ms, T0 + 40 * HOUR) is None
    read_ahead = delay_on_way(POLICY, conditions, "xiaohongshu", None, nothing_reached, T0 + 5 * HOUR, T0 + 4 * HOUR)
    assert read_ahead == "port yellow"  # a step read just ahead of event time: the port at its time


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: re.sub(r'version: ".*"', "version: 3", s), "version: required"),
        (lambda s: s.replace("no_pickup:", "no_pickups:"), "factors.no_pickups: unknown factor"),
        (lambda s: s.replace("    alert: red", "    alert: sometimes", 1), "alert: yellow, red or never"),
        (lambda s: s.replace("    warn_before_min: 720", ""), "factors.promise: missing warn_before_min"),
        (lambda s: s.replace("{yellow: 15, red: 35}", "{yellow: 15}", 1), "penalties: required"),
        (lambda s: s.replace("min_legs: 20", "min_legs: -1"), "eta: required: half_life_days, min_legs and settle_min"),
        (lambda s: s.replace("yellow_after_min: 40", "yellow_after_min: 9"), "gps_stale: yellow_after_min must exceed"),
        (lambda s: s.replace("held_km: 2", "held_km: near"), "traffic_on_way: distances"),
        (lambda s: s.replace("    fresh_min: 180", ""), "traffic_on_way: missing fresh_min"),
        (lambda s: s.replace("red_from_severity: 3", "red_from_severity: high"), "traffic_on_way: need whole numbers"),
        (lambda s: s.replace("yellow_from_severity: 2", "yellow_from_severity: 4"), "traffic_on_way: need whole"),
    ],
)
def test_a_wrong_health_file_is_refused_naming_the_file_and_the_key(tmp_path: Path, edit: Any, message: str) -> None:
    config = tmp_path / "health.yaml"
    config.write_text(edit(Path("schemas/health.yaml").read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(ValueError, match=message) as refused:
        load_health_policy(config)
    assert str(config) in str(refused.value)


@pytest.mark.parametrize("first_ping_min", [5, 70])
def test_a_vehicle_gone_silent_is_found_though_its_trip_was_read_ahead_whole(first_ping_min: int) -> None:
    """A replay reads a vehicle's positions (one every 5 min for hours) and the next hub's scan (with its
    coordinates) ahead of event time: health reads the newest position at or before its own time, and looks
    again when the vehicle starts moving (minutes after the pick-up scan or an hour after), so a dead zone in
    the middle of the trip is found, and resolved when positions resume, as it was live."""
    orders = stage()
    picked_up = T0 + HOUR
    before = range(picked_up + first_ping_min * MINUTE_MS, picked_up + 3 * HOUR, 5 * MINUTE_MS)
    last_ping, resumed = before[-1], before[-1] + 80 * MINUTE_MS  # 80 min with no position
    hub = resumed + 3 * HOUR
    pings = [OrderEvent(ORDER, at, RAW_GPS, detail="vehicle V1", position=(31.0, 121.0))
             for at in (*before, *range(resumed, hub, 5 * MINUTE_MS))]  # fmt: skip
    scans = [event(picked_up, Status.IN_TRANSIT, RAW_CARRIER, position=(30.0, 120.0)),
             event(hub, Status.IN_TRANSIT, RAW_CARRIER, detail="hub", position=(32.0, 122.0))]  # fmt: skip
    orders.apply([event(T0, Status.PAID), *scans, *pings], picked_up)
    assert orders.check_due(last_ping + 59 * MINUTE_MS).alerts == []  # yellow after 40 min, alerted when red
    silent = orders.check_due(last_ping + 60 * MINUTE_MS)
    assert [(s.step, s.incident.alert_type, s.at_ms) for s in silent.alerts] == [
        ("opened", "gps_stale", last_ping + 60 * MINUTE_MS)
    ]
    assert "silent for 1 h" in " ".join(health_of(silent)["health_reasons"])
    assert [(s.step, s.at_ms) for s in orders.check_due(hub + HOUR).alerts] == [("resolved", resumed)]


def test_a_cancellation_holds_though_a_later_side_state_was_read_ahead() -> None:
    """Cancelled after the outbound scan, returned days later: a replay that reads the return first still
    finds the order cancelled in between, with no pick-up expected and no arrival."""
    orders = stage()
    shipped = T0 + HOUR
    orders.apply([event(T0, Status.PAID), event(shipped, Status.SHIPPED, RAW_WMS),
                  event(shipped + 30 * MINUTE_MS, Status.CANCELLED), event(T0 + 2 * DAY_MS, Status.RETURNED)],
                 shipped)  # fmt: skip
    later = orders.check_due(T0 + DAY_MS)
    assert later.alerts == []
    view = orders.entities.get(ORDER.key)
    assert view is not None and view.status_by(T0 + DAY_MS) == (Status.CANCELLED, shipped + 30 * MINUTE_MS)
    assert view.eta is None


def test_a_silence_that_one_batch_moves_event_time_past_is_found_and_resolved_in_its_time() -> None:
    """Event time may leap hours in one batch (a source read to its end goes idle): the checks the leap passes
    are made at their own times before the order is assessed at the new watermark, with what the batch brought."""
    orders = stage()
    picked_up, last_ping, hub = T0 + HOUR, T0 + 2 * HOUR, T0 + 4 * HOUR
    ping = OrderEvent(ORDER, last_ping, RAW_GPS, detail="vehicle V1", position=(31.0, 121.0))
    orders.apply([event(T0, Status.PAID), event(picked_up, Status.IN_TRANSIT, RAW_CARRIER), ping], last_ping)
    leap = orders.apply([event(hub, Status.IN_TRANSIT, RAW_CARRIER, detail="hub")], hub + 3 * HOUR)
    assert [(s.step, s.incident.alert_type, s.at_ms) for s in leap.alerts] == [
        ("opened", "gps_stale", last_ping + HOUR),
        ("resolved", "gps_stale", hub),  # at the scan, a check of its own (read ahead of the watermark then)
    ]


def test_a_completion_read_ahead_does_not_settle_an_order_before_its_time() -> None:
    """A replay reads the channel's completion days ahead of the warehouse and carrier: until event time gets
    there, the order is where its steps by then put it, and a parcel left behind is found."""
    orders = stage()
    shipped = T0 + HOUR
    orders.apply([event(T0, Status.PAID), event(shipped, Status.SHIPPED, RAW_WMS),
                  event(T0 + 3 * DAY_MS, Status.COMPLETED)], shipped)  # fmt: skip
    red = orders.check_due(shipped + 5 * HOUR)
    assert health_of(red)["status"] == "completed"  # the row shows what was read; health, what had happened
    assert [(s.step, s.incident.alert_type) for s in red.alerts] == [("opened", "no_pickup")]


def test_a_vehicle_gone_silent_is_found_though_the_next_hubs_scan_was_read_ahead() -> None:
    """A replay reads the carrier's scans ahead of the GPS pings: health reads the newest scan at or before its
    own time, so the scan hours later does not hide the silence before it."""
    orders = stage()
    picked_up, last_fix = T0 + HOUR, T0 + 90 * MINUTE_MS
    orders.apply([event(T0, Status.PAID), event(picked_up, Status.IN_TRANSIT, RAW_CARRIER)], picked_up)
    fix = OrderEvent(ORDER, last_fix, RAW_GPS, detail="vehicle V1", position=(31.0, 121.0))
    next_hub = event(picked_up + 6 * HOUR, Status.IN_TRANSIT, RAW_CARRIER, detail="hub")
    orders.apply([fix, next_hub], last_fix)
    silent = orders.check_due(last_fix + 61 * MINUTE_MS)
    assert [(s.step, s.incident.alert_type) for s in silent.alerts] == [("opened", "gps_stale")]
    assert orders.check_due(picked_up + 6 * HOUR + MINUTE_MS).alerts[0].step == "resolved"  # the scan, in time


# --- traffic on the way --------------------------------------------------------------------------

SHANGHAI_AT, HANGZHOU_AT = (31.2304, 121.4737), (30.2592, 120.1302)


def traffic(road: str, at_ms: int, where: tuple[float, float], severity: int = 4, delay_min: int = 480) -> Signal:
    return Signal("traffic_incident", road, at_ms, None, str(severity), lat=where[0], lon=where[1], delay_min=delay_min)


def in_transit_at(where: tuple[float, float], at_ms: int) -> Any:
    """The facts of an order to Shanghai, in transit, last seen (at_ms) where."""
    view = OrderView(ORDER)
    for one in (event(T0, Status.PAID, region_code="310101"),
                event(at_ms, Status.IN_TRANSIT, RAW_CARRIER, position=where)):  # fmt: skip
        view = view.apply(one)
    return view.facts_for_health(at_ms)


def test_places_and_traffic_are_the_same_whatever_the_arrival_order_and_ended_roads_are_let_go() -> None:
    newer, older = {"310101": (T0 + HOUR, SHANGHAI_AT)}, {"310101": (T0, (31.3, 121.5))}
    assert Conditions.none().with_places(newer).with_places(older) == Conditions.none().with_places(older).with_places(
        newer
    )
    reports = [traffic("G15", T0, (30.9, 121.1)), traffic("G15", T0 + HOUR, (30.5, 120.8), 2, 30),
               traffic("G60", T0 + 5 * DAY_MS, (30.0, 120.0))]  # fmt: skip
    one_way, other_way = Conditions.none(), Conditions.none()
    for report in reports:
        one_way = one_way.observe(report)
    for report in reversed(reports):
        other_way = other_way.observe(report)
    assert one_way == other_way and set(one_way.traffic) == {"G60"}  # G15 ended days before the G60 began
    assert one_way.traffic_until_ms == T0 + 5 * DAY_MS + 8 * HOUR


def test_a_parcel_just_past_an_incident_is_not_held_up_by_it_and_a_far_one_sets_no_check() -> None:
    conditions = (
        Conditions.none().with_places({"310101": (T0, SHANGHAI_AT)}).observe(traffic("G15", T0, (30.91, 121.12)))
    )

    def traffic_reasons(where: tuple[float, float]) -> tuple[list[str], int | None]:
        health = assess(in_transit_at(where, T0 + HOUR), T0 + HOUR, conditions, POLICY)
        return [f.reason.split(" (")[0] for f in health.findings if f.factor == "traffic_on_way"], health.next_check_ms

    assert traffic_reasons((30.905, 121.115))[0] == ["held up at a traffic incident on G15"]  # before it, stopped
    assert traffic_reasons((30.925, 121.14))[0] == []  # 2 km past it, towards Shanghai: it is behind
    far = Conditions.none().with_places({"310101": (T0, SHANGHAI_AT)}).observe(traffic("G30", T0, (43.8, 87.6), 4, 120))
    quiet = assess(in_transit_at(HANGZHOU_AT, T0 + HOUR), T0 + HOUR, Conditions.none(), POLICY).next_check_ms
    assert assess(in_transit_at(HANGZHOU_AT, T0 + HOUR), T0 + HOUR, far, POLICY).next_check_ms == quiet  # Urumqi's
