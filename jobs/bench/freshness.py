"""Freshness, measured by probes: produce a new order, poll ClickHouse until it is queryable.

Every PROBE_EVERY_S a new app order with a unique id goes to raw.orders.app
(the app's contract format: an event `created` with an ISO time with offset),
its time taken just before the send. Every POLL_EVERY_S one query asks
ClickHouse which of the pending probes are visible in orders_current; a probe's
freshness is the time the answer came back minus its send time (an upper bound,
by at most one query). A probe not visible after PROBE_TIMEOUT_S is a timeout:
kept, counted and reported, never dropped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from kafka import KafkaProducer

from connectors.clickhouse import ClickHouseTarget
from schemas.topics import RAW_ORDER_TOPICS

PROBE_EVERY_S = 0.25
POLL_EVERY_S = 0.02
PROBE_TIMEOUT_S = 30.0
CHINA = timezone(timedelta(hours=8))
VISIBLE = (
    "SELECT order_id FROM orders_current WHERE channel = 'app' AND order_id IN {ids:Array(String)} GROUP BY order_id"
)


@dataclass(frozen=True)
class Probe:
    order_id: str
    rate_eps: int
    sent_at_s: float  # since the bench started
    latency_ms: float | None  # None: not visible within PROBE_TIMEOUT_S

    @property
    def timed_out(self) -> bool:
        return self.latency_ms is None


def probe_payload(order_id: str, at: datetime) -> bytes:
    """A new order as the app sends it (shared/contracts/examples/app.json), with no buyer identifiers."""
    payload = {
        "event": "created",
        "order_id": order_id,
        "amount": 1.0,
        "currency": "CNY",
        "ts": at.astimezone(CHINA).isoformat(timespec="milliseconds"),
    }
    return json.dumps(payload).encode()


class Prober:
    """Sends probes and watches for them, on one Kafka producer and one ClickHouse client."""

    def __init__(self, bootstrap_servers: str, clickhouse: ClickHouseTarget, clock_zero: float, run_id: str) -> None:
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=0)
        self._client = clickhouse.connect()
        self._zero = clock_zero
        self._run_id = run_id
        self._count = 0

    def close(self) -> None:
        self._producer.close()
        self._client.close()

    def probe_for(self, seconds: float, rate_eps: int) -> list[Probe]:
        """Probe every PROBE_EVERY_S for `seconds`, then wait for the last ones (each bounded by the timeout)."""
        pending: dict[str, float] = {}  # order id: monotonic send time
        done: list[Probe] = []
        stop_sending = time.monotonic() + seconds
        next_probe = time.monotonic()
        while pending or time.monotonic() < stop_sending:
            now = time.monotonic()
            if now >= next_probe and now < stop_sending:
                order_id, sent = self._send()
                pending[order_id] = sent
                next_probe += PROBE_EVERY_S
            if pending:
                done += self._collect(pending, rate_eps)
            time.sleep(POLL_EVERY_S)
        return sorted(done, key=lambda probe: probe.sent_at_s)

    def _send(self) -> tuple[str, float]:
        self._count += 1
        order_id = f"BENCH-{self._run_id}-{self._count:06d}"
        sent = time.monotonic()
        payload = probe_payload(order_id, datetime.now(CHINA))
        self._producer.send(RAW_ORDER_TOPICS["app"], key=order_id.encode(), value=payload)
        self._producer.flush()
        return order_id, sent

    def _collect(self, pending: dict[str, float], rate_eps: int) -> list[Probe]:
        """The pending probes now visible or given up on, taken out of pending."""
        visible = {row[0] for row in self._client.query(VISIBLE, parameters={"ids": list(pending)}).result_rows}
        answered = time.monotonic()
        finished = []
        for order_id, sent in list(pending.items()):
            if order_id in visible or answered - sent > PROBE_TIMEOUT_S:
                latency_ms = (answered - sent) * 1000 if order_id in visible else None
                finished.append(Probe(order_id, rate_eps, sent - self._zero, latency_ms))
                del pending[order_id]
        return finished


@dataclass(frozen=True)
class Percentiles:
    """Freshness of a set of probes; timeouts enter at PROBE_TIMEOUT_S, a lower bound of their latency."""

    probes: int
    timeouts: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, probes: list[Probe]) -> Percentiles:
        latencies = sorted(PROBE_TIMEOUT_S * 1000 if p.latency_ms is None else p.latency_ms for p in probes)
        timeouts = sum(p.timed_out for p in probes)
        return cls(
            len(probes),
            timeouts,
            _nearest_rank(latencies, 50),
            _nearest_rank(latencies, 95),
            _nearest_rank(latencies, 99),
            round(latencies[-1], 1) if latencies else None,
        )


def _nearest_rank(ordered: list[float], percent: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[max(math.ceil(percent / 100 * len(ordered)) - 1, 0)], 1)
