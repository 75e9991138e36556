"""Checkpoints hold values pickled by position (schemas/compact.py): state of another layout is refused, not misread."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from jobs.runner import LAYOUT_FILE, layout, resumable, run
from jobs.settings import Settings
from schemas.compact import compact_pickle, state_layout


def test_a_field_added_to_a_pickled_class_changes_the_layout() -> None:
    before = state_layout()

    @compact_pickle
    @dataclass(frozen=True)
    class Grown:
        first: int
        added: int

    assert state_layout() != before


def test_checkpoints_of_another_layout_are_refused_with_what_to_do(tmp_path: Path) -> None:
    settings = Settings.from_env({"ORDERSCOPE_STATE_DIR": str(tmp_path)})
    assert resumable(settings)  # nothing to resume
    checkpoint = settings.checkpoints / "a-job" / "chk-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "_metadata").write_bytes(b"state")
    assert not resumable(settings)  # written before layouts were recorded
    marker = settings.checkpoints / LAYOUT_FILE
    marker.write_text(layout(settings))
    assert resumable(settings)
    marker.write_text(layout(Settings.from_env({"ORDERSCOPE_STATE_DIR": str(tmp_path), "ORDERSCOPE_LANES": "32"})))
    assert not resumable(settings)  # another number of lanes: another graph
    marker.write_text(state_layout())  # the same values, another graph (GRAPH_VERSION): Flink could not map it
    assert not resumable(settings)
    marker.write_text("0123456789abcdef")
    assert not resumable(settings)
    with pytest.raises(RuntimeError, match=r"another version of the job.*orderscope job run --fresh"):
        run(settings, until_idle_s=1, fresh=False, report=print)
