"""Throughput of a consumer (the job, the baseline), from the offsets it commits to its group.

The Flink job commits its Kafka offsets when a checkpoint completes, the
baseline after each batch it has written: a committed offset is a record whose
effect is in ClickHouse, or will be after a restore. Sampling the group's
committed offsets once a second against the raw topics' end offsets gives
records per second over time. The steady window opens at the first commit
(start-up excluded) and closes when the backlog is caught up, or after the
run's time limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from connectors.kafka import KafkaError, OffsetProbe
from schemas.topics import RAW_TOPICS

Report = Callable[[str], None]
SAMPLE_EVERY_S = 1.0
PROGRESS_EVERY_S = 5.0
START_UP_TIMEOUT_S = 240.0
SILENCE_TIMEOUT_S = 30.0  # no offsets read for this long: Kafka is not answering
MIN_WINDOW_S = 60.0  # the "sustained over at least 60 s"


@dataclass(frozen=True)
class OffsetSample:
    at_s: float  # since the bench started
    committed: int
    end: int


class OffsetSampler:
    """Samples a consumer group's committed offsets and the raw topics' end offsets once a second, from a thread."""

    def __init__(self, bootstrap_servers: str, group: str, clock_zero: float) -> None:
        self.group = group
        self.samples: list[OffsetSample] = []
        self._probe = OffsetProbe(bootstrap_servers)
        self._zero = clock_zero
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"offsets-{group}", daemon=True)

    def __enter__(self) -> OffsetSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join()
        self._probe.close()

    @property
    def latest(self) -> OffsetSample:
        return self.samples[-1]

    def _run(self) -> None:
        while not self._stopping.wait(SAMPLE_EVERY_S):
            try:
                self._sample()
            except KafkaError:
                continue  # a slow answer under load: the next second tries again, silence is caught by the reader

    def _sample(self) -> None:
        ends = self._probe.end_offsets(RAW_TOPICS)
        committed = self._probe.committed_offsets(self.group)
        done = sum(min(committed.get(partition, 0), end) for partition, end in ends.items())
        self.samples.append(OffsetSample(time.monotonic() - self._zero, done, sum(ends.values())))


@dataclass
class ThroughputRun:
    """One consumer's run over the preloaded backlog."""

    name: str
    group: str
    backlog_records: int
    started_at_s: float
    log: Path
    first_commit_at_s: float | None = None
    window_end_at_s: float | None = None
    window_records: int = 0
    caught_up: bool = False
    timeline: list[OffsetSample] = field(default_factory=list)

    @property
    def start_up_s(self) -> float | None:
        return None if self.first_commit_at_s is None else self.first_commit_at_s - self.started_at_s

    @property
    def window_s(self) -> float:
        if self.first_commit_at_s is None or self.window_end_at_s is None:
            return 0.0
        return self.window_end_at_s - self.first_commit_at_s

    @property
    def throughput_eps(self) -> float | None:
        return self.window_records / self.window_s if self.window_s > 0 else None

    @property
    def window_long_enough(self) -> bool:
        return self.window_s >= MIN_WINDOW_S


def measure_saturation(
    run: ThroughputRun,
    sampler: OffsetSampler,
    check_running: Callable[[], None],
    max_window_s: float,
    report: Report,
) -> ThroughputRun:
    """Follow a consumer started on a backlog until it has caught up or max_window_s after its first
    commit; the consumer is left running. Raises if it stops (check_running raises) or never commits."""
    first: OffsetSample | None = None
    next_report = time.monotonic() + PROGRESS_EVERY_S
    seen, seen_at = 0, time.monotonic()
    while True:
        time.sleep(SAMPLE_EVERY_S / 4)
        check_running()
        if len(sampler.samples) == seen:
            if time.monotonic() - seen_at > SILENCE_TIMEOUT_S:
                raise RuntimeError(f"the offsets of group {run.group} could not be read for {SILENCE_TIMEOUT_S:.0f} s")
            continue
        seen, seen_at = len(sampler.samples), time.monotonic()
        sample = sampler.latest
        if first is None and sample.committed > 0:
            first = sample
            run.first_commit_at_s = sample.at_s
            report(f"  {run.name}: first offsets committed {run.start_up_s:.1f} s after its start")
        if first is None and sample.at_s - run.started_at_s > START_UP_TIMEOUT_S:
            raise RuntimeError(f"{run.name} committed nothing in {START_UP_TIMEOUT_S:.0f} s; see {run.log}")
        if time.monotonic() >= next_report:
            report(_progress(run, sampler.samples))
            next_report += PROGRESS_EVERY_S
        if first is None:
            continue
        run.caught_up = sample.committed >= run.backlog_records
        if run.caught_up or sample.at_s - first.at_s >= max_window_s:
            # The window ends now, not at the last commit: a stall counts. Offsets move in steps (a checkpoint,
            # a batch), so the figure is low by at most one step's records over the window.
            run.window_end_at_s, run.window_records = sample.at_s, sample.committed - first.committed
            run.timeline = [s for s in sampler.samples if s.at_s >= run.started_at_s]
            return run


def _progress(run: ThroughputRun, samples: list[OffsetSample]) -> str:
    latest = samples[-1]
    line = f"  {run.name}: {latest.committed}/{run.backlog_records} records committed"
    if run.first_commit_at_s is None:
        return f"{line}, waiting for the first commit ({latest.at_s - run.started_at_s:.0f} s)"
    first = next(s for s in samples if s.at_s >= run.first_commit_at_s)
    span = latest.at_s - first.at_s
    rate = (latest.committed - first.committed) / span if span else 0.0
    return f"{line}, {rate:,.0f} records/s since the first commit"


def wait_until_drained(sampler: OffsetSampler, timeout_s: float, report: Report, name: str) -> bool:
    """Until every record in the raw topics is committed by the group, or timeout_s; returns whether drained."""
    deadline = time.monotonic() + timeout_s
    next_report = time.monotonic() + PROGRESS_EVERY_S
    while time.monotonic() < deadline:
        sample = sampler.latest
        if sample.committed >= sample.end:
            return True
        if time.monotonic() >= next_report:
            report(f"  {name}: {sample.end - sample.committed} records still to commit")
            next_report += PROGRESS_EVERY_S
        time.sleep(SAMPLE_EVERY_S / 2)
    return False


def rate_series(samples: list[OffsetSample], span_s: float = 5.0) -> list[tuple[float, float]]:
    """Records committed per second over time, each point over the preceding span_s (offsets move by checkpoint)."""
    series = []
    start = 0
    for sample in samples:
        while sample.at_s - samples[start].at_s > span_s:
            start += 1
        earlier = samples[start]
        if sample.at_s > earlier.at_s:
            series.append((sample.at_s, (sample.committed - earlier.committed) / (sample.at_s - earlier.at_s)))
    return series
