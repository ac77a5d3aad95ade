"""Writing masks and overlays for many slices: shared by ``unetpp predict`` and the GUI batch export."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator, Sequence

from unetpp_gui.core.image_io import save_png
from unetpp_gui.core.consistency import PatientFilter
from unetpp_gui.core.inference import SliceResult, predict_patients
from unetpp_gui.core.model_io import LoadedModel
from unetpp_gui.core.overlay import DEFAULT_COLOR, render_overlay
from unetpp_gui.core.postprocess import binarize


def output_path(out: Path, path: Path, roots: Sequence[Path], suffix: str) -> Path:
    """Mirror the slice's place under its input folder, so equal names never collide."""
    for root in roots:
        if root.is_dir():
            try:
                rel = path.relative_to(root)
            except ValueError:
                continue
            return out / root.name / rel.parent / f"{path.stem}{suffix}"
    return out / f"{path.stem}{suffix}"


def write_masks(
    model: LoadedModel,
    paths: Sequence[Path],
    out: Path,
    roots: Sequence[Path],
    pixel_threshold: float,
    overlay: bool = True,
    color: tuple[int, int, int] = DEFAULT_COLOR,
    opacity: float = 0.45,
    batch_size: int = 8,
    cancel: threading.Event | None = None,
    patient_filter: PatientFilter | None = None,
) -> Iterator[SliceResult]:
    """Predict ``paths`` and write ``<name>_pred.png`` (and ``_overlay.png``) under ``out``.

    Yields each result after its files are written (atomically), so a cancelled run leaves only
    complete files. The yielded results keep compact stats only. With ``patient_filter`` each
    patient's slices are filtered together (:func:`~unetpp_gui.core.inference.predict_patients`).
    """
    for res in predict_patients(model, paths, pixel_threshold, patient_filter, batch_size, keep_maps=True,
                                cancel=cancel):
        if res.ok and res.prob_q is not None and res.image is not None:
            mask = binarize(res.prob_q, pixel_threshold)
            save_png(output_path(out, res.path, roots, "_pred.png"), mask)
            if overlay:
                save_png(output_path(out, res.path, roots, "_overlay.png"),
                         render_overlay(res.image, mask, color, opacity, gt_mask=res.gt))
        res.image = res.prob_q = res.gt = None
        yield res
