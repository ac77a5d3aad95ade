"""Whole process, as a user runs it: a seed-style script vs `unetpp predict` on one folder of N slices.

Each path runs in a fresh process and is timed from process start to exit (Python start, TensorFlow
import, model load, every slice decoded, predicted and its mask written). `unetpp predict` runs with an
empty cache (its first run on a machine: batch sizes measured, OpenVINO's network built) and again with the
cache it left (every later run), on each runtime: TensorFlow, OpenVINO asked for by name, and auto. Prints a markdown section.

Then R paired rounds (``--rounds=R``, default 0), each the seed script, `unetpp predict` (auto) with an empty
cache, again with its cache, and int8 where the quantized network ships: how far the ratios move between runs.

Usage: python benchmarks/bench_process.py [N_SLICES] [--rounds=R]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import lgg_slices, machine, model_path

ARGS = [a for a in sys.argv[1:] if not a.startswith("--rounds")]
N = int(ARGS[0]) if ARGS and ARGS[0].isdigit() else 300
ROUNDS = next((int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--rounds=")), 0)

# The prototype's way: one model.predict per file, threshold 0.5, one mask PNG per slice.
SEED_SCRIPT = """
import sys
from pathlib import Path
import numpy as np
from PIL import Image
import tensorflow as tf
model = tf.keras.models.load_model(sys.argv[1], compile=False)
out = Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
for p in sorted(Path(sys.argv[2]).glob("*.png")):
    x = np.asarray(Image.open(p).convert("RGB").resize((256, 256)), np.float32) / 255.0
    y = model.predict(x[None], verbose=0)
    y = y[-1] if isinstance(y, list) else y
    Image.fromarray(((y[0, ..., 0] > 0.5) * 255).astype(np.uint8)).save(out / f"{p.stem}_pred.png")
"""


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if res.returncode != 0:
        sys.exit(f"{cmd[:4]} failed ({res.returncode}): {res.stderr[-1500:]}")
    return took


def auto_choice(cache: Path) -> str:
    """What `--runtime auto` chose, from the cache the run left (seconds per slice at each runtime's best batch)."""
    import json

    try:
        known = json.loads((cache / "unetpp-viewer" / "batch_sizes.json").read_text())
    except (OSError, ValueError):
        return "`--runtime auto` left no runtime measurement (OpenVINO unusable here): TensorFlow ran."
    times = next((v for k, v in known.items() if k.startswith("runtime-choice:")), None)
    if not times:
        if any(":openvino:" in k for k in known):  # batch sizes timed on OpenVINO only
            return ("`--runtime auto` ran **OpenVINO**, built from the model file without TensorFlow (TensorFlow "
                    "not timed).")
        return "`--runtime auto` left no runtime measurement: TensorFlow ran."
    from unetpp_gui.core.batching import keeps_openvino

    chosen = "OpenVINO" if keeps_openvino(times) else "TensorFlow"
    return (f"`--runtime auto` measured TensorFlow at {1000 * times['tensorflow']:.1f} ms and OpenVINO at "
            f"{1000 * times['openvino']:.1f} ms per slice (each at its best batch size) and ran **{chosen}**.")


def main() -> None:
    from unetpp_gui.core import openvino_runtime
    from unetpp_gui.core.quantized import sidecar

    work = Path(tempfile.mkdtemp(prefix="bench-process-"))
    folder = work / "slices"
    folder.mkdir()
    for p in lgg_slices(N):  # one flat folder of images (no masks), links to the data set
        (folder / p.name).symlink_to(p)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    unetpp = [sys.executable, "-m", "unetpp_gui.cli", "predict", str(folder), "--model", str(model_path()), "--quiet"]
    seed = timed([sys.executable, "-c", SEED_SCRIPT, str(model_path()), str(folder), str(work / "seed")], env)
    rows = [("seed-style script (model.predict per file, TensorFlow float32)", seed)]
    runtimes = ["tensorflow"] + (["openvino", "auto"] if openvino_runtime.version() else [])
    for runtime in runtimes:
        cache = work / f"cache-{runtime}"
        run_env = {**env, "XDG_CACHE_HOME": str(cache)}
        name = {"tensorflow": "TensorFlow", "openvino": f"OpenVINO {openvino_runtime.version()}; built from the "
                "model file or read from the cache, without importing TensorFlow"}.get(runtime,
                                                                       f"OpenVINO {openvino_runtime.version()} installed")
        for when in ("first run, empty cache", "later run, cached"):
            out = work / f"out-{runtime}-{when[:5]}"
            rows.append((f"`unetpp predict --runtime {runtime}` ({name}; {when})",
                         timed([*unetpp, "--out", str(out), "--runtime", runtime], run_env)))
    if "auto" in runtimes and sidecar(model_path()).exists():  # the int8 network beside the model: no cache
        out = work / "out-int8"
        rows.append(("`unetpp predict --precision int8` (the quantized network beside the model file, OpenVINO; "
                     "empty cache)", timed([*unetpp, "--out", str(out), "--precision", "int8"],
                                           {**env, "XDG_CACHE_HOME": str(work / "cache-int8")})))
    print(f"### Whole process: {N} slices of one folder, seed-style script vs `unetpp predict`\n")
    print(f"Machine: {machine()}. Each row is a fresh process timed from start to exit (TensorFlow import, "
          "model load, decode, predict, write every mask); precision is `unetpp predict`'s default (auto: "
          "bfloat16 only on CPUs with native bfloat16).\n")
    print("| process | wall time (s) | slices/s | speed-up vs seed script |\n|---|---|---|---|")
    for name, took in rows:
        print(f"| {name} | {took:.1f} | {N / took:.2f} | {seed / took:.2f}x |")
    if "auto" in runtimes:
        print(f"\n{auto_choice(work / 'cache-auto')}")
    print()
    if ROUNDS and "auto" in runtimes:
        paired_rounds(unetpp, work, env)


def paired_rounds(unetpp: list[str], work: Path, env: dict[str, str]) -> None:
    """Seed script, then `unetpp predict` first run / later run / int8, in fresh processes, ROUNDS times."""
    from unetpp_gui.core.quantized import sidecar

    int8 = sidecar(model_path()).exists()
    print(f"Paired rounds (each: the seed script, then `unetpp predict` with an empty cache, again with its cache"
          f"{', then `--precision int8`' if int8 else ''}):\n")
    print("| round | seed script (s) | first run (s) | speed-up | later run (s) | speed-up"
          + (" | int8 (s) | speed-up |" if int8 else " |"))
    print("|---|---|---|---|---|---" + ("|---|---|" if int8 else "|"))
    firsts, laters = [], []
    for r in range(1, ROUNDS + 1):
        seed = timed([sys.executable, "-c", SEED_SCRIPT, str(model_path()), str(work / "slices"),
                      str(work / f"seed-r{r}")], env)
        run_env = {**env, "XDG_CACHE_HOME": str(work / f"cache-r{r}")}
        first = timed([*unetpp, "--out", str(work / f"r{r}-first")], run_env)
        later = timed([*unetpp, "--out", str(work / f"r{r}-later")], run_env)
        firsts.append(seed / first)
        laters.append(seed / later)
        row = f"| {r} | {seed:.1f} | {first:.1f} | {seed / first:.2f}x | {later:.1f} | {seed / later:.2f}x |"
        if int8:
            q = timed([*unetpp, "--out", str(work / f"r{r}-int8"), "--precision", "int8"],
                      {**env, "XDG_CACHE_HOME": str(work / f"cache-r{r}-int8")})
            row += f" {q:.1f} | {seed / q:.2f}x |"
        print(row, flush=True)
    print(f"\nFirst runs {min(firsts):.2f}-{max(firsts):.2f}x, later runs {min(laters):.2f}-{max(laters):.2f}x "
          f"the seed script over {ROUNDS} rounds.\n")


if __name__ == "__main__":
    main()
