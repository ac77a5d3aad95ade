"""Distillation targets: a teacher's probability maps blended with the masks (``unetpp train --teacher-maps``).

A teacher (one network, or an ensemble from ``scripts/ensemble.py``) runs once over the training slices, whole
and unaugmented, through the engine (its own normalisation and output handling); its maps are kept as uint8
levels in one compressed ``.npz`` keyed by slice name, small enough to travel to a lent GPU. Training then fits
``target = (1 - alpha) * mask + alpha * teacher``, warped together with the image by the augmentation, so one
network at the bundled model's cost learns from the ensemble.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


def slice_name(image: str | Path) -> str:
    """The key of a slice in a maps file: its file name without suffix (unique in the data sets used here)."""
    return Path(image).stem


def write_teacher_maps(model_path: str | Path, pairs: Sequence[Any], out: str | Path, batch_size: int = 8,
                       precision: str = "auto", progress: Callable[[int, int], None] | None = None) -> int:
    """Predict every pair's image with the teacher and store ``names`` and ``maps`` (N, H, W) uint8 levels."""
    from unetpp_gui.core.atomic import atomic_write_bytes
    from unetpp_gui.core.inference import predict_paths
    from unetpp_gui.core.model_io import load_model

    model = load_model(model_path, precision=precision)
    names, maps = [], []
    for res in predict_paths(model, [p.image for p in pairs], batch_size, keep_maps=True, progress=progress):
        if not res.ok or res.prob_q is None:
            raise ValueError(f"teacher could not predict {res.path}: {res.error}")
        names.append(slice_name(res.path))
        maps.append(res.prob_q)
    twice = sorted(n for n, count in Counter(names).items() if count > 1)
    if twice:
        raise ValueError(f"{len(twice)} slice name(s) occur in more than one folder (e.g. {twice[0]}): "
                         "maps are keyed by file name")
    buf = io.BytesIO()
    np.savez_compressed(buf, names=np.array(names), maps=np.stack(maps) if maps else np.zeros((0, 1, 1), np.uint8))
    atomic_write_bytes(Path(out), buf.getvalue())
    return len(names)


def soft_targets(names: Sequence[str], masks: np.ndarray, maps_path: str | Path, alpha: float) -> np.ndarray:
    """(N, H, W, 1) uint8 levels of ``(1 - alpha) * mask + alpha * teacher`` for the slices ``names``
    (``masks``: their 0/1 masks); a slice without a teacher map, or of another size, is an error."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("--distill-alpha is a weight in [0, 1]")
    with np.load(maps_path) as f:
        index = {str(n): i for i, n in enumerate(f["names"])}
        maps = f["maps"]
    missing = [n for n in names if n not in index]
    if missing:
        raise ValueError(f"{len(missing)} training slice(s) have no teacher map in {Path(maps_path).name} "
                         f"(e.g. {missing[0]}); make the maps for this split's training patients")
    if len(maps) and maps.shape[1:] != masks.shape[1:3]:
        raise ValueError(f"teacher maps are {maps.shape[2]}x{maps.shape[1]}, the training slices "
                         f"{masks.shape[2]}x{masks.shape[1]}")
    out = np.empty(masks.shape, np.uint8)
    for i, name in enumerate(names):
        level = (1.0 - alpha) * 255.0 * masks[i, ..., 0] + alpha * maps[index[name]].astype(np.float32)
        out[i, ..., 0] = np.clip(np.rint(level), 0, 255)
    return out
