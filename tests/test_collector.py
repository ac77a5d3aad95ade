"""Garbage collection on the GUI thread only (unetpp_gui/ui/collector.py): a collection on a worker thread
finalises Qt objects there, and one such collection deadlocked a model load with the GUI thread's painting."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Callable

from conftest import phantom_patients


class _Node:
    """Cyclic garbage, as a model's objects and the GUI's wrappers make it."""

    def __init__(self) -> None:
        self.me = self


def _record_collections() -> tuple[list[tuple[str, int]], Callable[[str, dict], None]]:
    """(thread name, generation) of every collection from now on; the callback, to remove it later."""
    seen: list[tuple[str, int]] = []

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            seen.append((threading.current_thread().name, info["generation"]))

    gc.callbacks.append(on_gc)
    return seen, on_gc


def test_while_a_window_is_open_a_workers_garbage_is_collected_on_the_gui_thread_only(qtbot) -> None:
    from unetpp_gui.ui import collector

    enabled_before = gc.isenabled()
    collector.attach()
    seen, on_gc = _record_collections()
    try:
        assert not gc.isenabled()
        probe: list[weakref.ref] = []

        def allocate() -> None:  # far past the youngest generation's threshold (700): the interpreter would
            for _ in range(20_000):  # have collected on this thread some 30 times
                node = _Node()
            probe.append(weakref.ref(node))

        worker = threading.Thread(target=allocate, name="worker")
        worker.start()
        worker.join()
        assert probe and probe[0]() is not None  # no collection ran on the worker: its last cycle is still there
        qtbot.waitUntil(lambda: probe[0]() is None, timeout=5_000)  # the GUI thread's timer collected it
        assert seen and {name for name, _ in seen} == {threading.main_thread().name}, seen
    finally:
        gc.callbacks.remove(on_gc)
        collector.detach()
    assert gc.isenabled() == enabled_before  # the last window closed: automatic collection is back


def test_full_collections_wait_while_a_model_loads() -> None:
    from unetpp_gui.ui import collector

    seen, on_gc = _record_collections()
    threshold = gc.get_threshold()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        gc.set_threshold(10, 1, 1)
        collector.hold_full()
        for _ in range(10):
            [_Node() for _ in range(30)]
            collector.collect_due()
        assert seen and max(g for _, g in seen) == 1  # full ones were due, but a model was loading
        collector.release_full()
        seen.clear()
        for _ in range(4):
            [_Node() for _ in range(30)]
            collector.collect_due()
        assert 2 in [g for _, g in seen]
    finally:
        gc.callbacks.remove(on_gc)
        gc.set_threshold(*threshold)
        if was_enabled:
            gc.enable()


def test_the_heap_is_frozen_without_a_collection_first_and_a_replaced_models_objects_are_collected() -> None:
    # a fresh interpreter: nothing frozen yet, as when the viewer loads its first model
    script = """
import gc, weakref
from unetpp_gui.ui.collector import settle
runs = []
gc.callbacks.append(lambda phase, info: phase == "start" and runs.append(info["generation"]))
class Model: pass
old = Model(); old.me = old  # a model's objects hold cycles
alive = weakref.ref(old)
gc.disable()  # only settle collects here
settle(replaced=False)
assert gc.get_freeze_count() > 0 and runs == [], runs  # the first model: frozen, no pause to collect
del old
settle(replaced=True)  # a model replaced it: its cycles are collected once, the rest frozen again
assert runs == [2] and alive() is None and gc.get_freeze_count() > 0, runs
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_a_model_switch_collects_only_on_the_gui_thread_and_the_replaced_model_goes(
        qtbot, tmp_path: Path, tiny_model_path: Path) -> None:
    """The window's real path: two models loaded one after the other, slices predicted with each. Before the
    fix the loading worker unfroze the heap and collected it on its own thread (the 11-minute deadlock), and
    froze the replaced model for good: it was still the window's model then."""
    from PySide6.QtCore import QSettings

    from unetpp_gui.ui import collector
    from unetpp_gui.ui.main_window import MainWindow

    folder = phantom_patients(tmp_path / "study", ["P1"], n=6)
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat), batch_size=2)
    qtbot.addWidget(win)
    win.show()
    seen, on_gc = _record_collections()
    try:
        with qtbot.waitSignal(win.model_changed, timeout=120_000):
            win.load_model(tiny_model_path)
        with qtbot.waitSignal(win.predictions_finished, timeout=120_000):
            win.open_paths([folder])
        first = weakref.ref(win.model.keras_model)  # a Keras model lives in reference cycles
        batch_running_when_collected: list[bool] = []
        weakref.finalize(win.model.keras_model, lambda: batch_running_when_collected.append(win._job is not None))
        with qtbot.waitSignal(win.model_changed, timeout=120_000):
            win.load_model(tiny_model_path)
        assert win._job is not None  # the slices are predicted again with the new model
        qtbot.waitUntil(lambda: not win.busy(), timeout=120_000)
        assert first() is None  # collected once its jobs ended, not frozen with the rest
        assert batch_running_when_collected == [False]  # that collection's pause came after the batch
        assert not collector._holds  # full collections wait no more
        assert gc.get_freeze_count() > 0
        assert seen and {name for name, _ in seen} == {threading.main_thread().name}, sorted(set(seen))
        assert 2 in [g for _, g in seen]  # the settling collection
    finally:
        gc.callbacks.remove(on_gc)
