"""The bench's arithmetic: percentiles with timeouts, producer lines, process trees."""

from __future__ import annotations

import base64

from connectors.kafka import RecordedMessage
from jobs.bench.freshness import PROBE_TIMEOUT_S, Percentiles, Probe
from jobs.bench.resources import process_tree
from jobs.bench.traffic import producer_line


def _probe(latency_ms: float | None) -> Probe:
    return Probe("BENCH-1", 5000, 0.0, latency_ms)


def test_timed_out_probes_count_at_the_timeout_and_are_never_dropped() -> None:
    probes = [_probe(float(ms)) for ms in range(1, 99)] + [_probe(None), _probe(None)]

    figures = Percentiles.of(probes)

    assert (figures.probes, figures.timeouts) == (100, 2)
    assert figures.p50 == 50.0
    assert figures.p99 == PROBE_TIMEOUT_S * 1000


def test_producer_line_carries_the_exact_bytes_replay_would_send_lone_surrogates_included() -> None:
    message = RecordedMessage("raw.orders.app", None, '{"x": "\udcff"}', 0)

    topic, key, value = producer_line(message).rstrip(b"\n").split(b"\t")

    assert (topic, key) == (b"raw.orders.app", b"-")
    assert base64.b64decode(value) == message.value.encode("utf-8", errors="surrogatepass")


def test_a_process_tree_leaves_out_the_parts_watched_on_their_own() -> None:
    parents = {1: 0, 10: 1, 11: 10, 12: 11, 20: 10, 21: 20}

    assert sorted(process_tree(10, parents, other_roots=frozenset({20}))) == [10, 11, 12]
    assert sorted(process_tree(20, parents)) == [20, 21]
