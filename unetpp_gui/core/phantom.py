"""Synthetic brain-like slices with a known 'lesion', for tests and the self-test.

No dataset images ship with the project; this makes plausible 3-channel slices on demand.
"""

from __future__ import annotations

import numpy as np


def phantom(size: int = 256, lesion: bool = True, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An (H, W, 3) uint8 slice (skull ring, brain, optional bright lesion) and its bool mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cy, cx = 0.5 + rng.uniform(-0.03, 0.03, 2)
    r = np.sqrt(((yy - cy) / 0.40) ** 2 + ((xx - cx) / 0.33) ** 2)
    brain = r < 0.9
    skull = (r >= 0.9) & (r < 1.0)
    img = np.zeros((size, size), np.float32)
    img[brain] = 90 + 20 * np.sin(12 * yy[brain]) * np.cos(9 * xx[brain])
    img[skull] = 160
    mask = np.zeros((size, size), bool)
    if lesion:
        ly, lx = cy + rng.uniform(-0.15, 0.15), cx + rng.uniform(-0.12, 0.12)
        rad = rng.uniform(0.06, 0.12)
        mask = ((yy - ly) ** 2 + (xx - lx) ** 2) < rad**2
        mask &= brain
        img[mask] = 200
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    rgb = np.stack([img * 0.8, img, img * 0.9], axis=2)
    return np.clip(rgb, 0, 255).astype(np.uint8), mask
