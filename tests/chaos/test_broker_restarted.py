"""Fault injection on the real stack: the Kafka broker stopped and started again while the job runs.
The job waits for it, and every order still ends in its true status once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.cli import clickhouse, local_stack
from jobs.settings import Settings
from tests.support import assert_every_order_once_with_its_true_status, orderscope

pytestmark = pytest.mark.integration

ORDERS = 3000
OUTAGE_S = 45  # longer than the offset probe's 30 s request timeout: the idle watch must see it
JOB_TIMEOUT_S = 300


def test_the_job_outlives_a_broker_restart_and_every_order_ends_right_once(stack_env: dict[str, str]) -> None:
    folder, settings = Path(stack_env["ORDERSCOPE_STATE_DIR"]), Settings.from_env(stack_env)
    recording = folder / "day.jsonl"
    orderscope(stack_env, "simulate", "--orders", str(ORDERS), "--seed", "22", "--out", str(recording))
    orderscope(stack_env, "replay", str(recording))
    job = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "job", "run", "--until-idle", "5", "--fresh"],
        env={**os.environ, **stack_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output = run_through_a_broker_outage(job, settings)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)  # the CLI and its JVM, when the test failed
            job.wait(timeout=30)
    assert job.returncode == 0, output[-3000:]
    assert "Kafka is out of reach" in output
    truth = json.loads(recording.with_suffix(".truth.json").read_text())
    assert_every_order_once_with_its_true_status(truth, clickhouse(settings).connect())


def run_through_a_broker_outage(job: subprocess.Popen[str], settings: Settings) -> str:
    """Once the job has written, the broker goes away for OUTAGE_S and comes back; returns what the job printed."""
    client, deadline = clickhouse(settings).connect(), time.monotonic() + JOB_TIMEOUT_S
    while not client.query("SELECT count() FROM orders_current").result_rows[0][0]:
        assert job.poll() is None, "the job ended before the broker went away"
        assert time.monotonic() < deadline, "no output within the start-up timeout"
        time.sleep(0.2)
    broker = local_stack(settings).part("kafka")
    broker.stop()
    time.sleep(OUTAGE_S)
    assert job.poll() is None, "the job gave up while the broker was away"
    broker.start()
    output, _ = job.communicate(timeout=JOB_TIMEOUT_S)
    return output
