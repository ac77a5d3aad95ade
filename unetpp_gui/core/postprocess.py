"""Probability map to mask, area ratio and decision, re-derivable at any threshold.

Probabilities are kept at 8-bit precision (``q = round(255 * p)``). A slice's compact summary
is two 256-bin histograms (all pixels, and ground-truth pixels): from them the mask area, the
area ratio, the decision and Dice/IoU at *any* pixel threshold follow exactly, with no model
call and about 2 KB per slice. A pixel is tumour when ``q > threshold_level(t)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unetpp_gui.core.metrics import dice_from_counts, iou_from_counts

LEVELS = 256


def quantize(prob: np.ndarray) -> np.ndarray:
    """Float probabilities in [0, 1] to uint8 levels."""
    return np.clip(np.rint(prob * 255.0), 0, 255).astype(np.uint8)


def threshold_level(t: float) -> int:
    """Pixels with level strictly above this are tumour at pixel threshold ``t``."""
    return int(np.floor(float(t) * 255.0 + 1e-9))


def binarize(prob_q: np.ndarray, pixel_threshold: float) -> np.ndarray:
    return prob_q > threshold_level(pixel_threshold)


@dataclass(frozen=True)
class Derived:
    """What a slice looks like at one pair of thresholds."""

    mask_pixels: int
    area_ratio: float
    tumour: bool
    max_prob: float
    dice: float | None
    iou: float | None


@dataclass
class SliceStats:
    """Compact per-slice result from which every threshold-dependent number follows."""

    hist: np.ndarray  # (256,) int64 counts of each probability level
    gt_hist: np.ndarray | None  # (256,) counts of levels inside the ground-truth mask
    gt_pixels: int | None

    @classmethod
    def from_map(cls, prob_q: np.ndarray, gt: np.ndarray | None = None) -> "SliceStats":
        hist = np.bincount(prob_q.ravel(), minlength=LEVELS).astype(np.int64)
        if gt is None:
            return cls(hist, None, None)
        if gt.shape != prob_q.shape:
            raise ValueError(f"ground truth {gt.shape} does not match the slice {prob_q.shape}")
        gt_hist = np.bincount(prob_q[gt].ravel(), minlength=LEVELS).astype(np.int64)
        return cls(hist, gt_hist, int(gt.sum()))

    @property
    def n_pixels(self) -> int:
        return int(self.hist.sum())

    @property
    def max_prob(self) -> float:
        nz = np.flatnonzero(self.hist)
        return float(nz[-1]) / 255.0 if nz.size else 0.0

    def mask_pixels(self, pixel_threshold: float) -> int:
        return int(self.hist[threshold_level(pixel_threshold) + 1 :].sum())

    def intersection(self, pixel_threshold: float) -> int:
        assert self.gt_hist is not None
        return int(self.gt_hist[threshold_level(pixel_threshold) + 1 :].sum())

    def derive(self, pixel_threshold: float, decision_threshold: float) -> Derived:
        area = self.mask_pixels(pixel_threshold)
        ratio = area / max(self.n_pixels, 1)
        dice = iou = None
        if self.gt_hist is not None and self.gt_pixels is not None:
            inter = self.intersection(pixel_threshold)
            dice = dice_from_counts(inter, area, self.gt_pixels)
            iou = iou_from_counts(inter, area, self.gt_pixels)
        return Derived(area, ratio, ratio > decision_threshold, self.max_prob, dice, iou)
