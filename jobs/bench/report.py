"""The bench's outputs: latest.json (every figure and time series), latest.png, latest.md.

Each is also copied under a timestamped name, so runs can be compared.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # after use(): the backend is chosen before pyplot is imported

from jobs.bench.freshness import PROBE_TIMEOUT_S, Probe
from jobs.bench.resources import MACHINE
from jobs.bench.results import (
    FRESHNESS_HEADLINE_RATE,
    TARGET_JOB_VS_BASELINE,
    TARGET_P99_MS,
    TARGET_THROUGHPUT_EPS,
    BenchResults,
    FreshnessPhase,
)
from jobs.bench.throughput import ThroughputRun, rate_series

RATE_COLORS = {1000: "tab:green", 5000: "tab:blue", 10000: "tab:red"}


def write(results: BenchResults, out_dir: Path) -> list[Path]:
    """Write latest.{json,png,md} and their timestamped copies; returns the latest ones."""
    out_dir.mkdir(parents=True, exist_ok=True)
    latest = [out_dir / "latest.json", out_dir / "latest.png", out_dir / "latest.md"]
    latest[0].write_text(json.dumps(to_json(results), indent=1, default=str) + "\n")
    plot(results, latest[1])
    latest[2].write_text(markdown(results))
    stamp = results.started_at.strftime("%Y%m%dT%H%M%S")
    for path in latest:
        shutil.copyfile(path, out_dir / f"{stamp}{path.suffix}")
    return latest


# --- JSON ------------------------------------------------------------------------------------


def to_json(results: BenchResults) -> dict[str, Any]:
    """The issue's figures first (null when not measured: `skipped` and `errors` say why), then the rest."""
    return {
        "throughput_eps": _eps(results.job),
        "freshness_ms": _freshness_headline(results),
        "freshness_by_rate": {
            str(phase.rate_eps): {**dataclasses.asdict(phase.percentiles), **_phase_facts(phase)}
            for phase in results.freshness
        }
        or None,
        "baseline_throughput_eps": _eps(results.baseline),
        "job_vs_baseline_ratio": results.job_vs_baseline(),
        "resources": {name: dataclasses.asdict(part) for name, part in results.resources.items()},
        "others_cpu_by_phase": {
            phase: {"cpu_s": round(cpu_s, 2), "average_cores": round(cores, 3)}
            for phase, (cpu_s, cores) in others_by_phase(results).items()
        },
        "state_bytes": results.checkpoint.bytes if results.checkpoint else None,
        "cost_breakdown_us_per_record": cost_breakdown(results),
        "silence": dataclasses.asdict(results.silence) if results.silence else None,
        "scaling": {str(n): _eps(run) for n, run in results.scaling.items()} or None,
        "targets": _verdicts(results),
        "skipped": results.skipped,
        "errors": results.errors,
        "runs": {
            "job": _run_json(results.job),
            "baseline": _run_json(results.baseline),
            "scaling": {str(n): _run_json(run) for n, run in results.scaling.items()},
        },
        "checkpoint": str(results.checkpoint.path) if results.checkpoint else None,
        "backlog": _backlog_json(results),
        "freshness_probes": [dataclasses.asdict(probe) for probe in results.probes],
        "started_at": results.started_at.isoformat(),
        "finished_at": results.finished_at.isoformat() if results.finished_at else None,
        "command": results.command,
        "options": results.options,
        "settings": results.settings,
        "machine": results.machine,
        "git": results.git,
    }


def _eps(run: ThroughputRun | None) -> float | None:
    eps = run.throughput_eps if run else None
    return round(eps, 1) if eps is not None else None


def _freshness_headline(results: BenchResults) -> dict[str, Any] | None:
    headline = results.headline_freshness()
    if headline is None:
        return None
    p = headline.percentiles
    return {"p50": p.p50, "p95": p.p95, "p99": p.p99, "rate_eps": headline.rate_eps, "probes": p.probes,
            "timeouts": p.timeouts}  # fmt: skip


def _phase_facts(phase: FreshnessPhase) -> dict[str, Any]:
    facts = dataclasses.asdict(phase)
    facts.pop("percentiles")
    return facts


def _run_json(run: ThroughputRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "throughput_eps": _eps(run),
        "start_up_s": round(run.start_up_s, 1) if run.start_up_s is not None else None,
        "window_s": round(run.window_s, 1),
        "window_records": run.window_records,
        "window_long_enough": run.window_long_enough,
        "caught_up": run.caught_up,
        "backlog_records": run.backlog_records,
        "consumer_group": run.group,
        "log": str(run.log),
        # Seconds since the bench started; committed: records committed by the group; end: in the raw topics.
        "timeline": [[round(s.at_s, 2), s.committed, s.end] for s in run.timeline],
    }


def _backlog_json(results: BenchResults) -> dict[str, Any] | None:
    if results.backlog is None:
        return None
    backlog = results.backlog
    preload = results.preload
    return {
        "orders": backlog.orders,
        "seed": backlog.seed,
        "records": backlog.records,
        "traffic": str(backlog.path),
        "simulate_s": round(backlog.simulate_s, 1) if backlog.simulate_s is not None else None,
        "preload_s": round(preload.seconds, 1) if preload else None,
        "preload_producer_start_up_s": round(preload.producer_start_up_s, 1) if preload else None,
        "preload_records_per_s": round(preload.records_per_s) if preload else None,  # after the start-up
        "freshness_traffic": str(results.freshness_traffic.path) if results.freshness_traffic else None,
    }


# --- verdicts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    figure: str
    measured: float | None
    target: str
    passed: bool | None  # None: not measured
    note: str = ""


def verdicts(results: BenchResults) -> list[Verdict]:
    job_eps = _eps(results.job)
    headline = results.headline_freshness()
    p99 = headline.percentiles.p99 if headline else None
    ratio = results.job_vs_baseline()
    throughput_note = ""
    if results.job and not results.job.window_long_enough:
        throughput_note = f"window only {results.job.window_s:.0f} s (backlog too small for 60 s)"
    p99_note = ""
    if headline and headline.percentiles.timeouts:
        p99_note = f"{headline.percentiles.timeouts} probe(s) timed out"
    return [
        Verdict("throughput_eps", job_eps, f">= {TARGET_THROUGHPUT_EPS:,}",
                None if job_eps is None else job_eps >= TARGET_THROUGHPUT_EPS and not throughput_note,
                throughput_note),
        Verdict(f"freshness p99 ms at {FRESHNESS_HEADLINE_RATE:,}/s", p99, f"<= {TARGET_P99_MS:,}",
                None if p99 is None else p99 <= TARGET_P99_MS, p99_note),
        Verdict("job / baseline throughput", ratio, f">= {TARGET_JOB_VS_BASELINE:g}",
                None if ratio is None else ratio >= TARGET_JOB_VS_BASELINE),
    ]  # fmt: skip


def _verdicts(results: BenchResults) -> dict[str, Any]:
    return {v.figure: {"measured": v.measured, "target": v.target, "passed": v.passed} for v in verdicts(results)}


# --- plot ------------------------------------------------------------------------------------


def plot(results: BenchResults, path: Path) -> None:
    figure, (throughput, freshness) = plt.subplots(2, 1, figsize=(11, 8.5), constrained_layout=True)
    _plot_throughput(throughput, results)
    _plot_freshness(freshness, results.probes)
    commit = (results.git.get("commit") or "unknown")[:10]
    figure.suptitle(f"orderscope bench {results.started_at:%Y-%m-%d %H:%M} (commit {commit})")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_throughput(axes: Any, results: BenchResults) -> None:
    runs = [("job (local MiniCluster)", results.job), ("baseline consumer", results.baseline)]
    runs += [(f"cluster, {n} TaskManager(s)", run) for n, run in sorted(results.scaling.items())]
    for label, run in runs:
        if run is None or len(run.timeline) < 2:
            continue
        series = rate_series(run.timeline, span_s=10.0)
        axes.plot([t - run.started_at_s for t, _ in series], [eps for _, eps in series], label=label)
    axes.axhline(TARGET_THROUGHPUT_EPS, color="grey", linestyle="--", linewidth=1, label="target")
    axes.set_title("Throughput over the preloaded backlog (records committed/s, over the last 10 s)")
    axes.set_xlabel("seconds since the consumer started")
    axes.set_ylabel("records/s")
    axes.set_ylim(bottom=0)
    axes.legend(loc="upper right", fontsize="small")
    axes.grid(alpha=0.3)


def _plot_freshness(axes: Any, probes: list[Probe]) -> None:
    if not probes:
        axes.text(0.5, 0.5, "freshness not measured (see latest.md)", ha="center", transform=axes.transAxes)
    zero = probes[0].sent_at_s if probes else 0.0
    for rate in sorted({probe.rate_eps for probe in probes}):
        mine = [probe for probe in probes if probe.rate_eps == rate]
        seen = [p for p in mine if p.latency_ms is not None]
        lost = [p for p in mine if p.latency_ms is None]
        color = RATE_COLORS.get(rate)
        axes.scatter([p.sent_at_s - zero for p in seen], [p.latency_ms for p in seen], s=8, color=color,
                     label=f"{rate:,} records/s")  # fmt: skip
        if lost:
            axes.scatter([p.sent_at_s - zero for p in lost], [PROBE_TIMEOUT_S * 1000] * len(lost), marker="x",
                         color=color, label=f"{rate:,}/s: timed out")  # fmt: skip
    axes.axhline(TARGET_P99_MS, color="grey", linestyle="--", linewidth=1, label="p99 target")
    axes.set_yscale("log")
    axes.set_title("Freshness per probe: new order produced -> queryable in ClickHouse")
    axes.set_xlabel("seconds since the first probe")
    axes.set_ylabel("ms")
    axes.legend(loc="upper left", fontsize="small")
    axes.grid(alpha=0.3, which="both")


# --- markdown --------------------------------------------------------------------------------


def markdown(results: BenchResults) -> str:
    lines = [
        f"# orderscope bench, {results.started_at:%Y-%m-%d %H:%M %Z}",
        "",
        _circumstances(results),
        "",
        f"Reproduce: `{results.command}`",
        "",
        "| figure | measured | target | result | note |",
        "|---|---|---|---|---|",
    ]
    for v in verdicts(results):
        result = {True: "pass", False: "**fail**", None: "not measured"}[v.passed]
        lines.append(f"| {v.figure} | {number(v.measured)} | {v.target} | {result} | {v.note} |")
    lines += _runs_section(results) + _freshness_section(results) + _costs_section(results) + _silence_section(results)
    lines += _resources_section(results)
    lines += _other_section(results)
    return "\n".join(lines) + "\n"


def _circumstances(results: BenchResults) -> str:
    machine, git = results.machine, results.git
    changes = " (with uncommitted changes)" if git.get("uncommitted_changes") else ""
    loads = [_loads(machine.get(f"load_average_at_{moment}")) for moment in ("start", "end")]
    quick = " A --quick run: a small backlog and short phases, for development, not comparison."
    quick = quick if results.options.get("quick") == "True" else ""
    return (
        f"Commit `{git.get('commit')}`{changes}; {machine['nproc']} cores ({machine['cpu_model']}), "
        f"{machine['memory_bytes'] / 2**30:.1f} GiB; load average (1, 5, 15 min) {loads[0]} at the start, "
        f"{loads[1]} at the end.{quick}"
    )


def _runs_section(results: BenchResults) -> list[str]:
    lines = [
        "",
        "## Throughput",
        "",
        "| run | records/s | start-up s | window s | caught up |",
        "|---|---|---|---|---|",
    ]
    runs = [("job", results.job), ("baseline", results.baseline)]
    runs += [(f"cluster, {n} TaskManager(s)", run) for n, run in sorted(results.scaling.items())]
    for name, run in runs:
        if run is not None:
            start_up = f"{run.start_up_s:.1f}" if run.start_up_s is not None else "-"
            caught_up = "yes" if run.caught_up else "no"
            lines.append(f"| {name} | {number(run.throughput_eps)} | {start_up} | {run.window_s:.0f} | {caught_up} |")
    if results.backlog:
        lines += ["", f"Backlog: {results.backlog.records:,} records ({results.backlog.orders:,} simulated orders)."]
    if preload := results.preload:
        lines.append(
            f"Preloaded in {preload.seconds:.0f} s: the producer's start-up {preload.producer_start_up_s:.0f} s, "
            f"then {preload.records_per_s:,.0f} records/s."
        )
    return lines


def _freshness_section(results: BenchResults) -> list[str]:
    if not results.freshness:
        return []
    lines = [
        "",
        "## Freshness by background rate (ms)",
        "",
        "| records/s | probes | timeouts | p50 | p95 | p99 | max | lag at end | kept up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in results.freshness:
        p = phase.percentiles
        lines.append(
            f"| {phase.rate_eps:,} (achieved {phase.traffic_rate_eps:,.0f}) | {p.probes} | {p.timeouts} | "
            f"{number(p.p50)} | {number(p.p95)} | {number(p.p99)} | {number(p.max)} | "
            f"{phase.lag_records_at_end:,} | {'yes' if phase.kept_up else 'no'} |"
        )
    lines += ["", f"A probe not visible within {PROBE_TIMEOUT_S:.0f} s counts as a timeout, at that value."]
    return lines


def cost_breakdown(results: BenchResults) -> dict[str, Any] | None:
    """Microseconds per raw record: each step's pure Python (offline) beside its Python call in the job,
    and the job's whole CPU and wall time per record at saturation."""
    offline = results.offline_costs.us_per_record if results.offline_costs else {}
    in_job = results.job_costs.us_per_record if results.job_costs else {}
    if not offline and not in_job:
        return None
    eps = results.job.throughput_eps if results.job else None
    job_part = results.resources.get("job")
    usage = job_part.phases.get("job at saturation") if job_part else None
    return {
        "steps": {step: {"offline": offline.get(step), "in_job": in_job.get(step)} for step in {**offline, **in_job}},
        "offline_total": sum(offline.values()) if offline else None,
        "python_in_job_total": sum(in_job.values()) if in_job else None,
        "job_cpu": usage.average_cores * 1e6 / eps if usage and eps else None,
        "job_wall": 1e6 / eps if eps else None,
    }


def _costs_section(results: BenchResults) -> list[str]:
    costs = cost_breakdown(results)
    if costs is None:
        return []
    lines = [
        "",
        "## Where a raw record's time goes (µs per raw record)",
        "",
        "Pure Python: the job's own code over a simulated day in one process, dict state, each step timed alone.",
        "In the job: wall time inside each operator's Python calls over the saturation run, all subtasks, per raw",
        "record normalized (table operator_stats): Flink state access included, for the writer the inserts, and",
        "waits for the interpreter lock while another operator's thread runs Python (thread mode).",
        "",
        "| step | pure Python | in the job |",
        "|---|---|---|",
    ]
    for step, spent in costs["steps"].items():
        lines.append(f"| {step} | {number(spent['offline'])} | {number(spent['in_job'])} |")
    lines.append(f"| **all steps** | {number(costs['offline_total'])} | {number(costs['python_in_job_total'])} |")
    if costs["job_cpu"] is not None:
        lines += [
            "",
            f"At saturation the job's processes used {number(costs['job_cpu'])} µs of CPU per record "
            f"({number(costs['job_wall'])} µs of wall time). What its Python calls do not account for is the JVM's "
            "share: the Kafka source and the SQL window, moving each batch between Java and Python (serialization "
            "both ways), exchanges between operators, and checkpoints.",
        ]
    return lines


def _silence_section(results: BenchResults) -> list[str]:
    cost = results.silence
    if cost is None:
        return []
    return [
        "",
        f"## Silence at scale: {cost.open_orders:,} open orders",
        "",
        "Pure Python (jobs/bench/silence.py): the orders paid evenly over a day, none ever heard of again; event",
        "time moved on minute by minute over three days from the first payment, and every check that fell due",
        "timed (each order goes yellow at 15 min, red at 3 h, then meets its promise's warning and its promise).",
        "",
        "| figure | measured |",
        "|---|---|",
        f"| payments assessed, all orders | {cost.build_s} s of CPU |",
        f"| check index after them | {cost.index_entries:,} entries in {cost.index_minutes:,} minutes |",
        f"| an open order's view, pickled | {cost.view_bytes:,.0f} bytes |",
        f"| health changes found by checks | {cost.changes:,} at {cost.check_us} µs each |",
        f"| busiest hour of event time | {cost.busiest_hour_changes:,} changes, {cost.busiest_hour_cpu_s} s of CPU |",
        f"| median hour with changes | {cost.median_hour_cpu_s} s of CPU |",
        "",
        "While the job keeps up, an hour of event time passes in an hour: the busiest hour's CPU seconds over",
        "3,600 is the share of one core that checks take (in the job, state access multiplies pure Python cost:",
        "see the orders step above). Catching up after downtime packs many hours into a shorter time.",
    ]


def _resources_section(results: BenchResults) -> list[str]:
    if not results.resources:
        return []
    phases = list(dict.fromkeys(phase for part in results.resources.values() for phase in part.phases))
    others = others_by_phase(results)
    lines = [
        "",
        "## Resources",
        "",
        "Average cores and peak RSS (the largest sampled sum over a part's processes; for the whole machine,",
        f"memory in use) in each phase. On {results.machine['nproc']} cores, 'others' is what processes outside",
        "the bench used: a busy machine makes every figure worse. Totals and CPU seconds are in latest.json.",
        "",
        "| part | " + " | ".join(phases) + " |",
        "|---|" + "---|" * len(phases),
    ]
    for name, part in results.resources.items():
        cells = [
            f"{usage.average_cores:.2f} cores, {usage.peak_rss_bytes / 2**20:,.0f} MiB"
            if (usage := part.phases.get(phase))
            else ""
            for phase in phases
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| others | " + " | ".join(f"{others[p][1]:.2f} cores" if p in others else "" for p in phases) + " |")
    return lines


def others_by_phase(results: BenchResults) -> dict[str, tuple[float, float]]:
    """CPU seconds and cores used in each phase by processes the bench does not watch."""
    machine = results.resources.get(MACHINE)
    if machine is None:
        return {}
    others = {}
    for phase, usage in machine.phases.items():
        ours = sum(part.phases[phase].cpu_s for name, part in results.resources.items()
                   if name != MACHINE and phase in part.phases)  # fmt: skip
        cpu = max(usage.cpu_s - ours, 0.0)
        others[phase] = (cpu, cpu / usage.seconds if usage.seconds else 0.0)
    return others


def _other_section(results: BenchResults) -> list[str]:
    lines = [""]
    if results.checkpoint:
        lines.append(f"Job state: {results.checkpoint.bytes:,} bytes in `{results.checkpoint.path}`.")
    if results.skipped:
        lines += ["", "## Not measured", ""] + [f"- {phase}: {why}" for phase, why in results.skipped.items()]
    if results.errors:
        lines += ["", "## Errors", ""] + [f"- {error}" for error in results.errors]
    return lines


def _loads(loads: list[float] | None) -> str:
    return ", ".join(f"{x:.1f}" for x in loads) if loads else "-"


def number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
