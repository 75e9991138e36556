"""`orderscope evaluate` on a real stack of its own: the scores of a scenario, against its truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import orderscope

pytestmark = pytest.mark.integration


def test_evaluate_scores_alerts_and_arrivals_of_a_scenario_against_its_truth(tmp_path: Path) -> None:
    scores_file = tmp_path / "scores.json"
    printed = orderscope({}, "evaluate", "--scenario", "never_picked_up", "--orders", "300", "--seed", "3",
                         "--out", str(scores_file))  # fmt: skip
    scores = json.loads(scores_file.read_text())
    (unpicked,) = [score for score in scores["incidents"] if score["incident"] == "never_picked_up"]
    assert unpicked["injected"] >= 5 and unpicked["recall"] == 1.0
    assert unpicked["precision"] >= 0.9  # a pick-up scan read after event time moved on may raise one too early
    assert unpicked["delay_p50_min"] == 240  # red, and so alerted, 4 h after the outbound scan
    horizons = {score["hours_before_arrival"]: score for score in scores["eta"]}
    assert horizons["24-48 h"]["estimates"] > 0
    assert all(0 <= score["within_p10_p90"] <= 1 for score in horizons.values())
    assert "never_picked_up" in printed and "hours before arrival" in printed
