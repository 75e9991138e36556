"""What a bench run found, and the facts needed to read it: machine, commit, settings."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from jobs.bench.costs import JobCosts, OfflineCosts
from jobs.bench.freshness import Percentiles, Probe
from jobs.bench.resources import PartResources
from jobs.bench.silence import SilenceCost
from jobs.bench.throughput import ThroughputRun
from jobs.bench.traffic import Preload, Traffic
from jobs.settings import PROJECT_ROOT

# The targets for this 2-core machine.
TARGET_THROUGHPUT_EPS = 20_000
TARGET_P99_MS = 1_000
FRESHNESS_HEADLINE_RATE = 5_000
TARGET_JOB_VS_BASELINE = 1.0


@dataclass(frozen=True)
class FreshnessPhase:
    """Probes at one background rate, and whether the job kept up with that rate."""

    rate_eps: int
    percentiles: Percentiles
    traffic_records: int
    traffic_rate_eps: float  # what the producer achieved
    lag_records_at_start: int
    lag_records_at_end: int
    kept_up: bool  # lag at the end within a few seconds of traffic (offsets move only at checkpoints)


@dataclass(frozen=True)
class CheckpointState:
    path: Path
    bytes: int


@dataclass
class BenchResults:
    started_at: datetime
    command: str
    options: dict[str, Any]
    settings: dict[str, str]
    machine: dict[str, Any]
    git: dict[str, Any]
    finished_at: datetime | None = None
    backlog: Traffic | None = None
    preload: Preload | None = None
    freshness_traffic: Traffic | None = None
    job: ThroughputRun | None = None
    freshness: list[FreshnessPhase] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    baseline: ThroughputRun | None = None
    scaling: dict[int, ThroughputRun] = field(default_factory=dict)
    checkpoint: CheckpointState | None = None
    job_costs: JobCosts | None = None  # read when the saturation run ends
    offline_costs: OfflineCosts | None = None
    silence: SilenceCost | None = None
    resources: dict[str, PartResources] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # what was not measured, and why
    errors: list[str] = field(default_factory=list)

    def headline_freshness(self) -> FreshnessPhase | None:
        return next((phase for phase in self.freshness if phase.rate_eps == FRESHNESS_HEADLINE_RATE), None)

    def job_vs_baseline(self) -> float | None:
        job = self.job.throughput_eps if self.job else None
        baseline = self.baseline.throughput_eps if self.baseline else None
        return round(job / baseline, 3) if job and baseline else None


def machine_facts() -> dict[str, Any]:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    cpu_models = [
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ]
    return {
        "nproc": os.cpu_count(),
        "memory_bytes": int(meminfo["MemTotal"].split()[0]) * 1024,
        "cpu_model": cpu_models[0] if cpu_models else "unknown",
        "kernel": os.uname().release,
        # The machine may be shared: a busy one makes every figure worse.
        "load_average_at_start": list(os.getloadavg()),
    }


def git_facts() -> dict[str, Any]:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
        return result.stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or None, "uncommitted_changes": bool(git("status", "--porcelain"))}
