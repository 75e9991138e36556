"""Windowed KPIs and the channel breaker: facts counted once, windows in event time, lateness, hysteresis."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from schemas.events import OrderEvent, OrderModification, OrderRef
from schemas.health import MINUTE_MS, load_health_policy
from schemas.kpi import (
    BREAKER_ALERT,
    DELIVERED,
    EXCEPTIONS,
    FIRST_UPDATE,
    GMV,
    MODIFICATIONS,
    MODIFICATIONS_FAILED,
    ON_TIME,
    ORDERS,
    PROMISED,
    SHIPPED,
    KpiFact,
    KpiOutput,
    KpiWindows,
    load_kpi_settings,
    order_facts,
    read_breaker,
)
from schemas.lifecycle import Status
from schemas.order_view import OrderView
from schemas.stages import DAY_MS, OrderStage, OrderState, Retention
from schemas.tables import CHANNEL_BREAKERS, KPI_LATE_FACTS, KPI_WINDOWS, ORDERS_CURRENT
from schemas.topics import RAW_CARRIER, RAW_WMS

SETTINGS = load_kpi_settings()  # 10 min lateness; breaker above 5% of at least 20, closed after 3 windows <= 2.5%
ORDER = OrderRef("douyin", "6921")
T0 = 1_764_547_200_000  # 2025-12-01T00:00Z, a whole minute
HOUR = 60 * MINUTE_MS


def view_after(*events: Any, before: OrderView | None = None) -> OrderView:
    view = before or OrderView(ORDER)
    for event in events:
        view = view.apply(event)
    return view


def measures(facts: list[KpiFact]) -> list[tuple[str, int, int]]:
    return sorted((fact.measure, fact.at_ms - T0, fact.value) for fact in facts)


def test_an_orders_news_makes_each_fact_once_at_its_own_event_time() -> None:
    paid = view_after(OrderEvent(ORDER, T0, "raw.orders.douyin", Status.PAID, amount_fen=12_900,
                                 promised_at_ms=T0 + 48 * HOUR, region_code="310115"))  # fmt: skip
    assert measures(order_facts(None, paid)) == [(GMV, 0, 12_900), (ORDERS, 0, 1)]
    shipped = view_after(OrderEvent(ORDER, T0 + 20 * MINUTE_MS, RAW_WMS, Status.SHIPPED, warehouse="WH-HZ-01"),
                         before=paid)  # fmt: skip
    assert measures(order_facts(paid, shipped)) == [
        ("dwell:paid", 20 * MINUTE_MS, 20 * MINUTE_MS),
        (FIRST_UPDATE, 20 * MINUTE_MS, 20 * MINUTE_MS),
        (SHIPPED, 20 * MINUTE_MS, 1),
    ]
    failed = OrderModification(ORDER, T0 + HOUR, "address_change", False, "shipped already", "raw.oms.modifications")
    changed = view_after(failed, before=shipped)
    assert measures(order_facts(shipped, changed)) == [(MODIFICATIONS, HOUR, 1), (MODIFICATIONS_FAILED, HOUR, 1)]
    assert order_facts(changed, view_after(failed, before=changed)) == []  # told twice: nothing new
    delivered = view_after(OrderEvent(ORDER, T0 + 30 * HOUR, RAW_CARRIER, Status.DELIVERED), before=changed)
    assert measures(order_facts(changed, delivered)) == [
        (DELIVERED, 30 * HOUR, 1),
        (PROMISED, 30 * HOUR, 1),
        ("dwell:shipped", 30 * HOUR, 30 * HOUR - 20 * MINUTE_MS),
        (ON_TIME, 30 * HOUR, 1),
    ]
    assert {(fact.channel, fact.region, fact.warehouse, fact.carrier) for fact in order_facts(changed, delivered)} == {
        ("douyin", "310115", "WH-HZ-01", "")  # no scan named its carrier
    }


def test_a_step_read_late_between_two_known_ones_counts_its_own_dwell_and_no_dwell_twice() -> None:
    paid = view_after(OrderEvent(ORDER, T0, "raw.orders.douyin", Status.PAID))
    moving = view_after(OrderEvent(ORDER, T0 + HOUR, RAW_CARRIER, Status.IN_TRANSIT), before=paid)
    assert ("dwell:paid", HOUR, HOUR) in measures(order_facts(paid, moving))
    shipped = view_after(OrderEvent(ORDER, T0 + 20 * MINUTE_MS, RAW_WMS, Status.SHIPPED), before=moving)
    assert measures(order_facts(moving, shipped)) == [
        ("dwell:shipped", HOUR, 40 * MINUTE_MS),  # paid's dwell stays as counted when in transit was known
        (SHIPPED, 20 * MINUTE_MS, 1),
    ]


def test_a_carrier_exception_counts_once() -> None:
    shipped = view_after(OrderEvent(ORDER, T0, RAW_WMS, Status.SHIPPED))
    exception = view_after(OrderEvent(ORDER, T0 + HOUR, RAW_CARRIER, Status.EXCEPTION), before=shipped)
    assert [fact.measure for fact in order_facts(shipped, exception)] == [EXCEPTIONS]


def fact(minute: float, measure: str = ORDERS, value: int = 1, channel: str = "douyin") -> KpiFact:
    return KpiFact(T0 + int(minute * MINUTE_MS), channel, "SF", "WH-HZ-01", "310115", measure, value)


def windows(out: KpiOutput, window: str = "1m", dimension: str = "channel") -> dict[tuple[str, int], dict[str, Any]]:
    """The kpi_windows rows of one window size and dimension, by (key, minutes from T0 to the start)."""
    named = [dict(zip(KPI_WINDOWS.column_names, row, strict=True)) for row in out.rows[KPI_WINDOWS.name]]
    return {
        (row["key"], (row["window_start"] - T0) // MINUTE_MS): row
        for row in named
        if row["window"] == window and row["dimension"] == dimension
    }


def test_windows_are_emitted_once_the_watermark_passes_their_end_with_exact_counts() -> None:
    kpis = KpiWindows({}, SETTINGS)
    latencies = [fact(0.5, FIRST_UPDATE, ms) for ms in (1000, 2000, 3000, 4000)]
    early = kpis.apply([fact(0.1), fact(0.2, GMV, 500), *latencies, fact(1.5)], T0 + 30_000)
    assert early.rows == {}  # no window ended
    first = kpis.apply([], T0 + MINUTE_MS)
    minute = windows(first)[("douyin", 0)]
    assert (minute["orders"], minute["gmv_fen"], minute["first_updates"]) == (1, 500, 4)
    assert (minute["first_update_p50_ms"], minute["first_update_p95_ms"]) == (2000, 4000)  # nearest rank
    assert (minute["window_end"] - minute["window_start"], minute["facts"]) == (MINUTE_MS, 6)
    assert set(windows(first, "5m")) == {("douyin", -4)}  # the 5 minutes to minute 0
    later = kpis.apply([], T0 + 3 * MINUTE_MS)
    assert sorted(windows(later)) == [("douyin", 1)]  # minute 2 counted nothing: no row
    assert {start: row["orders"] for (_, start), row in windows(later, "5m").items()} == {-3: 2, -2: 2}
    assert {key for key, _ in windows(later, "5m", "carrier")} == {"SF"}
    assert {key for key, _ in windows(later, "5m", "warehouse")} == {"WH-HZ-01"}


def test_a_late_fact_updates_its_windows_within_the_lateness_and_is_counted_apart_after_it() -> None:
    kpis = KpiWindows({}, SETTINGS)
    kpis.apply([fact(0)], T0 + 2 * MINUTE_MS)
    late = kpis.apply([fact(0.5)], T0 + 9 * MINUTE_MS)  # minute 0 ended 9 min ago: within the 10 min
    assert windows(late)[("douyin", 0)]["orders"] == 2
    sliding = {start: row["orders"] for (_, start), row in windows(late, "5m").items()}
    assert sliding == dict.fromkeys(range(-4, 1), 2)  # every sliding window holding minute 0 that was emitted
    too_late = kpis.apply([fact(0.7)], T0 + 11 * MINUTE_MS)
    assert windows(too_late) == {}
    day = T0 // DAY_MS * DAY_MS
    assert ("channel", "douyin", day, 1, 11 * MINUTE_MS - 42_000) in too_late.rows[KPI_LATE_FACTS.name]
    assert len(too_late.rows[KPI_LATE_FACTS.name]) == 4  # one row per dimension
    again = kpis.apply([fact(0.8)], T0 + 12 * MINUTE_MS)
    assert ("channel", "douyin", day, 2, 12 * MINUTE_MS - 48_000) in again.rows[KPI_LATE_FACTS.name]


def test_a_late_fact_rewrites_only_the_windows_of_its_own_keys() -> None:
    kpis = KpiWindows({}, SETTINGS)
    kpis.apply([fact(0), fact(0, channel="tmall")], T0 + 2 * MINUTE_MS)
    late = kpis.apply([fact(0.5, channel="tmall")], T0 + 2 * MINUTE_MS + 30_000)  # no window ends meanwhile
    assert {key for key, _ in windows(late)} | {key for key, _ in windows(late, "5m")} == {"tmall"}


def test_a_fact_stamped_beyond_tomorrow_is_counted_apart_not_kept_in_a_window() -> None:
    state: dict[str, Any] = {}
    out = KpiWindows(state, SETTINGS).apply([fact(2 * 24 * 60)], T0)
    assert state.get("minutes", ()) == () and len(out.rows[KPI_LATE_FACTS.name]) == 4


def test_minutes_past_every_window_and_its_lateness_are_forgotten() -> None:
    state: dict[str, Any] = {}
    kpis = KpiWindows(state, SETTINGS)
    kpis.apply([fact(0), fact(30)], T0 + 31 * MINUTE_MS)
    assert f"minute:{T0 // MINUTE_MS}" not in state and f"minute:{T0 // MINUTE_MS + 30}" in state


def failures(minute: float, failed: int, of: int, channel: str = "douyin") -> list[KpiFact]:
    return [fact(minute, MODIFICATIONS, channel=channel) for _ in range(of)] + [
        fact(minute, MODIFICATIONS_FAILED, channel=channel) for _ in range(failed)
    ]


def breaker_rows(out: KpiOutput) -> list[dict[str, Any]]:
    return [dict(zip(CHANNEL_BREAKERS.column_names, row, strict=True)) for row in out.rows[CHANNEL_BREAKERS.name]]


def test_a_breaker_opens_above_the_rate_with_enough_volume_and_closes_after_calm_windows_in_a_row() -> None:
    kpis = KpiWindows({}, SETTINGS)
    # 2 of 19 failing: above 5%, but under the 20 modifications the rate needs.
    assert breaker_rows(kpis.apply(failures(0, 2, 19), T0 + MINUTE_MS)) == []
    opened = kpis.apply(failures(1, 1, 2), T0 + 2 * MINUTE_MS)  # the window to minute 1: 3 of 21
    [row] = breaker_rows(opened)
    assert (row["opened_at"], row["closed_at"], row["modifications"], row["failed"]) == (T0 + 2 * MINUTE_MS, None,
                                                                                          21, 3)  # fmt: skip
    [step] = opened.alerts
    assert (step.step, step.incident.alert_type, step.incident.severity.label) == ("opened", BREAKER_ALERT, "red")
    assert "3 of 21 order changes on douyin failed" in step.incident.reason
    [signal] = read_breaker(opened.breakers[0])
    assert (signal.subject, signal.at_ms, signal.until_ms, signal.level) == ("douyin", T0 + 2 * MINUTE_MS, None,
                                                                             "3/21")  # fmt: skip

    # The windows to minutes 2..4 hold minute 0 (2 of 19 failed); the one to minute 5 holds minute 1 alone, too few
    # changes to tell: calm. Those to minutes 6..11 hold minute 6 or 7, 1 of 25 failed each (4%): not calm enough,
    # the calm ones start again. The windows to minutes 12, 13 and 14 are empty: calm, three in a row, it closes.
    busy = kpis.apply([*failures(6, 1, 25), *failures(7, 1, 25)], T0 + 12 * MINUTE_MS)
    assert busy.alerts == []
    closed = kpis.apply([], T0 + 15 * MINUTE_MS)
    [step] = closed.alerts
    assert (step.step, step.incident_key, step.incident.revision) == ("resolved", opened.alerts[0].incident_key, 2)
    assert step.incident.reason.endswith("back from manual review")
    [row] = breaker_rows(closed)
    assert (row["opened_at"], row["closed_at"]) == (T0 + 2 * MINUTE_MS, T0 + 15 * MINUTE_MS)
    assert json.loads(closed.breakers[0])["closed_at"] == T0 + 15 * MINUTE_MS


def test_a_breaker_left_open_when_traffic_stops_closes_on_empty_windows() -> None:
    kpis = KpiWindows({}, SETTINGS)
    kpis.apply(failures(0, 10, 20), T0 + MINUTE_MS)
    closed = kpis.apply([], T0 + 10 * HOUR)  # the watermark jumps: the breaker sees its calm windows all the same
    assert [step.step for step in closed.alerts] == ["resolved"]
    assert breaker_rows(closed)[0]["closed_at"] == T0 + 8 * MINUTE_MS  # windows to minutes 5, 6, 7 hold nothing


def test_a_channels_own_limits_apply() -> None:
    kpis = KpiWindows({}, SETTINGS)  # pos opens from 10 modifications
    out = kpis.apply([*failures(0, 2, 10, "pos"), *failures(0, 2, 10, "app")], T0 + MINUTE_MS)
    assert [row["channel"] for row in breaker_rows(out)] == ["pos"]


def test_the_windows_state_survives_a_restore_and_gives_the_same_rows() -> None:
    facts = [*failures(0, 3, 30), fact(1), fact(2, GMV, 700), *failures(4, 0, 30)]
    whole = KpiWindows({}, SETTINGS)
    expected = [whole.apply(facts[:20], T0 + MINUTE_MS), whole.apply(facts[20:], T0 + 20 * MINUTE_MS)]
    state: dict[str, Any] = {}
    first = KpiWindows(state, SETTINGS).apply(facts[:20], T0 + MINUTE_MS)
    restored = pickle.loads(pickle.dumps(state))  # as Flink's MapState keeps it
    second = KpiWindows(restored, SETTINGS).apply(facts[20:], T0 + 20 * MINUTE_MS)
    assert [dict(out.rows) for out in (first, second)] == [dict(out.rows) for out in expected]
    assert [out.breakers for out in (first, second)] == [out.breakers for out in expected]


POLICY = load_health_policy()
RETENTION = Retention(7 * DAY_MS, 30 * DAY_MS, 3 * DAY_MS, 30 * DAY_MS, 7 * DAY_MS)


def reasons(rows: Any) -> list[str]:
    column = ORDERS_CURRENT.column_names.index("health_reasons")
    return list(rows.current[-1][column])


def test_an_open_breaker_reaches_the_channels_open_orders_at_once_and_leaves_them_when_it_closes() -> None:
    orders = OrderStage(OrderState({}, {}, {}, {}), RETENTION, POLICY)
    other = OrderRef("tmall", "1")
    orders.apply([OrderEvent(ORDER, T0, "raw.orders.douyin", Status.PAID),
                  OrderEvent(ORDER, T0 + MINUTE_MS, RAW_WMS, Status.ALLOCATED),
                  OrderEvent(other, T0, "raw.orders.tmall", Status.PAID),
                  OrderEvent(other, T0 + MINUTE_MS, RAW_WMS, Status.ALLOCATED)], T0 + 2 * MINUTE_MS)  # fmt: skip
    opened = '{"channel": "douyin", "opened_at": %d, "closed_at": null, "modifications": 21, "failed": 3}'
    tripped = orders.apply(read_breaker(opened % (T0 + 2 * MINUTE_MS)), T0 + 3 * MINUTE_MS)
    assert [row[:2] for row in tripped.current] == [("douyin", "6921")]  # the other channel's order is untouched
    [reason] = reasons(tripped)
    assert reason.startswith("douyin's order changes go to manual review: 3 of 21 failed in 5 min")
    closed = opened.replace("null", str(T0 + 9 * MINUTE_MS))
    cleared = orders.apply(read_breaker(closed % (T0 + 2 * MINUTE_MS)), T0 + 10 * MINUTE_MS)
    assert reasons(cleared) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: v\nallowed_lateness_min: -1\n", "allowed_lateness_min"),
        ("version: v\nallowed_lateness_min: 5\nbreaker: {default: {open_above_rate: 0.05}}\n", "missing"),
        (
            "version: v\nallowed_lateness_min: 5\nbreaker:\n  default: {open_above_rate: 0.01, min_modifications: 5,"
            " close_at_or_below_rate: 0.02, close_after_windows: 1}\n",
            "close_at_or_below_rate <= open_above_rate",
        ),
        (
            "version: v\nallowed_lateness_min: 5\nbreaker:\n  default: {open_above_rate: 0.05, min_modifications: 5,"
            " close_at_or_below_rate: 0.02, close_after_windows: 1}\n  channels: {pos: {min_modification: 3}}\n",
            "breaker.channels.pos: unknown setting min_modification",
        ),
    ],
)
def test_a_bad_kpi_file_is_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "kpi.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_kpi_settings(path)
