"""What finding quiet orders costs at scale: a million open orders in the order stage.

A Python timer costs about a millisecond in PyFlink, so an order's next look is an
entry in the check index instead (schemas/stages.py, CheckIndex). This builds N
open orders, paid evenly over one day of event time with the channel's promise two
days later, in the order stage on dict state (pure Python, as jobs/bench/costs.py
does); then moves event time on a minute at a time over three days from the first
payment, as the watermark would, and times every check that falls due: each order goes yellow at
15 minutes without a logistics update, red at 3 hours, then meets its promise's
warning and its promise.
"""

from __future__ import annotations

import gc
import itertools
import pickle
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from jobs.settings import Settings
from schemas.events import OrderEvent, OrderRef
from schemas.health import MINUTE_MS, load_health_policy
from schemas.lifecycle import Status
from schemas.stages import CheckIndex, OrderStage, OrderState

HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
START_MS = 1_795_104_000_000  # 2026-11-21T00:00Z
BATCH = 10_000
SAMPLE = 1_000  # views pickled to estimate state size


@dataclass(frozen=True)
class SilenceCost:
    open_orders: int
    build_s: float  # to make and assess every order's payment
    changes: int  # changes of health found by checks falling due (each one a row)
    check_us: float  # CPU per change found, the checks that found none and the index's upkeep included
    busiest_hour_changes: int  # in the hour of event time with most changes
    busiest_hour_cpu_s: float  # its CPU: in real time, that share of an hour of one core
    median_hour_cpu_s: float  # over the hours with any change
    index_entries: int  # the check index after the payments: minutes pending, and order keys in them
    index_minutes: int
    view_bytes: float  # an open order's view at the end (findings and incidents included), pickled as in state


def silence_cost(orders: int, say: Callable[[str], None]) -> SilenceCost:
    state = OrderState.in_memory()
    stage = OrderStage(state, Settings().retention, load_health_policy())
    started = time.process_time()
    for first in range(0, orders, BATCH):
        paid = [_paid(i, orders) for i in range(first, min(first + BATCH, orders))]
        stage.apply(paid, watermark_ms=paid[0].at_ms)  # each order assessed at its own payment
        if first and first % (BATCH * 20) == 0:
            say(f"  {first:,}/{orders:,} orders paid")
    build_s = time.process_time() - started
    minutes = [key for key in state.checks if key != CheckIndex.PENDING]
    entries = sum(len(state.checks[key]) for key in minutes)
    # In the job, state lives in Flink's backend, not in this heap: keep the collector's full passes
    # over a million views out of the figures.
    gc.freeze()

    changes, spent, by_hour = 0, 0.0, dict[int, tuple[int, float]]()
    for minute in range(1, 3 * 24 * 60 + 1):
        watermark = START_MS + minute * MINUTE_MS
        started = time.thread_time()
        assessed = len(stage.check_due(watermark).health)
        seconds = time.thread_time() - started
        changes, spent = changes + assessed, spent + seconds
        hour = minute // 60
        count, cpu = by_hour.get(hour, (0, 0.0))
        by_hour[hour] = (count + assessed, cpu + seconds)
        if minute % (12 * 60) == 0:
            say(f"  event time +{minute // 60} h: {changes:,} changes found so far, {spent:.1f} s of CPU")
    gc.unfreeze()
    busiest_changes, busiest_cpu = max(by_hour.values(), key=lambda changes_and_cpu: changes_and_cpu[0])
    median_cpu = statistics.median(cpu for count, cpu in by_hour.values() if count)
    views = list(itertools.islice(state.orders.values(), SAMPLE))
    view_bytes = sum(len(pickle.dumps(view)) for view in views) / max(len(views), 1)
    return SilenceCost(
        orders, round(build_s, 1), changes, round(spent * 1e6 / max(changes, 1), 1), busiest_changes,
        round(busiest_cpu, 2), round(median_cpu, 2), entries, len(minutes), round(view_bytes),
    )  # fmt: skip


def _paid(i: int, orders: int) -> OrderEvent:
    at = START_MS + i * DAY_MS // orders
    return OrderEvent(OrderRef("app", f"S{i:08d}"), at, "raw.orders.app", Status.PAID, promised_at_ms=at + 2 * DAY_MS)
