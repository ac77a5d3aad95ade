"""Discovery of slices and ground truth; metrics and threshold re-derivation; overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unetpp_gui.core.discovery import discover, find_ground_truth, natural_key, patient_of
from unetpp_gui.core.metrics import confusion, dice, iou, roc_auc
from unetpp_gui.core.overlay import GT_COLOR, contour, render_overlay
from unetpp_gui.core.postprocess import SliceStats, binarize, quantize


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
    return p


def test_discover_sorts_numerically_and_skips_masks(tmp_path: Path) -> None:
    for n in (10, 2, 1):
        _touch(tmp_path / "case" / f"c_{n}.png")
        _touch(tmp_path / "case" / f"c_{n}_mask.png")
    _touch(tmp_path / "case" / "notes.txt")
    found = discover([tmp_path, tmp_path / "nope"])
    assert [p.name for p in found.slices] == ["c_1.png", "c_2.png", "c_10.png"]
    assert found.problems and "no such file" in found.problems[0][1]
    assert sorted(["a_10", "a_9"], key=natural_key) == ["a_9", "a_10"]


def test_ground_truth_beside_and_in_masks_folder(tmp_path: Path) -> None:
    img = _touch(tmp_path / "x_1.png")
    assert find_ground_truth(img) is None
    _touch(tmp_path / "x_1_mask.png")
    assert find_ground_truth(img) == tmp_path / "x_1_mask.png"
    img2 = _touch(tmp_path / "set" / "images" / "s.png")
    _touch(tmp_path / "set" / "masks" / "s.png")
    assert find_ground_truth(img2) == tmp_path / "set" / "masks" / "s.png"
    assert [p.name for p in discover([tmp_path / "set"]).slices] == ["s.png"]
    assert patient_of(img2) == "set"
    assert patient_of(tmp_path / "TCGA_CS_4941_19960909_12.png", prefix_fields=4) == "TCGA_CS_4941_19960909"


def test_stats_rederive_exactly_like_direct_masks() -> None:
    rng = np.random.default_rng(3)
    prob_q = quantize(rng.random((50, 60)).astype(np.float32))
    gt = rng.random((50, 60)) > 0.7
    stats = SliceStats.from_map(prob_q, gt)
    for t in (0.0, 0.1, 0.33, 0.5, 0.502, 0.9, 0.999, 1.0):
        mask = binarize(prob_q, t)
        d = stats.derive(t, 0.2)
        assert d.mask_pixels == int(mask.sum())
        assert d.area_ratio == pytest.approx(mask.mean())
        assert d.tumour == (mask.mean() > 0.2)
        assert d.dice == pytest.approx(dice(mask, gt))
        assert d.iou == pytest.approx(iou(mask, gt))
    assert stats.max_prob == pytest.approx(prob_q.max() / 255)


def test_metrics_by_hand() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :2] = True  # 2 px
    b[0, 1:4] = True  # 3 px, overlap 1
    assert dice(a, b) == pytest.approx(2 * 1 / 5)
    assert iou(a, b) == pytest.approx(1 / 4)
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    # AUC: scores perfectly separate -> 1; reversed -> 0; ties -> 0.5
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert roc_auc(np.array([1.0]), np.array([1])) is None
    c = confusion(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
    assert (c["tp"], c["fp"], c["fn"], c["tn"]) == (1, 1, 1, 1) and c["accuracy"] == 0.5


def test_overlay_fill_contour_and_ground_truth() -> None:
    img = np.full((20, 20, 3), 100, np.uint8)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    fill = render_overlay(img, mask, (255, 0, 0), 0.5, "fill")
    assert fill.shape == (20, 20, 4) and fill[10, 10, :3].tolist() == [178, 50, 50]
    assert fill[0, 0, :3].tolist() == [100, 100, 100] and (fill[..., 3] == 255).all()
    line = render_overlay(img, mask, (0, 0, 255), 1.0, "contour")
    edge = contour(mask)
    assert edge.sum() == 36 and line[5, 10, :3].tolist() == [0, 0, 255] and line[10, 10, :3].tolist() == [100] * 3
    gt = np.zeros((20, 20), bool)
    gt[2:4, 2:4] = True
    both = render_overlay(img, mask, gt_mask=gt)
    assert both[2, 2, :3].tolist() == list(GT_COLOR)
    with pytest.raises(ValueError):
        render_overlay(img, mask, mode="bogus")
