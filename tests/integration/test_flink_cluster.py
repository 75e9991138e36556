"""Scale-out: the job on a standalone Flink session cluster, its JobManager and TaskManagers separate
processes; and a TaskManager killed under it."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from connectors.local.flink_cluster import FlinkCluster, FlinkSession
from connectors.local.process import free_ports
from jobs.cli import clickhouse
from jobs.settings import Settings
from tests.support import CONTRACT_EXAMPLES, orders_not_as_true, orderscope

pytestmark = pytest.mark.integration

TMALL_ORDER = "3910028811452201538"
OUTPUT_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def ports() -> list[str]:
    rest_port, rpc_port = free_ports(2)
    return ["--rest-port", str(rest_port), "--rpc-port", str(rpc_port)]


@pytest.fixture(scope="module")
def session(stack_env: dict[str, str], ports: list[str]) -> Iterator[FlinkSession]:
    """A cluster of a JobManager and two TaskManagers on free ports, its state in the stack's state dir."""
    try:
        orderscope(stack_env, "cluster", "up", "--taskmanagers", "2", *ports)
        yield FlinkSession(f"http://127.0.0.1:{ports[1]}")
    finally:
        orderscope(stack_env, "cluster", "down", *ports)


def submitted_job(env: dict[str, str], session: FlinkSession) -> str:
    submitted = orderscope(env, "job", "submit", "--cluster", session.url)
    match = re.search(r"job submitted: ([0-9a-f]{32})", submitted)
    assert match, submitted
    return match.group(1)


def wait_for_tmall_order_delivered(env: dict[str, str], session: FlinkSession, job_id: str) -> None:
    client = clickhouse(Settings.from_env(env)).connect()
    deadline = time.monotonic() + OUTPUT_TIMEOUT_S
    rows: Sequence[Sequence[Any]] = []
    while time.monotonic() < deadline:
        query = "SELECT status, waybills FROM orders WHERE order_id = {id:String}"
        rows = client.query(query, parameters={"id": TMALL_ORDER}).result_rows
        if rows == [("delivered", ["YT7781234455661"])]:
            return
        time.sleep(1)
    job = session.job(job_id)
    pytest.fail(
        f"The Tmall order was not delivered within {OUTPUT_TIMEOUT_S} s (orders has {rows}); "
        f"job {job['state']}, exceptions:\n{session.exceptions(job_id)}"
    )


def test_job_submitted_to_two_taskmanagers_runs_on_both_and_delivers_the_tmall_order(
    stack_env: dict[str, str], session: FlinkSession
) -> None:
    job_id = submitted_job(stack_env, session)
    try:
        orderscope(stack_env, "replay", str(CONTRACT_EXAMPLES / "orders.jsonl"))
        wait_for_tmall_order_delivered(stack_env, session, job_id)
        assert session.job_taskmanagers(job_id) == {"taskmanager-1", "taskmanager-2"}
    finally:
        orderscope(stack_env, "job", "cancel", job_id, "--cluster", session.url)


def completed_checkpoints(session: FlinkSession, job_id: str) -> int:
    return int(session.get(f"/jobs/{job_id}/checkpoints")["counts"]["completed"])


def test_a_taskmanager_killed_after_two_checkpoints_loses_nothing_and_doubles_nothing(
    stack_env: dict[str, str], session: FlinkSession, ports: list[str]
) -> None:
    settings = Settings.from_env(stack_env)
    recording = settings.state_dir / "day.jsonl"
    orderscope(stack_env, "simulate", "--orders", "3000", "--seed", "23", "--out", str(recording))
    # The day in two halves: the kill comes after two checkpoints of the first, whatever the machine's pace,
    # and the second finishes orders begun in the first, on the state the job recovered.
    lines = recording.read_text(encoding="utf-8").splitlines(keepends=True)
    halves = (recording.with_name("day-first.jsonl"), recording.with_name("day-second.jsonl"))
    halves[0].write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")
    halves[1].write_text("".join(lines[len(lines) // 2 :]), encoding="utf-8")
    job_id = submitted_job(stack_env, session)
    try:
        orderscope(stack_env, "replay", str(halves[0]))
        checkpoints = completed_checkpoints(session, job_id) + 2
        deadline = time.monotonic() + OUTPUT_TIMEOUT_S
        while completed_checkpoints(session, job_id) < checkpoints:
            assert time.monotonic() < deadline, f"fewer than two checkpoints in {OUTPUT_TIMEOUT_S} s"
            time.sleep(0.5)
        truth = json.loads(recording.with_suffix(".truth.json").read_text())
        client = clickhouse(settings).connect()
        cluster = FlinkCluster(settings.state_dir / "flink-cluster", int(ports[1]), int(ports[3]))
        taskmanager = cluster.taskmanager(2).pid()
        assert taskmanager is not None
        os.killpg(taskmanager, signal.SIGKILL)
        orderscope(stack_env, "cluster", "up", "--taskmanagers", "2", *ports)  # a new one takes its place
        assert orders_not_as_true(truth, client), "the second half should leave orders to finish"
        orderscope(stack_env, "replay", str(halves[1]))

        while wrong := orders_not_as_true(truth, client):
            if time.monotonic() > deadline + OUTPUT_TIMEOUT_S:
                journeys = client.query(
                    "SELECT channel, order_id, groupArray((at, status, source)) FROM order_events FINAL "
                    "WHERE (channel, order_id) IN {keys:Array(Tuple(String, String))} GROUP BY channel, order_id",
                    parameters={"keys": [key for key, _ in wrong[:3]]},
                ).result_rows
                pytest.fail(
                    f"{len(wrong)} orders not as true, e.g. {wrong[:5]}; their journeys {journeys}; "
                    f"job {session.job(job_id)['state']}, exceptions:\n{session.exceptions(job_id)[:3000]}"
                )
            time.sleep(1)
        assert "taskmanager-2" in session.exceptions(job_id)  # the job did lose it, and recovered
        assert session.job_taskmanagers(job_id) == {"taskmanager-1", "taskmanager-2"}
    finally:
        orderscope(stack_env, "job", "cancel", job_id, "--cluster", session.url)
