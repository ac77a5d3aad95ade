"""Export a model for shipping: no optimizer state, optionally pruned to level L (UNet++ DS)."""

from __future__ import annotations

import argparse
from pathlib import Path


def export_model(src: str | Path, dst: str | Path, level: int | None = None) -> Path:
    """Write ``src`` to ``dst`` without optimizer state (and pruned at ``level`` if given); any Keras backend."""
    from training import backend

    backend.prepare()  # first: TensorFlow, where it is the backend, imported quietly
    from training.models import prune
    from training.saving import load_keras, save_model
    from unetpp_gui.core.metadata import read_metadata

    model = load_keras(src)
    meta = read_metadata(src)
    arch = dict(meta.architecture)
    if level:
        model = prune(model, level)
        arch["pruned_level"] = level
        meta.name = f"{meta.name or Path(src).stem}_L{level}"
    meta.architecture = arch
    meta.training = {k: v for k, v in meta.training.items() if k != "optimizer_step"}
    return save_model(model, dst, meta, optimizer=None)


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="trained model or checkpoint")
    p.add_argument("--out", required=True, help="output .h5")
    p.add_argument("--prune", type=int, choices=(1, 2, 3, 4), help="keep UNet++ levels up to L (needs deep supervision)")


def run_export(args: argparse.Namespace) -> int:
    out = export_model(args.model, args.out, args.prune)
    print(f"exported {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
