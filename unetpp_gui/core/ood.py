"""Is a slice like the ones the model learned from? A cheap intensity check, run on every slice.

Measured on the 3,140 LGG slices (256x256 RGB): at most 0.03 % of a slice's pixels are saturated
(255 in some channel), and a slice without anatomy is dark (nearly uniform near 0). A slice outside
those bounds is still predicted, but its result carries a warning instead of a silent decision.
"""

from __future__ import annotations

import numpy as np

from unetpp_gui.core.normalize import channel_peak

#: Share of saturated pixels above which a slice is flagged (the LGG slices: at most 0.0003).
MAX_SATURATED = 0.01
#: A slice whose standard deviation is below this is uniform (no anatomy) ...
UNIFORM_STD = 2.0
#: ... and flagged when its mean is above this (blank LGG slices are black).
UNIFORM_MEAN = 20.0


def unusual(image: np.ndarray) -> str | None:
    """A one-line warning when ``image`` (H, W, 3 uint8) is unlike the training slices, else None."""
    saturated = float(np.count_nonzero(channel_peak(image) >= 255)) / (image.shape[0] * image.shape[1])
    if saturated > MAX_SATURATED:
        return (f"unlike the training slices: {saturated:.0%} of its pixels are saturated (MR slices of the "
                "training data have almost none); check the decision")
    mean, std = _mean_std(image)
    if std < UNIFORM_STD and mean > UNIFORM_MEAN:
        return "unlike the training slices: a uniform image with no anatomy; check the decision"
    return None


def _mean_std(image: np.ndarray) -> tuple[float, float]:
    """``image.mean()`` and ``image.std()``; for uint8 from a 256-bin histogram (no float copy of the slice)."""
    if image.dtype != np.uint8:
        return float(image.mean()), float(image.std())
    counts = np.bincount(image.ravel(), minlength=256).astype(np.float64)
    values = np.arange(256, dtype=np.float64)
    n = counts.sum()
    mean = float(counts @ values / n)
    var = float(counts @ (values - mean) ** 2 / n)
    return mean, var ** 0.5
