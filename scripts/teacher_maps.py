"""Write a teacher's probability maps for a split's training slices, for ``unetpp train --teacher-maps``.

The patients are the teacher's stored training split unless ``--patients`` names others; the teacher may be an
ensemble (``scripts/ensemble.py``). See ``training/distill.py``.

    python scripts/teacher_maps.py TEACHER.h5 --data ../shared/data/lgg --out teacher_maps.npz
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("teacher", type=Path)
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--patients", nargs="*", help="default: the teacher's training split")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"))
    args = p.parse_args()

    from training.data import find_pairs
    from training.distill import write_teacher_maps
    from unetpp_gui.core.metadata import read_metadata
    from unetpp_gui.core.progress import Progress

    patients = args.patients or (read_metadata(args.teacher).training.get("split") or {}).get("train")
    if not patients:
        p.error("the teacher stores no training split: name the patients with --patients")
    pairs = [q for q in find_pairs(args.data).pairs if q.patient in set(patients)]
    start = time.monotonic()
    bar = Progress(len(pairs))
    n = write_teacher_maps(args.teacher, pairs, args.out, args.batch_size, args.precision,
                           lambda done, total: bar(done))
    print(f"wrote {n} maps of {len(set(q.patient for q in pairs))} patients to {args.out} "
          f"({args.out.stat().st_size / 2**20:.1f} MiB, {time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
