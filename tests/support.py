"""Helpers shared by the tests: the source contracts' examples, free loopback ports, the `orderscope` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer

from connectors.simulator import payloads
from jobs.settings import PROJECT_ROOT
from schemas import topics

CONTRACT_EXAMPLES = PROJECT_ROOT.parent / "shared" / "contracts" / "examples"


def example(name: str) -> Any:
    return json.loads((CONTRACT_EXAMPLES / name).read_text(encoding="utf-8"))


COMMAND_TIMEOUT_S = 300


def orderscope(env: dict[str, str], *args: str) -> str:
    """Run the `orderscope` command as a user would; returns what it printed."""
    result = subprocess.run(
        [sys.executable, "-m", "jobs.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"orderscope {' '.join(args)} failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    return result.stdout


def simulated_day_run(env: dict[str, str], name: str, orders: int, seed: int, scenario: str) -> dict[str, Any]:
    """A simulated day replayed into the stack and the job run over it until idle, from scratch; its truth."""
    recording = Path(env["ORDERSCOPE_STATE_DIR"]) / f"{name}.jsonl"
    orderscope(env, "simulate", "--orders", str(orders), "--seed", str(seed), "--scenario", scenario,
               "--out", str(recording))  # fmt: skip
    orderscope(env, "replay", str(recording))
    orderscope(env, "job", "run", "--until-idle", "5", "--fresh")
    truth: dict[str, Any] = json.loads(recording.with_suffix(".truth.json").read_text())
    return truth


def records_on(topic: str, bootstrap_servers: str) -> list[Any]:
    """Every record on a topic, its value read as JSON."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)  # fmt: skip
    try:
        return [json.loads(record.value) for record in consumer]
    finally:
        consumer.close()


def assert_every_order_once_with_its_true_status(truth: dict[str, Any], client: Any) -> None:
    """The simulator's oracle: each simulated order is in `orders` once, in its true final status."""
    assert not (wrong := orders_not_as_true(truth, client)), f"{len(wrong)} orders not as true, e.g. {wrong[:5]}"


def orders_not_as_true(truth: dict[str, Any], client: Any) -> list[tuple[tuple[str, str], Any]]:
    """Each simulated order missing from `orders` or in another status than its true one (other orders in
    the table are not looked at)."""
    expected = {(o["channel"], o["order_id"]): o["status"] for o in truth["orders"]}
    found: dict[tuple[str, str], list[str]] = {key: [] for key in expected}
    for channel, order_id, status in client.query("SELECT channel, order_id, status FROM orders").result_rows:
        found.get((channel, order_id), []).append(status)
    return [(key, statuses) for key, statuses in found.items() if statuses != [expected[key]]]


def move_event_time_to(env: dict[str, str], at_ms: int) -> None:
    """Event time moved on to at_ms, past every check due by then: a signal that concerns no order (an idle
    port's congestion index), replayed, then read by the job (every other partition is read to its end)."""
    signal = {"type": "port_congestion", "port": "CNNGB", "index": 10, "ts": payloads.iso_utc(at_ms)}
    line = Path(env["ORDERSCOPE_STATE_DIR"]) / f"time-{at_ms}.jsonl"
    line.write_text(json.dumps({"topic": topics.RAW_SIGNALS, "key": None, "value": json.dumps(signal), "ts_ms": at_ms}))
    orderscope(env, "replay", str(line))
    orderscope(env, "job", "run", "--until-idle", "5")
