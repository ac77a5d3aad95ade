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

#: Pixel thresholds tried by the calibration. It starts at 0.05: stage 4's optimum sat on the former lower
#: edge, 0.10 (networks trained with Dice terms often put faint lesion borders at low probabilities).
PIXEL_GRID = tuple(round(x, 2) for x in np.arange(0.05, 0.91, 0.05))
#: A tumour is "small" when it covers less than this share of the slice (~655 px at 256x256).
SMALL_TUMOUR = 0.01


#: 3-D filter settings tried by the calibration (None = off; see unetpp_gui.core.consistency).
FILTER_GRID: tuple[float | None, ...] = (None, 1.0, 0.5, 0.2, 0.1, 0.05)


@dataclass
class Evaluated:
    patient: str
    path: Path
    stats: SliceStats
    prob_q: np.ndarray | None = None  # kept when a patient 3-D filter is to be tried
    gt: np.ndarray | None = None


def collect(model: Any, pairs: Sequence[Any], batch_size: int = 8, progress: Any = None,
            keep_maps: bool = False) -> list[Evaluated]:
    """Run the model once over ``pairs`` (training.data.Pair) and keep per-slice stats (and, with
    ``keep_maps``, the probability levels and ground truth: ~130 KB per 256x256 slice)."""
    from unetpp_gui.core.inference import predict_paths

    patient = {p.image: p.patient for p in pairs}
    out = []
    for res in predict_paths(model, [p.image for p in pairs], batch_size, keep_maps=keep_maps, progress=progress):
        if res.ok and res.stats is not None and res.stats.gt_hist is not None:
            out.append(Evaluated(patient[res.path], res.path, res.stats,
                                 res.prob_q if keep_maps else None, res.gt if keep_maps else None))
    return out


def out_of_fold(models: Sequence[str | Path], pairs: Sequence[Any], batch_size: int = 8,
                progress: Any = None) -> tuple[list[Evaluated], dict[str, str]]:
    """Cross-validation: each fold model run on its own stored validation patients only, pooled (maps kept,
    for calibration). A ``.npz`` written by :func:`save_maps` stands for its fold model (no model run).
    Returns the items and which model held out each patient; a patient held out by two folds, or a model
    without a validation split, is an error."""
    from unetpp_gui.core.model_io import load_model

    held: dict[str, str] = {}
    items: list[Evaluated] = []
    for path in map(Path, models):
        if path.suffix == ".npz":
            mine_items, name = load_maps(path)
            val = sorted({it.patient for it in mine_items})
        else:
            model = load_model(path)
            name = path.name
            val = list((model.metadata.training.get("split") or {}).get("validation") or [])
            if not val:
                raise ValueError(f"{path.name} stores no validation patients: not a cross-validation fold")
        twice = sorted(set(val) & set(held))
        if twice:
            raise ValueError(f"{twice[0]} is held out by both {held[twice[0]]} and {name}: folds must not overlap")
        held.update({p: name for p in val})
        if path.suffix != ".npz":
            mine = [q for q in pairs if q.patient in set(val)]
            mine_items = collect(model, mine, batch_size, progress, keep_maps=True)
        items.extend(mine_items)
    return items, held


def save_maps(path: str | Path, items: Sequence[Evaluated], model_name: str) -> Path:
    """Write one fold's out-of-fold predictions (probability levels and ground truth, maps kept) to a
    compressed ``.npz``, so the pooled figures and calibration can be recomputed without the fold's model.

    Levels at or below the lowest calibrated pixel threshold are stored as 0: no figure of
    :func:`metrics_at` or :func:`calibrate_filter` reads them, and the file shrinks about tenfold.
    """
    if not items:
        raise ValueError("no slices to save")
    if any(it.prob_q is None or it.gt is None for it in items):
        raise ValueError("saving maps needs collect(..., keep_maps=True)")
    if len({it.prob_q.shape for it in items}) != 1:  # type: ignore[union-attr]
        raise ValueError("saved maps must share one slice size")
    from unetpp_gui.core.postprocess import threshold_level

    floor = threshold_level(min(PIXEL_GRID))
    prob = np.stack([it.prob_q for it in items])  # type: ignore[misc]
    prob[prob <= floor] = 0
    gt = np.stack([it.gt for it in items]).astype(bool)  # type: ignore[misc]
    path = Path(path)
    np.savez_compressed(path, prob=prob, gt=np.packbits(gt, axis=None), shape=np.array(gt.shape),
                        patient=np.array([it.patient for it in items]),
                        slice=np.array([f"{it.path.parent.name}/{it.path.name}" for it in items]),
                        model=np.array(model_name), floor=np.array(floor))
    return path


def load_maps(path: str | Path) -> tuple[list[Evaluated], str]:
    """The items a :func:`save_maps` file holds (in their saved order) and the name of the model that made them."""
    with np.load(path) as f:
        shape = tuple(int(x) for x in f["shape"])
        gt = np.unpackbits(f["gt"], count=int(np.prod(shape))).reshape(shape).astype(bool)
        prob = f["prob"]
        items = [Evaluated(str(p), Path(str(s)), SliceStats.from_map(q, g), q, g)
                 for p, s, q, g in zip(f["patient"], f["slice"], prob, gt)]
        return items, str(f["model"])


def with_patient_filter(items: Sequence[Evaluated], pixel_threshold: float,
                        min_fraction: float | None) -> list[Evaluated]:
    """The items as the patient 3-D filter leaves them (each patient's slices in their given order)."""
    if min_fraction is None:
        return list(items)
    from unetpp_gui.core.consistency import apply_removed, removed_voxels

    by_patient: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        if it.prob_q is None:
            raise ValueError("the 3-D filter needs the probability maps: collect(..., keep_maps=True)")
        by_patient.setdefault(it.patient, []).append(i)
    out = list(items)
    for idxs in by_patient.values():
        shapes = {items[i].prob_q.shape for i in idxs}  # type: ignore[union-attr]
        if len(idxs) < 2 or len(shapes) != 1:
            continue
        removed = removed_voxels([items[i].prob_q for i in idxs], pixel_threshold, min_fraction)  # type: ignore[misc]
        for i, rem in zip(idxs, removed):
            if rem.any():
                it = items[i]
                q = apply_removed(it.prob_q, rem)  # type: ignore[arg-type]
                out[i] = Evaluated(it.patient, it.path, SliceStats.from_map(q, it.gt), q, it.gt)
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


def _best_pixel_threshold(items: Sequence[Evaluated], min_fraction: float | None) -> tuple[float, float]:
    """(pixel threshold of :data:`PIXEL_GRID` maximising mean per-patient Dice, that Dice), with the given
    patient 3-D filter (None: none); the first of equal scores wins."""
    scores = {t: metrics_at(with_patient_filter(items, t, min_fraction), t, 0.0)["patient_dice_mean"]
              for t in PIXEL_GRID}
    best = max(scores, key=scores.__getitem__)
    return float(best), scores[best]


def calibrate(items: Sequence[Evaluated]) -> tuple[float, float]:
    """Pixel threshold maximising mean per-patient Dice, then the area-ratio threshold
    maximising balanced accuracy (sensitivity + specificity) of the tumour decision."""
    best_t, _ = _best_pixel_threshold(items, None)
    return best_t, calibrate_decision(items, best_t)


def calibrate_filter(items: Sequence[Evaluated]) -> tuple[float, float, float | None]:
    """Thresholds and patient 3-D filter, chosen together on ``items`` (maps kept).

    Each filter setting of :data:`FILTER_GRID` gets its best pixel threshold (mean per-patient Dice);
    a filter is chosen only when it beats no filter by at least 0.001 of mean patient Dice. The
    area-ratio threshold is then chosen on the unfiltered slices (see :func:`calibrate_decision`).
    """
    scored = [(*_best_pixel_threshold(items, f), f) for f in FILTER_GRID]  # (threshold, score, filter)
    t, score, f = max(scored, key=lambda s: s[1])
    if f is not None and score < scored[0][1] + 0.001:
        t, score, f = scored[0]
    # The decision threshold is chosen on unfiltered slices: a slice opened alone is never filtered, and
    # must not be judged by a threshold that assumed the filter had already removed its specks.
    return t, calibrate_decision(items, t), f


def calibrate_decision(items: Sequence[Evaluated], best_t: float) -> float:
    """The area-ratio threshold maximising balanced accuracy at pixel threshold ``best_t``."""
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
    return best_d


def store_thresholds(path: Path, pixel_threshold: float, decision_threshold: float, report: dict[str, Any],
                     patient_filter: float | None = None, patients: Sequence[str] = ()) -> None:
    """Write calibrated thresholds and the patient 3-D filter (None: off) into the model file
    (copy, edit, atomic rename)."""
    from unetpp_gui.core.atomic import atomic_path
    from unetpp_gui.core.metadata import read_metadata, write_metadata

    meta = read_metadata(path)
    meta.pixel_threshold = pixel_threshold
    meta.decision_threshold = decision_threshold
    meta.patient_filter = {"min_fraction": patient_filter} if patient_filter is not None else {}
    meta.metrics = {**meta.metrics, "calibrated_on_patients": report["patients"],
                    "calibration_patients": list(patients),
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
        f"Patients: {report.get('patients_why', 'as chosen')}.",
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
        "Per-patient 3-D Dice (first row's settings):",
        "",
        "| patient | Dice |",
        "|---|---|",
        *[f"| {p} | {d:.4f} |" for p, d in first["per_patient_dice"].items()],
        "",
    ]
    return "\n".join(lines)


def choose_patients(args: argparse.Namespace, meta: Any, available: Sequence[str]) -> tuple[list[str], str]:
    """The patients to evaluate and a sentence saying why (``--patients``, ``--split``, or the
    model's stored split: its untouched test split when it has one, else its validation split)."""
    split = (meta.training.get("split") or {}) if meta.training else {}
    if args.patients:
        return list(args.patients), f"the {len(args.patients)} patient(s) given with --patients"
    name = "all" if args.all_patients else args.split
    if name is None:
        name = "test" if split.get("test") else ("validation" if split.get("validation") else "all")
    if name == "all":
        return list(available), f"every patient in --data ({len(available)})"
    if not split.get(name):
        raise ValueError(f"the model stores no {name} split; name patients with --patients, or use --split all")
    why = {"test": "untouched test split (chose nothing in training)",
           "validation": "validation split (chose the checkpoint and the calibration)"}[name]
    return list(split[name]), f"the model's {len(split[name])} {why} patients"


def evaluate_cli(args: argparse.Namespace) -> int:
    from training.data import find_pairs
    from unetpp_gui.core.model_io import load_model, resolve_model_path

    path = resolve_model_path(args.model)
    int8 = getattr(args, "precision", "float32") == "int8"
    if int8 and args.calibrate:
        print("unetpp evaluate: error: thresholds are calibrated on the float32 network (they are stored in the "
              "model and serve every precision); drop --calibrate or --precision int8", file=sys.stderr)
        return 2
    model = load_model(path, trust=args.trust_model, tta=getattr(args, "tta", False),
                       precision="int8" if int8 else "float32", runtime="openvino" if int8 else "tensorflow")
    if int8 and model.precision != "int8":
        print(f"unetpp evaluate: error: {model.precision_note}", file=sys.stderr)
        return 2
    meta = model.metadata
    scan = find_pairs(args.data, args.patient_prefix_fields)
    try:
        patients, why = choose_patients(args, meta, scan.patients)
    except ValueError as exc:
        print(f"unetpp evaluate: error: {exc}", file=sys.stderr)
        return 2
    split = (meta.training.get("split") or {}) if meta.training else {}
    if args.calibrate and not args.patients and patients == list(split.get("test") or [None]):
        print("unetpp evaluate: error: --calibrate would choose thresholds on the untouched test split; "
              "add --split validation", file=sys.stderr)
        return 2
    missing = sorted(set(patients) - set(scan.patients))
    chosen = [p for p in patients if p in set(scan.patients)]
    print(f"evaluating {len(chosen)} patient(s): {why}", file=sys.stderr)
    if missing:
        print(f"unetpp evaluate: warning: {len(missing)} of them have no image/mask pairs in --data and are "
              f"skipped: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}", file=sys.stderr)
    pairs = [p for p in scan.pairs if p.patient in set(chosen)]
    if not pairs:
        print("unetpp evaluate: error: no image/mask pairs for the chosen patients in --data; "
              "use --split all (or --all-patients) to evaluate every patient found there", file=sys.stderr)
        return 2
    start = time.monotonic()

    from unetpp_gui.core.progress import Progress

    bar = Progress(len(pairs))
    items = collect(model, pairs, args.batch_size, lambda done, total: bar(done), keep_maps=True)
    seconds = time.monotonic() - start
    pt = args.pixel_threshold if args.pixel_threshold is not None else meta.pixel_threshold
    dt = args.decision_threshold if args.decision_threshold is not None else meta.decision_threshold
    flt = model.patient_filter.min_fraction if model.patient_filter is not None else None
    results = {"model's settings": metrics_at(with_patient_filter(items, pt, flt), pt, dt)}
    if flt is not None:
        results["model's thresholds, no 3-D filter"] = metrics_at(items, pt, dt)
    results["untuned (0.5, 0.001, no 3-D filter)"] = metrics_at(items, 0.5, 0.001)
    if args.calibrate:
        cpt, cdt, cf = calibrate_filter(items)
        results["calibrated"] = metrics_at(with_patient_filter(items, cpt, cf), cpt, cdt)
        store_thresholds(path, cpt, cdt, results["calibrated"], cf, chosen)
        print(f"calibrated: pixel threshold {cpt}, decision threshold {cdt:.6f} "
              f"(area ratio, {100 * cdt:.3f} % of the slice), 3-D filter "
              f"{'off' if cf is None else f'min_fraction {cf}'} (stored in {path.name})", file=sys.stderr)
    report = {"model": path.name, "seconds": seconds, "parameters": model.n_params, "patients_why": why,
              "test_time_augmentation": model.tta, "precision": model.precision, "runtime": model.runtime,
              "train_seconds": meta.training.get("elapsed_s"), "results": results}
    text = markdown(report)
    print(text)
    if args.report:
        write_report(Path(args.report), report, text)
    return 0


def write_report(out: Path, report: dict[str, Any], text: str) -> None:
    """The report as JSON (``.json``), else its markdown ``text``; written atomically."""
    from unetpp_gui.core.atomic import atomic_write_bytes

    body = json.dumps(report, indent=1, default=str) if out.suffix == ".json" else text
    atomic_write_bytes(out, body.encode())
