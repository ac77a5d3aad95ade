"""Evaluation on held-out patients, and threshold calibration stored in the model.

Everything is computed from each slice's compact :class:`~unetpp_gui.core.postprocess.SliceStats`,
so one model pass serves every threshold tried by the calibration.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from unetpp_gui.core.metrics import confusion, dice_from_counts, roc_auc
from unetpp_gui.core.postprocess import SliceStats

PIXEL_GRID = tuple(round(x, 2) for x in np.arange(0.1, 0.91, 0.05))
#: A tumour is "small" when it covers less than this share of the slice (~655 px at 256x256).
SMALL_TUMOUR = 0.01


@dataclass
class Evaluated:
    patient: str
    path: Path
    stats: SliceStats


def collect(model: Any, pairs: Sequence[Any], batch_size: int = 8, progress: Any = None) -> list[Evaluated]:
    """Run the model once over ``pairs`` (training.data.Pair) and keep per-slice stats."""
    from unetpp_gui.core.inference import predict_paths

    patient = {p.image: p.patient for p in pairs}
    out = []
    for res in predict_paths(model, [p.image for p in pairs], batch_size, keep_maps=False, progress=progress):
        if res.ok and res.stats is not None and res.stats.gt_hist is not None:
            out.append(Evaluated(patient[res.path], res.path, res.stats))
    return out


def metrics_at(items: Sequence[Evaluated], pixel_threshold: float, decision_threshold: float) -> dict[str, Any]:
    """Per-patient 3-D Dice, tumour-slice Dice and slice-level detection at two thresholds."""
    per_patient: dict[str, list[int]] = {}
    slice_dice, labels, scores = [], [], []
    small_dice, small_found = [], []
    for it in items:
        s = it.stats
        area = s.mask_pixels(pixel_threshold)
        inter = s.intersection(pixel_threshold)
        called = area / max(s.n_pixels, 1) > decision_threshold
        acc = per_patient.setdefault(it.patient, [0, 0, 0, 0, 0])
        acc[0] += inter
        acc[1] += area
        acc[2] += int(s.gt_pixels or 0)
        if called:  # gated: the mask of a slice called NO TUMOUR is dropped, as a reader would
            acc[3] += inter
            acc[4] += area
        has_tumour = bool(s.gt_pixels)
        if has_tumour:
            slice_dice.append(dice_from_counts(inter, area, int(s.gt_pixels or 0)))
            if (s.gt_pixels or 0) < SMALL_TUMOUR * s.n_pixels:
                small_dice.append(slice_dice[-1])
                small_found.append(area / max(s.n_pixels, 1) > decision_threshold)
        labels.append(has_tumour)
        scores.append(area / max(s.n_pixels, 1))
    patient_dice = {p: dice_from_counts(v[0], v[1], v[2]) for p, v in sorted(per_patient.items())}
    gated = {p: dice_from_counts(v[3], v[4], v[2]) for p, v in sorted(per_patient.items())}
    values = np.array(list(patient_dice.values())) if patient_dice else np.array([np.nan])
    gated_values = np.array(list(gated.values())) if gated else np.array([np.nan])
    labels_a, scores_a = np.array(labels, bool), np.array(scores)
    det = confusion(scores_a > decision_threshold, labels_a)
    return {
        "pixel_threshold": pixel_threshold,
        "decision_threshold": decision_threshold,
        "patients": len(patient_dice),
        "slices": len(items),
        "tumour_slices": int(labels_a.sum()),
        "patient_dice_mean": float(np.mean(values)),
        "patient_dice_median": float(np.median(values)),
        "patient_dice_min": float(np.min(values)),
        "patient_dice_gated_mean": float(np.mean(gated_values)),
        "patient_dice_gated_median": float(np.median(gated_values)),
        "tumour_slice_dice_mean": float(np.mean(slice_dice)) if slice_dice else None,
        "small_tumour_slices": len(small_dice),
        "small_tumour_slice_dice_mean": float(np.mean(small_dice)) if small_dice else None,
        "small_tumour_sensitivity": float(np.mean(small_found)) if small_found else None,
        "slice_auc": roc_auc(scores_a, labels_a),
        **{f"slice_{k}": v for k, v in det.items()},
        "per_patient_dice": patient_dice,
        "per_patient_dice_gated": gated,
    }


def calibrate(items: Sequence[Evaluated]) -> tuple[float, float]:
    """Pixel threshold maximising mean per-patient Dice, then the area-ratio threshold
    maximising balanced accuracy (sensitivity + specificity) of the tumour decision."""
    best_t = max(PIXEL_GRID, key=lambda t: metrics_at(items, t, 0.0)["patient_dice_mean"])
    ratios = np.array([it.stats.mask_pixels(best_t) / max(it.stats.n_pixels, 1) for it in items])
    labels = np.array([bool(it.stats.gt_pixels) for it in items])
    candidates = np.unique(np.concatenate([[0.0], ratios]))
    best_d, best_score = 0.0, -1.0
    for i, c in enumerate(candidates):
        # midpoint to the next observed ratio: the same decisions, but a more robust cut
        cut = (c + candidates[i + 1]) / 2 if i + 1 < len(candidates) else c
        det = confusion(ratios > cut, labels)
        score = (det["sensitivity"] or 0.0) + (det["specificity"] or 0.0)
        if score > best_score + 1e-12:
            best_d, best_score = float(cut), score
    return float(best_t), best_d


def store_thresholds(path: Path, pixel_threshold: float, decision_threshold: float, report: dict[str, Any]) -> None:
    """Write calibrated thresholds into the model file (copy, edit, atomic rename)."""
    from unetpp_gui.core.atomic import atomic_path
    from unetpp_gui.core.metadata import read_metadata, write_metadata

    meta = read_metadata(path)
    meta.pixel_threshold = pixel_threshold
    meta.decision_threshold = decision_threshold
    meta.metrics = {**meta.metrics, "calibrated_on_patients": report["patients"],
                    "patient_dice_mean": report["patient_dice_mean"]}
    with atomic_path(path, suffix=path.suffix) as tmp:
        shutil.copyfile(path, tmp)
        write_metadata(tmp, meta)


def markdown(report: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    rows = []
    for title, m in report["results"].items():
        rows.append(f"| {title} | {fmt(m['pixel_threshold'])} | {fmt(m['decision_threshold'])} | "
                    f"{fmt(m['patient_dice_mean'])} | {fmt(m['patient_dice_median'])} | "
                    f"{fmt(m['patient_dice_gated_mean'])} | "
                    f"{fmt(m['tumour_slice_dice_mean'])} | {fmt(m['small_tumour_slice_dice_mean'])} | "
                    f"{fmt(m['slice_accuracy'])} | "
                    f"{fmt(m['slice_sensitivity'])} | {fmt(m['slice_specificity'])} | {fmt(m['slice_auc'])} |")
    first = next(iter(report["results"].values()))
    lines = [
        f"# Evaluation of {report['model']}",
        "",
        f"{first['patients']} patients, {first['slices']} slices ({first['tumour_slices']} with tumour, "
        f"{first['small_tumour_slices']} of them small: under {SMALL_TUMOUR:.0%} of the slice). "
        f"Model pass: {report['seconds']:.1f} s.",
        "",
        "| thresholds | pixel | area ratio | patient Dice mean | median | gated mean | tumour-slice Dice | "
        "small-tumour slice Dice | accuracy | sensitivity | specificity | AUC |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Per-patient 3-D Dice (last row's thresholds):",
        "",
        "| patient | Dice |",
        "|---|---|",
        *[f"| {p} | {d:.4f} |" for p, d in list(report["results"].values())[-1]["per_patient_dice"].items()],
        "",
    ]
    return "\n".join(lines)


def evaluate_cli(args: argparse.Namespace) -> int:
    from training.data import find_pairs
    from unetpp_gui.core.model_io import load_model, resolve_model_path

    path = resolve_model_path(args.model)
    model = load_model(path, trust=args.trust_model)
    meta = model.metadata
    scan = find_pairs(args.data, args.patient_prefix_fields)
    patients: list[str] | None = args.patients or None
    if patients is None and not args.all_patients and meta.training.get("split"):
        patients = list(meta.training["split"]["validation"])
        print(f"evaluating the model's {len(patients)} validation patients", file=sys.stderr)
    pairs = [p for p in scan.pairs if patients is None or p.patient in set(patients)]
    if not pairs:
        print("unetpp evaluate: error: no image/mask pairs for the chosen patients", file=sys.stderr)
        return 2
    start = time.monotonic()

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} slices", end="", file=sys.stderr, flush=True)

    items = collect(model, pairs, args.batch_size, progress)
    print(file=sys.stderr)
    seconds = time.monotonic() - start
    pt = args.pixel_threshold if args.pixel_threshold is not None else meta.pixel_threshold
    dt = args.decision_threshold if args.decision_threshold is not None else meta.decision_threshold
    results = {"model's thresholds": metrics_at(items, pt, dt)}
    if args.calibrate:
        cpt, cdt = calibrate(items)
        results["calibrated"] = metrics_at(items, cpt, cdt)
        store_thresholds(path, cpt, cdt, results["calibrated"])
        print(f"calibrated: pixel threshold {cpt}, decision threshold {cdt:.6f} (stored in {path.name})", file=sys.stderr)
    report = {"model": path.name, "seconds": seconds, "parameters": model.n_params,
              "train_seconds": meta.training.get("elapsed_s"), "results": results}
    text = markdown(report)
    print(text)
    if args.report:
        from unetpp_gui.core.atomic import atomic_write_bytes

        out = Path(args.report)
        body = json.dumps(report, indent=1, default=str) if out.suffix == ".json" else text
        atomic_write_bytes(out, body.encode())
    return 0
