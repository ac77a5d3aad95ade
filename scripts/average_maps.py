"""Average networks' out-of-fold maps of the same slices into one map file (an ensemble without its models).

Give two or more ``.oof.npz`` files written by ``scripts/cv_evaluate.py --save-maps`` for the same fold (same
slices, same order), then the output path; the output can be evaluated like any other map file. Every input
stores levels at or below its floor (the lowest calibrated pixel threshold) as 0, so the average of n maps
differs from the average of the networks' full maps by at most (n-1)/n of the floor where all but one were
below it; pixels at or below the floor of the average are again stored as 0, and its thresholds from the floor
up read as they would on a model ensemble's map within that margin.

    python scripts/average_maps.py runs/cpu_cv/cv3.last.oof.npz runs/cpu_cv_unet/unet_cv3.last.oof.npz \
        /tmp/ens_cv3.oof.npz
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def average(inputs: Sequence[Path], out: Path) -> int:
    """Write the average of the ``inputs`` to ``out`` (through ``save_maps``, the format's one writer);
    returns the number of slices."""
    from training.evaluate import load_maps, save_maps

    if len(inputs) < 2:
        raise ValueError("give at least two map files to average")
    loaded = [load_maps(p) for p in inputs]
    first = loaded[0][0]
    for path, (other, _) in zip(inputs[1:], loaded[1:]):
        same = len(first) == len(other) and all(
            x.patient == y.patient and x.path == y.path and np.array_equal(x.gt, y.gt) for x, y in zip(first, other))
        if not same:
            raise ValueError(f"{inputs[0].name} and {path.name}: not the same slices in the same order")
    for i, x in enumerate(first):
        total = sum(items[i].prob_q.astype(np.uint16) for items, _ in loaded)
        x.prob_q = np.rint(total / float(len(loaded))).astype(np.uint8)
    save_maps(out, first, f"avg({','.join(name for _, name in loaded)})")
    return len(first)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("maps", type=Path, nargs="+", help="two or more map files of one fold, then the output path")
    args = p.parse_args()
    try:
        n = average(args.maps[:-1], args.maps[-1])
    except (OSError, KeyError, ValueError) as exc:
        print(f"average_maps: {exc}", file=sys.stderr)
        return 1
    print(f"{n} slices averaged into {args.maps[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
