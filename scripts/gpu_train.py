"""Run training jobs side by side on a lent GPU machine within a fixed time, sizing each run's epochs to fit.

Each job is ``python -m training train`` with its own options (``KERAS_BACKEND`` is inherited, e.g. jax on a
machine without TensorFlow). First every job runs a short probe together (the same options, 2 epochs of
``--probe-steps`` steps) to time a training step, each epoch's other work (validation, checkpoints) and the
start-up with the jobs sharing the GPU;
then the real runs start with as many epochs as fit before ``--deadline`` seconds (measured from this
script's start), so their cosine schedules finish. A job whose options name ``--epochs`` skips the probe and
starts at once: the probe costs a second start-up, and on an H100 with five jobs side by side each start-up
(reading the slices, compiling) took 150-220 s. A watchdog writes each run's cancel file at the deadline
in any case; checkpoints on disk only ever hold complete epochs.

    python scripts/gpu_train.py --deadline 500 --out runs/gpu \\
        --job "scratch: --data D --base-filters 16 ..." --job "finetune: --data D --init-from M ..."
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

START = time.monotonic()


def _launch(name: str, args: list[str], out: Path, extra: list[str], every: int = 1) -> tuple[subprocess.Popen, Path]:
    log = out / f"{name}.jsonl"
    cmd = [sys.executable, "-m", "training", "train", *args, "--progress-json", "--progress-every", str(every),
           "--cancel-file", str(out / f"{name}.stop"), *extra]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=(out / f"{name}.err").open("w")), log


def _events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def probe(jobs: dict[str, list[str]], out: Path, steps: int, deadline: float) -> dict[str, tuple[float, float, int, float]]:
    """Per job: (s per training step, s per epoch besides its steps, steps per full epoch, s to start a run)."""
    procs = {n: _launch(f"{n}.probe", a, out, ["--out", str(out / f"{n}.probe.h5"), "--epochs", "2",
                                                  "--steps-per-epoch", str(steps)]) for n, a in jobs.items()}
    launched = time.monotonic()
    found = {}
    for name, (proc, log) in procs.items():
        try:
            proc.wait(timeout=max(1.0, deadline - (time.monotonic() - START)))
        except subprocess.TimeoutExpired:
            proc.kill()
        wall = time.monotonic() - launched
        ev = _events(log)
        start = next((e for e in ev if e["event"] == "start"), None)
        batches = [e for e in ev if e["event"] == "batch" and e["epoch"] == 2]
        epochs = [e for e in ev if e["event"] == "epoch"]
        if proc.returncode != 0 or start is None or len(epochs) < 2 or not batches:
            err = (out / f"{name}.probe.err").read_text()[-3000:]
            print(f"probe {name} failed (rc {proc.returncode}); dropped:\n{err}", flush=True)
            continue
        epoch2 = epochs[1]["elapsed"] - epochs[0]["elapsed"]
        if len(batches) > 1:
            per_step = (batches[-1]["elapsed"] - batches[0]["elapsed"]) / (len(batches) - 1)
            # epoch 2 runs compiled: everything but its steps (validation, checkpoints, set-up) is per-epoch cost
            fixed = max(0.0, epoch2 - len(batches) * per_step)
        else:
            per_step, fixed = epoch2, 0.0
        # start-up (reading data, compiling) is what the probe took beyond two compiled epochs
        startup = max(0.0, wall - 2 * epoch2)
        found[name] = (per_step, fixed, math.ceil(start["epoch_slices"] / start["batch_size"]), startup)
        print(f"probe {name}: {per_step * 1000:.0f} ms/step, {fixed:.1f} s per epoch besides steps, "
              f"start-up {startup:.0f} s", flush=True)
    return found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--job", action="append", required=True, help='"NAME: training options" (repeatable)')
    p.add_argument("--deadline", type=float, required=True, help="seconds from start when every run must stop")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--probe-steps", type=int, default=30)
    p.add_argument("--max-epochs", type=int, default=300)
    p.add_argument("--margin", type=float, default=0.9, help="plan this share of the time left (the rest is slack)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = {}
    for spec in args.job:
        name, _, rest = spec.partition(":")
        jobs[name.strip()] = shlex.split(rest)
    fixed_epochs = {n: a for n, a in jobs.items() if "--epochs" in a}
    procs = {n: _launch(n, a, args.out, ["--out", str(args.out / f"{n}.h5")], every=25)
             for n, a in fixed_epochs.items()}  # fewer progress lines: each one waits for the GPU
    to_probe = {n: a for n, a in jobs.items() if n not in fixed_epochs}
    timing = probe(to_probe, args.out, args.probe_steps, args.deadline) if to_probe else {}
    if not timing and not procs:
        return 1
    for name, a in to_probe.items():
        if name not in timing:
            continue
        per_step, fixed, steps, startup = timing[name]
        left = args.deadline - (time.monotonic() - START) - startup
        epoch_s = per_step * steps + fixed
        epochs = max(1, min(args.max_epochs, int(args.margin * left / epoch_s)))
        print(f"{name}: {epochs} epochs of ~{epoch_s:.1f} s in {left:.0f} s", flush=True)
        procs[name] = _launch(name, a, args.out, ["--out", str(args.out / f"{name}.h5"), "--epochs", str(epochs)],
                              every=25)

    def watchdog() -> None:
        time.sleep(max(0.0, args.deadline - (time.monotonic() - START)))
        for name in procs:
            (args.out / f"{name}.stop").touch()
            print(f"{name}: deadline reached, stopping", flush=True)

    threading.Thread(target=watchdog, daemon=True).start()
    rc = 0
    for name, (proc, log) in procs.items():
        rc |= proc.wait()
        ev = _events(log)
        end = ev[-1] if ev else {}
        print(f"{name}: rc {proc.returncode}, {end.get('event')}, best {end.get('best_dice')} "
              f"(epoch {end.get('best_epoch')}) after {end.get('elapsed')} s", flush=True)
    print(f"total {time.monotonic() - START:.0f} s", flush=True)
    return 0 if rc in (0, 130) else rc


if __name__ == "__main__":
    raise SystemExit(main())
