"""OpenVINO's conversion of a model, made by a child process.

For a network the direct build (:mod:`~unetpp_gui.core.openvino_graph`) does not cover, the viewer defers
"auto"'s conversion (``load_model(defer_openvino=True)``) and has it made here, in another process: TensorFlow's
export and OpenVINO's conversion hold the interpreter lock for long stretches (the window would stall) and peak
near 1 GB. The child loads the model as ``--runtime openvino`` does, which converts it into
the shared cache, and exits 0; the viewer then measures both runtimes (:func:`~unetpp_gui.core.model_io.finish_openvino`).

``python -m unetpp_gui.core.openvino_child MODEL [--prune L]``; the packaged app runs itself with
``--openvino-child`` and ``UNETPP_OPENVINO_CHILD=1`` instead (see :func:`command`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from unetpp_gui.core.priority import background_priority

#: A conversion took 6-11 s on 2 cores; one that runs far longer is stuck.
TIMEOUT_S = 600.0
FLAG, ENV = "--openvino-child", "UNETPP_OPENVINO_CHILD"


def command(path: str | Path, prune_level: int | None) -> tuple[list[str], dict[str, str]]:
    """The child's command line and the extra environment it needs."""
    args = [str(path)] + (["--prune", str(prune_level)] if prune_level is not None else [])
    if getattr(sys, "frozen", False):
        return [sys.executable, FLAG, *args], {ENV: "1"}
    return [sys.executable, "-m", "unetpp_gui.core.openvino_child", *args], {}


def convert(path: str | Path, prune_level: int | None, stop: threading.Event | None = None,
            timeout_s: float = TIMEOUT_S) -> str | None:
    """Run the child and wait for it (``stop`` set: kill it and return at once). None once the conversion is
    in the cache, else why not (the last line the child wrote)."""
    argv, extra = command(path, prune_level)
    env = {**os.environ, **extra, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE,
                                creationflags=getattr(subprocess, "BELOW_NORMAL_PRIORITY_CLASS", 0))
    except OSError as exc:
        return f"OpenVINO's conversion could not start ({exc})"
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                _, err = proc.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if (stop is not None and stop.is_set()) or time.monotonic() > deadline:
                    proc.kill()
                    proc.communicate()
                    return "OpenVINO's conversion was stopped" if stop is not None and stop.is_set() else (
                        f"OpenVINO's conversion took over {timeout_s:.0f} s and was stopped")
    finally:
        if proc.poll() is None:  # an exception above: never leave the child behind
            proc.kill()
            proc.wait()
    if proc.returncode == 0:
        return None
    lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else f"OpenVINO's conversion failed (exit code {proc.returncode})"


def _exit_with_parent() -> None:
    """Exit when the process that started this one is gone (a viewer killed without closing its window would
    otherwise leave the conversion running): a daemon thread watches the parent's pid (POSIX)."""
    parent = os.getppid()
    if os.name != "posix" or parent <= 1:
        return

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="openvino_child", description="Convert a model for OpenVINO into the cache.")
    p.add_argument("model")
    p.add_argument("--prune", type=int, default=None)
    args = p.parse_args(argv)
    _exit_with_parent()
    # background work at the viewer's workers' priority whoever started it (a command line did not lower it);
    # set here rather than in a preexec_fn, which would make the parent fork() instead of vfork()
    background_priority()
    from unetpp_gui.core.errors import ModelError
    from unetpp_gui.core.model_io import load_model

    try:
        model = load_model(args.model, prune_level=args.prune, precision="float32", runtime="openvino")
    except ModelError as exc:
        print(f"OpenVINO's conversion failed: {exc}", file=sys.stderr)
        return 1
    if model.runtime != "openvino":
        print(model.runtime_note.removeprefix("TensorFlow: "), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
