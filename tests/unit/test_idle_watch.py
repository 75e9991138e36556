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


class Checkpoints:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def trigger(self, checkpoint: int) -> None:
        (self.folder / f"chk-{checkpoint}").mkdir(parents=True)

    def complete(self, checkpoint: int) -> None:
        (self.folder / f"chk-{checkpoint}" / "_metadata").write_bytes(b"state")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: now[0])
    return now


def test_the_job_stops_after_a_second_checkpoint_triggered_a_flush_interval_after_the_first(
    tmp_path: Path, clock: list[float]
) -> None:
    settings = Settings.from_env({"ORDERSCOPE_STATE_DIR": str(tmp_path)})  # 200 ms windows, 300 ms flushes
    probe, checkpoints = Probe(), Checkpoints(tmp_path)
    watch = IdleWatch(settings, 5, ["raw.orders.app"], lambda _: None, probe)  # type: ignore[arg-type]

    def at(seconds: float) -> bool:
        clock[0] = 1000.0 + seconds
        return watch.done(tmp_path)

    checkpoints.trigger(1)
    checkpoints.complete(1)
    assert not at(0) and not at(4.9)  # idle for less than 5 s
    assert not at(5)  # drained: the first fence is noted 1.5 s later (two windows and flushes, and a margin)
    assert not at(6.5)  # noted: checkpoint 1, already complete, proves nothing
    checkpoints.trigger(2)
    assert not at(7)
    checkpoints.complete(2)
    assert not at(7.5)  # the first fence passed: rows reached the writers; their timers may not have fired
    checkpoints.trigger(3)
    checkpoints.complete(3)
    assert not at(7.9)  # checkpoint 3 was triggered before the flush interval ran out
    assert not at(8.3)  # the second fence notes checkpoint 3
    checkpoints.trigger(4)
    checkpoints.complete(4)
    assert at(8.5)


def test_new_input_starts_the_watch_again(tmp_path: Path, clock: list[float]) -> None:
    settings = Settings.from_env({"ORDERSCOPE_STATE_DIR": str(tmp_path)})
    probe, checkpoints = Probe(), Checkpoints(tmp_path)
    watch = IdleWatch(settings, 5, ["raw.orders.app"], lambda _: None, probe)  # type: ignore[arg-type]

    def at(seconds: float) -> bool:
        clock[0] = 1000.0 + seconds
        return watch.done(tmp_path)

    assert not at(0) and not at(5) and not at(6.5)  # drained at 5, the first fence noted
    probe.committed = {("raw.orders.app", 0): 9}  # a record read again, after a restore
    checkpoints.trigger(1)
    checkpoints.complete(1)
    assert not at(7)
    probe.committed = dict(END)
    for checkpoint, seconds in enumerate((7.5, 9.0, 9.5, 10.0, 11.0), start=2):
        checkpoints.trigger(checkpoint)
        checkpoints.complete(checkpoint)
        assert not at(seconds)  # the drain starts again at 7.5: its first fence is noted at 9.0
    checkpoints.trigger(7)
    checkpoints.complete(7)
    assert at(11.5)
