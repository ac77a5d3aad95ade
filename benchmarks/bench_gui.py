"""GUI: event-loop stalls while a batch runs, and cold start to window and to first overlay.

Usage: python benchmarks/bench_gui.py [N_SLICES]  (offscreen Qt; no display needed)

Three runs with the app's cache as it is, then a first start: an empty cache, where the window builds the
network for OpenVINO from the model file (no TensorFlow import) and its first batch measures the batch sizes;
for a network only Keras converts, it runs TensorFlow and prepares OpenVINO in the background (a child
process converts while the batch runs; both runtimes are measured after it), timed until both are done.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from common import ROOT, lgg_slices, model_path, timing_marks

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
RUNS = 3
STALLS: list = []  # per run: the tracer's account of every gap over 40 ms
RUNTIMES: list = []  # per run: the runtime the model ran on at the end
LOADING: list = []  # per run: (longest gap in ms, seconds) from the window's show until the model was ready


def stalls(n: int, first_start: bool = False) -> tuple[list[float], float, int]:
    """Event-loop gaps (ms) while ``n`` slices are predicted in a fresh window (``first_start``: with an empty
    cache, until OpenVINO is prepared too); the baseline of one model call on the GUI thread (ms); slices done."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication
    import tempfile

    if first_start:
        os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="bench-gui-cache-")

    app = QApplication.instance() or QApplication([])
    from unetpp_gui.ui.heartbeat import Heartbeat, StallTracer
    from unetpp_gui.ui.main_window import MainWindow

    win = MainWindow(settings=QSettings(os.path.join(tempfile.mkdtemp(), "s.ini"), QSettings.IniFormat))
    win.show()
    heartbeat = Heartbeat(10)
    tracer = StallTracer(heartbeat)
    loading = Heartbeat(10)  # a meter of its own from the window's show until the model is ready (not in the table)
    paths = lgg_slices(n)  # listed before the meter starts: the scan is the benchmark's, not the app's, GUI work
    waiting = {"predictions"}

    def ready(model) -> None:
        if model.openvino_pending:  # the cache had no measurement: wait for the app's own, never run beside it
            waiting.add("runtime")
        loading.stop()
        heartbeat.start()
        tracer.start()
        win.open_paths(paths)
    win.model_changed.connect(ready)
    loading.start()

    def finished(what: str) -> None:
        waiting.discard(what)
        if not waiting:
            app.quit()
    win.predictions_finished.connect(lambda: finished("predictions"))
    win.runtime_changed.connect(lambda _r: finished("runtime"))
    win.load_model(model_path())
    app.exec()
    heartbeat.stop()
    tracer.stop()
    STALLS.append(tracer.stalls(40.0))
    LOADING.append((loading.worst_ms, sum(loading.gaps_ms) / 1000))
    RUNTIMES.append(win.model.runtime)  # after the batch (a first start switches once OpenVINO is prepared)
    # baseline: the prototype's way, one model call on the GUI thread per slice
    from unetpp_gui.core.image_io import load_image
    from unetpp_gui.core.inference import predict_array

    worst_blocking = 0.0
    for p in lgg_slices(10):
        t0 = time.perf_counter()
        predict_array(win.model, load_image(p))
        worst_blocking = max(worst_blocking, (time.perf_counter() - t0) * 1000)
    done = len(win.store.compact)
    win.close()
    win.deleteLater()
    return heartbeat.gaps_ms, worst_blocking, done


def cold_start() -> tuple[float, float, float]:
    """Seconds from process start to window shown and to the first overlay, and a bare TF import."""
    slice_ = lgg_slices(1)[0]
    env = {**os.environ, "UNETPP_TIMING": "1"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "unetpp_gui", str(slice_), "--model", str(model_path()),
                          "--snapshot", os.devnull + ".png"], capture_output=True, text=True, env=env, cwd=ROOT)
    total = time.perf_counter() - t0
    marks = timing_marks(out.stderr)
    t1 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, check=True)
    tf_import = time.perf_counter() - t1
    return marks.get("window_shown", float("nan")), marks.get("first_overlay", total), tf_import


def main() -> None:
    runs = [stalls(N) for _ in range(RUNS)]
    cache = os.environ.get("XDG_CACHE_HOME")
    runs.append(stalls(N, first_start=True))
    if cache is None:
        os.environ.pop("XDG_CACHE_HOME")
    else:
        os.environ["XDG_CACHE_HOME"] = cache
    print("### GUI responsiveness and cold start\n")
    print(f"Event-loop stalls (gaps between the ticks of a 10 ms QTimer) while {N} slices were predicted on the "
          f"worker, {RUNS} runs, each in a fresh window (target: longest < 50 ms in every run), then run "
          f"{RUNS + 1}, a first start: empty cache (where OpenVINO is prepared in the background, timed until that "
          "is done too):\n")
    print("| run | runtime at the end | slices | heartbeats | p50 (ms) | p99 (ms) | longest (ms) | over 50 ms |\n"
          "|---|---|---|---|---|---|---|---|")
    for k, (beats, _blocking, done) in enumerate(runs, 1):
        ranked = sorted(beats)
        pct = lambda q: ranked[int(q * (len(ranked) - 1))]  # noqa: E731
        print(f"| {k} | {RUNTIMES[k - 1]} | {done} | {len(beats)} | {pct(0.5):.0f} | {pct(0.99):.0f} | **{max(beats):.0f}** | "
              f"{sum(1 for b in beats if b > 50)} |")
    print("\nWhere the GUI thread was during each gap over 40 ms (its Python stack sampled every 2 ms once the "
          "tick was 20 ms late; 'exec' = the event loop itself, i.e. Qt's C++ or the thread not scheduled):\n")
    traced = [(k, s) for k, run in enumerate(STALLS, 1) for s in run]
    for k, (gap, where, in_gc, gens, split) in traced:
        top = "; ".join(f"{n}x {stack}" for stack, n in where) or "no sample (the tracer itself was not scheduled)"
        gc_text = f"garbage collection {in_gc:.0f} ms, generation {'/'.join(map(str, gens))}" if gens else "no garbage collection"
        sched = (f"; GUI thread ran {split[0]:.0f} ms, waited for a core {split[1]:.0f} ms, slept {split[2]:.0f} ms"
                 if split else "")
        print(f"- run {k}, {gap:.0f} ms ({gc_text}{sched}): {top}")
    if not traced:
        print("- none")
    print("\nWhile the model loaded (from the window's show until the model was ready; no batch runs yet; not in the "
          "table above), longest gap per run: " + ", ".join(f"run {k}: **{worst:.0f} ms** in {secs:.1f} s"
                                                          for k, (worst, secs) in enumerate(LOADING, 1)) + ".")
    blocking = max(r[1] for r in runs)
    worst = max(max(r[0]) for r in runs)
    print(f"\nBaseline, one model call on the GUI thread: {blocking:.0f} ms per slice ({blocking / max(worst, 1e-9):.1f}x "
          f"the longest stall above).\n")
    shown, overlay, tf_import = cold_start()
    print(f"Cold start: process start -> main window shown **{shown:.2f} s** (target < 2 s); -> first overlay "
          f"visible {overlay:.2f} s. Baseline: `import tensorflow` alone takes {tf_import:.2f} s, which the "
          f"window no longer waits for.\n")


if __name__ == "__main__":
    main()
