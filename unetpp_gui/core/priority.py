"""Background CPU priority for model work (Qt-free: the viewer's workers and the OpenVINO child share it)."""

from __future__ import annotations

import os
import threading

#: The lowest nice value (CFS weight 15 against the GUI thread's 1024; 110 at nice 10). At 10 the GUI thread of a
#: 2-core machine still waited 5-22 ms for a core in its longest gaps beside the runtime's two threads; at 19 no
#: gap of a 300-slice batch passed 40 ms in eight runs (longest 27-39 ms; 29-66 ms at 10 in eight runs alternated
#: with them; same batch times; benchmarks/bench_gui.py, Intel Xeon without bfloat16, 2026-12-06).
BACKGROUND_NICE = 19


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
