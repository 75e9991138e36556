"""KPI windows in PyFlink 2.2 thread mode: a Python micro-batch tally operator (A) against Flink SQL window TVFs (B, C).

What it measures: the wall time, CPU time and throughput of one KPI step. For each of 3 dimensions (6 channels,
8 carriers, 30 regions) and 7 measures (orders, gmv_fen, first_update_ms, delivered, on_time, modifications,
modifications_failed), the step computes a sum and a count per 1-minute tumbling window and per 5-minute window
sliding by 1 minute, plus p50/p95 of first_update_ms. The input is deterministic (each batch is seeded by its
index). Facts come in batches of 500, with 3.6 ms of event time per fact, so 2M facts span 2 h. 5% of facts are
stamped 0-5 s early. The watermark is 10 s. Everything runs in thread mode at parallelism 1, with a bundle size
of 5000, and the results go to a DiscardingSink or a blackhole table.

    gen  generates the batches and discards them: the floor that every variant shares.
    A    key_by(0) -> KeyedProcessFunction `Tally`. It keeps per-minute tallies and fires minute m once the highest
         event time minus 10 s passes the end of m. Each firing emits the 1-minute and 5-minute rows as one pickled
         list. It counts late facts (their minute has already fired) and drops them.
    B    A Python flat_map explodes each batch into typed Rows. from_data_stream adds a rowtime,
         TO_TIMESTAMP_LTZ(at_ms, 3), with the watermark rt - 10 s. A view takes the UNION ALL of the 3 dimensions.
         TUMBLE 1 min and HOP 1/5 min windows GROUP BY with SUM/COUNT ... FILTER per measure and
         PERCENTILE(value, [0.5, 0.95]) FILTER. Both queries write to blackhole sinks in one statement set.
    C    A Python map turns each batch into one Row of 6 parallel arrays. SQL explodes it with CROSS JOIN UNNEST ...
         WITH ORDINALITY. A to_data_stream/from_data_stream round trip adds the rowtime, then the windows are as in B.
         (Parallel arrays are used because an ARRAY<ROW> column came out wrong in thread mode: every element was
         the batch's last row.)

Run from the repository root (NFACTS is rounded down to a multiple of 500, at least 500):
    .venv/bin/python docs/experiments/kpi_windows.py gen 2000000
    .venv/bin/python docs/experiments/kpi_windows.py A 2000000
    .venv/bin/python docs/experiments/kpi_windows.py B 2000000
    .venv/bin/python docs/experiments/kpi_windows.py C 2000000
    .venv/bin/python docs/experiments/kpi_windows.py A 1000 check   # also B, C: writes the window rows out
Each run prints one JSON line: exec_s (the job alone), proc_s (from the end of the imports, so including JVM
start-up), cpu_s (user+sys time of this process and its descendants; the JVM runs the Python functions in
embedded CPython), and the load average at the start and end. Unless `check` is given, the line is also appended to
$KPI_OUT/results.jsonl. A appends `rows=... late=...` to $KPI_OUT/a_stats.txt. `check` (meant for small runs) makes
each variant write its window rows to $KPI_OUT/check_MODE.txt as repr() tuples: (dim, key, window_start,
window_end, then a sum and a count for each of the 7 measures, then p50, p95). A writes epoch ms and two
percentile floats. The SQL variants write naive UTC datetimes, NULL sums for empty FILTERs and one [p50, p95]
array. To compare the files, key the rows by (dim, key, start, end) and normalise them.

Environment variables:
    NO_WINDOWS=1  (B, C) diagnostic: the exploded rows, with rowtime and watermark, go straight to a blackhole.
    NO_PCT=1      (B, C) leaves out the PERCENTILE aggregate.
    LATE=1        makes 0.1% of facts 20-30 s late, which is behind the 10 s watermark.
    EXTRA_CONF    "key=value;key=value" Flink options, set before the script's own settings, e.g.
                  EXTRA_CONF="table.exec.emit.late-fire.enabled=true".
    KPI_OUT       the directory for results.jsonl, a_stats.txt and check_*.txt (default: $TMPDIR/kpi_windows).
    JAVA_HOME     default: /usr/lib/jvm/java-17-openjdk-amd64.

Measured on 2026-12-04 on this 2-core machine, with PyFlink 2.2.1, Java 17 and Python 3.11. A test suite was
running at the same time, so the load average was 2-11. There were 3 runs of A, B and C at 2M facts and 2 runs at
1000 facts. Throughput is 2,000,000 / (exec_s at 2M facts - that variant's fastest exec_s at 1000 facts), which
leaves out start-up:
    A  235k-385k facts/s   (exec_s  8.9-12.2 s at 2M; 3.7-4.0 s at 1000)
    B   31k-45k  facts/s   (exec_s 53.1-73.2 s at 2M; 8.8-13.0 s at 1000)
    C   22k-29k  facts/s   (exec_s 76.7-100.1 s at 2M; 8.5-17.5 s at 1000)
    gen (the floor): exec_s 5.5-5.9 s at 2M. Single diagnostic runs at 2M: B NO_WINDOWS 21.9 s, C NO_WINDOWS
    34.2 s, B NO_PCT 31.6 s.
The window TVFs drop late rows (LATE=1) without counting them. A drops them too, but counts them: late=48 of
200,000 facts. The planner refuses late-fire (EXTRA_CONF="table.exec.emit.late-fire.enabled=true") for window
TVF aggregates with a TableException: "Currently, window table function based aggregate doesn't support early-fire
and late-fire configuration ...".
"""

import contextlib
import json
import os
import site
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from pyflink.common import Configuration, Row, Types, WatermarkStrategy
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.connectors.base import Sink
from pyflink.datastream.connectors.number_seq import NumberSequenceSource
from pyflink.datastream.functions import FlatMapFunction, KeyedProcessFunction, MapFunction, RuntimeContext
from pyflink.java_gateway import get_gateway
from pyflink.table import DataTypes, Schema, StreamTableEnvironment

# (at_ms, channel, carrier, region, measure, value)
Fact = tuple[int, str, str, str, str, int]
# (dim, key, window_start, window_end, 7 x (sum, count), p50, p95)
KpiRow = tuple[str | int | float | None, ...]

MODE = sys.argv[1]
NFACTS = int(sys.argv[2])
CHECK = len(sys.argv) > 3 and sys.argv[3] == "check"  # small runs: write results to files to compare A vs B
BATCH = 500
LATE = bool(os.environ.get("LATE"))
NO_PCT = bool(os.environ.get("NO_PCT"))
NO_WINDOWS = bool(os.environ.get("NO_WINDOWS"))
NB = max(1, NFACTS // BATCH)
HERE = Path(__file__).resolve().parent
OUT = Path(os.environ.get("KPI_OUT") or Path(tempfile.gettempdir(), "kpi_windows"))
load0 = Path("/proc/loadavg").read_text().split()[:3]
T_PROC0 = time.time()

FACT_FIELDS = ["at_ms", "channel", "carrier", "region", "measure", "value"]
FACT_TYPES = [Types.LONG(), Types.STRING(), Types.STRING(), Types.STRING(), Types.STRING(), Types.LONG()]
FACT_ROW = Types.ROW_NAMED(FACT_FIELDS, FACT_TYPES)
MEASURES = ["orders", "gmv_fen", "first_update_ms", "delivered", "on_time", "modifications", "modifications_failed"]
MIDX = {m: k for k, m in enumerate(MEASURES)}  # first_update_ms -> 2, so its sum is at 4 in a tally


class Gen(MapFunction):  # type: ignore[misc]
    """Batch index -> list of 500 fact tuples (deterministic; 3.6 ms of event time per fact, so 2M facts
    span 2 h; 5% of facts are 0-5 s early-stamped, i.e. out of order by up to 5 s)."""

    def open(self, ctx: RuntimeContext) -> None:
        self.channels = [f"ch{i}" for i in range(6)]
        self.carriers = [f"ca{i}" for i in range(8)]
        self.regions = [f"re{i:02d}" for i in range(30)]
        self.measures = list(MEASURES)
        self.highs = [1, 100000, 3600000, 1, 1, 3, 1]
        self.base = 1_767_225_600_000  # 2026-01-01T00:00Z, minute aligned

    def map(self, i: int) -> list[Fact]:
        import random

        r = random.Random(i)
        rnd = r.random
        chs, cas, res, mes, his = self.channels, self.carriers, self.regions, self.measures, self.highs
        t0 = self.base + i * BATCH * 3.6
        out = []
        for j in range(BATCH):
            at = int(t0 + j * 3.6)
            if rnd() < 0.05:
                at -= int(rnd() * 5000)
            if LATE and rnd() < 0.001:  # diagnostic only: 0.1% of facts 20-30 s late (beyond the 10 s watermark)
                at -= 20000 + int(rnd() * 10000)
            m = int(rnd() * 7)
            hi = his[m]
            out.append(
                (
                    at,
                    chs[int(rnd() * 6)],
                    cas[int(rnd() * 8)],
                    res[int(rnd() * 30)],
                    mes[m],
                    1 if hi == 1 else int(rnd() * hi),
                )
            )
        return out


def pct(s: list[int], q: float) -> float | None:  # linear interpolation like Flink's PERCENTILE; s sorted
    if not s:
        return None
    x = q * (len(s) - 1)
    lo = int(x)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (x - lo)


class Tally(KeyedProcessFunction):  # type: ignore[misc]
    """One key. minutes[minute] -> {(dim, key): [14 ints (sum,count per measure), samples]}.
    Fires minute m when max_event_time - 10 s >= end of m; emits 1-min rows for m and 5-min sliding rows
    for window [m-4, m+1) as one pickled list per firing. Late facts (minute already fired) are counted
    and dropped. End of input: a timer at the MAX watermark flushes everything left."""

    def open(self, ctx: RuntimeContext) -> None:
        self.minutes: dict[int, dict[tuple[str, str], list[list[int]]]] = {}
        self.max_ts = -1
        self.next_fire: int | None = None  # first minute not yet fired
        self.late = 0
        self.timer = False
        self.rows = 0
        self.chk: TextIO | None = (OUT / "check_A.txt").open("w") if CHECK else None  # closed in close()

    def process_element(self, batch: list[Fact], ctx: KeyedProcessFunction.Context) -> Iterator[list[KpiRow]]:
        if not self.timer:
            ctx.timer_service().register_event_time_timer(9223372036854775806)
            self.timer = True
        minutes = self.minutes
        nf = self.next_fire
        mx = self.max_ts
        for at, ch, ca, re_, me, v in batch:
            mi = at // 60000
            if nf is not None and mi < nf:
                self.late += 1
                continue
            if at > mx:
                mx = at
            d = minutes.get(mi)
            if d is None:
                d = minutes[mi] = {}
            k = MIDX[me] * 2
            for dk in (("channel", ch), ("carrier", ca), ("region", re_)):
                t = d.get(dk)
                if t is None:
                    t = d[dk] = [[0] * 14, []]
                a = t[0]
                a[k] += v
                a[k + 1] += 1
                if k == 4:  # first_update_ms: keep the samples for p50/p95
                    t[1].append(v)
        self.max_ts = mx
        if nf is None:
            nf = self.next_fire = min(minutes)
        last_closed = (mx - 10000) // 60000 - 1  # minute m is closed when (m+1)*60000 <= wm
        if last_closed >= nf:
            yield self.fire_upto(last_closed)

    def fire_upto(self, last: int) -> list[KpiRow]:
        assert self.next_fire is not None  # set by the first element, before any firing
        out: list[KpiRow] = []
        minutes = self.minutes
        for m in range(self.next_fire, last + 1):
            cur = minutes.get(m, {})
            for dk, (a, s) in cur.items():
                s.sort()
                out.append((dk[0], dk[1], m * 60000, (m + 1) * 60000, *a, pct(s, 0.5), pct(s, 0.95)))
            keys: set[tuple[str, str]] = set()
            for mm in range(m - 4, m + 1):
                if mm in minutes:
                    keys.update(minutes[mm])
            for dk in keys:
                acc = [0] * 14
                samples: list[int] = []
                for mm in range(m - 4, m + 1):
                    t = minutes.get(mm, {}).get(dk)
                    if t is not None:
                        for q, x in enumerate(t[0]):
                            acc[q] += x
                        samples += t[1]
                samples.sort()
                out.append(
                    (dk[0], dk[1], (m - 4) * 60000, (m + 1) * 60000, *acc, pct(samples, 0.5), pct(samples, 0.95))
                )
            minutes.pop(m - 4, None)
        self.next_fire = last + 1
        self.rows += len(out)
        if self.chk:
            for r in out:
                self.chk.write(repr(r) + "\n")
        return out

    def on_timer(self, ts: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[list[KpiRow]]:
        if self.next_fire is not None:
            yield self.fire_upto(max(self.minutes) + 4)

    def close(self) -> None:
        with (OUT / "a_stats.txt").open("a") as fh:
            fh.write(f"A n={NFACTS} rows={self.rows} late={self.late}\n")
        if self.chk:
            self.chk.close()


class Explode(FlatMapFunction):  # type: ignore[misc]
    def flat_map(self, batch: list[Fact]) -> Iterator[Row]:
        for f in batch:
            yield Row(*f)


class ToArrayRow(MapFunction):  # type: ignore[misc]
    """One Row per batch holding 6 parallel arrays (an ARRAY<ROW> column came out wrong in thread mode:
    every element of a batch's array was the batch's last row, so parallel arrays are used instead)."""

    def map(self, batch: list[Fact]) -> Row:
        return Row(*(list(col) for col in zip(*batch, strict=False)))


AGG = ",\n  ".join(
    [
        *[
            f"SUM(`value`) FILTER (WHERE measure = '{m}') AS {m}_sum, "
            f"COUNT(*) FILTER (WHERE measure = '{m}') AS {m}_cnt"
            for m in MIDX
        ],
        "PERCENTILE(`value`, ARRAY[0.5, 0.95]) FILTER (WHERE measure = 'first_update_ms') AS fu_p50_p95",
    ]
)
if NO_PCT:
    AGG = AGG.split(",\n  PERCENTILE")[0]


def sql_part(t_env: StreamTableEnvironment, facts_table: Any) -> Any:
    """The windows of B and C over `facts_table`: a statement set, or the two queries when CHECK."""
    t_env.create_temporary_view("facts", facts_table)
    if NO_WINDOWS:  # diagnostic: explode + rowtime/watermark only, rows straight to blackhole
        t_env.execute_sql(
            "CREATE TEMPORARY TABLE sink0 (at_ms BIGINT, channel STRING, carrier STRING, region STRING, "
            "measure STRING, `value` BIGINT, rt TIMESTAMP_LTZ(3)) WITH ('connector'='blackhole')"
        )
        ss = t_env.create_statement_set()
        ss.add_insert_sql("INSERT INTO sink0 SELECT * FROM facts")
        return ss
    t_env.execute_sql("""CREATE TEMPORARY VIEW dimfacts AS
      SELECT 'channel' AS dim, channel AS k, rt, measure, `value` FROM facts UNION ALL
      SELECT 'carrier' AS dim, carrier AS k, rt, measure, `value` FROM facts UNION ALL
      SELECT 'region' AS dim, region AS k, rt, measure, `value` FROM facts""")
    q1 = f"""SELECT dim, k, window_start, window_end, {AGG}
      FROM TABLE(TUMBLE(TABLE dimfacts, DESCRIPTOR(rt), INTERVAL '1' MINUTE))
      GROUP BY dim, k, window_start, window_end"""
    q5 = f"""SELECT dim, k, window_start, window_end, {AGG}
      FROM TABLE(HOP(TABLE dimfacts, DESCRIPTOR(rt), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE))
      GROUP BY dim, k, window_start, window_end"""
    if CHECK:
        return [q1, q5]
    cols = ", ".join(
        [
            "dim STRING, k STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3)",
            *[f"{m}_sum BIGINT, {m}_cnt BIGINT" for m in MIDX],
            *([] if NO_PCT else ["fu_p50_p95 ARRAY<DOUBLE>"]),
        ]
    )
    for s in ("sink1", "sink5"):
        t_env.execute_sql(f"CREATE TEMPORARY TABLE {s} ({cols}) WITH ('connector'='blackhole')")
    ss = t_env.create_statement_set()
    ss.add_insert_sql(f"INSERT INTO sink1 {q1}")
    ss.add_insert_sql(f"INSERT INTO sink5 {q5}")
    return ss


def rowtime_schema() -> Schema:
    return (
        Schema.new_builder()
        .column("at_ms", DataTypes.BIGINT())
        .column("channel", DataTypes.STRING())
        .column("carrier", DataTypes.STRING())
        .column("region", DataTypes.STRING())
        .column("measure", DataTypes.STRING())
        .column("value", DataTypes.BIGINT())
        .column_by_expression("rt", "TO_TIMESTAMP_LTZ(at_ms, 3)")
        .watermark("rt", "rt - INTERVAL '10' SECOND")
        .build()
    )


def cpu_tree(pid: int) -> float:
    """user+sys seconds of pid and all its live descendants (the JVM runs the job and, in thread mode,
    the Python UDFs via embedded CPython)."""
    tck = os.sysconf("SC_CLK_TCK")
    kids: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                st = (p / "stat").read_text()
                kids.setdefault(int(st.rsplit(")", 1)[1].split()[1]), []).append(int(p.name))
    tot, todo = 0.0, [pid]
    while todo:
        q = todo.pop()
        with contextlib.suppress(OSError):
            f = Path(f"/proc/{q}/stat").read_text().rsplit(")", 1)[1].split()
            tot += (int(f[11]) + int(f[12])) / tck
        todo += kids.get(q, [])
    return tot


def main() -> None:
    # Read when the first Configuration() starts the JVM (not at import): the UDF workers' path and the JDK.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), *site.getsitepackages()])
    os.environ.setdefault("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")
    OUT.mkdir(parents=True, exist_ok=True)

    conf = Configuration()
    # e.g. EXTRA_CONF="table.exec.emit.late-fire.enabled=true"
    for kv in filter(None, os.environ.get("EXTRA_CONF", "").split(";")):
        conf.set_string(*kv.split("=", 1))
    for k, v in {
        "python.execution-mode": "thread",
        "python.executable": sys.executable,
        "parallelism.default": "1",
        "python.fn-execution.bundle.size": "5000",
    }.items():
        conf.set_string(k, v)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    t_env = StreamTableEnvironment.create(env)

    gw = get_gateway()
    discard = Sink(gw.jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink())
    batches = env.from_source(NumberSequenceSource(0, NB - 1), WatermarkStrategy.no_watermarks(), "seq").map(
        Gen(), output_type=Types.PICKLED_BYTE_ARRAY()
    )

    job: Any = None
    if MODE == "gen":
        batches.map(lambda b: len(b), output_type=Types.INT()).sink_to(discard)
    elif MODE == "A":
        (
            batches.key_by(lambda b: 0, key_type=Types.INT())
            .process(Tally(), output_type=Types.PICKLED_BYTE_ARRAY())
            .sink_to(discard)
        )
    elif MODE == "B":
        rows = batches.flat_map(Explode(), output_type=FACT_ROW)
        job = sql_part(t_env, t_env.from_data_stream(rows, rowtime_schema()))
    elif MODE == "C":
        arr = batches.map(
            ToArrayRow(),
            output_type=Types.ROW_NAMED(
                ["ats", "chs", "cas", "res", "mes", "vals"],
                [
                    Types.BASIC_ARRAY(Types.LONG()),
                    *([Types.BASIC_ARRAY(Types.STRING())] * 4),
                    Types.BASIC_ARRAY(Types.LONG()),
                ],
            ),
        )
        bt = t_env.from_data_stream(arr)
        t_env.create_temporary_view("btab", bt)
        flat = t_env.sql_query("""SELECT u.at_ms, chs[u.i] AS channel, cas[u.i] AS carrier, res[u.i] AS region,
        mes[u.i] AS measure, vals[u.i] AS `value`
      FROM btab CROSS JOIN UNNEST(ats) WITH ORDINALITY AS u(at_ms, i)""")
        # round trip (Java only) so the exploded rows can get a rowtime attribute + watermark
        job = sql_part(t_env, t_env.from_data_stream(t_env.to_data_stream(flat), rowtime_schema()))
    else:
        raise SystemExit(MODE)

    t0 = time.time()
    if MODE in ("gen", "A"):
        env.execute(f"kpi-{MODE}")
    elif CHECK:
        with (OUT / f"check_{MODE}.txt").open("w") as fh:
            for q in job:
                with t_env.sql_query(q).execute().collect() as collected:
                    for r in collected:
                        fh.write(repr(tuple(r)) + "\n")
    else:
        job.execute().wait()
    t_exec = time.time() - t0

    cpu = cpu_tree(os.getpid())
    res = {
        "mode": MODE,
        "nfacts": NB * BATCH,
        "exec_s": round(t_exec, 2),
        "proc_s": round(time.time() - T_PROC0, 2),
        "cpu_s": round(cpu, 1),
        "load_start": load0,
        "load_end": Path("/proc/loadavg").read_text().split()[:3],
        "no_pct": NO_PCT,
        "no_windows": NO_WINDOWS,
        "check": CHECK,
    }
    print(json.dumps(res))
    if not CHECK:
        with (OUT / "results.jsonl").open("a") as fh:
            fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
