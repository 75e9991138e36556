"""Fault injection on the real stack: the job killed with SIGKILL mid-stream, then started again,
loses nothing and counts nothing twice (the simulator's ground truth is the oracle)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from jobs.cli import clickhouse
from jobs.settings import Settings
from tests.support import assert_every_order_once_with_its_true_status, orders_not_as_true, orderscope

pytestmark = pytest.mark.integration

ORDERS = 3000
STARTUP_TIMEOUT_S = 180


def completed_checkpoints(settings: Settings) -> int:
    return sum(1 for _ in settings.checkpoints.glob("*/chk-*/_metadata"))


def has_written(client: Any) -> bool:
    return bool(client.query("SELECT count() FROM orders_current").result_rows[0][0])


def wait_for_a_checkpoint_and_output(job: subprocess.Popen[bytes], settings: Settings, client: Any) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not (completed_checkpoints(settings) and has_written(client)):
        assert job.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint and no output within the start-up timeout"
        time.sleep(0.2)


def test_a_job_killed_mid_stream_resumes_from_its_checkpoint_and_every_order_ends_right_once(
    stack_env: dict[str, str],
) -> None:
    folder, settings = Path(stack_env["ORDERSCOPE_STATE_DIR"]), Settings.from_env(stack_env)
    recording = folder / "day.jsonl"
    orderscope(stack_env, "simulate", "--orders", str(ORDERS), "--seed", "21", "--out", str(recording))
    truth = json.loads(recording.with_suffix(".truth.json").read_text())
    orderscope(stack_env, "replay", str(recording))
    client = clickhouse(settings).connect()
    job = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "job", "run", "--until-idle", "5", "--fresh"],
        env={**os.environ, **stack_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill reaches the JVM too
    )
    try:
        wait_for_a_checkpoint_and_output(job, settings, client)
        pending_at_kill = orders_not_as_true(truth, client)
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # the CLI and its JVM, also when the test fails
        job.wait(timeout=30)
    assert pending_at_kill, "every order was done before the kill: it was not mid-stream"

    output = orderscope(stack_env, "job", "run", "--until-idle", "5")

    assert "resuming from" in output
    assert_every_order_once_with_its_true_status(truth, client)
