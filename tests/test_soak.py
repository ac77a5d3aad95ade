"""Soak test of the GUI batch: start and cancel at random moments, switch models mid-batch.

Bounds (stated here, printed by the test): after 50 start/cancel cycles and 5 model switches over
300 phantom slices, at most 2 more Python threads than after the first cycle and at most 200 MB more
resident memory; then one full run still predicts every slice.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from conftest import _tiny_unetpp, save_png
from unetpp_gui.core.phantom import phantom

CYCLES = 50
MAX_EXTRA_THREADS = 2
MAX_EXTRA_RSS_MB = 200.0


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
def test_start_cancel_and_switch_models_50_times(qtbot, tmp_path: Path, tiny_model_path: Path, capsys) -> None:
    from training.saving import save_model
    from unetpp_gui.core.metadata import ModelMetadata
    from unetpp_gui.ui.main_window import MainWindow

    other = tmp_path / "other.h5"
    save_model(_tiny_unetpp(), other, ModelMetadata(name="other", patient_filter={"min_fraction": 1.0}))
    folder = tmp_path / "batch" / "patient"
    base = phantom(64, seed=0)[0]
    for i in range(300):
        save_png(folder / f"s_{i}.png", np.roll(base, i % 7, axis=1))
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat), batch_size=4)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.model_changed, timeout=120_000):
        win.load_model(tiny_model_path)
    win.open_paths([folder])
    qtbot.waitUntil(lambda: len(win.store) == 300, timeout=60_000)

    rng = random.Random(3)
    models = [tiny_model_path, other]
    threads0 = rss0 = 0.0
    for cycle in range(CYCLES):
        win._restart_predictions()  # start (every slice pending again) ...
        qtbot.wait(rng.randint(0, 120))
        if cycle % 10 == 5:  # ... switch the model mid-batch ...
            with qtbot.waitSignal(win.model_changed, timeout=120_000):
                win.load_model(models[(cycle // 10) % 2 == 0])
            qtbot.wait(rng.randint(0, 60))
        win.cancel_predictions()  # ... and cancel at a random moment
        if cycle == 0:
            qtbot.waitUntil(lambda: not win.busy(), timeout=60_000)
            threads0, rss0 = threading.active_count(), _rss_mb()
    qtbot.waitUntil(lambda: not win.busy(), timeout=120_000)
    threads1, rss1 = threading.active_count(), _rss_mb()
    with capsys.disabled():
        print(f"\nsoak: {CYCLES} start/cancel cycles, 5 model switches: threads {threads0} -> {threads1} "
              f"(bound +{MAX_EXTRA_THREADS}), RSS {rss0:.0f} -> {rss1:.0f} MB (bound +{MAX_EXTRA_RSS_MB:.0f})")
    assert threads1 <= threads0 + MAX_EXTRA_THREADS
    assert rss1 - rss0 <= MAX_EXTRA_RSS_MB

    with qtbot.waitSignal(win.predictions_finished, timeout=300_000):
        win._restart_predictions()
    assert not win.store.pending() and len(win.store.compact) == 300
    assert all(r.ok for r in win.store.compact.values())
    win.close()
