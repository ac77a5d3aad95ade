"""The review session's store: per-slice numbers derived once per result and thresholds, and kept right."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unetpp_gui.core.inference import SliceResult
from unetpp_gui.core.postprocess import SliceStats
from unetpp_gui.core.store import SliceStore, Thresholds


def _result(path: Path, level: int, pixels: int) -> SliceResult:
    prob_q = np.zeros((16, 16), np.uint8)
    prob_q.flat[:pixels] = level
    return SliceResult(path, prob_q=prob_q, stats=SliceStats.from_map(prob_q), size=(16, 16))


def test_derived_numbers_are_kept_per_thresholds_and_follow_new_results(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    store = SliceStore()
    store.add_paths([path])
    t = Thresholds(0.5, 0.01)
    assert store.derived(path, t) is None and store.state(path, t) == "pending"
    store.put(_result(path, 200, 10))
    first = store.derived(path, t)
    assert first.mask_pixels == 10 and first.tumour
    assert store.derived(path, Thresholds(0.5, 0.01)) is first  # same thresholds: not derived again
    higher = store.derived(path, Thresholds(0.9, 0.01))  # level 200 is below 0.9: nothing left
    assert higher.mask_pixels == 0 and not higher.tumour
    assert store.derived(path, t).mask_pixels == 10  # back to the first thresholds: right again
    store.put(_result(path, 200, 2))  # predicted again (another model): the new result's numbers
    again = store.derived(path, t)
    assert again.mask_pixels == 2 and not again.tumour and store.state(path, t) == "clear"
    del store.compact[path]  # evicted result: pending again, whatever was derived before
    assert store.derived(path, t) is None and store.state(path, t) == "pending"
    store.put(_result(path, 200, 10))
    store.clear_results()
    assert store.derived(path, t) is None


def test_an_error_result_has_no_numbers(tmp_path: Path) -> None:
    path = tmp_path / "bad.png"
    store = SliceStore()
    store.add_paths([path])
    store.put(SliceResult(path, error="not a readable image"))
    assert store.derived(path, Thresholds(0.5, 0.01)) is None
    assert store.state(path, Thresholds(0.5, 0.01)) == "error"
