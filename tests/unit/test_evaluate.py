"""The evaluation's scores: recall, precision and delay per incident; ETA error and coverage by horizon."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.evaluate import HOUR_MS, horizon_scores, incident_scores

T0 = 1_764_547_200_000


def order(order_id: str, incidents: tuple[str, ...] = (), delivered: int | None = None, **breaches: int) -> Any:
    return {"channel": "tmall", "order_id": order_id, "incidents": list(incidents), "breaches": breaches,
            "delivered_at_ms": delivered}  # fmt: skip


def test_recall_precision_and_delay_count_orders_not_alerts() -> None:
    truth = [order("a", ("never_picked_up",), never_picked_up=T0), order("b", ("never_picked_up",), never_picked_up=T0),
             order("c"), order("d", ("silent_trackers",))]  # fmt: skip
    alerts = [("tmall|a", "no_pickup", T0 - HOUR_MS), ("tmall|a", "no_pickup", T0 + 4 * HOUR_MS),  # one order
              ("tmall|c", "no_pickup", T0), ("tmall|d", "promise", T0)]  # fmt: skip
    unpicked, silent = incident_scores(truth, ["never_picked_up", "silent_trackers"], alerts)
    assert (unpicked.injected, unpicked.found, unpicked.alerted) == (2, 1, 2)
    assert (unpicked.recall, unpicked.precision, unpicked.delay_p50_min) == (0.5, 0.5, 240)  # first after the breach
    assert unpicked.before_breach == 1  # and one alert opened before it
    assert (silent.recall, silent.precision, silent.delay_p50_min) == (0.0, None, None)  # gps_stale never raised


def test_estimates_are_scored_by_how_long_before_arrival_they_were_made() -> None:
    arrived = T0 + 40 * HOUR_MS
    truth = [order("a", delivered=arrived), order("never", delivered=None)]
    estimates = [
        ("tmall|a", T0, T0 + 30 * HOUR_MS, T0 + 20 * HOUR_MS, T0 + 38 * HOUR_MS),  # 40 h ahead: 10 h off, outside
        ("tmall|a", T0 + 36 * HOUR_MS, arrived + HOUR_MS, arrived - HOUR_MS, arrived + 3 * HOUR_MS),  # 4 h ahead
        ("tmall|a", arrived + HOUR_MS, arrived, arrived, arrived),  # after the delivery: not an estimate of it
        ("tmall|never", T0, T0, T0, T0),
    ]
    near, far = horizon_scores(truth, estimates, {"tmall|a": T0 + 72 * HOUR_MS, "tmall|never": T0})
    assert (near.hours_before_arrival, near.estimates, near.eta_error_h, near.within_p10_p90) == ("0-6 h", 1, 1, 1)
    assert (far.hours_before_arrival, far.eta_error_h, far.within_p10_p90) == ("24-48 h", 10, 0)
    assert far.baseline_error_h == pytest.approx(32)
