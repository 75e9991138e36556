"""The milestone times and carrier orders_current carries for KPIs (schemas/order_view.py milestone_columns)."""

from __future__ import annotations

from schemas.events import OrderEvent, OrderRef
from schemas.lifecycle import Status
from schemas.order_view import OrderView
from schemas.tables import MILESTONES, ORDERS_CURRENT
from schemas.topics import RAW_CARRIER

ORDER = OrderRef("tmall", "1")
T0 = 1_795_000_000_000
MINUTE = 60_000


def told(*steps: tuple[int, Status], source: str = "raw.orders.tmall", carrier: str = "") -> dict[str, object]:
    view = OrderView(ORDER)
    for minutes, status in steps:
        view = view.apply(OrderEvent(ORDER, T0 + minutes * MINUTE, source, status, carrier=carrier))
    row = view.row()
    assert row is not None
    return dict(zip(ORDERS_CURRENT.column_names, row, strict=True))


def milestones(row: dict[str, object]) -> tuple[object, ...]:
    return tuple(None if row[name] is None else (row[name] - T0) // MINUTE for name in MILESTONES)  # type: ignore[operator]


def test_paid_then_updated_then_delivered() -> None:
    row = told((0, Status.CREATED), (5, Status.PAID), (17, Status.ALLOCATED), (30, Status.PICKED),
               (900, Status.DELIVERED))  # fmt: skip
    assert milestones(row) == (5, 5, 17, 900)


def test_the_first_update_is_the_earliest_later_step_whatever_arrives_first() -> None:
    row = told((5, Status.PAID), (60, Status.SHIPPED), (20, Status.ALLOCATED))
    assert milestones(row) == (5, 5, 20, None)


def test_a_sale_that_tells_no_payment_is_purchased_at_its_first_step_and_never_updated() -> None:
    row = told((0, Status.COMPLETED), source="raw.orders.pos")
    assert milestones(row) == (None, 0, None, None)


def test_a_step_stamped_before_the_payment_is_no_update_before_it() -> None:
    row = told((10, Status.PAID), (8, Status.ALLOCATED))  # the warehouse's clock runs behind
    assert milestones(row) == (10, 10, 10, None)


def test_an_order_not_yet_paid_has_no_milestones() -> None:
    assert milestones(told((0, Status.CREATED))) == (None, None, None, None)


def test_the_carrier_comes_from_scans_not_from_the_channel() -> None:
    assert told((5, Status.PAID))["carrier"] == ""
    assert told((5, Status.IN_TRANSIT), source=RAW_CARRIER, carrier="zhongtong")["carrier"] == "zhongtong"
