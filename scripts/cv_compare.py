"""Compare two evaluations of the same patients, patient by patient (paired).

Give two reports written by ``scripts/cv_evaluate.py --report X.json`` (out-of-fold) or ``unetpp evaluate
--report X.json``; the first is the baseline. ``--result`` picks which of each report's results to compare by
the start of its name ("untuned" by default; "calibrated" for the calibrated row).

    python scripts/cv_compare.py runs/cpu_cv/oof_cv1.json runs/cpu_cv/oof_cv1b.json [--result calibrated]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("baseline", type=Path)
    p.add_argument("candidate", type=Path)
    p.add_argument("--result", default="untuned", help="which result of each report (start of its name)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args()

    from training.compare import markdown, paired, per_patient_dice

    try:
        reports = [json.loads(path.read_text()) for path in (args.baseline, args.candidate)]
        (base_name, base), (cand_name, cand) = (per_patient_dice(r, args.result) for r in reports)
        comparison = paired(base, cand)
    except (OSError, ValueError, KeyError) as exc:
        print(f"cv_compare: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"baseline": str(args.baseline), "candidate": str(args.candidate),
                          "result": [base_name, cand_name], **comparison}, indent=1))
    else:
        print(markdown(comparison, f"{args.baseline.name}: {base_name}", f"{args.candidate.name}: {cand_name}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
