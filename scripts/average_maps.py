"""Average two networks' out-of-fold maps of the same slices into one map file (an ensemble without its models).

Give two ``.oof.npz`` files written by ``scripts/cv_evaluate.py --save-maps`` for the same fold (same slices,
same order); the output can be evaluated like any other map file. Both inputs store levels at or below their
floor (the lowest calibrated pixel threshold) as 0, so the average differs from the average of the networks'
full maps by at most half the floor where one of them was below it; pixels at or below the floor of the
average are again stored as 0, and its thresholds from the floor up read as they would on a model ensemble's
map within that margin.

    python scripts/average_maps.py runs/cpu_cv/cv3.last.oof.npz runs/cpu_cv_unet/unet_cv3.last.oof.npz \
        /tmp/ens_cv3.oof.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def average(a: Path, b: Path, out: Path) -> int:
    """Write the average of ``a`` and ``b`` to ``out`` (through ``save_maps``, the format's one writer);
    returns the number of slices."""
    from training.evaluate import load_maps, save_maps

    (first, name_a), (second, name_b) = load_maps(a), load_maps(b)
    same = len(first) == len(second) and all(
        x.patient == y.patient and x.path == y.path and np.array_equal(x.gt, y.gt) for x, y in zip(first, second))
    if not same:
        raise ValueError(f"{a.name} and {b.name}: not the same slices in the same order")
    for x, y in zip(first, second):
        x.prob_q = np.rint((x.prob_q.astype(np.uint16) + y.prob_q) / 2.0).astype(np.uint8)
    save_maps(out, first, f"avg({name_a},{name_b})")
    return len(first)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("first", type=Path)
    p.add_argument("second", type=Path)
    p.add_argument("out", type=Path)
    args = p.parse_args()
    try:
        n = average(args.first, args.second, args.out)
    except (OSError, KeyError, ValueError) as exc:
        print(f"average_maps: {exc}", file=sys.stderr)
        return 1
    print(f"{n} slices averaged into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
