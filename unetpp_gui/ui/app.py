"""``unetpp-gui``: start the desktop app (window first, TensorFlow in the background)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from unetpp_gui import RESEARCH_NOTICE, __version__


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="unetpp-gui", description=f"UNet++ Viewer. {RESEARCH_NOTICE}")
    p.add_argument("paths", nargs="*", help="slices and/or folders to open")
    p.add_argument("--model", help="model file (default: the bundled model)")
    p.add_argument("--trust-model", action="store_true", help="allow models with code (Lambda layers)")
    p.add_argument("--snapshot", metavar="OUT.png", help="save a screenshot once the paths are predicted, then exit")
    p.add_argument("--snapshot-timeout", type=float, default=600.0, help=argparse.SUPPRESS)
    p.add_argument("--select", type=int, default=0, help="row (from 0) of the slice to show (with --snapshot)")
    p.add_argument("--selftest", nargs="?", const="", metavar="PNG",
                   help="load the model, predict a synthetic slice (and PNG if given), print timings, exit")
    p.add_argument("--verbose", action="store_true", help="keep TensorFlow's start-up log on the terminal")
    p.add_argument("--version", action="version", version=f"UNet++ Viewer {__version__}")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.monotonic()
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("UNETPP_TRAINING_CHILD") and argv[:1] == ["--train-child"]:
        # the packaged app started again by the training dialog, as the training process
        from training.cli import main as training_main

        return training_main(argv[1:])
    from unetpp_gui.core import openvino_child

    if os.environ.get(openvino_child.ENV) and argv[:1] == [openvino_child.FLAG]:
        # the packaged app started again by the window, to convert the model for OpenVINO
        return openvino_child.main(argv[1:])
    args = parse_args(argv)
    if args.verbose:
        os.environ["UNETPP_VERBOSE"] = "1"
    if args.selftest is not None:
        from unetpp_gui.selftest import run_selftest

        return run_selftest(args.model, args.selftest or None)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("UNet++ Viewer")
    app.setOrganizationName("UNetPPViewer")
    from unetpp_gui.ui.main_window import MainWindow

    window = MainWindow()
    window.show()
    shown = time.monotonic() - t0
    if os.environ.get("UNETPP_TIMING"):  # for benchmarks/bench_gui.py: seconds since the process started
        _report_timing(window)
    window.status.setText(f"Window ready in {shown:.2f} s; loading the model in the background…")

    def start() -> None:
        from unetpp_gui.core.errors import ModelError
        from unetpp_gui.core.model_io import resolve_model_path

        try:
            window.load_model(resolve_model_path(args.model), trust=args.trust_model)
        except ModelError as exc:
            window._on_model_error(exc)
        if args.paths:
            window.open_paths(args.paths)

    if args.snapshot:
        _arm_snapshot(app, window, Path(args.snapshot), args.select, args.snapshot_timeout, bool(args.paths))
    QTimer.singleShot(0, start)
    code = app.exec()
    window.stop_work()
    # let worker threads leave Python before the interpreter shuts down (a thread still running Python
    # code while modules are torn down can crash the process at exit)
    from unetpp_gui.workers import wait_for_workers

    wait_for_workers(5.0)
    return code


def _process_age() -> float:
    """Seconds since this process started (Linux: from /proc; elsewhere since import)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


_IMPORTED = time.monotonic()


def _report_timing(window) -> None:
    print(f"timing: window_shown {_process_age():.3f}", file=sys.stderr, flush=True)
    done = []

    def first(_path) -> None:
        if not done and window.panels.overlay is not None:
            done.append(1)
            print(f"timing: first_overlay {_process_age():.3f}", file=sys.stderr, flush=True)

    window.slice_shown.connect(first)
    window.runtime_changed.connect(  # a first start's background preparation of OpenVINO ended
        lambda _runtime: print(f"timing: runtime_chosen {_process_age():.3f}", file=sys.stderr, flush=True))


def _arm_snapshot(app, window, out: Path, select: int, timeout: float, has_paths: bool) -> None:
    """Save a screenshot once everything is predicted and the chosen slice is on screen."""
    from PySide6.QtCore import QTimer

    from unetpp_gui.ui.main_window import default_size

    window.resize(*default_size())  # reproducible: the default for this screen, whatever was remembered
    QTimer.singleShot(0, window.default_layout)
    state = {"armed": False, "done": False}

    def grab() -> None:
        if state["done"]:
            return
        state["done"] = True
        out.parent.mkdir(parents=True, exist_ok=True)
        ok = window.grab().save(str(out))
        print(f"snapshot {'saved to ' + str(out) if ok else 'FAILED'}", file=sys.stderr)
        window.close()
        app.exit(0 if ok else 1)

    def on_shown(_path) -> None:
        if state["armed"] and window.panels.overlay is not None:
            QTimer.singleShot(300, grab)

    def all_predicted() -> None:
        state["armed"] = True
        row = min(select, window.slice_list.count() - 1)
        if row != window.slice_list.currentRow():
            window.slice_list.setCurrentRow(row)  # may predict it again if it left the cache
        else:
            window.render_current()

    window.slice_shown.connect(on_shown)
    if has_paths:
        window.predictions_finished.connect(all_predicted)
    else:
        window.model_changed.connect(lambda _m: QTimer.singleShot(300, grab))
    window.model_failed.connect(lambda msg: (print(f"snapshot: model failed: {msg}", file=sys.stderr), app.exit(2)))

    def too_slow() -> None:
        print(f"snapshot: nothing to show after {timeout:.0f} s", file=sys.stderr)
        app.exit(3)

    QTimer.singleShot(int(timeout * 1000), too_slow)


if __name__ == "__main__":
    sys.exit(main())
