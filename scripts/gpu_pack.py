"""Pack a slice folder small enough to send to a remote GPU machine, and unpack it there.

``pack`` writes one zip: each image as JPEG quality 90 without chroma subsampling (4:4:4, so the three MR
sequences in the RGB channels stay apart; about 1.4 grey levels of mean error) and each mask as a 1-bit PNG
(lossless). Patients named in ``--exclude`` (the untouched test split) are left out. ``unpack`` decodes
the zip back into the folder layout training reads (``<patient>/<case>_<n>.png`` and ``..._mask.png``).

    python scripts/gpu_pack.py pack --data DATA --exclude P1 P2 --out lgg.zip
    python scripts/gpu_pack.py unpack lgg.zip DEST
"""

from __future__ import annotations

import argparse
import io
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def pack(data: Path, exclude: set[str], out: Path, quality: int = 90) -> tuple[int, int]:
    """Write the zip; returns (slices, bytes)."""
    images = sorted(p for p in data.glob("*/*.png") if not p.stem.endswith("_mask") and p.parent.name not in exclude
                    and p.with_name(f"{p.stem}_mask.png").exists())  # only image/mask pairs travel

    def encode(path: Path) -> tuple[str, bytes, bytes]:
        buf = io.BytesIO()
        Image.open(path).convert("RGB").save(buf, "JPEG", quality=quality, subsampling=0)
        mask = np.asarray(Image.open(path.with_name(f"{path.stem}_mask.png")).convert("L")) > 127
        mbuf = io.BytesIO()
        Image.fromarray(mask).save(mbuf, "PNG", optimize=True)
        return f"{path.parent.name}/{path.stem}", buf.getvalue(), mbuf.getvalue()

    out.parent.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor() as pool, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, jpg, msk in pool.map(encode, images):
            z.writestr(f"{name}.jpg", jpg)
            z.writestr(f"{name}_mask.png", msk)
    return len(images), out.stat().st_size


def unpack(archive: Path, dest: Path) -> int:
    """Write every slice back as PNG (image) and 8-bit PNG (mask 0/255); returns the number of slices."""
    with zipfile.ZipFile(archive) as z:
        names = [n for n in z.namelist() if n.endswith(".jpg")]
        blobs = {n: z.read(n) for n in z.namelist()}

    def decode(name: str) -> None:
        stem = name[:-4]
        target = dest / f"{stem}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(io.BytesIO(blobs[name])).convert("RGB").save(target, compress_level=1)
        mask = np.asarray(Image.open(io.BytesIO(blobs[f"{stem}_mask.png"])).convert("L")) > 0
        Image.fromarray(mask.astype(np.uint8) * 255).save(dest / f"{stem}_mask.png", compress_level=1)

    with ThreadPoolExecutor() as pool:
        list(pool.map(decode, names))
    return len(names)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack")
    a.add_argument("--data", type=Path, required=True)
    a.add_argument("--exclude", nargs="*", default=[], help="patients to leave out (the test split)")
    a.add_argument("--out", type=Path, required=True)
    b = sub.add_parser("unpack")
    b.add_argument("archive", type=Path)
    b.add_argument("dest", type=Path)
    args = p.parse_args()
    if args.cmd == "pack":
        n, size = pack(args.data, set(args.exclude), args.out)
        print(f"{n} slices, {size / 2**20:.1f} MiB -> {args.out}")
    else:
        print(f"{unpack(args.archive, args.dest)} slices -> {args.dest}")


if __name__ == "__main__":
    main()
