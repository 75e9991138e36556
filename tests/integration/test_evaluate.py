"""`orderscope evaluate` on a real stack of its own: the scores of a scenario, against its truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import orderscope

pytestmark = pytest.mark.integration


def test_evaluate_scores_alerts_and_arrivals_of_a_scenario_against_its_truth(tmp_path: Path) -> None:
    scores_file = tmp_path / "scores.json"
    printed = orderscope({}, "evaluate", "--scenario", "silences", "--orders", "300", "--seed", "3",
                         "--out", str(scores_file))  # fmt: skip
    scores = json.loads(scores_file.read_text())
    incidents = {score["incident"]: score for score in scores["incidents"]}
    unpicked, silent = incidents["never_picked_up"], incidents["silent_trackers"]
    assert unpicked["injected"] >= 5 and unpicked["recall"] == 1.0, unpicked
    # Orders are assessed at the watermark, so a source read ahead of the others judges no order in the future:
    # the parcels picked up in time raise no alert. One stray alert is tolerated.
    assert unpicked["precision"] >= 0.9, unpicked
    assert unpicked["delay_p50_min"] == pytest.approx(240, abs=1)  # red, so alerted, 4 h after the outbound scan (s)
    # Health reads the newest position by its time, so a vehicle's silence is found though its later positions (the
    # next hub's scan) were read ahead. Some cannot be: silent for less than the hour to red before the next scan,
    # or their last position came late (35 of 38 found, 2026-12-03).
    assert silent["injected"] >= 10 and silent["recall"] >= 0.85 and silent["precision"] >= 0.9, silent
    assert silent["delay_p50_min"] == pytest.approx(60, abs=1)  # red, so alerted, an hour after its last position
    horizons = {score["hours_before_arrival"]: score for score in scores["eta"]}
    for horizon in ("0-6 h", "6-24 h", "24-48 h"):  # the estimator learned the lanes from the warm-up day
        score = horizons[horizon]
        assert score["estimates"] >= 20, score
        assert score["eta_error_h"] < 0.5 * score["baseline_error_h"], score
        assert 0.5 <= score["within_p10_p90"] <= 1, score
    assert "silent_trackers" in printed and "hours before arrival" in printed
