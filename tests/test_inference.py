"""Streaming inference: order, bad files, cancel, progress, memory policy, real slices."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetpp_gui.core.discovery import discover
from unetpp_gui.core.inference import Cancelled, predict_array, predict_paths
from unetpp_gui.core.postprocess import binarize


def test_results_in_order_with_error_rows(tiny_model, phantom_folder: Path) -> None:
    slices = discover([phantom_folder]).slices
    assert [p.name for p in slices] == [f"p_{i}.png" for i in range(1, 6)]
    calls: list[tuple[int, int]] = []
    results = list(predict_paths(tiny_model, slices, batch_size=2, progress=lambda d, t: calls.append((d, t))))
    assert [r.path for r in results] == slices
    bad = results[2]
    assert not bad.ok and "not a readable image" in bad.error and bad.stats is None
    for r in results[:2] + results[3:]:
        assert r.ok and r.prob_q.shape == (64, 64) and r.prob_q.dtype == np.uint8
        assert r.gt is not None and r.gt_path.name == f"{r.path.stem}_mask.png"
        assert r.stats.derive(0.5, 0.0).dice is not None
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_same_map_as_single_slice_prediction(tiny_model, phantom_folder: Path) -> None:
    from unetpp_gui.core.image_io import load_image

    path = phantom_folder / "p_1.png"
    streamed = next(iter(predict_paths(tiny_model, [path])))
    direct = predict_array(tiny_model, load_image(path))
    assert np.abs(streamed.prob_q.astype(int) - direct.astype(int)).max() <= 1


def test_keep_maps_false_keeps_only_compact_stats(tiny_model, phantom_folder: Path) -> None:
    results = list(predict_paths(tiny_model, discover([phantom_folder]).slices, keep_maps=False))
    ok = [r for r in results if r.ok]
    assert ok and all(r.image is None and r.prob_q is None and r.gt is None for r in ok)
    assert all(r.stats.hist.nbytes <= 2048 for r in ok)


def test_cancel_between_batches_keeps_finished_results(tiny_model, phantom_folder: Path) -> None:
    cancel = threading.Event()
    got = []
    with pytest.raises(Cancelled):
        for r in predict_paths(tiny_model, discover([phantom_folder]).slices * 4, batch_size=3, cancel=cancel):
            got.append(r)
            if len(got) == 4:
                cancel.set()
    assert len(got) == 6  # the batch in flight finished; nothing after it started


def test_generator_is_lazy_over_many_files(tiny_model, tmp_path: Path) -> None:
    """Streaming: results come before later files even exist; look-ahead is one batch."""
    from unetpp_gui.core.phantom import phantom

    paths = [tmp_path / f"s_{i}.png" for i in range(6)]
    for p in paths[:4]:  # the first batch and the one decoded ahead of it
        Image.fromarray(phantom(64, seed=1)[0]).save(p)
    gen = predict_paths(tiny_model, paths, batch_size=2)
    first = next(gen)
    assert first.ok
    for p in paths[4:]:  # written after the job started
        Image.fromarray(phantom(64, seed=2)[0]).save(p)
    rest = list(gen)
    assert len(rest) == 5 and all(r.ok for r in rest)


def test_resized_slices_come_back_at_original_size(tiny_model, tmp_path: Path) -> None:
    from unetpp_gui.core.phantom import phantom

    img, mask = phantom(100)
    Image.fromarray(img[:, :90]).save(tmp_path / "odd.png")
    r = next(iter(predict_paths(tiny_model, [tmp_path / "odd.png"])))
    assert r.prob_q.shape == (100, 90) and binarize(r.prob_q, 0.5).shape == (100, 90)


@pytest.mark.lgg
def test_real_lgg_slices_stream(tiny_model, lgg: Path) -> None:
    case = sorted(lgg.glob("TCGA_*"))[0]
    slices = discover([case]).slices[:12]
    results = list(predict_paths(tiny_model, slices, batch_size=4))
    assert len(results) == 12 and all(r.ok for r in results)
    assert all(r.image.shape == (256, 256, 3) and r.gt_path is not None for r in results)
