"""Job lines for ``scripts/gpu_train.sh``: k cross-validation folds of the development patients, and a final run.

Every patient found in ``--data`` except the ``--test-patients`` is dealt into ``--folds`` folds, stratified by
institution (``training.data.cv_folds``); fold i trains on the others and validates on it. ``--final`` adds a
job on all of them without validation (``--val-fraction 0``: its last epoch is the model). The test patients are
kept out of every job. ``DATA`` stands for the data folder, as ``gpu_train.sh`` expects. The folds also go to
``--folds-json`` for the record.

    python scripts/cv_jobs.py --data ../shared/data/lgg --folds 5 --seed 7 --test-patients P1 P2 ... \\
        --final --options "--base-filters 16 --epochs 75 ..." > .gpu/jobs.txt
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def job_lines(patients: list[str], test: list[str], k: int, seed: int, options: str, final: bool,
              name: str = "cv") -> tuple[list[str], list[list[str]]]:
    """(``NAME: options`` lines, the folds)."""
    from training.data import cv_folds

    dev = sorted(set(patients) - set(test))
    folds = cv_folds(dev, k, seed)
    held = ["--test-patients", *sorted(test)] if test else []
    lines = [f"{name}{i + 1}: --data DATA --val-patients {' '.join(fold)} {shlex.join(held)} {options}".rstrip()
             for i, fold in enumerate(folds)]
    if final:
        lines.append(f"{name}_all: --data DATA --val-fraction 0 {shlex.join(held)} {options}".rstrip())
    return [" ".join(line.split()) for line in lines], folds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", required=True, help="the data here (patients are read from it)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--test-patients", nargs="*", default=[])
    p.add_argument("--options", default="", help="training options shared by every job")
    p.add_argument("--final", action="store_true", help="add a job on every development patient, no validation")
    p.add_argument("--name", default="cv")
    p.add_argument("--folds-json", type=Path)
    args = p.parse_args()

    from training.data import find_pairs

    lines, folds = job_lines(find_pairs(args.data).patients, args.test_patients, args.folds, args.seed,
                             args.options, args.final, args.name)
    if args.folds_json:
        args.folds_json.write_text(json.dumps({"seed": args.seed, "folds": folds, "test": sorted(args.test_patients)},
                                              indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
