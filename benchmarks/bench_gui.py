"""GUI: event-loop stalls while a batch runs, and cold start to window and to first overlay.

Usage: python benchmarks/bench_gui.py [N_SLICES]  (offscreen Qt; no display needed)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from common import ROOT, lgg_slices, model_path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 500


def stalls() -> tuple[list[float], float, int]:
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication
    import tempfile

    app = QApplication.instance() or QApplication([])
    from unetpp_gui.ui.main_window import MainWindow

    win = MainWindow(settings=QSettings(os.path.join(tempfile.mkdtemp(), "s.ini"), QSettings.IniFormat))
    win.show()
    gaps: list[float] = []
    last = [time.perf_counter()]

    def beat() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(beat)
    win.model_changed.connect(lambda _m: (timer.start(), last.__setitem__(0, time.perf_counter()),
                                          win.open_paths(lgg_slices(N))))
    win.predictions_finished.connect(app.quit)
    win.load_model(model_path())
    app.exec()
    timer.stop()
    beats = [g * 1000 for g in gaps[1:]]
    # baseline: the prototype's way, one model call on the GUI thread per slice
    from unetpp_gui.core.image_io import load_image
    from unetpp_gui.core.inference import predict_array

    worst_blocking = 0.0
    for p in lgg_slices(10):
        t0 = time.perf_counter()
        predict_array(win.model, load_image(p))
        worst_blocking = max(worst_blocking, (time.perf_counter() - t0) * 1000)
    return beats, worst_blocking, len(win.store.compact)


def cold_start() -> tuple[float, float, float]:
    """Seconds from process start to window shown and to the first overlay, and a bare TF import."""
    slice_ = lgg_slices(1)[0]
    env = {**os.environ, "UNETPP_TIMING": "1"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "unetpp_gui", str(slice_), "--model", str(model_path()),
                          "--snapshot", os.devnull + ".png"], capture_output=True, text=True, env=env, cwd=ROOT)
    total = time.perf_counter() - t0
    marks = {}
    for line in out.stderr.splitlines():
        if line.startswith("timing:"):
            _, key, value = line.split()
            marks[key] = float(value)
    t1 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, check=True)
    tf_import = time.perf_counter() - t1
    return marks.get("window_shown", float("nan")), marks.get("first_overlay", total), tf_import


def main() -> None:
    beats, blocking, done = stalls()
    worst = max(beats)
    ranked = sorted(beats)
    p99 = ranked[int(0.99 * (len(ranked) - 1))]
    over = sum(1 for b in beats if b > 50)
    at = beats.index(worst)
    shown, overlay, tf_import = cold_start()
    print("### GUI responsiveness and cold start\n")
    print(f"Longest event-loop stall (10 ms QTimer heartbeat) while {done} slices were predicted on the worker: "
          f"**{worst:.0f} ms** (target < 50 ms). Baseline, one model call on the GUI thread: {blocking:.0f} ms "
          f"per slice ({blocking / max(worst, 1e-9):.1f}x longer). Heartbeats: {len(beats)}, 99th percentile "
          f"{p99:.0f} ms, {over} over 50 ms; the longest was heartbeat {at + 1} of {len(beats)}.\n")
    print(f"Cold start: process start -> main window shown **{shown:.2f} s** (target < 2 s); -> first overlay "
          f"visible {overlay:.2f} s. Baseline: `import tensorflow` alone takes {tf_import:.2f} s, which the "
          f"window no longer waits for.\n")


if __name__ == "__main__":
    main()
