"""Packaged app: size and cold start, with and without OpenVINO inside.

Usage: python benchmarks/bench_bundle.py [APP_FOLDER ...]
(default: dist/UNetPP-Viewer, and build/tf-dist/UNetPP-Viewer when it exists). Build them with
``build_spec/build.sh`` (OpenVINO inside) and ``UNETPP_BUNDLE_OPENVINO=0 build_spec/build.sh .venv/bin/python
build/tf-dist`` (without).

Each app is started offscreen on one LGG slice with ``--snapshot`` (process start -> window shown -> first
overlay painted), first with an empty cache (with OpenVINO inside, the network is built for it from the model
file; without, TensorFlow runs; a one-slice window measures no batch sizes). ``--selftest`` then runs with that
cache (for a network only Keras converts it has a child process convert it, as the window does in the background
of a first session); then two more snapshot runs with that cache. The apps are started alternately, so that both see the same machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, lgg_slices, machine, timing_marks

RUNS = 3


def folder_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def start(app: Path, slice_: Path, cache: Path) -> tuple[float, float]:
    """(window shown s, first overlay s) of one cold start."""
    env = {**os.environ, "UNETPP_TIMING": "1", "QT_QPA_PLATFORM": "offscreen", "XDG_CACHE_HOME": str(cache)}
    with tempfile.TemporaryDirectory() as tmp:
        env["XDG_CONFIG_HOME"] = tmp  # no remembered settings
        out = subprocess.run([str(app / app.name), str(slice_), "--snapshot", str(Path(tmp) / "s.png")],
                             capture_output=True, text=True, env=env, timeout=600)
    marks = timing_marks(out.stderr)
    if out.returncode != 0 or "first_overlay" not in marks:
        sys.exit(f"{app}: the snapshot run failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
    return marks["window_shown"], marks["first_overlay"]


def prepare(app: Path, cache: Path) -> float:
    """Seconds ``--selftest`` takes with the cache of a first start (it prepares OpenVINO where it is inside)."""
    import time

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CACHE_HOME": str(cache)}
    t0 = time.monotonic()
    out = subprocess.run([str(app / app.name), "--selftest"], capture_output=True, text=True, env=env, timeout=900)
    if out.returncode != 0:
        sys.exit(f"{app}: --selftest failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return time.monotonic() - t0


def runtime_choice(cache: Path) -> str:
    """What --runtime auto chose, from the app's cache (the per-slice times it measured)."""
    import json

    path = cache / "unetpp-viewer" / "batch_sizes.json"
    choices = [v for k, v in json.loads(path.read_text()).items() if k.startswith("runtime-choice:")] if path.is_file() else []
    if not choices:
        if list((cache / "unetpp-viewer" / "openvino").glob("*.xml")):  # built (or converted), never timed against TF
            return "OpenVINO (built from the model file; TensorFlow not timed)"
        return "TensorFlow (OpenVINO absent)"
    times = choices[-1]
    best = min(times, key=times.get)
    return f"{best} ({', '.join(f'{k} {1000 * v:.0f} ms' for k, v in sorted(times.items()))} per slice)"


def main() -> None:
    apps = [Path(a).resolve() for a in sys.argv[1:]] or [ROOT / "dist" / "UNetPP-Viewer"]
    if not sys.argv[1:] and (ROOT / "build" / "tf-dist" / "UNetPP-Viewer").is_dir():
        apps.append(ROOT / "build" / "tf-dist" / "UNetPP-Viewer")
    for app in apps:
        if not (app / app.name).is_file():
            sys.exit(f"no packaged app at {app}: build it first (build_spec/build.sh)")
    slice_ = lgg_slices(1)[0]
    caches = {app: Path(tempfile.mkdtemp(prefix="bundle-cache-")) for app in apps}
    runs: dict[Path, list[tuple[float, float]]] = {app: [] for app in apps}
    prepared: dict[Path, float] = {}
    for run in range(RUNS):
        for app in apps:
            runs[app].append(start(app, slice_, caches[app]))
            if run == 0:
                prepared[app] = prepare(app, caches[app])
    print("### Packaged app: size and cold start\n")
    print(f"Machine: {machine()}. One LGG slice opened with `--snapshot` (offscreen); run 1 with an empty cache "
          f"(with OpenVINO inside, the network is built for it from the model file; without, TensorFlow runs), then "
          f"`--selftest` with that cache, runs 2-{RUNS} cached (best of them shown). The apps were started alternately, one "
          f"at a time, so both saw the same machine state. Size: MiB, as `du -sm` counts.\n")
    print("| app | OpenVINO inside | size (MiB) | window shown, run 1 / later (s) | first overlay, run 1 / later (s) | "
          "--selftest after run 1 (s) | runtime auto chose |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for app in apps:
        has_ov = (app / "_internal" / "openvino").is_dir()
        size = folder_mib(app)
        base = size if base is None else base
        first, later = runs[app][0], runs[app][1:]
        shown_later = min(r[0] for r in later)
        overlay_later = min(r[1] for r in later)
        extra = f" ({size - base:+,.0f})" if size != base else ""
        print(f"| `{app.relative_to(ROOT) if app.is_relative_to(ROOT) else app}` | {'yes' if has_ov else 'no'} | "
              f"{size:,.0f}{extra} | {first[0]:.2f} / {shown_later:.2f} | {first[1]:.2f} / {overlay_later:.2f} | "
              f"{prepared[app]:.1f} | {runtime_choice(caches[app])} |")
    print()
    for cache in caches.values():
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
