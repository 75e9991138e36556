"""An order's status never moves backwards, whatever order its events arrive in."""

from __future__ import annotations

from random import Random

from hypothesis import given
from hypothesis import strategies as st

from schemas.events import CustomerAssignment, OrderEvent, OrderRef
from schemas.lifecycle import LIFECYCLE, Status, StatusTrack
from schemas.order_view import ORDER_COLUMNS, OrderView

ORDER = OrderRef("tmall", "1")


def track(*observations: tuple[Status, int]) -> StatusTrack:
    result = StatusTrack()
    for status, at_ms in observations:
        result = result.observe(status, at_ms)
    return result


def test_late_earlier_step_does_not_move_status_back() -> None:
    assert track((Status.SHIPPED, 300), (Status.PAID, 100)).current == (Status.SHIPPED, 300)


def test_cancel_after_payment_shows_cancelled() -> None:
    assert track((Status.PAID, 100), (Status.CANCELLED, 200)).current == (Status.CANCELLED, 200)


def test_stale_payment_arriving_after_cancel_keeps_cancelled() -> None:
    assert track((Status.CANCELLED, 200), (Status.PAID, 100)).current == (Status.CANCELLED, 200)


def test_delivery_after_carrier_exception_clears_the_exception() -> None:
    assert track((Status.EXCEPTION, 100), (Status.DELIVERED, 200)).current == (Status.DELIVERED, 200)


def test_repeated_step_keeps_the_time_it_was_first_reached() -> None:
    assert track((Status.SHIPPED, 300), (Status.SHIPPED, 200)).current == (Status.SHIPPED, 200)


observations = st.lists(st.tuples(st.sampled_from(list(Status)), st.integers(0, 10_000)), min_size=1, max_size=12)


@given(observations, st.randoms())
def test_final_status_is_independent_of_arrival_order(seen: list[tuple[Status, int]], random: Random) -> None:
    shuffled = list(seen)
    random.shuffle(shuffled)
    assert track(*seen).current == track(*shuffled).current


@given(st.lists(st.tuples(st.sampled_from(LIFECYCLE), st.integers(0, 10_000)), min_size=1, max_size=12))
def test_lifecycle_rank_never_decreases(seen: list[tuple[Status, int]]) -> None:
    result, best = StatusTrack(), -1
    for status, at_ms in seen:
        result = result.observe(status, at_ms)
        current = result.current
        assert current is not None
        assert current[0].rank >= best
        best = current[0].rank


def test_duplicate_event_changes_nothing_and_emits_nothing() -> None:
    event = OrderEvent(ORDER, at_ms=100, source="t", status=Status.PAID, amount_fen=100)
    once = OrderView(ORDER).apply(event)
    assert once.apply(event) is once
    assert once.version == 1


def test_view_row_holds_status_customer_and_waybills_and_a_late_step_adds_no_version() -> None:
    view = OrderView(ORDER)
    for event in (
        OrderEvent(ORDER, at_ms=100, source="t", status=Status.CREATED),
        CustomerAssignment(ORDER, "c1"),
        OrderEvent(ORDER, at_ms=300, source="t", status=Status.SHIPPED, waybills=("W1",)),
        OrderEvent(ORDER, at_ms=200, source="t", status=Status.PAID),
    ):
        view = view.apply(event)
    row = view.row()
    assert row is not None
    named = dict(zip(ORDER_COLUMNS, row, strict=True))
    assert [named[c] for c in ("channel", "order_id", "customer_id", "status", "waybills", "version")] == [
        "tmall",
        "1",
        "c1",
        "shipped",
        ["W1"],
        3,
    ]


def test_order_without_any_status_has_no_row_yet() -> None:
    view = OrderView(ORDER).apply(OrderEvent(ORDER, at_ms=100, source="t", region_code="440304"))
    assert view.row() is None
