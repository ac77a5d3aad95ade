"""Out-of-fold evaluation of cross-validation folds, and calibration on every development patient.

Each fold model (``scripts/cv_jobs.py``, trained by ``scripts/gpu_train.sh``) predicts only its own validation
patients; the pooled predictions give the out-of-fold figures (untuned, and with the pixel threshold, area-ratio
threshold and 3-D filter calibrated on all of them, as ``unetpp evaluate --calibrate`` does on one split).
``--calibrate-into FINAL.h5`` stores those settings in the final run's model (trained on every development
patient, so it has no validation split of its own). ``--save-maps DIR`` keeps each fold's out-of-fold
predictions as ``DIR/<fold>.oof.npz`` (about 0.4 MiB per 19 patients); such a file can stand in for its fold
model later, so the pooled figures do not need the fold models kept (``--data`` is then not needed for it).

    python scripts/cv_evaluate.py runs/cv/cv1.h5 ... runs/cv/cv5.h5 --data ../shared/data/lgg \\
        --report oof.json [--calibrate-into runs/cv/cv_all.h5] [--save-maps runs/cv]
    python scripts/cv_evaluate.py runs/cv/cv1.oof.npz runs/cv/cv2.h5 ... --data ../shared/data/lgg
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folds", type=Path, nargs="+")
    p.add_argument("--data", nargs="+", default=[], help="the data set (needed for fold models, not for .npz maps)")
    p.add_argument("--report", type=Path, help="write the figures (.json, else markdown)")
    p.add_argument("--calibrate-into", type=Path, help="store the out-of-fold calibration in this model")
    p.add_argument("--save-maps", type=Path, metavar="DIR", help="write each fold's predictions to DIR/<fold>.oof.npz")
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args()
    if not args.data and any(f.suffix != ".npz" for f in args.folds):
        p.error("--data is needed to run fold models (only .npz maps can go without it)")

    from training.data import find_pairs
    from training.evaluate import (calibrate_filter, markdown, metrics_at, out_of_fold, save_maps,
                                   store_thresholds, with_patient_filter, write_report)

    start = time.monotonic()
    try:
        pairs = find_pairs(args.data).pairs if args.data else []
        items, held = out_of_fold(args.folds, pairs, args.batch_size)
    except ValueError as exc:
        print(f"cv_evaluate: error: {exc}", file=sys.stderr)
        return 2
    missing = sorted(set(held) - {it.patient for it in items})
    if missing:
        print(f"cv_evaluate: warning: {len(missing)} held-out patient(s) have no slices in --data: "
              f"{', '.join(missing[:5])}", file=sys.stderr)
    cpt, cdt, cf = calibrate_filter(items)
    results = {"untuned (0.5, 0.001, no 3-D filter)": metrics_at(items, 0.5, 0.001),
               "calibrated out of fold": metrics_at(with_patient_filter(items, cpt, cf), cpt, cdt)}
    for fold in dict.fromkeys(held.values()):  # each fold's own patients at the pooled settings
        mine = [it for it in items if held[it.patient] == fold]
        if mine:
            results[f"{fold} (its patients, pooled settings)"] = metrics_at(
                with_patient_filter(mine, cpt, cf), cpt, cdt)
        if args.save_maps and mine:
            args.save_maps.mkdir(parents=True, exist_ok=True)
            out = save_maps(args.save_maps / f"{Path(fold).stem}.oof.npz", mine, fold)
            print(f"saved {len(mine)} slices' predictions to {out}", file=sys.stderr)
    report = {"model": f"{len(args.folds)} folds, out of fold", "seconds": time.monotonic() - start,
              "patients_why": f"every fold's own validation patients ({len(held)})", "held_out_by": held,
              "calibration": {"pixel_threshold": cpt, "decision_threshold": cdt, "patient_filter": cf},
              "results": results}
    text = markdown(report)
    print(text)
    if args.calibrate_into:
        store_thresholds(args.calibrate_into, cpt, cdt, results["calibrated out of fold"], cf, sorted(held))
        print(f"stored pixel {cpt}, area ratio {cdt:.6f}, 3-D filter {'off' if cf is None else cf} in "
              f"{args.calibrate_into.name}", file=sys.stderr)
    if args.report:
        write_report(args.report, report, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
