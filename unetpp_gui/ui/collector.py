"""Garbage collection on the GUI thread only, while a window is open.

Python collects cyclic garbage in whichever thread happens to allocate, and a collection finalises every
unreachable object it finds, Qt wrappers included. Finalising a Qt object (a text item's, a font's) on a worker
thread while the GUI thread paints can deadlock the two: one run of the test suite hung for 11 minutes with a
model-loading worker inside ``gc.collect()`` and the GUI thread inside a ``QGraphicsTextItem.setHtml``. So while
a window is open, automatic collection is off and a timer on the GUI thread collects by the interpreter's own
thresholds (pyqtgraph's ``GarbageCollector`` does the same; it has no way to hold back full collections while a
model loads, nor to give automatic collection back when the last window closes, which is why it is not used).

Full collections walk every object that is not frozen; TensorFlow's are hundreds of thousands (208-314 ms on the
AVX2-only EPYC). So while a model loads, full collections wait, and once it has loaded :func:`settle` freezes
what is alive then (``gc.freeze``), on the GUI thread, after the jobs that still held a replaced model ended.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QTimer

#: How often the GUI thread looks at the allocation counts. Short, so that what a busy worker allocated
#: meanwhile (a model's import: about 100,000 objects a second) is walked in small steps.
INTERVAL_MS = 100

_users = 0  # open windows
_holds = 0  # models loading: full collections wait
_timer: QTimer | None = None
_was_enabled = True


def attach() -> None:
    """A window opens (GUI thread): the first one turns automatic collection off and starts the timer."""
    global _users, _timer, _was_enabled
    _users += 1
    if _users == 1:
        _was_enabled = gc.isenabled()
        gc.disable()
        _timer = QTimer()
        _timer.setInterval(INTERVAL_MS)
        _timer.timeout.connect(collect_due)
        _timer.start()


def detach() -> None:
    """A window closes: the last one stops the timer and gives automatic collection back."""
    global _users, _timer
    if _users == 0:
        return
    _users -= 1
    if _users == 0:
        if _timer is not None:
            _timer.stop()
            _timer.deleteLater()
            _timer = None
        if _was_enabled:
            gc.enable()


def hold_full() -> None:
    """A model starts loading: full collections wait until :func:`release_full`."""
    global _holds
    _holds += 1


def release_full() -> None:
    global _holds
    _holds = max(0, _holds - 1)


def collect_due() -> int:
    """The collection the interpreter would have run by now (youngest generation, or the next older one once it
    is due), here; a full one only while no model loads. Returns the generation collected, or -1."""
    n0, n1, n2 = gc.get_count()
    t0, t1, t2 = gc.get_threshold()
    if n0 <= t0:
        return -1
    generation = 0
    if n1 > t1:
        generation = 2 if n2 > t2 and _holds == 0 else 1
    gc.collect(generation)
    return generation


def settle(replaced: bool) -> None:
    """Freeze the objects alive now (the framework's and the model's), so that later full collections skip
    them. After a replaced model's last user ended (``replaced``), its objects are collected first, once."""
    if replaced and gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
    gc.freeze()
