"""The bridge: runs engine work off the GUI thread with superqt's thread workers.

Each job is one function decorated with :func:`job` (superqt's ``thread_worker``): calling it returns
an unstarted worker (connect its signals, then ``start()``). A generator job ``yield``s each result
(delivered to the GUI thread through ``yielded``) and stops at the next yield when asked to ``quit()``,
so a cancel never cuts a slice in half. Errors arrive on ``errored`` (never raised in the GUI thread).

Workers run on Python threads, one per job, not on Qt's thread pool: TensorFlow used from a Qt pool
thread crashed the process (SIGSEGV inside TensorFlow's op creation) when a second model was loaded,
reproducibly, while the same calls on Python threads never did (tests/test_gui.py keeps the reproduction).
The likely cause, not verified: PySide drops a pool thread's Python thread state between jobs, and
TensorFlow's per-thread state does not survive that.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from PySide6.QtCore import QObject, Qt, Signal
from superqt.utils import FunctionWorker, GeneratorWorker, thread_worker

from unetpp_gui.core.priority import background_priority

__all__ = ["discover_worker", "export_masks_worker", "export_study_worker", "inspect_folder_worker",
           "load_model_worker", "network_worker", "predict_worker", "prepare_openvino_worker"]

#: The interpreter's thread switch interval while a window is open (Python's default: 5 ms). A worker running
#: Python code holds the interpreter lock for up to this long before a waiting GUI thread gets it; at 1 ms the
#: longest event-loop stall of a 300-slice batch fell from 31-71 ms (6 runs) to 31-49 ms (6 runs) on 2 cores,
#: at the same throughput (benchmarks/bench_gui.py).
GUI_SWITCH_INTERVAL_S = 0.001

_threads: set[threading.Thread] = set()  # job threads still running (wait_for_workers joins them)
_alive: dict[weakref.ref, Any] = {}  # started jobs, until their thread has let go of them (see _Releaser)
_releaser: "_Releaser | None" = None


class _Releaser(QObject):
    """Drops a finished job's last reference on the thread that started it (the GUI thread).

    A job is a Qt object: its signals' QObject lives in the GUI thread, and deleting it from another thread while
    the GUI thread delivers its signals is not allowed. Without this, whichever thread let go last deleted it: the
    job's own thread in 2-8 of 300 short jobs at background priority (preempted just after its last signal while
    the GUI thread took that signal in and dropped its references; tests/test_workers.py)."""

    release = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.release.connect(self._drop, Qt.QueuedConnection)

    def _drop(self, ref: weakref.ref) -> None:
        _alive.pop(ref, None)


class _OnPythonThread:
    """``start()`` runs the worker on a new Python thread instead of Qt's thread pool (see the module doc), with
    superqt's signals. ``_alive`` keeps a started worker, in place of superqt's set of live workers (which let go
    as the last signal arrived, while the job's thread still held it): the thread holds the worker only while it
    runs, and its last reference is dropped on the starting thread (:class:`_Releaser`)."""

    def start(self) -> None:
        global _releaser
        ref = weakref.ref(self)
        if ref in _alive:
            raise RuntimeError("This worker is already started!")
        if _releaser is None:
            _releaser = _Releaser()
        _alive[ref] = self
        thread = threading.Thread(target=_run_job, args=(ref, _releaser), name="unetpp-job", daemon=True)
        _threads.add(thread)
        thread.start()

    def run(self) -> None:
        """superqt's ``run`` with two changes. A failure always arrives on ``errored`` and the job always ends
        with ``finished``: superqt returns without either after a RuntimeError (which OpenVINO raises), and the
        window then waited for the job for ever. No warnings capture: superqt sets the process-wide
        ``warnings.showwarning`` and filters from the job's thread for the job's duration, so two jobs that end
        in the other order leave one job's hook (and "always") installed for good. (Its private ``_finished``,
        which fed superqt's set of live workers, is not emitted: ``_alive`` replaces that set.)"""
        self.started.emit()  # type: ignore[attr-defined]
        self._running = True
        try:
            result = self.work()  # type: ignore[attr-defined]
            if isinstance(result, BaseException):  # how superqt's generator loop hands back a RuntimeError
                raise result
            if not self.abort_requested:  # type: ignore[attr-defined]
                self.returned.emit(result)  # type: ignore[attr-defined]
        except Exception as exc:
            self.errored.emit(exc)  # type: ignore[attr-defined]
        self._running = False
        self.finished.emit()  # type: ignore[attr-defined]


def _run_job(ref: weakref.ref, releaser: _Releaser) -> None:
    worker = ref()
    try:
        if worker is not None:
            worker.run()
    finally:
        del worker  # this thread's only strong reference: the starting thread drops the last one
        _threads.discard(threading.current_thread())
        releaser.release.emit(ref)


class FunctionJob(_OnPythonThread, FunctionWorker):
    pass


class GeneratorJob(_OnPythonThread, GeneratorWorker):
    pass


def job(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``@thread_worker(start_thread=False)`` with the worker started on a Python thread."""
    worker_class = GeneratorJob if inspect.isgeneratorfunction(fn) else FunctionJob
    return thread_worker(fn, start_thread=False, ignore_errors=True, worker_class=worker_class)


def wait_for_workers(timeout_s: float = 5.0) -> bool:
    """Wait up to ``timeout_s`` for running jobs to leave Python (before the interpreter shuts down);
    True if none is left."""
    deadline = time.monotonic() + timeout_s
    for thread in list(_threads):
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in _threads)


def favour_gui_thread() -> None:
    """Let a thread waiting for the interpreter lock (the GUI's) get it sooner; see GUI_SWITCH_INTERVAL_S."""
    if sys.getswitchinterval() > GUI_SWITCH_INTERVAL_S:
        sys.setswitchinterval(GUI_SWITCH_INTERVAL_S)


@job
def load_model_worker(path: str | Path, trust: bool = False, prune_level: int | None = None, tta: bool = False,
                      precision: str = "float32", runtime: str = "tensorflow") -> Any:
    """Returns a LoadedModel (``returned``) or raises ModelError (``errored``). With "auto" it runs OpenVINO
    built from the file (no TensorFlow import); a network only Keras converts, never measured on this machine,
    starts on TensorFlow (``openvino_pending``: see :func:`prepare_openvino_worker`)."""
    background_priority()  # before TensorFlow starts its thread pools here
    from unetpp_gui.core.model_io import load_model

    model = load_model(path, trust=trust, prune_level=prune_level, tta=tta, precision=precision, runtime=runtime,
                       defer_openvino=True)
    # Warm up (trace the graph here, alone, so the first real slice is not slowed by it and the trace never
    # runs beside the decode thread). The batch size measured on this machine before, if any (cached per model
    # and machine); else the first batch of slices measures it (predict_worker), not blank batches here: that
    # put 1.4 s before a first start's first overlay. With OpenVINO pending, its preparation measures both
    # runtimes at every size later.
    model.warm_up()
    if model.openvino_pending:
        # Importing OpenVINO holds the interpreter lock for 45 ms in one piece (its native libraries load): here,
        # while the model loads, not later beside a batch, when its preparation needs it.
        try:
            importlib.import_module("openvino")
        except Exception:  # its preparation says why, later, and the model stays on TensorFlow meanwhile
            pass
    if model.input_hw is not None and not model.openvino_pending:
        from unetpp_gui.core.batching import cached_batch_size, describe

        known = cached_batch_size(model)
        if known is not None:
            model.batch_size_choice, model.batch_size_note = known[0], describe(known[0], known[1], True)
    # no garbage collection here: a worker must not finalise Qt objects (the window settles the heap once the
    # load has ended: ui/collector.py)
    return model


@job
def network_worker(model: Any) -> Any:
    """Loads the Keras network of a model started without TensorFlow (``LoadedModel.network``); returns it."""
    background_priority()
    return model.network()


#: How long the measurement waits for running predictions to end before it measures beside them.
IDLE_WAIT_S = 60.0


@job
def prepare_openvino_worker(model: Any, idle: Callable[[], bool], stop: threading.Event) -> Any:
    """For a model loaded with OpenVINO pending: has a child process convert it (no interpreter lock or memory
    shared with the window), waits until ``idle()`` (no prediction running, up to IDLE_WAIT_S), then measures
    both runtimes; returns the prepared copy (``LoadedModel.take_runtime``), or None once ``stop`` is set."""
    background_priority()  # the child inherits it
    from unetpp_gui.core.model_io import finish_openvino
    from unetpp_gui.core.openvino_child import convert

    failed = convert(model.path, model.prune_level, stop)
    deadline = time.monotonic() + IDLE_WAIT_S
    while not stop.is_set() and not idle() and time.monotonic() < deadline:
        time.sleep(0.1)
    return None if stop.is_set() else finish_openvino(model, failed)


@job
def discover_worker(paths: list[str]) -> Any:
    """Folder walking is file I/O on possibly many entries: never on the GUI thread."""
    from unetpp_gui.core.discovery import discover

    # NIfTI studies become one slice path per axial slice; the slices' patients are named here, not by the store
    return discover(paths, volumes=True, patients=True)


@job
def predict_worker(model: Any, paths: Sequence[Path], batch_size: int | None = None, patient_filter: Any = None,
                   patients: dict[Path, str] | None = None) -> Iterator[Any]:
    """Yields each SliceResult in order; ``quit()`` cancels.

    ``batch_size`` None: the model's measured size, or, where this machine has none for it yet, its first
    slices measure it (:func:`measuring_plan`). With ``patient_filter`` a patient's slices arrive together, once
    its last slice is predicted; ``patients`` names each path's patient (the window's, found among all its
    slices, not only these).
    """
    background_priority()  # and the decode thread it starts
    from unetpp_gui.core.inference import predict_patients

    plan = batch_size or measuring_plan(model, len(paths))
    trial = None if isinstance(plan, int) else plan
    for result in predict_patients(model, list(paths), model.metadata.pixel_threshold, patient_filter,
                                   batch_size=plan, keep_maps=True,
                                   patient_of=patients.__getitem__ if patients is not None else None):
        if trial is not None and trial.size is not None:  # measured on these slices: later jobs use it
            from unetpp_gui.core.batching import describe

            model.batch_size_note = describe(trial.size, trial.times[model.runtime], False)
            model.batch_size_choice, trial = trial.size, None
        yield result


def measuring_plan(model: Any, slices: int) -> Any:
    """The batch size for ``slices`` slices: the model's measured one; else a :class:`~unetpp_gui.core.batching.Trial`
    that times sizes 1, 2, 4 on the first of them (their results kept, the choice cached), where there are enough
    and the runtime is settled; else 4."""
    if model.batch_size_choice:
        return model.batch_size_choice
    from unetpp_gui.core.batching import Trial

    trial = Trial(model, {model.runtime: model.runtime_runner})
    if model.input_hw is None or model.openvino_pending or slices < trial.slices:
        return 4
    return trial


@job
def export_masks_worker(model: Any, paths: Sequence[Path], out: Path, pixel: float, color: tuple[int, int, int],
                        opacity: float, batch_size: int, patient_filter: Any = None) -> Iterator[Any]:
    """Predicts ``paths`` again, writing each slice's mask and overlay under ``out`` (folders kept below
    their common roots); yields each SliceResult as it is written."""
    background_priority()
    from unetpp_gui.core.export import write_masks

    roots = sorted({p.parent for p in paths})
    yield from write_masks(model, list(paths), out, roots, pixel, True, color, opacity, batch_size,
                           patient_filter=patient_filter)


@job
def export_study_worker(model: Any, file: Path, out: Path, pixel: float, decision: float,
                        patient_filter: Any = None) -> Any:
    """Returns a VolumeResult after writing ``<study>_pred.nii.gz`` to ``out``."""
    background_priority()
    from unetpp_gui.core.volume import study_of
    from unetpp_gui.core.volume_inference import predict_study, write_study_outputs

    study = study_of(file)
    result, probs = predict_study(model, study, pixel, decision, patient_filter)
    write_study_outputs(study, probs, result, out, pixel)
    return result


@job
def inspect_folder_worker(folder: str) -> Any:
    """A training-data folder checked once: yields (checked, total) now and then, returns its FolderReport."""
    from training.data import inspect_folder

    return (yield from inspect_folder(folder))
