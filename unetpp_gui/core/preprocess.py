"""From a decoded slice to the model's input, and from the model's map back to the slice."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from unetpp_gui.core.normalize import ChannelNorm

#: Models that accept any size get inputs padded to a multiple of this (five levels: 2**4).
SIZE_MULTIPLE = 16


@dataclass(frozen=True)
class Geometry:
    """How a slice was fitted to the model, so the map can be put back."""

    original_hw: tuple[int, int]
    model_hw: tuple[int, int]
    resized: bool  # True: bilinear resize; False: zero padding at bottom/right


def to_channels(rgb: np.ndarray, channels: int) -> np.ndarray:
    """RGB (H, W, 3) uint8 to the model's channel count (luminance for 1-channel models)."""
    if channels == 3:
        return rgb
    lum = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.round(lum), 0, 255).astype(np.uint8)[:, :, None]


def geometry_for(hw: tuple[int, int], model_hw: tuple[int, int] | None) -> Geometry:
    if model_hw is not None:
        return Geometry(hw, model_hw, resized=hw != model_hw)
    ph = -(-hw[0] // SIZE_MULTIPLE) * SIZE_MULTIPLE
    pw = -(-hw[1] // SIZE_MULTIPLE) * SIZE_MULTIPLE
    return Geometry(hw, (ph, pw), resized=False)


def prepare(
    rgb: np.ndarray, model_hw: tuple[int, int] | None, channels: int, scale: float, offset: float = 0.0,
    norm: ChannelNorm | None = None,
) -> tuple[np.ndarray, Geometry]:
    """Model input (h, w, C) float32 for one slice, and the geometry to undo it.

    ``norm`` (the model's stored intensity normalisation) is applied before ``scale``/``offset``.
    """
    geo = geometry_for(rgb.shape[:2], model_hw)
    h, w = geo.model_hw
    if geo.resized:
        rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))
    x = to_channels(rgb, channels)
    x = norm.apply(x) if norm is not None else x.astype(np.float32)
    x = x * np.float32(scale) + np.float32(offset)
    if not geo.resized and geo.model_hw != geo.original_hw:
        padded = np.zeros((h, w, x.shape[2]), np.float32)
        padded[: x.shape[0], : x.shape[1]] = x
        x = padded
    return x, geo


def restore(prob: np.ndarray, geo: Geometry) -> np.ndarray:
    """Probability map at the model's size back to the slice's original size."""
    oh, ow = geo.original_hw
    if geo.resized:
        img = Image.fromarray(prob.astype(np.float32), mode="F").resize((ow, oh), Image.BILINEAR)
        return np.clip(np.asarray(img), 0.0, 1.0)
    return prob[:oh, :ow]
