"""The job's stateful stages on dict state: linking, de-duplication and expiry."""

from __future__ import annotations

from typing import Any

from schemas.events import (
    CustomerAssignment,
    OrderEvent,
    OrderRef,
    ShipmentEvent,
    VehicleLoad,
    VehiclePing,
    WaybillLink,
)
from schemas.health import load_health_policy
from schemas.lifecycle import Status
from schemas.stages import DAY_MS, OrderStage, OrderState, Retention, VehicleStage, WaybillStage

ORDER = OrderRef("tmall", "1")
RETENTION = Retention(
    finished_order_ms=2 * DAY_MS,
    open_order_ms=30 * DAY_MS,
    unlinked_waybill_ms=3 * DAY_MS,
    linked_waybill_ms=30 * DAY_MS,
    vehicle_ms=7 * DAY_MS,
)


def scan(at_ms: int, scan_id: str, waybill: str = "W1") -> ShipmentEvent:
    return ShipmentEvent(waybill, "yto", Status.IN_TRANSIT, at_ms, "raw.logistics.carrier", scan_id, "hub")


def waybills() -> WaybillStage:
    return WaybillStage({}, {}, RETENTION)


def test_scans_before_the_link_wait_for_it_and_each_scan_reaches_the_order_once() -> None:
    stage = waybills()
    assert stage.apply([scan(100, "s1"), scan(100, "s1")]) == []
    addressed = stage.apply([WaybillLink("W1", ORDER, 150), scan(200, "s2"), scan(100, "s1")])
    assert [(e.order, e.at_ms) for e in addressed] == [(ORDER, 100), (ORDER, 200)]


def test_a_vehicle_passes_its_pings_to_every_waybill_on_board_once_its_manifest_arrives() -> None:
    stage = VehicleStage({}, {}, interval_ms=300_000, retention=RETENTION)
    read_ahead = [VehiclePing("V1", at, 30.0, 120.0, 50.0) for at in (500, 2_000, 302_000, 400_000, 700_000)]
    assert stage.apply(read_ahead) == []
    positions = stage.apply([VehicleLoad("V1", ("W1", "W2"), "HUB-A", "HUB-B", 1_000)])
    passed = [(2_000, "W1"), (2_000, "W2"), (302_000, "W1"), (302_000, "W2"), (700_000, "W1"), (700_000, "W2")]
    assert sorted((p.at_ms, p.waybill) for p in positions) == passed  # after departure, 5 minutes apart, as live
    assert stage.apply([VehiclePing("V1", 800_000, 30.1, 120.1, 50.0)]) == []  # within the update interval
    assert [p.at_ms for p in stage.apply([VehiclePing("V1", 1_000_000, 30.1, 120.1, 50.0)])] == [1_000_000] * 2


def orders(state: dict[str, Any]) -> OrderStage:
    return OrderStage(OrderState(state, {}, {}, {}), RETENTION, load_health_policy())


def test_finished_orders_leave_state_after_their_retention_and_open_ones_stay() -> None:
    state: dict[str, Any] = {}
    stage = orders(state)
    done, open_ = OrderRef("tmall", "done"), OrderRef("tmall", "open")
    stage.apply([OrderEvent(done, 0, "t", Status.COMPLETED), OrderEvent(open_, 0, "t", Status.PAID)])
    assert stage.sweep(watermark_ms=1 * DAY_MS) == 0
    assert stage.sweep(watermark_ms=5 * DAY_MS) == 1
    assert set(state) == {open_.key}
    assert stage.sweep(watermark_ms=40 * DAY_MS) == 1
    assert state == {}


def test_an_order_touched_since_it_was_indexed_is_kept_and_indexed_again() -> None:
    state: dict[str, Any] = {}
    stage = orders(state)
    stage.apply([OrderEvent(ORDER, 0, "t", Status.DELIVERED)])
    stage.apply([OrderEvent(ORDER, 4 * DAY_MS, "t", Status.COMPLETED)])
    assert stage.sweep(watermark_ms=5 * DAY_MS) == 0
    assert stage.sweep(watermark_ms=7 * DAY_MS) == 1


def test_waybills_never_linked_expire_and_linked_ones_stay() -> None:
    stage = waybills()
    stage.apply([scan(0, "s1", "LOST"), WaybillLink("W1", ORDER, 0), scan(0, "s2")])
    assert stage.sweep(watermark_ms=5 * DAY_MS) == 1
    assert set(stage.entities) == {"W1"}


def test_a_duplicate_fact_makes_no_journey_row_and_no_new_version() -> None:
    stage = orders({})
    event = OrderEvent(ORDER, 100, "raw.orders.tmall", Status.PAID)
    first = stage.apply([event, event])
    assert (len(first.current), len(first.journey)) == (1, 1)
    again = stage.apply([event])
    assert (again.current, again.journey) == ([], [])


NOW = 20_000 * DAY_MS  # realistic epoch times: nothing happens at 1970


def test_a_waybill_known_only_from_its_link_outlives_the_next_sweep_and_later_scans_reach_the_order() -> None:
    stage = waybills()
    stage.apply([WaybillLink("W1", ORDER, NOW)])
    stage.sweep(watermark_ms=NOW + 2 * DAY_MS)
    addressed = stage.apply([scan(NOW + 2 * DAY_MS, "s1")])
    assert [(e.order, e.at_ms) for e in addressed] == [(ORDER, NOW + 2 * DAY_MS)]


def paid_then_completed_a_day_later(stage: OrderStage) -> None:
    stage.apply([OrderEvent(ORDER, NOW, "t", Status.PAID)])
    stage.apply([OrderEvent(ORDER, NOW + DAY_MS, "t", Status.COMPLETED)])


def test_an_open_order_that_becomes_final_leaves_after_the_finished_retention_not_the_open_one() -> None:
    state: dict[str, Any] = {}
    stage = orders(state)
    paid_then_completed_a_day_later(stage)
    assert stage.sweep(watermark_ms=NOW + 2 * DAY_MS) == 0
    assert stage.sweep(watermark_ms=NOW + 5 * DAY_MS) == 1
    assert state == {}


def test_a_vehicle_fix_older_than_the_orders_position_is_in_its_journey_and_leaves_its_row_as_it_was() -> None:
    """Kept for health (a vehicle's silence before a scan read ahead), it changes nothing the row shows."""
    stage = orders({})
    scanned = OrderEvent(ORDER, 2_000, "raw.logistics.carrier", Status.DELIVERED, position=(30.2, 120.1))
    first = stage.apply([scanned])
    fix = OrderEvent(ORDER, 1_000, "raw.logistics.gps", detail="vehicle V1", position=(30.0, 120.0))
    rows = stage.apply([fix])
    assert len(rows.journey) == 1 and rows.current == first.current


def test_a_customer_that_reaches_the_order_before_its_first_event_survives_a_sweep() -> None:
    """The assignment and the event that caused it reach the orders stage by two paths, either first
    (CI found an order left without its customer when a sweep came between them)."""
    stage = orders({})
    stage.apply([CustomerAssignment(ORDER, "cust_0123456789abcdef0123", NOW)])
    assert stage.sweep(watermark_ms=NOW) == 0
    rows = stage.apply([OrderEvent(ORDER, NOW, "raw.orders.tmall", Status.PAID)])
    assert [row[2] for row in rows.current] == ["cust_0123456789abcdef0123"]
    assert stage.sweep(watermark_ms=NOW + 40 * DAY_MS) == 1


def test_an_order_that_left_state_and_comes_back_with_a_merge_leaves_again() -> None:
    """The identity graph keeps every order, so a merge may assign a customer to an order long gone."""
    state: dict[str, Any] = {}
    stage = orders(state)
    paid_then_completed_a_day_later(stage)
    assert stage.sweep(watermark_ms=NOW + 4 * DAY_MS) == 1
    stage.apply([CustomerAssignment(ORDER, "cust_0123456789abcdef0123", NOW + 10 * DAY_MS)])
    assert stage.sweep(watermark_ms=NOW + 32 * DAY_MS) == 0  # an old index entry finds it younger than it was
    assert stage.sweep(watermark_ms=NOW + 41 * DAY_MS) == 1
    assert state == {}
