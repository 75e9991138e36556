"""The bench's arithmetic: percentiles with timeouts, producer lines, process trees, costs per record."""

from __future__ import annotations

import base64
from datetime import datetime
from pathlib import Path
from typing import Any

from connectors.kafka import RecordedMessage
from connectors.simulator.simulation import simulate
from jobs.bench.costs import JobCosts, OfflineCosts, job_costs, offline_costs
from jobs.bench.freshness import PROBE_TIMEOUT_S, Percentiles, Probe
from jobs.bench.report import cost_breakdown
from jobs.bench.resources import process_tree
from jobs.bench.results import BenchResults
from jobs.bench.silence import silence_cost
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


def test_offline_costs_time_every_step_over_every_record_of_the_sample(tmp_path: Path) -> None:
    day = simulate(60, 3, datetime.fromisoformat("2026-11-21T00:00:00+08:00"))
    lines = tmp_path / "day.lines"
    lines.write_bytes(b"".join(producer_line(message) for message in day.messages))

    costs = offline_costs(lines, records=500)

    assert costs.records == min(500, len(day.messages))
    assert set(costs.us_per_record) == {"normalize", "vehicles", "waybills", "customers", "orders", "kpis"}
    assert all(us > 0 for us in costs.us_per_record.values())


class StatsTable:
    """operator_stats as the ClickHouse client returns it: one row per operator instance."""

    def __init__(self, rows: list[tuple[str, int, float]]) -> None:
        self.result_rows = rows

    def query(self, sql: str) -> Any:
        assert "operator_stats FINAL" in sql
        return self


def test_job_costs_sum_subtasks_and_divide_by_the_raw_records_normalized() -> None:
    table = StatsTable([("normalize-0", 600, 0.3), ("normalize-1", 400, 0.2), ("orders-0", 900, 0.1),
                        ("clickhouse writer-1", 5000, 0.05)])  # fmt: skip

    costs = job_costs(table)

    assert costs is not None and costs.raw_records == 1000
    assert costs.us_per_record == {"normalize": 500.0, "orders": 100.0, "clickhouse writer": 50.0}
    assert job_costs(StatsTable([])) is None


def test_the_report_puts_each_step_beside_its_cost_in_the_job() -> None:
    results = BenchResults(datetime.now().astimezone(), "make bench", {}, {}, {"nproc": 2}, {})
    results.offline_costs = OfflineCosts(1000, {"normalize": 20.0, "orders": 30.0})
    results.job_costs = JobCosts(1000, {"normalize": 60.0, "clickhouse writer": 5.0})

    costs = cost_breakdown(results)

    assert costs is not None
    assert costs["steps"]["normalize"] == {"offline": 20.0, "in_job": 60.0}
    assert costs["steps"]["clickhouse writer"] == {"offline": None, "in_job": 5.0}
    assert (costs["offline_total"], costs["python_in_job_total"]) == (50.0, 65.0)


def test_the_silence_bench_finds_each_quiet_order_going_yellow_red_then_missing_its_promise() -> None:
    said: list[str] = []
    cost = silence_cost(200, said.append)
    # yellow at 15 min, red at 3 h, the promise's warning, the promise missed: four changes each
    assert cost.changes == 4 * 200
    assert cost.index_entries == 200 and cost.open_orders == 200
    assert cost.busiest_hour_changes <= cost.changes and cost.view_bytes > 0
