"""`orderscope evaluate`: a simulated scenario through the real stack, scored against its ground truth.

A local stack of its own (Kafka, ClickHouse, the job on a local Flink runtime) reads
an ordinary day a week earlier first, so that arrival estimates start from learned
lanes as a running deployment's would, then the scenario's day, then one quiet signal
two days on, so that event time passes every check still due. The estimator learns
from the traffic only; the simulator's lanes, speeds and delays are read here, to
score it.

Alerts: per injected incident, recall (its orders that got an alert of a type that
finds it), precision (of the orders with such an alert, those that had the incident)
and the detection delay after the breach (event time), where the truth says when it
began (for a delay: when the order would have arrived without it), with how many of
the orders found were warned before it. Arrivals: every estimate an order's history holds before its delivery, by hours
before arrival: mean absolute error, the share of deliveries within p10..p90, and the
error of a naive baseline (the order's promise, or payment plus the usual 72 h where
the channel sent none); again for the orders each delaying incident slowed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from connectors import kafka
from connectors.simulator import payloads
from connectors.simulator.scenarios import DELAYING
from connectors.simulator.simulation import Message, Simulation, simulate
from jobs.settings import ENV_PREFIX, PROJECT_ROOT, Settings, isolated_env
from schemas import topics
from schemas.event_time import now_ms

Report = Callable[[str], None]
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
DAY_START = datetime.fromisoformat("2026-11-21T00:00:00+08:00")
WARM_UP = (timedelta(days=7), 3)  # an ordinary day this long before, with this many times the orders
NAIVE_TRANSIT_H = 72  # the baseline's promise where a channel sends none: the usual one
# Which alert types find each injected incident (alert types are health factors, schemas/health.yaml).
FINDS = {
    "never_picked_up": ("no_pickup",),
    "silent_trackers": ("gps_stale",),
    "hub_backlog": ("scans_stale", "slower_than_usual", "promise"),
    "rainstorm": ("weather", "slower_than_usual", "promise"),
    "port_congestion": ("port_congestion", "slower_than_usual", "promise"),
    "modification_failures": ("modification_failed",),
    "road_closure": ("traffic_on_way", "slower_than_usual", "promise"),
}
HORIZONS_H = ((0, 6), (6, 24), (24, 48), (48, 24 * 30))  # hours before arrival


@dataclass(frozen=True)
class IncidentScore:
    incident: str
    alert_types: tuple[str, ...]
    injected: int  # orders the simulator gave the incident
    found: int  # of those, orders with an alert of a type that finds it
    alerted: int  # orders with such an alert
    recall: float | None
    precision: float | None
    delay_p50_min: float | None  # from the breach to the alert's opening, event time
    delay_p90_min: float | None
    before_breach: int  # found orders with such an alert raised before the breach (a warning ahead of it)


@dataclass(frozen=True)
class HorizonScore:
    hours_before_arrival: str
    estimates: int
    eta_error_h: float  # mean absolute error
    baseline_error_h: float  # the naive baseline's, on the same orders and moments
    within_p10_p90: float  # share of deliveries inside the estimate's p10..p90


Alert = tuple[str, str, int]  # order key, alert type, raised at (event time)
EstimateRow = tuple[str, int, int, int, int]  # order key, estimated at, eta, p10, p90


def incident_scores(
    truth: Iterable[Mapping[str, Any]], incidents: Iterable[str], alerts: list[Alert]
) -> list[IncidentScore]:
    """Per incident, how the alerts of the types that find it found its orders."""
    orders = {_key(order): order for order in truth}
    scores = []
    for incident in incidents:
        types = FINDS.get(incident, ())
        opened: dict[str, list[int]] = defaultdict(list)
        for key, alert_type, opened_at in alerts:
            if alert_type in types:
                opened[key].append(opened_at)
        injected = {key for key, order in orders.items() if incident in order["incidents"]}
        found = injected & opened.keys()
        breached = {key: orders[key]["breaches"][incident] for key in found if incident in orders[key]["breaches"]}
        delays = sorted(  # from the breach to the first alert raised at or after it
            (min(at for at in opened[key] if at >= breach) - breach) / 60_000
            for key, breach in breached.items()
            if max(opened[key]) >= breach
        )
        scores.append(IncidentScore(
            incident, types, len(injected), len(found), len(opened),
            len(found) / len(injected) if injected else None,
            len(found) / len(opened) if opened else None,
            _quantile(delays, 0.5), _quantile(delays, 0.9),
            sum(1 for key, breach in breached.items() if min(opened[key]) < breach),
        ))  # fmt: skip
    return scores


def horizon_scores(
    truth: Iterable[Mapping[str, Any]], estimates: list[EstimateRow], baseline: Mapping[str, int]
) -> list[HorizonScore]:
    """Every estimate made before its order's delivery, scored by how long before arrival it was made;
    baseline: each order's naive arrival."""
    arrived = {_key(o): o["delivered_at_ms"] // 1000 * 1000 for o in truth if o["delivered_at_ms"]}  # scans: seconds
    by_horizon: dict[tuple[int, int], list[tuple[float, float, bool]]] = defaultdict(list)
    for key, at, eta, p10, p90 in estimates:
        delivered = arrived.get(key)
        if delivered is None or at >= delivered or key not in baseline:
            continue
        ahead_h = (delivered - at) / HOUR_MS
        horizon = next(h for h in HORIZONS_H if h[0] <= ahead_h < h[1] or h is HORIZONS_H[-1])
        by_horizon[horizon].append((abs(eta - delivered) / HOUR_MS, abs(baseline[key] - delivered) / HOUR_MS,
                                    p10 <= delivered <= p90))  # fmt: skip
    return [
        HorizonScore(
            f"{low}-{high} h" if high < 24 * 30 else f"{low} h or more",
            len(scored),
            statistics.mean(error for error, _, _ in scored),
            statistics.mean(naive for _, naive, _ in scored),
            sum(inside for _, _, inside in scored) / len(scored),
        )
        for (low, high), scored in sorted(by_horizon.items())
    ]


def _key(order: Mapping[str, Any]) -> str:
    """A truth order's key, as OrderTruth.key and the queries below (channel || '|' || order_id) make it."""
    return f"{order['channel']}|{order['order_id']}"


def _quantile(values: list[float], q: float) -> float | None:
    return values[min(int(q * len(values)), len(values) - 1)] if values else None


# --- running it -------------------------------------------------------------------------------


def evaluate(scenario: str, seed: int, orders: int, out: Path | None, report: Report) -> dict[str, Any]:
    from jobs.cli import clickhouse, local_stack, prepare_database

    with tempfile.TemporaryDirectory(prefix="orderscope-evaluate-") as state_dir:
        env = isolated_env(Path(state_dir))
        settings = Settings.from_env(env)
        stack = local_stack(settings)
        report("== 1/4 a local stack of its own (Kafka, ClickHouse)")
        stack.up(fresh=True, report=report)
        try:
            prepare_database(settings, report)
            before, times = WARM_UP
            warm_up = simulate(orders * times, seed + 1, DAY_START - before, "baseline")
            day = simulate(orders, seed, DAY_START, scenario)
            report(f"== 2/4 an ordinary day {before.days} days before ({len(warm_up.orders)} orders), read by the job")
            _run(env, settings, _recorded(warm_up.messages), report)
            report(f"== 3/4 the scenario's day: {scenario}, {orders} orders, seed {seed}")
            _run(env, settings, _recorded(day.messages), report)
            report(
                "  then time goes on: one quiet signal two days after the day's last record, so that every "
                "check due by then falls due (a replay ends before event time passes its last checks)"
            )
            _run(env, settings, [_quiet_signal(min(max(m.ts_ms for m in day.messages) + 2 * DAY_MS, now_ms()))], report)
            report("== 4/4 scoring against the simulator's truth")
            results = _score(clickhouse(settings).connect(), settings.bootstrap_servers, day, scenario, seed)
        finally:
            stack.down(report=report)
    _print(results, report)
    if out is not None:
        out.write_text(json.dumps(results, indent=1))
        report(f"written to {out}")
    return results


def _recorded(messages: Iterable[Message]) -> list[kafka.RecordedMessage]:
    return [kafka.RecordedMessage(**message.line()) for message in messages]


def _quiet_signal(at_ms: int) -> kafka.RecordedMessage:
    """A signal that concerns no order (an idle port's congestion index), only to move event time on."""
    signal = {"type": "port_congestion", "port": "CNNGB", "index": 10, "ts": payloads.iso_utc(at_ms)}
    return kafka.RecordedMessage(topics.RAW_SIGNALS, None, payloads.dumps(signal), at_ms)


def _run(env: dict[str, str], settings: Settings, messages: list[kafka.RecordedMessage], report: Report) -> None:
    sent = kafka.replay(settings.bootstrap_servers, messages)
    report(f"  {sent} raw events sent; the job reads them until idle")
    job = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "job", "run", "--until-idle", "5"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}, **env},
        cwd=PROJECT_ROOT,
        check=False,
    )  # fmt: skip
    if job.returncode != 0:
        raise RuntimeError(f"the job failed (exit {job.returncode}); its output is above")


def _score(client: Any, bootstrap_servers: str, day: Simulation, scenario: str, seed: int) -> dict[str, Any]:
    truth = [vars(order) for order in day.orders]
    keys = {_key(order) for order in truth}
    alerts = _raised(bootstrap_servers, keys)
    estimates = [row for row in client.query(
        "SELECT channel || '|' || order_id, toUnixTimestamp64Milli(health_at), toUnixTimestamp64Milli(eta), "
        "toUnixTimestamp64Milli(eta_p10), toUnixTimestamp64Milli(eta_p90) FROM order_health_history FINAL "
        "WHERE eta IS NOT NULL"
    ).result_rows if row[0] in keys]  # fmt: skip
    baseline = {key: at for key, at in client.query(
        "SELECT channel || '|' || order_id, toUnixTimestamp64Milli(ifNull(any(promised_at), "
        f"min(paid.at) + INTERVAL {NAIVE_TRANSIT_H} HOUR)) "
        "FROM (SELECT channel, order_id, at FROM order_events FINAL WHERE status = 'paid') AS paid "
        "LEFT JOIN (SELECT channel, order_id, promised_at FROM orders_current FINAL) AS current "
        "USING (channel, order_id) GROUP BY channel, order_id"
    ).result_rows if key in keys}  # fmt: skip
    return {
        "scenario": scenario,
        "seed": seed,
        "orders": len(truth),
        "incidents": [asdict(score) for score in incident_scores(truth, day.incidents, alerts)],
        "eta": [asdict(score) for score in horizon_scores(truth, estimates, baseline)],
        "eta_by_incident": {
            incident: [asdict(score) for score in horizon_scores(slowed, estimates, baseline)]
            for incident in day.incidents
            if incident in DELAYING and (slowed := [order for order in truth if incident in order["incidents"]])
        },
    }


def _raised(bootstrap_servers: str, keys: set[str]) -> list[Alert]:
    """Each incident as the alerts topic told its opening: when it was raised, in event time (the table keeps
    when its facts began: a storm's warning, the step a late parcel is at)."""
    alerts = []
    for value in kafka.read_topic(bootstrap_servers, topics.ALERTS):
        step = json.loads(value)
        key = f"{step['channel']}|{step['order_id']}"
        if step["step"] == "opened" and key in keys:
            alerts.append((key, step["alert_type"], int(datetime.fromisoformat(step["at"]).timestamp() * 1000)))
    return alerts


def _print(results: dict[str, Any], report: Report) -> None:
    report(f"\n== {results['scenario']}, seed {results['seed']}, {results['orders']} orders")
    report(f"{'incident':<22} {'alert types':<40} {'injected':>8} {'recall':>7} {'precision':>9} {'delay p50/p90':>14} "
           f"{'early':>6}")  # fmt: skip
    for s in results["incidents"]:
        delay = "-" if s["delay_p50_min"] is None else f"{s['delay_p50_min']:.0f}/{s['delay_p90_min']:.0f} min"
        report(f"{s['incident']:<22} {','.join(s['alert_types']):<40} {s['injected']:>8} {_pct(s['recall']):>7} "
               f"{_pct(s['precision']):>9} {delay:>14} {s['before_breach']:>6}")  # fmt: skip
    _print_horizons("every order", results["eta"], report)
    for incident, scores in results["eta_by_incident"].items():
        _print_horizons(f"the orders {incident} slowed", scores, report)


def _print_horizons(whose: str, scores: list[dict[str, Any]], report: Report) -> None:
    report(f"\narrivals of {whose}")
    report(f"{'hours before arrival':<20} {'estimates':>9} {'ETA error':>10} {'baseline':>9} {'p10..p90':>9}")
    for h in scores:
        report(f"{h['hours_before_arrival']:<20} {h['estimates']:>9} {h['eta_error_h']:>8.1f} h "
               f"{h['baseline_error_h']:>7.1f} h {_pct(h['within_p10_p90']):>9}")  # fmt: skip


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"
