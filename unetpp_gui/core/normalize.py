"""Per-slice, per-channel intensity normalisation.

MR intensities have no fixed scale: one scanner's FLAIR channel can be three times dimmer than
another's, and a model trained on the bright ones misses the lesion in the dim one. A model that
stores a :class:`ChannelNorm` in its metadata gets every slice rescaled, channel by channel, so that
the ``percentile``-th intensity of the slice's foreground lands on that channel's ``target``; the
result stays in the 0..255 range and is then scaled like any other input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

METHOD = "channel_percentile"


@dataclass(frozen=True)
class ChannelNorm:
    """Rescale each channel so its foreground percentile lands on ``target`` (0..255 units)."""

    target: tuple[float, ...]
    percentile: float = 99.0
    floor: float = 10.0  # a pixel is foreground when any channel is brighter than this
    min_foreground: float = 0.01  # below this share of foreground pixels a slice is left as is
    max_gain: float = 5.0  # gains are clipped to [1/max_gain, max_gain]

    def gains(self, x: np.ndarray) -> np.ndarray:
        """Per-channel gain (C,) for one slice (H, W, C) in 0..255 units."""
        c = x.shape[-1]
        level = slice_levels(x, self.percentile, self.floor, self.min_foreground)
        if level is None:
            return np.ones(c, np.float32)
        gain = np.asarray(self.target[:c], np.float32) / np.maximum(level, 1.0)
        return np.clip(gain, 1.0 / self.max_gain, self.max_gain).astype(np.float32)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The normalised slice, float32 in 0..255."""
        return np.clip(x.astype(np.float32) * self.gains(x), 0.0, 255.0)

    def apply_uint8(self, x: np.ndarray) -> np.ndarray:
        """The normalised slice rounded back to uint8 (compact storage for training sets)."""
        return np.round(self.apply(x)).astype(np.uint8)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["target"] = [round(float(t), 3) for t in self.target]
        doc["method"] = METHOD
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> "ChannelNorm | None":
        """The normalisation a metadata entry describes; ``None`` for an empty or unknown one."""
        if not doc or doc.get("method") != METHOD:
            return None
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        known["target"] = tuple(float(t) for t in known["target"])
        return cls(**known)


def channel_peak(x: np.ndarray) -> np.ndarray:
    """(H, W): each pixel's brightest channel, as ``x.max(axis=-1)`` but several times faster for a few channels."""
    peak = x[..., 0]
    for c in range(1, x.shape[-1]):
        peak = np.maximum(peak, x[..., c])
    return peak


def foreground(x: np.ndarray, floor: float) -> np.ndarray:
    """(H, W) bool: pixels brighter than ``floor`` in any channel."""
    return channel_peak(x) > floor


def channel_percentiles(x: np.ndarray, mask: np.ndarray, q: float) -> np.ndarray:
    """``np.percentile(x[mask], q, axis=0)`` (linear interpolation), from histograms for uint8 data:
    the same numbers several times faster (this runs once per slice in the decode thread)."""
    if x.dtype != np.uint8:
        return np.percentile(x[mask], q, axis=0)
    n = int(mask.sum())
    pos = q / 100.0 * (n - 1)
    lo, frac = int(np.floor(pos)), pos - np.floor(pos)
    out = np.empty(x.shape[-1], np.float64)
    for c in range(x.shape[-1]):
        cum = np.bincount(x[..., c][mask], minlength=256).cumsum()
        a, b = np.searchsorted(cum, [lo, min(lo + 1, n - 1)], side="right")  # sorted values at lo, lo + 1
        out[c] = a + frac * (b - a)
    return out


def slice_levels(x: np.ndarray, percentile: float, floor: float, min_foreground: float) -> np.ndarray | None:
    """Each channel's ``percentile`` over the slice's foreground, or None when the foreground is
    under ``min_foreground`` of the slice (nothing to measure)."""
    fg = foreground(x, floor)
    if fg.mean() < min_foreground:
        return None
    return channel_percentiles(x, fg, percentile)


def fit_channel_norm(images: np.ndarray, percentile: float = 99.0, floor: float = 10.0,
                     min_foreground: float = 0.01) -> ChannelNorm:
    """Targets from a training set (N, H, W, C): the median over slices of each slice's percentile."""
    levels = [lv for x in images if (lv := slice_levels(x, percentile, floor, min_foreground)) is not None]
    if not levels:
        raise ValueError("no slice has enough foreground to fit an intensity normalisation")
    target = np.median(np.stack(levels), axis=0)
    return ChannelNorm(tuple(float(t) for t in target), percentile, floor, min_foreground)
