"""Overlay rendering shared by the GUI and the CLI: plain NumPy, RGB(A) uint8 arrays."""

from __future__ import annotations

import numpy as np

DEFAULT_COLOR = (255, 48, 48)
GT_COLOR = (64, 255, 64)


def contour(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Boundary pixels of a boolean mask (inside pixels with an outside 4-neighbour)."""
    mask = mask.astype(bool)
    inner = mask.copy()
    for _ in range(width):
        p = np.pad(inner, 1, constant_values=False)
        inner = inner & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def render_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] = DEFAULT_COLOR,
    opacity: float = 0.45,
    mode: str = "fill",
    gt_mask: np.ndarray | None = None,
) -> np.ndarray:
    """The slice with the mask blended on top, as an opaque (H, W, 4) uint8 RGBA array.

    ``mode`` is ``"fill"`` (blend the whole mask at ``opacity``) or ``"contour"`` (draw its
    outline at full strength). ``gt_mask``, when given, is outlined in :data:`GT_COLOR`.
    """
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    base = image[:, :, :3].astype(np.float32)
    col = np.asarray(color, np.float32)
    mask = mask.astype(bool)
    if mode == "contour":
        edge = contour(mask, width=1)
        base[edge] = col
    elif mode == "fill":
        a = float(np.clip(opacity, 0.0, 1.0))
        base[mask] = base[mask] * (1.0 - a) + col * a
    else:
        raise ValueError(f"unknown overlay mode {mode!r}")
    if gt_mask is not None:
        base[contour(gt_mask)] = np.asarray(GT_COLOR, np.float32)
    out = np.empty(image.shape[:2] + (4,), np.uint8)
    out[:, :, :3] = np.clip(np.rint(base), 0, 255).astype(np.uint8)
    out[:, :, 3] = 255
    return out
