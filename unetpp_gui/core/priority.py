"""Background CPU priority for model work (Qt-free: the viewer's workers and the OpenVINO child share it)."""

from __future__ import annotations

import os
import threading

BACKGROUND_NICE = 10


def background_priority() -> None:
    """Lower this thread's CPU priority to :data:`BACKGROUND_NICE` (Linux/Unix; nice is per thread there).

    TensorFlow's compute threads are created by the thread that first runs TensorFlow and inherit
    its priority, and a child process inherits its starting thread's, so on a machine with few cores the
    GUI thread still gets the CPU at once when it needs to paint. A busy worker loses nothing when the GUI
    is idle. Never raises the priority back (a thread already at or below it is left as it is).
    """
    if not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < BACKGROUND_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, BACKGROUND_NICE)
    except OSError:
        pass
