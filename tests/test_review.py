"""Qt-free review state: the threshold model the controls edit, the prediction order, job progress."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from unetpp_gui.core.review import (JobProgress, ThresholdModel, prediction_order, remembered_thresholds,
                                    thresholds_to_remember)
from unetpp_gui.core.store import Thresholds


def test_threshold_model_clamps_rounds_and_notifies_once_per_change() -> None:
    model = ThresholdModel(0.4, 0.01)
    seen: list[Thresholds] = []
    model.connect(seen.append)
    assert model.set(pixel=0.4) is False and seen == []  # no change, no notice
    assert model.set(pixel=0.456) and model.value == Thresholds(0.46, 0.01)
    assert model.set(decision=0.000123456) and model.value.decision == pytest.approx(0.00012)  # 0.012 % shown
    model.set(0.0, 2.0)  # out of range: to what the controls can show
    assert model.value == Thresholds(0.01, 1.0)
    assert [t.pixel for t in seen] == [0.46, 0.46, 0.01] and len(seen) == 3


def test_remembered_thresholds_follow_the_calibration_they_were_chosen_against() -> None:
    calib = (0.1, 0.0001373291015625)
    shown = ThresholdModel(*calib).value  # rounded for display, still the model's own
    assert thresholds_to_remember(shown, *calib) is None
    kept = thresholds_to_remember(ThresholdModel(0.3, 0.002).value, *calib)
    assert kept == [0.3, 0.002, *calib]
    # as an ini file returns them: strings
    assert remembered_thresholds([str(v) for v in kept], *calib) == (0.3, 0.002)
    assert remembered_thresholds(kept, 0.15, 0.0002) == (0.15, 0.0002)  # recalibrated model: its own
    assert remembered_thresholds(["0.3", "0.002"], *calib) == calib  # old two-value entry: no calibration known
    assert remembered_thresholds(None, *calib) == calib
    assert remembered_thresholds(["x", "y", "z", "w"], *calib) == calib


def test_prediction_order_puts_what_the_user_sees_first() -> None:
    paths = [Path(f"/{p}/{p}_{i}.png") for p in ("A", "B") for i in range(3)]
    of = lambda p: p.parent.name  # noqa: E731
    assert prediction_order(paths, None, of, False) == paths
    assert prediction_order(paths, paths[4], of, False) == [paths[4], *paths[:4], paths[5]]
    assert prediction_order(paths, paths[4], of, True) == paths[3:] + paths[:3]  # its whole patient first
    assert prediction_order(paths[:2], paths[4], of, True) == paths[:2]  # already done: list order


def test_job_progress_counts_rate_and_eta() -> None:
    job = JobProgress(4, started=time.monotonic() - 2.0)
    assert not job.complete and job.fraction_text() == "0 / 4"
    job.tick()
    job.tick()
    assert job.rate == pytest.approx(1.0, rel=0.05) and job.eta_s == pytest.approx(2.0, rel=0.05)
    assert job.status_text().startswith("Predicting: 2/4 slices, 1.0 slices/s, ETA 2 s")
    job.tick()
    job.tick()
    assert job.complete
