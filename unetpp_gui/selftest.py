"""``--selftest``: prove an install or a packaged app works, without a display."""

from __future__ import annotations

import platform
import sys
import time


def run_selftest(model_path: str | None, png: str | None) -> int:
    """Load the model, predict a synthetic slice (and ``png``), print versions and timings."""
    t0 = time.monotonic()
    try:
        import numpy as np

        from unetpp_gui import __version__
        from unetpp_gui.core.image_io import load_image
        from unetpp_gui.core.inference import predict_array
        from unetpp_gui.core.model_io import load_model, resolve_model_path
        from unetpp_gui.core.phantom import phantom
        from unetpp_gui.core.postprocess import SliceStats

        t_import = time.monotonic() - t0
        path = resolve_model_path(model_path)
        t1 = time.monotonic()
        model = load_model(path, precision="auto", runtime="auto", defer_openvino=True)  # what the app does
        t_load = time.monotonic() - t1
        if model.openvino_pending:  # as the window does in the background: a child process converts
            from unetpp_gui.core.model_io import finish_openvino
            from unetpp_gui.core.openvino_child import convert

            t5 = time.monotonic()
            model.take_runtime(finish_openvino(model, convert(path, None)))
            print(f"OpenVINO prepared by a child process in {time.monotonic() - t5:.2f} s")
        import keras
        import tensorflow as tf

        print(f"UNet++ Viewer {__version__} on Python {platform.python_version()} ({sys.platform}), "
              f"TensorFlow {tf.__version__}, Keras {keras.__version__}, NumPy {np.__version__}")
        print(f"model: {path.name}, {model.n_params:,} parameters, input {model.input_hw} x {model.channels}, "
              f"{model.precision}, runtime {model.runtime}" + (f" ({model.runtime_note})" if model.runtime_note else ""))
        meta = model.metadata
        image, truth = phantom(model.input_hw[0] if model.input_hw else 256)
        t2 = time.monotonic()
        prob_q = predict_array(model, image)
        t_first = time.monotonic() - t2
        t3 = time.monotonic()
        prob_q = predict_array(model, image)
        t_second = time.monotonic() - t3
        d = SliceStats.from_map(prob_q, truth).derive(meta.pixel_threshold, meta.decision_threshold)
        assert prob_q.shape == image.shape[:2]
        print(f"synthetic slice: area ratio {d.area_ratio:.4f}, decision {'tumour' if d.tumour else 'no tumour'}")
        from unetpp_gui.core.consistency import removed_voxels

        speck = np.zeros((3, 32, 32), np.uint8)  # the patient 3-D filter (SciPy) on a lesion and a stray speck
        speck[:, 8:16, 8:16] = 255
        speck[1, 28, 28] = 255
        removed = removed_voxels(list(speck), 0.5, 1.0)
        assert int(sum(r.sum() for r in removed)) == 1, "patient 3-D filter"
        print("patient 3-D filter: OK")
        if png:
            t4 = time.monotonic()
            img = load_image(png)
            q = predict_array(model, img)
            d2 = SliceStats.from_map(q).derive(meta.pixel_threshold, meta.decision_threshold)
            print(f"{png}: area ratio {d2.area_ratio:.4f}, decision {'tumour' if d2.tumour else 'no tumour'} "
                  f"({(time.monotonic() - t4) * 1000:.0f} ms)")
        print(f"timings: imports {t_import:.2f} s, model load {t_load:.2f} s, first slice {t_first * 1000:.0f} ms, "
              f"next slice {t_second * 1000:.0f} ms, total {time.monotonic() - t0:.2f} s")
        print("selftest OK")
        return 0
    except Exception as exc:  # the point is a clear verdict, whatever broke
        print(f"selftest FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
