"""`make run`: the whole pipeline on the local stack, shown step by step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from connectors import kafka
from connectors.simulator.simulation import simulate
from jobs.cli import clickhouse, local_stack, prepare_database
from jobs.settings import Settings

Report = Callable[[str], None]
JOB_START_TIMEOUT_S = 180.0
SETTLE_S = 5.0
RESULTS_TIMEOUT_S = 180.0

DEMO_ORDERS = 1000
DEMO_START = datetime.fromisoformat("2026-11-21T00:00:00+08:00")
SAMPLE_QUERIES = (
    "SELECT channel, status, count() AS orders FROM orders GROUP BY channel, status ORDER BY channel, orders DESC",
    "SELECT customer_id, count() AS orders, groupArray(channel) AS channels FROM orders "
    "WHERE customer_id != '' GROUP BY customer_id ORDER BY orders DESC LIMIT 5",
    "SELECT at, status, source, detail FROM order_events FINAL "
    "WHERE (channel, order_id) = (SELECT 'tmall', '3910028811452201538') ORDER BY at",
    "SELECT source_topic, reason, dead_letters FROM dead_letter_counts ORDER BY dead_letters DESC LIMIT 8",
    "SELECT health_color, count() AS orders, any(health_reasons) AS example FROM orders "
    "GROUP BY health_color ORDER BY health_color",
    "SELECT alert_type, severity, count() AS open_alerts, any(reason) AS example FROM alerts FINAL "
    "WHERE resolved_at IS NULL GROUP BY alert_type, severity ORDER BY open_alerts DESC",
    "SELECT carrier, region_code, legs, remaining_hours_p10_p50_p90 FROM eta_lane_figures "
    "WHERE step = 'in_transit' AND condition = '' ORDER BY legs DESC LIMIT 5",
)


def run_demo(settings: Settings, recording: Path, report: Report) -> int:
    stack = local_stack(settings)
    report("== 1/5 local stack: a Kafka broker (KRaft) and ClickHouse (embedded chDB server)")
    stack.up(fresh=False, report=report)
    report("== 2/5 ClickHouse schema")
    prepare_database(settings, report)
    report("== 3/5 the order-visibility job on a local Flink runtime (thread mode, checkpoints on)")
    job_log = settings.state_dir / "job.log"
    job = _start_job(job_log, report, fresh=not _resumable(settings, report))
    try:
        report(f"== 4/5 traffic: {recording.name}, then a simulated day of {DEMO_ORDERS} orders")
        sent = kafka.replay(settings.bootstrap_servers, kafka.read_recording(recording))
        day = simulate(DEMO_ORDERS, seed=int(time.time()), start=DEMO_START)
        sent += kafka.replay(
            settings.bootstrap_servers,
            (kafka.RecordedMessage(**message.line()) for message in day.messages),
            on_progress=lambda n: report(f"  {n} simulated events sent") if n % 5000 == 0 else None,
        )
        report(f"sent {sent} raw events into Kafka ({len(day.malformed)} of them deliberately malformed)")
        report("== 5/5 waiting for the results in ClickHouse")
        _wait_until_settled(settings, job, report)
        _show(settings, job, sent, job_log, report)
        report("\nRunning. Ctrl-C stops the job and the stack.")
        while job.poll() is None:
            time.sleep(0.5)
        report(f"the job exited with code {job.returncode}; see {job_log}")
        return 1
    except KeyboardInterrupt:
        report("\nstopping ...")
        return 0
    finally:
        _stop_job(job)
        stack.down(report=report)


def _resumable(settings: Settings, report: Report) -> bool:
    from jobs.runner import resumable  # imports PyFlink

    if resumable(settings):
        return True
    report("the checkpoints hold state of an earlier version of the job: it starts fresh, reading the topics again")
    return False


def _start_job(log_path: Path, report: Report, fresh: bool) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        job = subprocess.Popen(
            [sys.executable, "-m", "jobs.cli", "job", "run", *(["--fresh"] if fresh else [])],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the demo, which then stops the job in order
        )
    deadline = time.monotonic() + JOB_START_TIMEOUT_S
    while b"running (id" not in log_path.read_bytes():
        if job.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the job did not start; see {log_path}")
        time.sleep(0.5)
    report(f"job running (pid {job.pid}, log {log_path})")
    return job


def _stop_job(job: subprocess.Popen[bytes]) -> None:
    if job.poll() is None:
        os.killpg(job.pid, signal.SIGINT)  # the runner cancels the job and keeps its checkpoint
        try:
            job.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)


def _counts(settings: Settings) -> tuple[int, int]:
    client = clickhouse(settings).connect()
    orders, dead = client.query(
        "SELECT (SELECT count() FROM orders), (SELECT count() FROM dead_letters FINAL)"
    ).result_rows[0]
    return int(orders), int(dead)


def _wait_until_settled(settings: Settings, job: subprocess.Popen[bytes], report: Report) -> None:
    """Until the counts in ClickHouse have not changed for SETTLE_S (the job writes within a second)."""
    last, since = (-1, -1), time.monotonic()
    deadline = since + RESULTS_TIMEOUT_S
    while time.monotonic() - since < SETTLE_S or last == (0, 0):
        if job.poll() is not None:
            raise RuntimeError("the job exited while processing; see its log")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no results in ClickHouse after {RESULTS_TIMEOUT_S:.0f} s; see the job log")
        counts = _counts(settings)
        if counts != last:
            report(f"  {counts[0]} orders, {counts[1]} dead letters in ClickHouse")
            last, since = counts, time.monotonic()
        time.sleep(1)


def _show(settings: Settings, job: subprocess.Popen[bytes], sent: int, log: Path, report: Report) -> None:
    report("\n== What is running")
    for part in local_stack(settings).status():
        report(f"  {part.name:<11} {part.address:<26} pid {part.pid}  log {part.log}")
    report(f"  {'flink job':<11} {'order-visibility':<26} pid {job.pid}  log {log}")
    orders, dead = _counts(settings)
    report(f"\n== {sent} raw events in; {orders} orders and {dead} dead letters in ClickHouse")
    client = clickhouse(settings).connect()
    for query in SAMPLE_QUERIES:
        report(f'\n$ orderscope sql "{query}"')
        report(client.raw_query(query, fmt="PrettyCompactMonoBlock").decode())
    report("== Query further")
    report('  .venv/bin/orderscope sql "SELECT status, count() FROM orders GROUP BY status"')
    report(
        f"  curl '{settings.clickhouse_endpoint}/?database={settings.clickhouse_database}' --data-binary 'SHOW TABLES'"
    )
    report(f"  any ClickHouse client (clickhouse-connect, Grafana, Superset) at {settings.clickhouse_endpoint}")
    report("  more traffic: .venv/bin/orderscope simulate --orders 5000 --rate 500 --scenario rainstorm")
