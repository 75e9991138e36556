"""Run the order-visibility job on a local Flink runtime, with checkpoints and resume.

The job runs in PyFlink's local MiniCluster in thread execution mode (Python
functions embedded in the JVM: about ten times the throughput of process mode
on this machine). Checkpoints are kept when the job stops, and the next run
resumes from the latest completed one unless told to start fresh.
"""

from __future__ import annotations

import os
import shutil
import site
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment

from connectors import kafka
from connectors.local import CHECKPOINTING, FLINK_JARS_DIR
from jobs import order_visibility
from jobs.settings import PROJECT_ROOT, Settings
from schemas.adapters import ADAPTERS
from schemas.compact import state_layout

LAYOUT_FILE = "state-layout"  # beside the checkpoints: the layout of the state they hold

Report = Callable[[str], None]


def latest_checkpoint(folder: Path) -> Path | None:
    """The most recent completed checkpoint under folder (one sub-folder per job run)."""
    completed = [metadata.parent for metadata in folder.glob("*/chk-*/_metadata")]
    return max(completed, key=lambda path: path.stat().st_mtime, default=None)


def local_configuration(settings: Settings, restore_from: Path | None) -> dict[str, str]:
    jars = sorted(FLINK_JARS_DIR.glob("*.jar"))
    if not jars:
        raise FileNotFoundError(f"No Flink connector jar in {FLINK_JARS_DIR}: run `make setup`.")
    config = {
        "python.execution-mode": "thread",
        "python.executable": sys.executable,
        "pipeline.jars": ";".join(jar.as_uri() for jar in jars),
        "parallelism.default": str(settings.parallelism),
        **CHECKPOINTING,
        "execution.checkpointing.interval": f"{settings.checkpoint_interval_ms} ms",
        "execution.checkpointing.dir": settings.checkpoints.resolve().as_uri(),
        # Kafka's client threads outlive the job's class loader at cancel; the check only adds noise.
        "classloader.check-leaked-classloader": "false",
    }
    if restore_from is not None:
        config["execution.state-recovery.path"] = restore_from.resolve().as_uri()
    return config


def _prepare_jvm_environment(settings: Settings) -> None:
    """Set what the JVM that PyFlink launches reads from the environment: where its
    logs go, and (thread mode embeds CPython in it) where this project and its packages are."""
    os.environ["FLINK_LOG_DIR"] = str(settings.flink_log_dir)
    paths = [str(PROJECT_ROOT), *site.getsitepackages()]
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)


@dataclass
class IdleWatch:
    """Decides when the job has been idle long enough and has written all its output.

    Idle: the end offsets of the input topics have not moved for idle_s, and the
    job's committed offsets (committed when a checkpoint completes) have reached
    them. Written: two checkpoints, each triggered after a delay, have completed
    (`_Fence`). Barriers are aligned, so a checkpoint completes only once every
    operator has handled all it received before its barrier, and a processing-time
    timer due before a barrier reaches an operator runs first. The first fence is
    triggered more than twice a micro-batch window and a writer flush interval after
    the drain: the last records have left their windows, and the rows made of them
    have reached the writers, however long the stages took over them. The second
    is triggered a flush interval after the first completed: the writers' flush
    timers, set when those rows came, have fired, and the rows are in ClickHouse.
    """

    settings: Settings
    idle_s: float
    topics: list[str]
    report: Report
    probe: kafka.OffsetProbe
    _ends: dict[kafka.TopicPartition, int] = field(default_factory=dict)
    _ends_changed_at: float = field(default_factory=time.monotonic)
    _drained: _Fence | None = None  # the rows made of the last records have reached the writers
    _flushed: _Fence | None = None  # and the writers have written them
    _next_report: float = field(default_factory=time.monotonic)

    def done(self, job_checkpoints: Path) -> bool:
        now = time.monotonic()
        try:
            ends = self.probe.end_offsets(self.topics)
            committed = self.probe.committed_offsets(self.settings.consumer_group)
        except kafka.KafkaError as error:  # the broker is away: the job waits for it, and so does the watch
            self.report(f"  Kafka is out of reach ({type(error).__name__}); waiting for it to come back")
            self._drained = self._flushed = None
            return False
        if ends != self._ends:
            self._ends, self._ends_changed_at = ends, now
        behind = sum(max(end - committed.get(tp, 0), 0) for tp, end in ends.items())
        self._progress(now, behind, sum(ends.values()))
        if behind or now - self._ends_changed_at < self.idle_s:
            self._drained = self._flushed = None  # new input: a checkpoint before its output proves nothing about it
            return False
        window_s, flush_s = self.settings.batch_window_ms / 1000, self.settings.sink_flush_interval_ms / 1000
        if self._drained is None:  # the last records may still wait for their window, then for a writer
            self._drained = _Fence(now + 2 * (window_s + flush_s) + 0.5)
        if not self._drained.passed(job_checkpoints, now):
            return False
        if self._flushed is None:  # the writers' flush timers were set by now at the latest
            self._flushed = _Fence(now + flush_s + 0.5)
        return self._flushed.passed(job_checkpoints, now)

    def _progress(self, now: float, behind: int, total: int) -> None:
        if now >= self._next_report:
            state = f"{behind} records not yet checkpointed" if behind else "all input checkpointed"
            self.report(f"  job: {total} records in the input topics, {state}")
            self._next_report = now + 5


@dataclass
class _Fence:
    """A checkpoint triggered after `after` (monotonic time): the newest one triggered by then is noted, and the
    fence is passed once a later one has completed."""

    after: float
    _noted: int | None = None

    def passed(self, job_checkpoints: Path, now: float) -> bool:
        if self._noted is None:
            if now >= self.after:
                self._noted = _newest_checkpoint_id(job_checkpoints, completed=False)
            return False
        return _newest_checkpoint_id(job_checkpoints, completed=True) > self._noted


def _newest_checkpoint_id(job_checkpoints: Path, completed: bool) -> int:
    ids = [
        int(path.name.removeprefix("chk-"))
        for path in job_checkpoints.glob("chk-*")
        if not completed or (path / "_metadata").exists()
    ]
    return max(ids, default=0)


def layout(settings: Settings) -> str:
    """The layout of the job's state: its values' (schemas/compact.py) and its graph's shape, on which Flink's
    operator ids depend (the micro-batch query's operators have no uid): its version, and the lanes it has a
    clock's arm for (order_visibility.records_view)."""
    return f"{state_layout()} graph {order_visibility.GRAPH_VERSION} lanes {settings.lanes}"


def resumable(settings: Settings) -> bool:
    """Whether the checkpoints (if any) hold state of this version's layout."""
    marker = settings.checkpoints / LAYOUT_FILE
    return latest_checkpoint(settings.checkpoints) is None or (
        marker.exists() and marker.read_text().strip() == layout(settings)
    )


def run(settings: Settings, *, until_idle_s: float | None, fresh: bool, report: Report) -> None:
    """Run the job until idle (when until_idle_s is given) or until interrupted."""
    if not fresh and not resumable(settings):
        raise RuntimeError(
            f"the checkpoints in {settings.checkpoints} hold state of another version of the job, which this one "
            "would misread; run `orderscope job run --fresh` (it reads the topics again from the start, and "
            "ClickHouse keeps one row per fact)"
        )
    if fresh:
        shutil.rmtree(settings.checkpoints, ignore_errors=True)
        # Offsets committed by an earlier run would make a fresh run look caught up before it read anything.
        kafka.forget_group_offsets(settings.bootstrap_servers, settings.consumer_group)
    settings.checkpoints.mkdir(parents=True, exist_ok=True)
    (settings.checkpoints / LAYOUT_FILE).write_text(layout(settings))
    restore_from = None if fresh else latest_checkpoint(settings.checkpoints)
    report(f"resuming from {restore_from}" if restore_from else f"starting from the {settings.start_from} offsets")
    _prepare_jvm_environment(settings)
    configuration = Configuration()
    for key, value in local_configuration(settings, restore_from).items():
        configuration.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(configuration)
    order_visibility.build(env, settings)
    client = env.execute_async(order_visibility.JOB_NAME)
    job_id = str(client.get_job_id())
    report(f"job {order_visibility.JOB_NAME} running (id {job_id}), checkpoints in {settings.checkpoints}")
    report(f"Flink and job logs: {settings.flink_log_dir}")
    probe = kafka.OffsetProbe(settings.bootstrap_servers)
    watch = IdleWatch(settings, until_idle_s, sorted(ADAPTERS), report, probe) if until_idle_s is not None else None
    try:
        while not client.get_job_status().result().is_globally_terminal_state():
            if watch is not None and watch.done(settings.checkpoints / job_id):
                report(f"idle for {until_idle_s:.0f} s and all output written; stopping")
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"job ended on its own: {client.get_job_status().result()}")
    except KeyboardInterrupt:
        report("interrupted; stopping the job (its last checkpoint is kept for the next run)")
    finally:
        probe.close()
        if not client.get_job_status().result().is_globally_terminal_state():
            client.cancel().result()
