"""A simulated day of 2,000 orders through the real stack, checked against the simulator's ground truth."""

from __future__ import annotations

from collections import Counter, defaultdict
from statistics import median
from typing import Any

import pytest

from jobs.cli import clickhouse
from jobs.settings import Settings
from tests.support import assert_every_order_once_with_its_true_status, simulated_day_run

pytestmark = pytest.mark.integration

ORDERS = 2000


@pytest.fixture(scope="module")
def simulated_day(stack_env: dict[str, str]) -> tuple[dict[str, Any], Any]:
    truth = simulated_day_run(stack_env, "day", ORDERS, seed=11, scenario="rainstorm")
    return truth, clickhouse(Settings.from_env(stack_env)).connect()


def test_every_order_is_in_orders_current_once_with_its_true_final_status(
    simulated_day: tuple[dict[str, Any], Any],
) -> None:
    truth, client = simulated_day
    assert len(truth["orders"]) == client.query("SELECT count() FROM orders").result_rows[0][0] == ORDERS
    assert_every_order_once_with_its_true_status(truth, client)


def test_every_malformed_payload_is_a_dead_letter(simulated_day: tuple[dict[str, Any], Any]) -> None:
    truth, client = simulated_day
    rows = client.query("SELECT source_topic, count() FROM dead_letters FINAL GROUP BY source_topic").result_rows
    assert dict(rows) == Counter(m["topic"] for m in truth["malformed"])


def test_customers_are_joined_exactly_as_the_truth_says(simulated_day: tuple[dict[str, Any], Any]) -> None:
    truth, client = simulated_day
    customer_of = {
        (c, o): cid for c, o, cid in client.query("SELECT channel, order_id, customer_id FROM orders").result_rows
    }
    expected: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for order in truth["orders"]:
        if order["identity_family"]:
            expected[order["identity_family"]].add((order["channel"], order["order_id"]))
    actual: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for key, customer in customer_of.items():
        if customer:
            actual[customer].add(key)
    assert sorted(map(sorted, actual.values())) == sorted(map(sorted, expected.values()))
    assert any(len(group) > 1 for group in expected.values()), "the day should hold repeat customers"


def test_rainstorm_orders_take_longer_from_payment_to_delivery_in_clickhouse(
    simulated_day: tuple[dict[str, Any], Any],
) -> None:
    """The journey as analysts read it shows the storm: its orders' payment-to-delivery time is longer."""
    truth, client = simulated_day
    affected = set(truth["incidents"]["rainstorm"])
    assert affected, "the scenario affected no order"
    journeys = client.query(
        "SELECT channel, order_id, minIf(at, status = 'delivered') - minIf(at, status = 'paid') "
        "FROM order_events FINAL GROUP BY channel, order_id "
        "HAVING countIf(status = 'paid') > 0 AND countIf(status = 'delivered') > 0"
    ).result_rows
    hours = {f"{channel}|{order_id}": seconds / 3600 for channel, order_id, seconds in journeys}
    storm = [h for key, h in hours.items() if key in affected]
    rest = [h for key, h in hours.items() if key not in affected]
    assert len(storm) >= 10 and len(rest) >= 100
    assert median(storm) >= median(rest) + 6  # the simulator delays them 12 to 36 hours


def test_each_partition_is_read_by_one_normalizer_and_both_normalizers_read(
    simulated_day: tuple[dict[str, Any], Any],
) -> None:
    """A normalizer's clock knows the offsets of exactly the partitions it reads (it tells an idle partition from
    one with records waiting by them), and the partition groups are spread over the two subtasks."""
    _, client = simulated_day
    rows = client.query("SELECT source, groupUniqArray(operator) FROM event_time "
                        "WHERE operator LIKE 'normalize-%' AND source != '*' GROUP BY source").result_rows  # fmt: skip
    readers = dict(rows)
    assert readers and all(len(operators) == 1 for operators in readers.values()), readers
    assert {operators[0] for operators in readers.values()} == {"normalize-0", "normalize-1"}
    groups = {(operators[0], int(source.rsplit("/", 1)[1]) % 2) for source, operators in readers.items()}
    assert len(groups) == 2, groups  # one partition group (partition number modulo 2) each
