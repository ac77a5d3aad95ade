"""Folder inference throughput: engine vs the prototype's loop, vs the compute bound, bf16.

Prints a markdown section. Usage: python benchmarks/bench_throughput.py [N_SLICES]
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
from common import lgg_slices, machine, model_path, timer

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300


def prototype_loop(keras_model, paths) -> list[float]:
    """The original prototype: one model.predict() per file, then threshold and ratio."""
    from PIL import Image

    ratios = []
    for p in paths:
        x = np.asarray(Image.open(p).convert("RGB"), np.float32) / 255.0
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
    # the engine computes the same decisions as the prototype
    ours = [r.stats.derive(0.5, 0.0).area_ratio for r in res]
    agree = float(np.mean(np.abs(np.array(ours) - np.array(base)) < 2e-3))
    flops = extract_grid(model.keras_model).total_flops
    peak = conv_peak()
    bound = peak / flops
    print("| path | slices/s | ratio vs prototype |\n|---|---|---|")
    for name, rate, ratio in rows:
        print(f"| {name} | {rate:.2f} | {ratio:.2f}x |")
    print(f"\nArea ratios agree with the prototype's on {agree * 100:.1f} % of slices (|diff| < 0.002).")
    print(f"\nCompute bound: {flops / 1e9:.1f} GFLOP per slice (counted from the layer graph, "
          f"convolutions only); measured 3x3-conv throughput {peak / 1e9:.0f} GFLOP/s -> bound "
          f"{bound:.2f} slices/s. Best engine rate (batch {best_bs}) {rates[best_bs]:.2f} slices/s = "
          f"**{rates[best_bs] / bound * 100:.0f} % of the bound** ({model.folded_batch_norms} batch norms folded "
          f"into their convolutions: {rates[best_bs] / rate_unfolded:.2f}x the unfolded rate).\n")

    model_bf = load_model(model_path(), precision="bfloat16")  # the engine's bf16 path (Model menu, --precision)
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
