"""Scale-out: the job on a standalone Flink session cluster, its JobManager and TaskManagers separate processes."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from connectors.local.flink_cluster import FlinkSession
from jobs.cli import clickhouse
from jobs.settings import Settings
from tests.support import CONTRACT_EXAMPLES, free_ports, orderscope

pytestmark = pytest.mark.integration

TMALL_ORDER = "3910028811452201538"
OUTPUT_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def session(stack_env: dict[str, str]) -> Iterator[FlinkSession]:
    """A cluster of a JobManager and two TaskManagers on free ports, its state in the stack's state dir."""
    rest_port, rpc_port = free_ports(2)
    ports = ["--rest-port", str(rest_port), "--rpc-port", str(rpc_port)]
    try:
        orderscope(stack_env, "cluster", "up", "--taskmanagers", "2", *ports)
        yield FlinkSession(f"http://127.0.0.1:{rest_port}")
    finally:
        orderscope(stack_env, "cluster", "down", *ports)


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
    submitted = orderscope(stack_env, "job", "submit", "--cluster", session.url)
    match = re.search(r"job submitted: ([0-9a-f]{32})", submitted)
    assert match, submitted
    job_id = match.group(1)
    try:
        orderscope(stack_env, "replay", str(CONTRACT_EXAMPLES / "orders.jsonl"))
        wait_for_tmall_order_delivered(stack_env, session, job_id)
        assert session.job_taskmanagers(job_id) == {"taskmanager-1", "taskmanager-2"}
    finally:
        orderscope(stack_env, "job", "cancel", job_id, "--cluster", session.url)
