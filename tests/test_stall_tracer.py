"""The stall tracer names what kept the GUI thread busy while the heartbeat was late."""

from __future__ import annotations

import gc
import threading
import time

from PySide6.QtCore import QTimer


def _busy_slot() -> None:
    time.sleep(0.12)  # a slot that blocks the event loop


def _spinning_slot() -> None:
    end = time.perf_counter() + 0.12
    while time.perf_counter() < end:  # a slot that computes on the GUI thread
        pass


def _collecting_slot() -> None:
    junk = [[i] for i in range(200_000)]
    for a, b in zip(junk, junk[1:]):
        a.append(b)  # reference cycles, so a full collection has work to do
    gc.collect()


def _traced(qtbot, second_slot):
    """A heartbeat and its tracer over 600 ms of event loop in which ``_busy_slot`` runs at 50 ms and
    ``second_slot`` at 300 ms."""
    from unetpp_gui.ui.heartbeat import Heartbeat, StallTracer
    from unetpp_gui.workers import wait_for_workers

    # a quiet process first: jobs of earlier tests ended, their garbage collected (a full collection on
    # another thread holds the interpreter lock, and the GUI thread waiting for it counts as asleep)
    wait_for_workers(10.0)
    gc.collect()
    heartbeat = Heartbeat(10)
    tracer = StallTracer(heartbeat, late_ms=20, poll_ms=2)
    heartbeat.start()
    tracer.start()
    QTimer.singleShot(50, _busy_slot)
    QTimer.singleShot(300, second_slot)
    qtbot.wait(600)
    heartbeat.stop()
    tracer.stop()
    return heartbeat, tracer


def test_tracer_names_the_blocking_slot_and_garbage_collection(qtbot) -> None:
    heartbeat, tracer = _traced(qtbot, _collecting_slot)
    stalls = tracer.stalls(over_ms=80)
    assert stalls, heartbeat.gaps_ms
    busy = [s for s in stalls if any("_busy_slot" in stack for stack, _n in s[1])]
    assert busy and busy[0][0] >= 100 and busy[0][2] < 5  # named, long, and not garbage collection
    assert any(in_gc > 0 and 2 in gens for _gap, _where, in_gc, gens, _split in tracer.stalls(over_ms=0))


def test_the_scheduler_tells_a_sleeping_gui_thread_from_a_computing_one(qtbot) -> None:
    """Each long gap is split into time the GUI thread ran, waited for a core, and slept (a lock, e.g.)."""
    import sys

    import pytest

    from unetpp_gui.ui.heartbeat import thread_sched

    if not sys.platform.startswith("linux") or thread_sched() is None:
        pytest.skip("the scheduler's per-thread account is read from Linux's /proc")
    _heartbeat, tracer = _traced(qtbot, _spinning_slot)
    by_slot = {name: s for s in tracer.stalls(over_ms=80) for name in ("_busy_slot", "_spinning_slot")
               if any(name in stack for stack, _n in s[1])}
    assert set(by_slot) == {"_busy_slot", "_spinning_slot"}, tracer.stalls(over_ms=80)
    gap, *_rest, (ran, waited, slept) = by_slot["_busy_slot"]
    assert slept > 90 and ran < 30, (gap, ran, waited, slept)
    gap, *_rest, (ran, waited, slept) = by_slot["_spinning_slot"]
    others = sorted(t.name for t in threading.enumerate() if t is not threading.current_thread())
    assert ran + waited > 90 and slept < 30, (gap, ran, waited, slept, tracer.gc_pauses, others)


def test_a_window_makes_workers_hand_the_interpreter_lock_back_sooner(qtbot, tmp_path) -> None:
    """Python's default switch interval (5 ms) let a busy worker keep the GUI thread waiting for the lock."""
    import sys

    from PySide6.QtCore import QSettings

    from unetpp_gui.ui.main_window import MainWindow
    from unetpp_gui.workers import GUI_SWITCH_INTERVAL_S

    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
        qtbot.addWidget(win)
        assert sys.getswitchinterval() <= GUI_SWITCH_INTERVAL_S < 0.005
    finally:
        sys.setswitchinterval(before)
