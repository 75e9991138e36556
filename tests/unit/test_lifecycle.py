"""An order's status never moves backwards, whatever order its events arrive in."""

from __future__ import annotations

from random import Random

from hypothesis import given
from hypothesis import strategies as st

from schemas.events import CustomerAssignment, OrderEvent, OrderRef
from schemas.identity import RANK_LIMIT, customer_rank
from schemas.lifecycle import LIFECYCLE, Status, StatusTrack
from schemas.order_view import MINUTE_BITS, RANK_BITS, OrderView
from schemas.tables import ORDERS_CURRENT

ORDER = OrderRef("tmall", "1")
CUSTOMER = "cust_0123456789abcdef0123"


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


def test_an_earlier_side_state_still_tells_the_status_at_its_time() -> None:
    seen = track((Status.PAID, 100), (Status.CANCELLED, 200), (Status.RETURNED, 900))
    assert seen.current == (Status.RETURNED, 900)
    assert [seen.side_by(at) for at in (150, 500, 900)] == [None, (Status.CANCELLED, 200), (Status.RETURNED, 900)]


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
    assert once.version == 1 << (RANK_BITS + MINUTE_BITS)  # one fact, no customer, not assessed


def test_view_row_holds_status_customer_and_waybills_and_every_new_fact_adds_a_version() -> None:
    view = OrderView(ORDER)
    for event in (
        OrderEvent(ORDER, at_ms=100, source="t", status=Status.CREATED),
        CustomerAssignment(ORDER, CUSTOMER, 150),
        OrderEvent(ORDER, at_ms=300, source="t", status=Status.SHIPPED, waybills=("W1",)),
        OrderEvent(ORDER, at_ms=200, source="t", status=Status.PAID),
    ):
        view = view.apply(event)
    row = view.row()
    assert row is not None
    named = dict(zip(ORDERS_CURRENT.column_names, row, strict=True))
    assert [named[c] for c in ("channel", "order_id", "customer_id", "status", "waybills")] == [
        "tmall",
        "1",
        CUSTOMER,
        "shipped",
        ["W1"],
    ]
    version = named["version"]
    assert version >> (RANK_BITS + MINUTE_BITS) == 3  # three facts, then the customer's rank
    customer_bits = version >> MINUTE_BITS & ((1 << RANK_BITS) - 1)
    assert customer_bits == customer_rank(CUSTOMER) * (1 << RANK_BITS) // (RANK_LIMIT + 1)


def test_an_older_customer_assignment_arriving_late_is_ignored() -> None:
    merged, before_merge = "cust_00000000000000000001", "cust_80000000000000000000"  # a merge lowers the hash
    view = OrderView(ORDER).apply(CustomerAssignment(ORDER, merged, 200))
    assert view.apply(CustomerAssignment(ORDER, before_merge, 100)) is view
    assert (
        OrderView(ORDER)
        .apply(CustomerAssignment(ORDER, before_merge, 100))
        .apply(CustomerAssignment(ORDER, merged, 200))
        .customer_id
        == merged
    )


facts = st.lists(
    st.builds(
        OrderEvent,
        st.just(ORDER),
        st.integers(1, 1000),  # never 0: a step's time 0 means not reached (the normalizer refuses years before 2000)
        st.sampled_from(["raw.orders.tmall", "raw.wms"]),
        st.none() | st.sampled_from(list(Status)),
        waybills=st.lists(st.sampled_from(["W1", "W2"]), max_size=1).map(tuple),
        amount_fen=st.none() | st.integers(0, 500),
        region_code=st.none() | st.sampled_from(["310000", "440304"]),
        position=st.none() | st.tuples(st.floats(20, 40), st.floats(100, 120)),
    ),
    min_size=1,
    max_size=10,
)


def merged(events: list[OrderEvent]) -> OrderView:
    view = OrderView(ORDER)
    for event in events:
        view = view.apply(event)
    return view


@given(facts, st.randoms())
def test_the_row_depends_on_the_facts_seen_not_on_their_arrival_order(seen: list[OrderEvent], random: Random) -> None:
    shuffled = list(seen)
    random.shuffle(shuffled)
    assert merged(seen).row() == merged(shuffled + seen[:2]).row()


@given(facts, st.data())
def test_fewer_facts_always_make_a_lower_version_so_a_replayed_stale_row_never_wins(
    seen: list[OrderEvent], data: st.DataObject
) -> None:
    complete = merged(seen)
    subset = data.draw(st.lists(st.sampled_from(seen), max_size=len(seen)))
    partial = merged(subset)
    if partial.facts != complete.facts:
        assert partial.version < complete.version
    else:
        assert partial.row() == complete.row()


def test_order_without_any_status_has_no_row_yet() -> None:
    view = OrderView(ORDER).apply(OrderEvent(ORDER, at_ms=100, source="t", region_code="440304"))
    assert view.row() is None
