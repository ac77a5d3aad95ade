"""Is a slice like the ones the model learned from? A cheap intensity check, run on every slice.

Measured on the 3,140 LGG slices (256x256 RGB): at most 0.03 % of a slice's pixels are saturated
(255 in some channel), and a slice without anatomy is dark (nearly uniform near 0). A slice outside
those bounds is still predicted, but its result carries a warning instead of a silent decision.

A slice with anatomy whose three channels are one image (a grayscale PNG, a study holding one sequence
three times, or an LGG slice stored with only FLAIR) gives the model one MR sequence where it learned from
three: the bundled model's mean patient Dice on grayscale FLAIR copies of its test patients was 0.72
against 0.84 (model card, "Single-sequence slices"), so those results carry a warning too.
"""

from __future__ import annotations

import numpy as np

from unetpp_gui.core.normalize import ChannelNorm, channel_peak

#: Share of saturated pixels above which a slice is flagged (the LGG slices: at most 0.0003).
MAX_SATURATED = 0.01
#: A slice whose standard deviation is below this is uniform (no anatomy) ...
UNIFORM_STD = 2.0
#: ... and flagged when its mean is above this (blank LGG slices are black).
UNIFORM_MEAN = 20.0
#: A slice has anatomy when this share of its pixels is brighter than ANATOMY_LEVEL (the normalisation's own
#: foreground rule, 1 % above 10); only then is a single sequence flagged (blank end slices are alike in every
#: channel).
ANATOMY_SHARE = ChannelNorm.min_foreground
ANATOMY_LEVEL = ChannelNorm.floor


def unusual(image: np.ndarray) -> str | None:
    """A one-line warning when ``image`` (H, W, 3 uint8) is unlike the training slices, else None."""
    saturated = float(np.count_nonzero(channel_peak(image) >= 255)) / (image.shape[0] * image.shape[1])
    if saturated > MAX_SATURATED:
        return (f"unlike the training slices: {saturated:.0%} of its pixels are saturated (MR slices of the "
                "training data have almost none); check the decision")
    mean, std = _mean_std(image)
    if std < UNIFORM_STD and mean > UNIFORM_MEAN:
        return "unlike the training slices: a uniform image with no anatomy; check the decision"
    if single_sequence(image):
        return ("one MR sequence only (the same image in every channel); the model learned from pre-contrast, "
                "FLAIR and post-contrast together and segments single-sequence slices less well; check the mask")
    return None


def single_sequence(image: np.ndarray) -> bool:
    """Whether ``image`` (H, W, 3) shows anatomy in one image repeated in every channel."""
    if image.ndim != 3 or image.shape[-1] < 2:
        return False
    first = image[..., 0]
    if not all(np.array_equal(first, image[..., c]) for c in range(1, image.shape[-1])):
        return False
    return float(np.count_nonzero(first > ANATOMY_LEVEL)) >= ANATOMY_SHARE * first.size


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
