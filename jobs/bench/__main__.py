"""`make bench`: how fast and how fresh the pipeline is on the local stack. A benchmark, not a test.

Steps: a stack of its own (state dir .state/bench, ports of its own); a simulated
backlog preloaded into Kafka before the job starts, so the job runs at
saturation; the job's throughput over that backlog; then, with the job still
running, freshness probes under background traffic at each rate; a plain
Python consumer (the baseline) over the same backlog; the job on a Flink
session cluster with 1 and with 2 TaskManagers; last, on the quiet machine, the
job's pure Python over a small simulated day, each step timed alone (the
per-record cost breakdown, jobs/bench/costs.py); and what finding quiet orders costs
with a million open (jobs/bench/silence.py). Writes bench-results/latest.json,
latest.png and latest.md (and timestamped copies).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from connectors.kafka import KafkaError
from jobs.bench import costs, report, silence
from jobs.bench.environment import (
    BASELINE_DATABASE,
    BASELINE_GROUP,
    FLINK_REST_PORT,
    FLINK_RPC_PORT,
    BenchEnvironment,
    CommandError,
    ports_in_use,
    stop,
)
from jobs.bench.freshness import Percentiles, Prober
from jobs.bench.resources import ResourceMonitor
from jobs.bench.results import BenchResults, CheckpointState, FreshnessPhase, git_facts, machine_facts
from jobs.bench.throughput import OffsetSampler, ThroughputRun, measure_saturation, wait_until_drained
from jobs.bench.traffic import LineProducer, PacedTraffic, Traffic, preload, simulated_traffic
from jobs.cli import clickhouse, local_stack

Report = Callable[[str], None]
STEPS = 10
CHECKPOINT_INTERVAL_MS = 1000
RATES = (1000, 5000, 10000)
BACKLOG_SEED, FRESHNESS_SEED, COSTS_SEED = 7, 8, 9
COSTS_ORDERS = 10_000  # a whole simulated day: every source in its realistic share
SILENCE_ORDERS = 1_000_000  # open orders whose checks the index holds (issue 7: "a million open orders")
RECORDS_PER_ORDER = 10.5  # fewest raw records per simulated order seen (a day of 110,000 orders: 10.9)
KEPT_UP_LAG_S = 3.0  # lag within this many seconds of traffic: kept up (offsets move only at checkpoints)
PROBE_TAIL_S = 10.0  # traffic kept for the last probes to come back
JOB_RUNNING = re.compile(rb"running \(id ([0-9a-f]{32})\)")
SUBMITTED = re.compile(rb"job submitted: ([0-9a-f]{32})")
CLUSTER_PROCESS = re.compile(r"^(jobmanager|taskmanager-\d+)\s.*?\bpid (\d+)", re.MULTILINE)
MEASUREMENT_ERRORS = (RuntimeError, CommandError, KafkaError, OSError, subprocess.TimeoutExpired)


@dataclass(frozen=True)
class Options:
    orders: int
    probe_seconds: float
    settle_seconds: float  # traffic at a rate before its probes start
    saturation_seconds: float  # longest steady window of a throughput run
    scaling_seconds: float
    drain_seconds: float  # longest wait for a consumer to catch up before the next step
    skip_scaling: bool
    quick: bool
    out: Path


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m jobs.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, help="simulated orders preloaded as the backlog (default 130000, "
                        "about 1.4 million records: over 60 s at 20,000 records/s; --quick: 3000)")  # fmt: skip
    parser.add_argument("--probe-seconds", type=float, help="probing time at each rate (default 45; --quick: 6)")
    parser.add_argument("--skip-scaling", action="store_true", help="no session-cluster runs")
    parser.add_argument("--quick", action="store_true", help="a short run for development (figures not comparable)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder")
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    return Options(
        orders=args.orders or (3000 if quick else 130_000),
        probe_seconds=args.probe_seconds or (6.0 if quick else 45.0),
        settle_seconds=2.0 if quick else 5.0,
        saturation_seconds=40.0 if quick else 90.0,
        scaling_seconds=30.0 if quick else 60.0,
        drain_seconds=30.0 if quick else 120.0,
        skip_scaling=args.skip_scaling,
        quick=quick,
        out=args.out,
    )


class Bench:
    def __init__(self, options: Options, argv: list[str], say: Report) -> None:
        self.options = options
        self.say = say
        self.env = BenchEnvironment.create(CHECKPOINT_INTERVAL_MS)
        self.settings = self.env.settings
        self.zero = time.monotonic()
        self.monitor = ResourceMonitor()
        self.results = BenchResults(
            started_at=datetime.now().astimezone(),
            command=f"make bench BENCH_ARGS={shlex.quote(shlex.join(argv))}" if argv else "make bench",
            options={key: str(value) for key, value in asdict(options).items()},
            settings=self.env.variables,
            machine=machine_facts(),
            git=git_facts(),
        )

    def run(self) -> int:
        try:
            with self.monitor:
                self._measure()
        except KeyboardInterrupt:
            self.results.errors.append("interrupted")
            self.say("\ninterrupted; stopping and writing what was measured")
        except MEASUREMENT_ERRORS as error:
            self.results.errors.append(str(error))
            self.say(f"error: {error}")
        finally:
            self._stack_down()
            self.results.resources = self.monitor.results()
            self.results.finished_at = datetime.now().astimezone()
            self.results.machine["load_average_at_end"] = list(os.getloadavg())
            self._write()
        return 1 if self.results.errors else 0

    def _measure(self) -> None:
        self._stack_up()
        backlog, freshness_traffic = self._traffic()
        self._preload(backlog)
        # Each consumer's run stands alone: one that fails is reported, and the next one still runs.
        steps: list[tuple[str, Callable[[], None]]] = [
            ("job", lambda: self._job_and_freshness(freshness_traffic)),
            ("baseline", self._baseline),
            ("scaling", self._scaling),
            ("costs", self._offline_costs),
            ("silence", self._silence),
        ]
        for name, measure in steps:
            try:
                measure()
            except MEASUREMENT_ERRORS as error:
                self.results.errors.append(f"{name}: {error}")
                self.say(f"error: {error}\n  going on with the next step")

    def _heading(self, step: int, text: str) -> None:
        self.say(f"== {step}/{STEPS} {text}  [{self._at():.0f} s]")

    def _at(self) -> float:
        return time.monotonic() - self.zero

    # --- the stack and the traffic ---------------------------------------------------------

    def _stack_up(self) -> None:
        self._heading(1, f"a stack of the bench's own: Kafka and ClickHouse, state in {self.settings.state_dir}")
        self._stack_down()  # a bench stack left over from an interrupted run
        if busy := ports_in_use():
            raise RuntimeError(f"the bench's ports {busy} are in use by something else: stop it first")
        self.env.run("stack", "up", "--fresh")
        for part in local_stack(self.settings).status():
            if part.pid is not None:
                self.monitor.watch(part.name, part.pid)
        self.monitor.watch("bench (probes, sampling, producer)", os.getpid())
        self._heading(2, "ClickHouse schema, for the job and for the baseline consumer")
        self.env.run("db", "migrate")
        self.env.but(clickhouse_database=BASELINE_DATABASE).run("db", "migrate")

    def _stack_down(self) -> None:
        """Stop whatever the bench started and may have left running: a session cluster, the stack."""
        commands = [("cluster", "down")] if self.env.supports("cluster", "down") else []
        for command in [*commands, ("stack", "down")]:
            try:
                self.env.run(*command)
            except (CommandError, subprocess.TimeoutExpired) as error:
                self.say(f"warning: `orderscope {' '.join(command)}` failed: {error}")

    def _traffic(self) -> tuple[Traffic, Traffic]:
        self._heading(3, "traffic: the backlog, and fresh traffic (another seed) for the freshness probes")
        backlog = simulated_traffic(self.env, self.options.orders, BACKLOG_SEED, self.say)
        needed = sum(RATES) * self._seconds_per_rate()
        fresh = simulated_traffic(self.env, int(needed / RECORDS_PER_ORDER) + 100, FRESHNESS_SEED, self.say)
        self.results.backlog, self.results.freshness_traffic = backlog, fresh
        return backlog, fresh

    def _seconds_per_rate(self) -> float:
        return self.options.settle_seconds + self.options.probe_seconds + PROBE_TAIL_S

    def _preload(self, backlog: Traffic) -> None:
        self._heading(4, f"preloading the backlog into Kafka before any consumer starts: {backlog.records} records")
        with self._phase("preload"):
            log = self.settings.state_dir / "producer-preload.log"
            loaded = preload(self.settings.bootstrap_servers, backlog, log, self.say)
        self.results.preload = loaded
        self.say(
            f"  preloaded {loaded.records} records in {loaded.seconds:.0f} s: the producer's start-up "
            f"{loaded.producer_start_up_s:.0f} s, then {loaded.records_per_s:,.0f} records/s"
        )

    # --- the job -------------------------------------------------------------------------

    def _job_and_freshness(self, freshness_traffic: Traffic) -> None:
        self._heading(5, "the job at saturation: `orderscope job run --fresh` over the backlog")
        log = self.settings.state_dir / "job.log"
        job = self.env.start("job", "run", "--fresh", log=log)
        self.monitor.watch("job", job.pid)
        try:
            with OffsetSampler(self.settings.bootstrap_servers, self.settings.consumer_group, self.zero) as sampler:
                check = _exits_as_error(job, "the job", log)
                self.results.job = self._saturation("job", sampler, check, self.options.saturation_seconds, log)
                self._say_throughput(self.results.job)
                self.results.job_costs = costs.job_costs(clickhouse(self.settings).connect())
                self._heading(6, "freshness: probes while the job runs, under background traffic at each rate")
                if self._caught_up(sampler, self.results.job):
                    with self._phase("freshness"):
                        self._freshness(sampler, freshness_traffic)
        finally:
            stop(job)
        self.results.checkpoint = newest_checkpoint(self.settings.checkpoints, log)
        if self.results.checkpoint:
            self.say(f"  the job's state: {self.results.checkpoint.bytes:,} bytes in {self.results.checkpoint.path}")
        if not self.results.freshness:
            self._freshness_from_latest(freshness_traffic)

    def _caught_up(self, sampler: OffsetSampler, run: ThroughputRun) -> bool:
        """Whether the job drains the backlog soon enough for probes that measure the job, not the backlog."""
        latest = sampler.latest
        behind = latest.end - latest.committed
        eps = run.throughput_eps or 0.0
        if behind and (not eps or behind / eps > self.options.drain_seconds):
            self.say(f"  the job is {behind} records behind: freshness is measured by a job that starts at the end")
            return False
        return wait_until_drained(sampler, self.options.drain_seconds, self.say, "job")

    def _freshness_from_latest(self, traffic: Traffic) -> None:
        """The job started fresh from the topics' end (ORDERSCOPE_START_FROM=latest), its own group and checkpoints."""
        env = self.env.but(
            start_from="latest",
            consumer_group=f"{self.settings.consumer_group}-freshness",
            checkpoint_dir=str(self.settings.state_dir / "checkpoints-freshness"),
        )
        log = self.settings.state_dir / "job-freshness.log"
        job = env.start("job", "run", "--fresh", log=log)
        try:
            with OffsetSampler(self.settings.bootstrap_servers, env.settings.consumer_group, self.zero) as sampler:
                if not wait_until_drained(sampler, self.options.drain_seconds, self.say, "job from the end"):
                    self._skip("freshness", f"a job started at the topics' end had not committed its offsets "
                               f"{self.options.drain_seconds:.0f} s after its start; see {log}")  # fmt: skip
                    return
                with self._phase("freshness"):
                    self._freshness(sampler, traffic)
        finally:
            stop(job)

    def _freshness(self, sampler: OffsetSampler, traffic: Traffic) -> None:
        producer = LineProducer(self.settings.bootstrap_servers, self.settings.state_dir / "producer-freshness.log")
        producer.wait_ready()
        paced = PacedTraffic(producer, traffic)
        prober = Prober(self.settings.bootstrap_servers, clickhouse(self.settings), self.zero, f"{int(time.time())}")
        try:
            for rate in RATES:
                if rate != RATES[0] and not wait_until_drained(sampler, self.options.drain_seconds, self.say, "job"):
                    self.say("  the job is still behind; the next rate starts with that lag (see lag at start)")
                self.results.freshness.append(self._probe_at(rate, sampler, paced, prober))
        finally:
            prober.close()
            paced.close()
            producer.close()

    def _probe_at(self, rate: int, sampler: OffsetSampler, paced: PacedTraffic, prober: Prober) -> FreshnessPhase:
        start = sampler.latest
        sent_before = paced.sent
        paced.start(rate, self._seconds_per_rate())  # the tail serves the last probes; it is cut when they are back
        time.sleep(self.options.settle_seconds)
        self.say(f"  {rate:,} records/s: probing for {self.options.probe_seconds:.0f} s")
        probes = prober.probe_for(self.options.probe_seconds, rate)
        paced.stop()
        end = sampler.latest
        if paced.exhausted:
            self.results.errors.append(f"the freshness traffic ran out at {rate}/s: the figures are at a lower rate")
        percentiles = Percentiles.of(probes)
        lag_end = end.end - end.committed
        self.results.probes += probes
        self.say(
            f"  {rate:,}/s: {percentiles.probes} probes, p50 {percentiles.p50} ms, p95 {percentiles.p95} ms, "
            f"p99 {percentiles.p99} ms, {percentiles.timeouts} timed out; lag at the end {lag_end} records"
        )
        return FreshnessPhase(
            rate_eps=rate,
            percentiles=percentiles,
            traffic_records=paced.sent - sent_before,
            traffic_rate_eps=round((paced.sent - sent_before) / paced.last_run_s, 1) if paced.last_run_s else 0.0,
            lag_records_at_start=start.end - start.committed,
            lag_records_at_end=lag_end,
            kept_up=lag_end <= rate * KEPT_UP_LAG_S,
        )

    # --- the baseline and the cluster ------------------------------------------------------

    def _baseline(self) -> None:
        self._heading(7, "the baseline: a plain Python consumer over the same backlog (after the job, not beside it)")
        if not self.env.supports("baseline"):
            self._skip("baseline", "`orderscope baseline` does not exist yet (jobs/baseline.py is being written)")
            return
        env = self.env.but(consumer_group=BASELINE_GROUP, clickhouse_database=BASELINE_DATABASE)
        # Its state is in memory only, so it starts from the earliest offsets; --fresh says so where it exists.
        fresh = ["--fresh"] if "--fresh" in env.run("baseline", "--help") else []
        log = self.settings.state_dir / "baseline.log"
        baseline = env.start("baseline", *fresh, log=log)
        self.monitor.watch("baseline", baseline.pid)
        try:
            with OffsetSampler(self.settings.bootstrap_servers, BASELINE_GROUP, self.zero) as sampler:
                check = _exits_as_error(baseline, "the baseline", log)
                limit = self.options.saturation_seconds
                self.results.baseline = self._saturation("baseline", sampler, check, limit, log)
        finally:
            stop(baseline)
        self._say_throughput(self.results.baseline)

    def _scaling(self) -> None:
        self._heading(8, "scaling: the job on a Flink session cluster with 1 and with 2 TaskManagers")
        if self.options.skip_scaling:
            self._skip("scaling", "--skip-scaling")
            return
        if not (self.env.supports("cluster", "up") and self.env.supports("job", "submit")):
            self._skip("scaling", "`orderscope cluster` and `orderscope job submit` do not exist yet")
            return
        for taskmanagers in (1, 2):
            self.results.scaling[taskmanagers] = self._cluster_run(taskmanagers)
            self._say_throughput(self.results.scaling[taskmanagers])

    def _offline_costs(self) -> None:
        self._heading(9, f"where a record's time goes: the job's Python over {COSTS_ORDERS:,} simulated orders, "
                      "each step timed alone in this process")  # fmt: skip
        traffic = simulated_traffic(self.env, COSTS_ORDERS, COSTS_SEED, self.say)
        with self._phase("costs"):
            self.results.offline_costs = costs.offline_costs(traffic.path)
        spent = self.results.offline_costs.us_per_record
        self.say("  µs per raw record: " + ", ".join(f"{step} {us:.1f}" for step, us in spent.items()))

    def _silence(self) -> None:
        orders = SILENCE_ORDERS if not self.options.quick else 20_000
        self._heading(10, f"silence at scale: {orders:,} open orders in the order stage, event time moved on "
                      "minute by minute over three days, every check that falls due timed")  # fmt: skip
        with self._phase("silence"):
            self.results.silence = silence.silence_cost(orders, self.say)
        cost = self.results.silence
        self.say(f"  {cost.changes:,} health changes found by checks at {cost.check_us} µs each; busiest hour of "
                 f"event time: {cost.busiest_hour_cpu_s} s of CPU, median {cost.median_hour_cpu_s} s")  # fmt: skip

    def _cluster_run(self, taskmanagers: int) -> ThroughputRun:
        """The job submitted to a new cluster, on a consumer group of its own, with parallelism = TaskManagers
        (each TaskManager has one slot, and its own JVM and Python interpreter)."""
        group = f"orderscope-bench-cluster-{taskmanagers}"
        env = self.env.but(consumer_group=group, parallelism=taskmanagers)
        # Ports of its own for each cluster: the previous one's REST port may still be in TIME_WAIT.
        rest_port, rpc_port = FLINK_REST_PORT + taskmanagers - 1, FLINK_RPC_PORT + taskmanagers - 1
        ports = ("--rest-port", str(rest_port), "--rpc-port", str(rpc_port))
        url = f"http://127.0.0.1:{rest_port}"
        name = f"cluster, {taskmanagers} TaskManager(s)"
        log = self.settings.state_dir / f"cluster-{taskmanagers}-submit.log"
        self.say(f"  starting a session cluster with {taskmanagers} TaskManager(s)")
        env.run("cluster", "up", "--taskmanagers", str(taskmanagers), *ports)
        try:
            self._watch_cluster(env, ports, taskmanagers)
            with OffsetSampler(self.settings.bootstrap_servers, group, self.zero) as sampler:
                submit = env.start("job", "submit", "--cluster", url, log=log)
                self.monitor.watch(f"flink client ({taskmanagers} TM)", submit.pid)
                check = _exits_as_error(submit, "`orderscope job submit`", log, expected_exit=True)
                return self._saturation(name, sampler, check, self.options.scaling_seconds, log)
        finally:
            self._cancel_submitted(env, log, url)
            env.run("cluster", "down")

    def _watch_cluster(self, env: BenchEnvironment, ports: tuple[str, ...], taskmanagers: int) -> None:
        try:
            status = env.run("cluster", "status", *ports)
        except CommandError as error:  # not every process ready: watch those that are
            status = str(error)
        for process, pid in CLUSTER_PROCESS.findall(status):
            self.monitor.watch(f"flink {process} ({taskmanagers} TM)", int(pid))

    def _cancel_submitted(self, env: BenchEnvironment, log: Path, url: str) -> None:
        found = SUBMITTED.search(log.read_bytes()) if log.exists() else None
        if found is None:
            return
        try:
            env.run("job", "cancel", found.group(1).decode(), "--cluster", url)
        except CommandError as error:
            self.say(f"warning: {error}")

    def _saturation(
        self, name: str, sampler: OffsetSampler, check: Callable[[], None], limit_s: float, log: Path
    ) -> ThroughputRun:
        """A consumer just started on the backlog, followed until caught up or limit_s after its first commit."""
        with self._phase(f"{name} at saturation"):
            run = ThroughputRun(name, sampler.group, sampler.latest.end, self._at(), log)
            return measure_saturation(run, sampler, check, limit_s, self.say)

    # --- helpers ---------------------------------------------------------------------------

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        self.monitor.begin(name)
        try:
            yield
        finally:
            self.monitor.end(name)

    def _skip(self, phase: str, why: str) -> None:
        self.results.skipped[phase] = why
        self.say(f"  skipped: {why}")

    def _say_throughput(self, run: ThroughputRun | None) -> None:
        if run is None or run.throughput_eps is None:
            return
        self.say(
            f"  {run.name}: {run.throughput_eps:,.0f} records/s over {run.window_s:.0f} s "
            f"({'caught up with' if run.caught_up else 'still behind'} the backlog; start-up {run.start_up_s:.1f} s)"
        )

    def _write(self) -> None:
        written = report.write(self.results, self.options.out)
        self.say(f"\n== results ({time.monotonic() - self.zero:.0f} s in all)")
        for verdict in report.verdicts(self.results):
            state = {True: "pass", False: "FAIL", None: "not measured"}[verdict.passed]
            self.say(f"  {verdict.figure}: {report.number(verdict.measured)} (target {verdict.target}) {state}")
        for path in written:
            self.say(f"  {path}")


def _exits_as_error(
    process: subprocess.Popen[bytes], name: str, log: Path, expected_exit: bool = False
) -> Callable[[], None]:
    """A check that raises once the process has exited (with an error only, when its exit is expected)."""

    def check() -> None:
        code = process.poll()
        if code is not None and (code != 0 or not expected_exit):
            raise RuntimeError(f"{name} exited with code {code}; see {log}")

    return check


def newest_checkpoint(checkpoints: Path, job_log: Path) -> CheckpointState | None:
    """The job's newest completed checkpoint (one with _metadata) and its size on disk."""
    found = JOB_RUNNING.search(job_log.read_bytes()) if job_log.exists() else None
    if found is None:
        return None
    completed = (checkpoints / found.group(1).decode()).glob("chk-*/_metadata")
    newest = max((m.parent for m in completed), key=lambda path: int(path.name.removeprefix("chk-")), default=None)
    if newest is None:
        return None
    return CheckpointState(newest, sum(f.stat().st_size for f in newest.rglob("*") if f.is_file()))


def main(argv: list[str] | None = None) -> int:
    # Started in the background by a shell (nohup, CI), SIGINT arrives ignored, and children inherit that:
    # the job and the baseline, stopped by SIGINT, would never hear it. Caught here, it is reset at exec.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    arguments = sys.argv[1:] if argv is None else argv
    options = parse_options(arguments)
    return Bench(options, arguments, lambda message: print(message, flush=True)).run()


if __name__ == "__main__":
    sys.exit(main())
