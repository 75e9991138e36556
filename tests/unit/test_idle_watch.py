"""`job run --until-idle` stops only once every row made of the input is in ClickHouse: the rows a stage made
just before a checkpoint's barrier wait in a writer's buffer until its flush timer fires, so one completed
checkpoint after the drain is not enough; a second, triggered a flush interval after the first completed, is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobs import runner
from jobs.runner import IdleWatch
from jobs.settings import Settings

END = {("raw.orders.app", 0): 10}


class Probe:
    def __init__(self) -> None:
        self.committed = dict(END)

    def end_offsets(self, topics: list[str]) -> dict[Any, int]:
        return dict(END)

    def committed_offsets(self, group: str) -> dict[Any, int]:
        return self.committed


class Watched:
    """An IdleWatch on a fake Kafka and checkpoint folder, asked at given seconds of a fake monotonic clock."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
        self.folder, self.probe, self._now = folder, Probe(), 1000.0
        monkeypatch.setattr(runner.time, "monotonic", lambda: self._now)
        settings = Settings.from_env({"ORDERSCOPE_STATE_DIR": str(folder), **env})
        self.watch = IdleWatch(settings, 5, ["raw.orders.app"], lambda _: None, self.probe)  # type: ignore[arg-type]
        self.checkpoints = 0

    def checkpoint(self) -> None:
        """A checkpoint triggered and completed."""
        self.checkpoints += 1
        (self.folder / f"chk-{self.checkpoints}").mkdir(parents=True)
        (self.folder / f"chk-{self.checkpoints}" / "_metadata").write_bytes(b"state")

    def done_at(self, seconds: float) -> bool:
        self._now = 1000.0 + seconds
        return self.watch.done(self.folder)


def test_the_job_stops_after_a_second_checkpoint_triggered_a_flush_interval_after_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = Watched(tmp_path, monkeypatch)  # 200 ms windows, 300 ms flushes
    watched.checkpoint()
    assert not watched.done_at(0) and not watched.done_at(4.9)  # idle for less than 5 s
    assert not watched.done_at(5)  # drained: the first fence is noted 1.5 s later (two windows and flushes, a margin)
    assert not watched.done_at(6.5)  # noted: checkpoint 1, complete already, proves nothing
    watched.checkpoint()
    assert not watched.done_at(7.5)  # the first fence passed: rows reached the writers; their timers may not have fired
    watched.checkpoint()
    assert not watched.done_at(8.2)  # checkpoint 3 was triggered before the flush interval ran out
    assert not watched.done_at(8.3)  # the second fence notes checkpoint 3
    watched.checkpoint()
    assert watched.done_at(8.5)


def test_the_fences_follow_the_flush_interval_and_a_fence_noted_before_any_checkpoint_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = Watched(tmp_path, monkeypatch, ORDERSCOPE_SINK_FLUSH_INTERVAL_MS="2000")
    assert not watched.done_at(0) and not watched.done_at(5)  # drained
    assert not watched.done_at(9.8)  # the first fence is noted at 5 + 2 x (0.2 + 2) + 0.5 = 9.9 s
    assert not watched.done_at(9.9)  # noted before any checkpoint was triggered
    watched.checkpoint()
    assert not watched.done_at(10)  # passed; the second is noted 2.5 s later
    watched.checkpoint()
    assert not watched.done_at(12.4) and not watched.done_at(12.5)
    watched.checkpoint()
    assert watched.done_at(12.6)


def test_new_input_starts_the_watch_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    watched = Watched(tmp_path, monkeypatch)
    assert not watched.done_at(0) and not watched.done_at(5) and not watched.done_at(6.5)  # drained, first fence noted
    watched.probe.committed = {("raw.orders.app", 0): 9}  # a record read again, after a restore
    watched.checkpoint()
    assert not watched.done_at(7)
    watched.probe.committed = dict(END)
    for seconds in (7.5, 9.0, 9.5, 10.0, 11.0):
        watched.checkpoint()
        assert not watched.done_at(seconds)  # the drain starts again at 7.5: its first fence is noted at 9.0
    watched.checkpoint()
    assert watched.done_at(11.5)
