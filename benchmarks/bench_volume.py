"""Seconds per NIfTI study: reading, inference and writing for a 256x256x40 three-channel volume.

Usage: python benchmarks/bench_volume.py [SLICES=40]
The study is a synthetic int16 phantom (no dataset images); the model is the bundled one. The baseline in
the same run is the same slices predicted from PNG files (`predict_paths`), so the ratio shows what the
volume path costs or saves against decoding PNGs.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from common import machine  # noqa: F401  (sets sys.path)


def main() -> None:
    import nibabel as nib
    import numpy as np
    from PIL import Image

    from unetpp_gui.core.inference import predict_paths
    from unetpp_gui.core.model_io import load_model
    from unetpp_gui.core.phantom import phantom
    from unetpp_gui.core.volume import from_display, group_studies, read_study
    from unetpp_gui.core.volume_inference import predict_study, write_study_outputs
    from unetpp_gui.resources import bundled_model_path

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    model = load_model(bundled_model_path())
    meta = model.metadata
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = [phantom(256, lesion=i % 3 == 0, seed=i)[0] for i in range(n)]
        vol = np.stack([from_display(im) for im in images], axis=2).astype(np.int16) * 8  # 12-bit-like range
        nib.save(nib.Nifti1Image(vol, np.diag([0.9, 0.9, 3.0, 1.0])), root / "study.nii.gz")
        pngs = []
        for i, im in enumerate(images):
            pngs.append(root / "png" / f"s_{i}.png")
            pngs[-1].parent.mkdir(exist_ok=True)
            Image.fromarray(im).save(pngs[-1])
        list(predict_paths(model, pngs[:8], keep_maps=False))  # warm-up (trace the graph)
        t0 = time.perf_counter()
        list(predict_paths(model, pngs, batch_size=8, keep_maps=False))
        t_png = time.perf_counter() - t0
        t0 = time.perf_counter()
        study = read_study(group_studies([root / "study.nii.gz"])[0][0])
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        result, probs = predict_study(model, study, meta.pixel_threshold, meta.decision_threshold,
                                      model.patient_filter, batch_size=8)
        t_pred = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_study_outputs(study, probs, result, root / "out", meta.pixel_threshold, save_prob=True)
        t_write = time.perf_counter() - t0
    total = t_read + t_pred + t_write
    print(f"machine: {machine()}; model precision {model.precision}")
    print(f"| study 256x256x{n}, 3 channels | seconds |")
    print("|---|---|")
    print(f"| read + reorient + intensity map | {t_read:.2f} |")
    print(f"| inference ({n} slices, 3-D filter {'on' if model.patient_filter else 'off'}) | {t_pred:.2f} |")
    print(f"| write mask + probability NIfTI | {t_write:.2f} |")
    print(f"| **total per study** | **{total:.2f}** ({total / n * 1000:.0f} ms/slice) |")
    print(f"| baseline: the same {n} slices as PNG files (predict_paths) | {t_png:.2f} |")
    print(f"| ratio volume / PNG | {total / t_png:.2f} |")


if __name__ == "__main__":
    main()
