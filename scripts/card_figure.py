"""A model-card picture: the slice of a patient where the model misses the most ground truth.

Usage: python scripts/card_figure.py MODEL.h5 PATIENT_FOLDER OUT.png
Left: the slice; right: the same with the ground truth outlined in green and the prediction in red.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from PIL import Image, ImageDraw

    from unetpp_gui.core.discovery import discover
    from unetpp_gui.core.image_io import save_png
    from unetpp_gui.core.inference import predict_patients
    from unetpp_gui.core.model_io import load_model
    from unetpp_gui.core.overlay import contour
    from unetpp_gui.core.postprocess import binarize

    model_path, folder, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    model = load_model(model_path, precision="float32")
    t = model.metadata.pixel_threshold
    worst, missed_most = None, -1
    for res in predict_patients(model, discover([folder]).slices, t, model.patient_filter):
        if res.ok and res.gt is not None:
            missed = int(np.count_nonzero(res.gt & ~binarize(res.prob_q, t)))
            if missed > missed_most:
                worst, missed_most = res, missed
    assert worst is not None, "no slice with ground truth"
    pred = binarize(worst.prob_q, t)
    marked = worst.image.copy()
    marked[contour(worst.gt)] = (40, 220, 60)
    marked[contour(pred)] = (240, 40, 40)
    canvas = Image.new("RGB", (2 * marked.shape[1] + 8, marked.shape[0] + 22), (32, 33, 36))
    canvas.paste(Image.fromarray(worst.image), (0, 22))
    canvas.paste(Image.fromarray(marked), (marked.shape[1] + 8, 22))
    ImageDraw.Draw(canvas).text((4, 4), f"{worst.path.name}: {missed_most} tumour px missed "
                                f"(truth {int(worst.gt.sum())}, predicted {int(pred.sum())})", fill=(232, 234, 237))
    save_png(out, np.asarray(canvas))
    print(f"wrote {out}: {worst.path.name}")


if __name__ == "__main__":
    main()
