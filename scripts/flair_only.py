"""Write single-sequence copies of patients' slices: each slice's FLAIR channel as an 8-bit grayscale PNG, with its
mask beside it, so that a model can be evaluated on the slices a user with FLAIR alone would open.

    python scripts/flair_only.py ../shared/data/lgg /tmp/flair_only --patients TCGA_CS_4943_20000902 ...
    unetpp evaluate --data /tmp/flair_only --all-patients

Write the copies outside the project: it ships no data set images.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def copy_flair(data: Path, out: Path, patients: list[str]) -> int:
    """Copy each patient folder of ``data`` to ``out`` with every slice reduced to its FLAIR channel; returns the
    number of slices written. A patient without a folder is an error (nothing is written for it)."""
    from training.data import FLAIR
    from unetpp_gui.core.discovery import find_ground_truth, is_mask_file

    written = 0
    for patient in patients:
        src = data / patient
        if not src.is_dir():
            raise FileNotFoundError(f"{src}: no such patient folder")
        dst = out / patient
        dst.mkdir(parents=True, exist_ok=True)
        for image in sorted(src.glob("*.png")):
            if is_mask_file(image):
                continue
            x = np.asarray(Image.open(image))
            flair = x[..., FLAIR] if x.ndim == 3 else x
            Image.fromarray(np.ascontiguousarray(flair)).save(dst / image.name)
            mask = find_ground_truth(image)
            if mask is not None:
                shutil.copyfile(mask, dst / mask.name)
            written += 1
    return written


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="a folder of patient folders (the LGG layout)")
    p.add_argument("out", type=Path)
    p.add_argument("--patients", nargs="+", required=True)
    args = p.parse_args()
    try:
        n = copy_flair(args.data, args.out, args.patients)
    except (OSError, ValueError) as exc:
        print(f"flair_only: {exc}", file=sys.stderr)
        return 1
    print(f"{n} slices written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
