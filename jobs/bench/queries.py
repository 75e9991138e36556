"""`make bench-queries`: how fast analysts and dashboards are answered at scale, in the embedded server.

Fills a fresh database of its own server with generated rows, as the job would write them (every order
in three versions, canonical events in batches, so the tables hold many parts and materialized views
fire on every insert), then times over HTTP, as a dashboard asks: a point lookup of one order, each view
dashboards read, and each cookbook query (sql/queries/). Twice: as written, with merges stopped while
filling (every insert still its own part: the hard case for FINAL, as after a backlog written faster than
merges), and after every table is merged. Writes bench-results/queries.{json,md}.

    python -m jobs.bench.queries [--orders 1000000] [--events-per-order 10] [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.clickhouse import migrate
from connectors.local.stack import READY_TIMEOUT_S, embedded_clickhouse
from jobs.bench.results import git_facts, machine_facts
from jobs.cli import SQL_DIR, say

QUERIES_DIR = SQL_DIR / "queries"
DATABASE = "bench_queries"
PASSWORD = "bench-queries"
DAYS = 30  # of orders, paid evenly from START to END
START = datetime(2026, 10, 24, tzinfo=UTC)
END = START + timedelta(days=DAYS)
# The targets.
TARGET_POINT_P99_MS, TARGET_VIEW_MS, TARGET_COOKBOOK_MS = 50, 100, 1_000

# The generated world, as SQL over an order's number {n}; orders are paid every {ms} milliseconds from START.
PAID_AT = f"toDateTime64('{START:%Y-%m-%d %H:%M:%S}', 3, 'UTC') + toIntervalMillisecond(toUInt64({{n}} * {{ms}}))"
AMOUNT_FEN = "1000 + cityHash64({n}) % 200000"  # 10 to 2,010 yuan
CUSTOMERS, SPREAD = 400_000, 7919  # about 2.5 orders each; a prime scatters an order's customer
CUSTOMER_OF = f"{{n}} * {SPREAD} % {CUSTOMERS}"  # the customer of order {n}, as a number
CUSTOMER = f"concat('c', toString({CUSTOMER_OF}))"
CHANNELS = ("douyin", "tmall", "xiaohongshu", "wechat", "app", "pos")
CHANNEL = f"{list(CHANNELS)}[{{n}} % {len(CHANNELS)} + 1]"
CARRIER = "['zhongtong', 'yuantong', 'shunfeng', 'jd', 'ems'][{n} % 5 + 1]"
REGION = "toString(110000 + {n} % 300 * 100)"
FINAL_STATUS = "['delivered', 'completed', 'completed', 'completed', 'delivered', 'completed', 'completed', 'in_transit', 'paid', 'cancelled'][{n} % 10 + 1]"  # noqa: E501
COLOR = "if({n} % 10 IN (7, 8), ['green', 'green', 'yellow', 'red'][{n} % 4 + 1], 'green')"  # of the open ones
STEP = "['created', 'paid', 'allocated', 'picked', 'packed', 'shipped', 'in_transit', '', 'out_for_delivery', 'delivered'][{i} % 10 + 1]"  # noqa: E501
MERGED = ("orders_current", "order_journey", "kpi_channel_minute", "kpi_channel_day", "kpi_carrier_day")
STUCK = "no carrier scan for 40 h while in transit (red after 36 h)"


@dataclass(frozen=True)
class Timing:
    name: str
    kind: str  # point, view, cookbook, or alternative (a way not taken, timed for comparison)
    phase: str  # as written, or merged
    runs: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rows: int

    @property
    def target_ms(self) -> int | None:
        return {"point": TARGET_POINT_P99_MS, "view": TARGET_VIEW_MS, "cookbook": TARGET_COOKBOOK_MS}.get(self.kind)

    @property
    def met(self) -> bool | None:
        if self.target_ms is None:
            return None
        return (self.p99_ms if self.kind == "point" else self.max_ms) < self.target_ms

    @property
    def verdict(self) -> str:
        if self.met is None:
            return "comparison only"
        measured = "p99" if self.kind == "point" else "every run"
        return f"< {self.target_ms} ms ({measured}): {'met' if self.met else '**missed**'}"


# --- the data: generated in the server, shaped as the job writes it ---------------------------------


def _sql(template: str, n: str, ms: int) -> str:
    return template.format(n=n, ms=ms)


def _order_rows(version: int, first: int, count: int, ms: int) -> str:
    """orders_current rows of orders first .. first+count-1 at one version: 1 paid, 2 on the way, 3 now."""
    n = "number"
    paid, status = _sql(PAID_AT, n, ms), {1: "'paid'", 2: "'in_transit'", 3: _sql(FINAL_STATUS, n, ms)}[version]
    color = _sql(COLOR, n, ms) if version == 3 else "'green'"
    return f"""
        INSERT INTO orders_current (channel, order_id, customer_id, status, status_at, updated_at, waybills,
            amount_fen, region_code, promised_at, version, health_score, health_color, health_reasons, health_at,
            health_config, eta_basis, carrier, paid_at, purchased_at, first_update_at, delivered_at)
        SELECT {_sql(CHANNEL, n, ms)}, concat('B', toString({n})), {_sql(CUSTOMER, n, ms)}, {status},
            {paid} + toIntervalHour({version}) AS changed_at, changed_at, [concat('W', toString({n}))],
            {_sql(AMOUNT_FEN, n, ms)}, {_sql(REGION, n, ms)}, {paid} + toIntervalHour(72), {version},
            multiIf({color} = 'red', 20, {color} = 'yellow', 60, 100), {color},
            if({color} = 'green', [], ['{STUCK}']), changed_at, '2026-12-03.2', '',
            if({version} = 1, '', {_sql(CARRIER, n, ms)}), {paid}, {paid},
            if({version} = 1, NULL, {paid} + toIntervalSecond(300 + {n} * 37 % 3600)),
            if({version} = 3 AND {n} % 10 < 7, {paid} + toIntervalHour(20 + {n} % 60), NULL)
        FROM numbers({first}, {count})
    """


def _event_rows(first: int, count: int, per_order: int, ms: int) -> str:
    """Canonical events: the i-th event of order n is step i (a scan without a step at the 8th), 3 h apart."""
    n, i = f"intDiv(number, {per_order})", f"number % {per_order}"
    return f"""
        INSERT INTO order_events
        SELECT {_sql(CHANNEL, n, ms)}, concat('B', toString({n})), {_sql(PAID_AT, n, ms)} + toIntervalHour({i} * 3),
            hex(cityHash64(number)), {STEP.format(i=i)}, 'raw.bench', if({i} % 10 = 7, 'Hangzhou hub', ''),
            if({i} % 10 IN (0, 1), {_sql(AMOUNT_FEN, n, ms)}, NULL), {_sql(REGION, n, ms)},
            if({i} % 10 >= 5, {_sql(CARRIER, n, ms)}, '')
        FROM numbers({first}, {count})
    """


def _side_rows(orders: int, ms: int) -> list[str]:
    """A modification for every 10th order (1 in 17 failing), a message about every 5th, and their links."""
    return [
        f"""INSERT INTO modifications SELECT {_sql(CHANNEL, "number * 10", ms)}, concat('B', toString(number * 10)),
            {_sql(PAID_AT, "number * 10", ms)} + toIntervalMinute(30), ['address_change', 'expedite'][number % 2 + 1],
            number % 17 != 0, '' FROM numbers({orders // 10})""",
        f"""INSERT INTO customer_links SELECT concat('i', toString(number)), 'phone', concat('c', toString(number)),
            true, 1 FROM numbers({CUSTOMERS})""",
        f"""INSERT INTO service_messages SELECT {_sql(CHANNEL, "number * 5", ms)}, concat('B', toString(number * 5)),
            concat('i', toString({_sql(CUSTOMER_OF, "number * 5", ms)})),
            {_sql(PAID_AT, "number * 5", ms)} + toIntervalHour(2), ['chase'] FROM numbers({orders // 5})""",
    ]


def fill(client: Any, orders: int, events_per_order: int, report: Callable[[str], None]) -> dict[str, int]:
    ms = DAYS * 86_400_000 // orders
    batch = max(orders // 10, 1)
    for version in (1, 2, 3):
        for first in range(0, orders, batch):
            client.command(_order_rows(version, first, min(batch, orders - first), ms))
        report(f"  orders_current: {orders:,} orders at version {version}")
    events = orders * events_per_order
    for first in range(0, events, 1_000_000):
        client.command(_event_rows(first, min(1_000_000, events - first), events_per_order, ms))
        report(f"  order_events: {min(first + 1_000_000, events):,} of {events:,}")
    for statement in _side_rows(orders, ms):
        client.command(statement)
    report("  modifications, customer links and service messages written")
    return {table: rows for table, (rows, _) in stored(client, ("order_events", *MERGED)).items()}


def stored(client: Any, tables: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """Per table, its rows and its active parts (the more parts, the more FINAL has to merge)."""
    result = client.query(
        "SELECT table, sum(rows), count() FROM system.parts WHERE database = currentDatabase() AND active "
        "AND table IN {tables:Array(String)} GROUP BY table",
        parameters={"tables": list(tables)},
    )
    return {table: (rows, parts) for table, rows, parts in result.result_rows}


# --- the questions -----------------------------------------------------------------------------------


def views() -> dict[str, tuple[str, dict[str, Any]]]:
    week = {"since": (END - timedelta(days=7)).date()}
    return {
        "channel KPIs, last hour per minute": (
            "SELECT * FROM channel_kpis(since = {since:DateTime}, until = {until:DateTime}, step_min = 1)",
            {"since": END - timedelta(hours=1), "until": END},
        ),
        "channel KPIs, last 24 hours as one": (
            "SELECT * FROM channel_kpis(since = {since:DateTime}, until = {until:DateTime}, step_min = 0)",
            {"since": END - timedelta(days=1), "until": END},
        ),
        "first update per channel, 7 days": ("SELECT * FROM channel_first_update(since = {since:Date})", week),
        "carrier scorecard, 7 days": ("SELECT * FROM carrier_scorecard(since = {since:Date})", week),
        "at-risk orders, first 100": ("SELECT * FROM at_risk_orders LIMIT 100", {}),
        "at-risk by region": ("SELECT * FROM at_risk_by_region", {}),
    }


# The same question as at_risk_by_region, the newest version of each order found by argMax instead of FINAL.
ALTERNATIVES: dict[str, tuple[str, dict[str, Any]]] = {
    "at-risk by region, argMax instead of FINAL": (
        """SELECT region_code, countIf(color = 'red') AS red, countIf(color = 'yellow') AS yellow FROM (
                SELECT argMax(ifNull(region_code, ''), version) AS region_code, argMax(health_color, version) AS color,
                    argMax(status, version) AS status
                FROM orders_current GROUP BY channel, order_id)
               WHERE color IN ('yellow', 'red')
                   AND status NOT IN ('delivered', 'completed', 'cancelled', 'returning', 'returned')
               GROUP BY region_code ORDER BY red DESC, yellow DESC""",
        {},
    ),
}


def cookbook(orders: int) -> dict[str, dict[str, Any]]:
    return {
        "where_is_my_order": {"order_id": f"B{orders // 3}", "channel": ""},
        "at_risk_by_region": {},
        "channel_first_update_latency": {"since": (END - timedelta(days=7)).date()},
        "carrier_on_time_ranking": {"since": (END - timedelta(days=7)).date()},
        "customer_journey": {"customer_id": f"c{orders // 3 * SPREAD % CUSTOMERS}"},  # the customer of B{orders // 3}
        "rfm_segments": {"as_of": END},
        "repurchase": {"since": START.date(), "until": (START + timedelta(days=14)).date(), "within_days": 14},
        "quiet_after_high_value": {"min_fen": 150_000, "quiet_days": 7, "as_of": END},
    }


def timed(client: Any, query: str, parameters: Mapping[str, Any], runs: int) -> tuple[list[float], int]:
    """Milliseconds until the whole answer has arrived (as bytes: decoding it in Python is the client's
    cost, not the server's), per run after a warm-up run that also counts its rows."""
    rows = len(client.query(query, parameters=parameters).result_rows)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        client.raw_query(query, parameters=parameters, fmt="Native")
        times.append((time.perf_counter() - started) * 1000)
    return times, rows


def timing(name: str, kind: str, phase: str, times: list[float], rows: int) -> Timing:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return Timing(name, kind, phase, len(times), statistics.median(times), p99, ordered[-1], rows)


def measure(client: Any, orders: int, runs: int, phase: str, report: Callable[[str], None]) -> list[Timing]:
    def done(found: Timing) -> Timing:
        verdict = {True: "ok", False: f"OVER {found.target_ms} ms", None: "(comparison)"}[found.met]
        report(
            f"  {found.kind:<8} {found.name:<44} p50 {found.p50_ms:7.1f} ms  p99 {found.p99_ms:7.1f}  "
            f"max {found.max_ms:7.1f}  ({found.rows} rows) {verdict}"
        )
        return found

    point = "SELECT * FROM orders WHERE channel = {channel:String} AND order_id = {order_id:String}"
    times = []
    for n in random.Random(7).sample(range(orders), min(orders, runs * 10)):
        started = time.perf_counter()
        client.query(point, parameters={"channel": CHANNELS[n % len(CHANNELS)], "order_id": f"B{n}"})
        times.append((time.perf_counter() - started) * 1000)
    timings = [done(timing("one order by channel and id", "point", phase, times, 1))]
    for kind, questions in (("view", views()), ("alternative", ALTERNATIVES)):
        for name, (query, parameters) in questions.items():
            timings.append(done(timing(name, kind, phase, *timed(client, query, parameters, runs))))
    for name, parameters in cookbook(orders).items():
        query = (QUERIES_DIR / f"{name}.sql").read_text(encoding="utf-8")
        timings.append(done(timing(name, "cookbook", phase, *timed(client, query, parameters, max(runs // 4, 3)))))
    return timings


# --- running it ---------------------------------------------------------------------------------------


def markdown(facts: Mapping[str, Any], timings: list[Timing]) -> str:
    lines = [
        "# Query bench", "",
        f"{facts['orders']:,} orders (three versions each), {facts['events']:,} canonical events; rows stored: "
        + ", ".join(f"{table} {rows:,}" for table, rows in facts["rows"].items())
        + f". Filled in {facts['fill_s']:.0f} s.",
        f"Commit {facts['git'].get('commit', '?')[:7]}, {facts['machine']['nproc']} cores, load at start "
        f"{facts['machine']['load_average_at_start'][0]:.1f}. Active parts per phase: {facts['parts']}.",
        "Times are until the whole answer has arrived over HTTP (Native format), warm.", "",
        "| phase | kind | question | p50 ms | p99 ms | max ms | rows | target |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for t in timings:
        lines.append(
            f"| {t.phase} | {t.kind} | {t.name} | {t.p50_ms:.1f} | {t.p99_ms:.1f} | {t.max_ms:.1f} | {t.rows} | "
            f"{t.verdict} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.bench.queries", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--events-per-order", type=int, default=10)
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each view (cookbook: a quarter)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    facts: dict[str, Any] = {"machine": machine_facts(), "git": git_facts(), "orders": args.orders,
                             "events": args.orders * args.events_per_order}  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="orderscope-bench-queries-") as run_dir,
        embedded_clickhouse(Path(run_dir), PASSWORD, READY_TIMEOUT_S, say, DATABASE) as target,
    ):
        migrate(target, SQL_DIR, report=lambda line: None)
        client = target.connect(send_receive_timeout=3600)
        say(f"== filling {DATABASE}: {args.orders:,} orders, {facts['events']:,} events (merges stopped)")
        client.command("SYSTEM STOP MERGES")
        started = time.monotonic()
        facts["rows"] = fill(client, args.orders, args.events_per_order, say)
        facts["fill_s"] = time.monotonic() - started
        facts["parts"] = {"as written": {table: parts for table, (_, parts) in stored(client, MERGED).items()}}
        say(f"== timing, as written (no merge yet; parts: {facts['parts']['as written']})")
        timings = measure(client, args.orders, args.runs, "as written", say)
        say("== merging every table, as background merges do in time; then timing again")
        client.command("SYSTEM START MERGES")
        for table in MERGED:
            client.command(f"OPTIMIZE TABLE {table} FINAL")
        facts["parts"]["merged"] = {table: parts for table, (_, parts) in stored(client, MERGED).items()}
        timings += measure(client, args.orders, args.runs, "merged", say)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "queries.json").write_text(
        json.dumps({**facts, "timings": [asdict(t) for t in timings]}, indent=1, default=str)
    )
    (args.out / "queries.md").write_text(markdown(facts, timings))
    judged = [t for t in timings if t.met is not None]
    met = sum(1 for t in judged if t.met)
    say(f"== {met} of {len(judged)} within target; written to {args.out}/queries.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
