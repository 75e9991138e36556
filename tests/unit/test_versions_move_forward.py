"""Rows only move forward: a restore that replays the events after its checkpoint in another order,
even after a run that crashed half-way, never lets a stale orders_current row win (customers and
their merges included)."""

from __future__ import annotations

import copy
from datetime import datetime
from random import Random
from typing import Any

from connectors.simulator.simulation import simulate
from jobs.settings import Settings
from schemas.events import DeadLetter, OrderEvent
from schemas.health import load_health_policy
from schemas.identity import IdentityState, load_identity_rules
from schemas.normalize import Normalizer
from schemas.privacy import Pseudonymizer
from schemas.stages import CustomerStage, OrderStage, OrderState
from schemas.tables import ORDERS_CURRENT, Row

VERSION = ORDERS_CURRENT.column_names.index("version")


class ReplacingMergeTree:
    """orders_current as ClickHouse resolves it: per identity the highest version, the last written on a tie."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Row] = {}

    def insert(self, rows: list[Row]) -> None:
        for row in rows:
            current = self.rows.get((row[0], row[1]))
            if current is None or row[VERSION] >= current[VERSION]:
                self.rows[(row[0], row[1])] = row


def order_events(orders: int, seed: int) -> list[OrderEvent]:
    normalizer = Normalizer(Pseudonymizer("test-key"))
    day = simulate(orders, seed, datetime.fromisoformat("2026-11-21T00:00:00+08:00"))
    events: list[OrderEvent] = []
    for message in day.messages:
        raw = message.value.encode("utf-8", errors="surrogatepass")
        outcome = normalizer.normalize(message.topic, 0, 0, raw, 0)
        if not isinstance(outcome, DeadLetter):
            events.extend(e for e in outcome if isinstance(e, OrderEvent))
    return events


State = dict[str, dict[str, Any]]  # one mapping per state of the stages


def run(state: State, events: list[OrderEvent], table: ReplacingMergeTree, batch: int = 50) -> None:
    """The customer and order stages, as the job runs them."""
    customers = CustomerStage(IdentityState.of(lambda name: state.setdefault(name, {})), load_identity_rules())
    order_state = OrderState(state.setdefault("orders", {}), {}, state.setdefault("checks", {}), {})
    orders = OrderStage(order_state, Settings().retention, load_health_policy())
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        resolved = customers.apply(e for e in chunk if e.identities)
        table.insert(orders.apply([*chunk, *resolved.assignments]).current)


def test_restore_replaying_in_another_order_after_a_half_done_run_leaves_every_order_complete() -> None:
    events = order_events(orders=150, seed=3)
    cut = len(events) // 3
    before, after = events[:cut], events[cut:]
    expected = ReplacingMergeTree()
    run({}, events, expected)

    table, state = ReplacingMergeTree(), State()
    run(state, before, table)
    checkpoint = copy.deepcopy(state)
    run(state, after[: len(after) // 2], table)  # a run that writes half of what follows, then crashes
    reordered = list(after)
    Random(7).shuffle(reordered)
    run(checkpoint, reordered, table)  # restored from the checkpoint, the rest read in another order

    assert len(table.rows) == len(expected.rows)
    stale = {key: row for key, row in table.rows.items() if row != expected.rows[key]}
    assert not stale, f"{len(stale)} orders show a stale row, e.g. {next(iter(stale.items()))}"


def test_a_fresh_run_in_another_order_over_rows_already_written_changes_no_order() -> None:
    events = order_events(orders=100, seed=4)
    table = ReplacingMergeTree()
    run({}, events, table)
    written = dict(table.rows)
    reordered = list(events)
    Random(1).shuffle(reordered)
    run({}, reordered, table, batch=7)
    assert table.rows == written
