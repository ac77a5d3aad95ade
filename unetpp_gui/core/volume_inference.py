"""Segment a NIfTI study slice by slice with the engine, and write its mask volume."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from unetpp_gui.core.consistency import PatientFilter, filter_patient
from unetpp_gui.core.inference import SliceResult, predict_images
from unetpp_gui.core.metrics import dice_from_counts
from unetpp_gui.core.postprocess import SliceStats, threshold_level
from unetpp_gui.core.volume import Study, VolumeResult, from_display, write_like


def slice_path(study: Study, k: int) -> Path:
    """The name a volume's slice goes by in tables and CSV files: ``<first file>#z012``."""
    return Path(f"{study.source.files[0]}#z{k:03d}")


def predict_study(model, study: Study, pixel_threshold: float, decision_threshold: float,
                  patient_filter: PatientFilter | None = None, batch_size: int = 4,
                  cancel: threading.Event | None = None) -> tuple[VolumeResult, list[np.ndarray]]:
    """Predict every axial slice of ``study`` (one patient: the 3-D filter applies to the whole volume).

    Returns the volume's numbers and its per-slice probability levels (display orientation).
    """
    probs = predict_images(model, study.slices(), batch_size, cancel)
    results = [SliceResult(slice_path(study, k), prob_q=q, gt=study.truth_slice(k), size=(q.shape[1], q.shape[0]))
               for k, q in enumerate(probs)]
    for r in results:
        r.stats = SliceStats.from_map(r.prob_q, r.gt)
    if patient_filter is not None:
        filter_patient(results, pixel_threshold, patient_filter)  # the whole volume is one patient
    result = VolumeResult(study.name, study.source.files[0], tuple(int(s) for s in study.reference.shape),
                          study.zooms_mm, warnings=list(study.warnings))
    inter = area = truth_total = 0
    best_area = 0
    for k, r in enumerate(results):
        d = r.stats.derive(pixel_threshold, decision_threshold)
        result.slices_with_tumour += int(d.tumour)
        if d.mask_pixels > best_area:
            best_area, result.largest_slice, result.largest_slice_area_ratio = d.mask_pixels, k, d.area_ratio
        area += d.mask_pixels
        if r.stats.gt_hist is not None:
            inter += r.stats.intersection(pixel_threshold)
            truth_total += int(r.stats.gt_pixels or 0)
    result.tumour_voxels = area
    result.tumour_ml = area * study.voxel_ml
    if study.truth is not None:
        result.dice = dice_from_counts(inter, area, truth_total)
    maps = [r.prob_q for r in results]
    for r in results:  # the per-slice rows keep their compact stats only
        r.prob_q = r.gt = None
    result.slice_results = results
    return result, maps


def write_study_outputs(study: Study, probs: list[np.ndarray], result: VolumeResult, out: Path,
                        pixel_threshold: float, save_prob: bool = False) -> None:
    """``<name>_pred.nii.gz`` (uint8 0/1) and, if asked, ``<name>_prob.nii.gz`` (uint8, probability x 255)."""
    level = threshold_level(pixel_threshold)
    prob_ras = np.stack([from_display(q) for q in probs], axis=2)
    result.mask_file = write_like(study.reference, (prob_ras > level).astype(np.uint8),
                                  out / f"{study.name}_pred.nii.gz")
    if save_prob:
        result.prob_file = write_like(study.reference, prob_ras, out / f"{study.name}_prob.nii.gz")
