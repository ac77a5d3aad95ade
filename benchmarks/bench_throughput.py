"""Folder inference throughput: engine vs the prototype's loop, vs the hardware's bound, bf16, OpenVINO,
ONNX Runtime (evaluated only where ``onnxruntime`` and ``tf2onnx`` are installed; not a dependency).

Prints a markdown section. Usage: python benchmarks/bench_throughput.py [N_SLICES]
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
from common import lgg_slices, machine, model_path, timer

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300


def prototype_loop(keras_model, paths, norm=None) -> list[float]:
    """The original prototype: one model.predict() per file, then threshold and ratio. ``norm``: the model's
    per-channel intensity normalisation, which the prototype did not have (for the agreement check only)."""
    from PIL import Image

    ratios = []
    for p in paths:
        rgb = np.asarray(Image.open(p).convert("RGB"))
        x = (norm.apply_uint8(rgb) if norm is not None else rgb).astype(np.float32) / 255.0
        y = keras_model.predict(x[None], verbose=0)
        y = y[-1] if isinstance(y, list) else y
        ratios.append(float((y[0, ..., 0] > 0.5).mean()))
    return ratios


def engine(model, paths, batch_size: int) -> list:
    from unetpp_gui.core.inference import predict_paths

    return list(predict_paths(model, paths, batch_size=batch_size, keep_maps=False))


def conv_peak() -> float:
    """Measured FLOP/s of this machine on 3x3 convolutions like the model's (best of shapes)."""
    import tensorflow as tf

    best = 0.0
    for (h, c) in ((128, 32), (64, 64), (32, 128)):
        x = tf.random.uniform((8, h, h, c))
        k = tf.random.uniform((3, 3, c, c))
        f = tf.function(lambda x: tf.nn.conv2d(x, k, 1, "SAME"))
        f(x)
        reps = 10
        with timer() as t:
            for _ in range(reps):
                f(x).numpy()
        best = max(best, 2 * 9 * c * c * h * h * 8 * reps / t[0])
    return best


def sgemm_peak() -> float:
    """Measured FLOP/s of this machine's float32 matrix multiply (numpy's BLAS, all cores): the hardware bound."""
    rng = np.random.default_rng(0)
    best = 0.0
    for n in (1024, 2048):
        a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
        a @ b
        reps = 5
        with timer() as t:
            for _ in range(reps):
                a @ b
        best = max(best, 2 * n**3 * reps / t[0])
    return best


def agreement(model_a, model_b, paths) -> tuple[float, float, int]:
    """(max |probability difference|, mask Dice at 0.5, slices) of two models on every 5th slice."""
    from unetpp_gui.core.image_io import load_image
    from unetpp_gui.core.inference import prepare_for

    worst, inter, tot, n = 0.0, 0, 0, 0
    for p in paths[::5]:
        x = prepare_for(model_a, load_image(p))[0][None]
        a, b = model_a.predict_batch(x)[0], model_b.predict_batch(x)[0]
        worst = max(worst, float(np.abs(a - b).max()))
        inter += int(((a > 0.5) & (b > 0.5)).sum())
        tot += int((a > 0.5).sum() + (b > 0.5).sum())
        n += 1
    return worst, (2 * inter / tot if tot else 1.0), n


def openvino_rows(model, paths, base_rate: float, tf_rates: dict[int, float]) -> None:
    """OpenVINO (if installed) against TensorFlow on the same slices, float32, bfloat16 where native, and the int8
    network beside the model where there is one (against TensorFlow float32)."""
    from unetpp_gui.core import openvino_runtime
    from unetpp_gui.core.model_io import cpu_supports_bf16, load_model

    if openvino_runtime.version() is None:
        print("OpenVINO: not installed here (pip install openvino); no comparison.\n")
        return
    print(f"OpenVINO {openvino_runtime.version()} against TensorFlow, same slices, same process:\n")
    print("| runtime | precision | batch | slices/s | ratio vs TensorFlow (same precision, same batch) | ratio vs prototype "
          "| max abs prob. diff vs TF fp32 | mask Dice vs TF fp32 |\n|---|---|---|---|---|---|---|---|")
    from unetpp_gui.core.quantized import sidecar

    precisions = (["float32"] + (["bfloat16"] if cpu_supports_bf16() else [])
                  + (["int8"] if sidecar(model_path()).exists() else []))  # int8: against TensorFlow float32
    for precision in precisions:
        tf_model = model if precision in ("float32", "int8") else load_model(model_path(), precision=precision)
        ov_model = load_model(model_path(), precision=precision, runtime="openvino")
        for bs in (1, 8):
            rates = {}
            for name, m in (("TensorFlow", tf_model), ("OpenVINO", ov_model)):
                if name == "TensorFlow" and precision in ("float32", "int8") and bs in tf_rates:
                    rates[name] = tf_rates[bs]
                    continue
                engine(m, paths[:16], bs)
                with timer() as t:
                    engine(m, paths, bs)
                rates[name] = len(paths) / t[0]
            diff, dice, n = agreement(model, ov_model, paths)
            print(f"| OpenVINO | {precision} | {bs} | {rates['OpenVINO']:.2f} | "
                  f"{rates['OpenVINO'] / rates['TensorFlow']:.2f}x (TF {rates['TensorFlow']:.2f}) | "
                  f"{rates['OpenVINO'] / base_rate:.2f}x | {diff:.1e} | {dice:.4f} ({n} slices) |")
    print()


def onnxruntime_rows(model, paths, tf_rates: dict[int, float]) -> None:
    """ONNX Runtime against TensorFlow on the network the engine runs (batch norms folded), same inputs."""
    import importlib.util
    import os
    import subprocess
    import tempfile
    from pathlib import Path

    if not (importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("tf2onnx")):
        print("ONNX Runtime: not installed here (onnxruntime and tf2onnx); no comparison.\n")
        return
    import onnxruntime as ort

    from unetpp_gui.core.image_io import load_image
    from unetpp_gui.core.inference import prepare_for

    with tempfile.TemporaryDirectory() as tmp:
        network = model.runtime_model if model.runtime_model is not None else model.keras_model
        network.export(f"{tmp}/sm", format="tf_saved_model", verbose=False)
        subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", f"{tmp}/sm", "--output",
                        f"{tmp}/m.onnx", "--opset", "17"], check=True, capture_output=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 2
        session = ort.InferenceSession(f"{tmp}/m.onnx", options, providers=["CPUExecutionProvider"])
        size_mb = Path(f"{tmp}/m.onnx").stat().st_size / 1e6
    feed, head = session.get_inputs()[0].name, session.get_outputs()[model.output_index].name
    x = np.stack([prepare_for(model, load_image(p))[0] for p in paths]).astype(np.float32)

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run([head], {feed: batch})[0]

    print(f"ONNX Runtime {ort.__version__} (tf2onnx, opset 17, {size_mb:.1f} MB) against TensorFlow, the same "
          f"{len(paths)} prepared slices, {options.intra_op_num_threads} threads:\n")
    print("| batch | ONNX Runtime slices/s | TensorFlow slices/s (engine, above) | ratio |\n|---|---|---|---|")
    for bs in (1, 8):
        run(x[:bs])
        with timer() as t:
            for i in range(0, len(x), bs):
                run(x[i:i + bs])
        rate = len(x) / t[0]
        print(f"| {bs} | {rate:.2f} | {tf_rates[bs]:.2f} | {rate / tf_rates[bs]:.2f}x |")
    a = model.predict_batch(x[:16])
    b = run(x[:16]).reshape(a.shape)
    print(f"\nmax |probability difference| vs TensorFlow {float(np.abs(a - b).max()):.1e} on 16 slices; masks at 0.5 "
          f"{'identical' if ((a > 0.5) == (b > 0.5)).all() else 'differ'}. TensorFlow's rate includes decoding "
          "(overlapped), ONNX Runtime's does not: the ratio flatters ONNX Runtime slightly.\n")


def main() -> None:
    from unetpp_gui.core.architecture import extract_grid
    from unetpp_gui.core.model_io import load_model

    paths = lgg_slices(N)
    model = load_model(model_path())
    print(f"### Folder inference throughput ({len(paths)} LGG slices, {model.name}, "
          f"{model.n_params:,} parameters)\n\nMachine: {machine()}\n")
    engine(model, paths[:16], 8)  # warm-up: graph tracing, file cache
    prototype_loop(model.keras_model, paths[:4])
    with timer() as t:
        base = prototype_loop(model.keras_model, paths)
    base_rate = len(paths) / t[0]
    rows = [("prototype loop (model.predict per file)", base_rate, 1.0)]
    rates = {}
    for bs in (1, 4, 8, 16):
        with timer() as t:
            res = engine(model, paths, bs)
        rates[bs] = len(paths) / t[0]
        rows.append((f"engine, batch {bs} (decode overlapped)", rates[bs], rates[bs] / base_rate))
    best_bs = max(rates, key=rates.get)
    # ablation: the same engine running the file's network as it is (batch norms not folded)
    unfolded = dataclasses.replace(model, runtime_model=model.keras_model, folded_batch_norms=0, _functions={})
    engine(unfolded, paths[:16], best_bs)
    with timer() as t:
        engine(unfolded, paths, best_bs)
    rate_unfolded = len(paths) / t[0]
    rows.append((f"engine, batch {best_bs}, batch norm not folded (ablation)", rate_unfolded,
                 rate_unfolded / base_rate))
    # the engine computes the same decisions as the prototype's loop given the same (normalised) input
    same_input = prototype_loop(model.keras_model, paths, model.normalization) if model.normalization else base
    ours = [r.stats.derive(0.5, 0.0).area_ratio for r in res]
    agree = float(np.mean(np.abs(np.array(ours) - np.array(same_input)) < 2e-3))
    flops = extract_grid(model.keras_model).total_flops
    peak = conv_peak()
    bound = peak / flops
    sgemm = sgemm_peak()
    print("| path | slices/s | ratio vs prototype |\n|---|---|---|")
    for name, rate, ratio in rows:
        print(f"| {name} | {rate:.2f} | {ratio:.2f}x |")
    print(f"\nArea ratios agree with the prototype loop's on {agree * 100:.1f} % of slices (|diff| < 0.002"
          + ("; the loop given the model's per-channel intensity normalisation, which the engine applies"
             if model.normalization else "") + ").")
    print(f"\nCompute bound: {flops / 1e9:.1f} GFLOP per slice (counted from the layer graph, "
          f"convolutions only); measured 3x3-conv throughput {peak / 1e9:.0f} GFLOP/s -> bound "
          f"{bound:.2f} slices/s. Best engine rate (batch {best_bs}) {rates[best_bs]:.2f} slices/s = "
          f"**{rates[best_bs] / bound * 100:.0f} % of the bound** ({model.folded_batch_norms} batch norms folded "
          f"into their convolutions: {rates[best_bs] / rate_unfolded:.2f}x the unfolded rate).\n")
    print(f"Against the hardware: float32 matrix multiply (numpy's BLAS, {__import__('os').cpu_count()} cores) "
          f"runs at {sgemm / 1e9:.0f} GFLOP/s here; the engine's best rate is "
          f"{rates[best_bs] * flops / 1e9:.0f} GFLOP/s of convolution = **{rates[best_bs] * flops / sgemm * 100:.0f} % "
          f"of sgemm** (TensorFlow's own 3x3 convolutions reach {peak / sgemm * 100:.0f} % of it).\n")

    bf16_rows(model, paths, res, base_rate, rates, best_bs)
    openvino_rows(model, paths, base_rate, rates)
    onnxruntime_rows(model, paths, rates)


def bf16_rows(model, paths, res, base_rate: float, rates: dict[int, float], best_bs: int) -> None:
    """The engine's bfloat16 path (Model menu, --precision) against float32, same slices."""
    from unetpp_gui.core.model_io import isa_cap, load_model

    if isa_cap():
        print(f"bf16 inference: not measured under ONEDNN_MAX_CPU_ISA={isa_cap()} (TensorFlow still sends bfloat16 "
              "convolutions to oneDNN, which then has no kernel for them and fails; on a real AVX2-only CPU they run "
              "emulated, and the app's automatic precision does not choose bfloat16 there either).\n")
        return
    model_bf = load_model(model_path(), precision="bfloat16")
    engine(model_bf, paths[:16], best_bs)
    with timer() as t:
        res_bf = engine(model_bf, paths, best_bs)
    inter = tot = 0
    from unetpp_gui.core.image_io import load_image
    from unetpp_gui.core.inference import predict_array

    for p in paths[:: max(1, len(paths) // 60)]:
        img = load_image(p)
        a = predict_array(model, img) > 127
        b = predict_array(model_bf, img) > 127
        inter += int((a & b).sum())
        tot += int(a.sum() + b.sum())
    dice = 2 * inter / tot if tot else 1.0
    rate_bf = len(paths) / t[0]
    same = float(np.mean([x.stats.derive(0.5, 0.001).tumour == y.stats.derive(0.5, 0.001).tumour
                          for x, y in zip(res, res_bf)]))
    print(f"bf16 inference (mixed_bfloat16, batch {best_bs}): **{rate_bf:.2f} slices/s = "
          f"{rate_bf / base_rate:.2f}x the prototype**, {rate_bf / rates[best_bs]:.2f}x fp32; mask Dice fp32 vs bf16 {dice:.4f} on "
          f"{len(paths[:: max(1, len(paths) // 60)])} slices; same tumour decision on {same * 100:.1f} % of slices.\n")


if __name__ == "__main__":
    main()
