"""The bridge: runs engine generators off the GUI thread with superqt's thread workers.

A prediction job is a generator: it ``yield``s each :class:`SliceResult` (delivered to the GUI
thread through the worker's ``yielded`` signal) and stops at the next yield when the worker is
asked to quit, so a cancel never cuts a slice in half.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Iterator

from superqt.utils import create_worker

__all__ = ["create_worker", "discover_worker", "export_study_worker", "load_model_worker", "predict_worker"]


BACKGROUND_NICE = 10


def background_priority() -> None:
    """Lower this thread's CPU priority (Linux/Unix; nice is per thread there).

    TensorFlow's compute threads are created by the thread that first runs TensorFlow and inherit
    its priority, so on a machine with few cores the GUI thread still gets the CPU at once when it
    needs to paint. A busy worker loses nothing when the GUI is idle.
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


def _load_model(path: str | Path, trust: bool, prune_level: int | None = None, tta: bool = False,
                precision: str = "float32") -> Any:
    background_priority()  # before TensorFlow starts its thread pools here
    from unetpp_gui.core.model_io import load_model

    model = load_model(path, trust=trust, prune_level=prune_level, tta=tta, precision=precision)
    # Warm up (trace the graph here, so the first real slice is not slowed by it) and choose the batch
    # size by measurement, cached per model and machine (core.batching).
    if model.input_hw is not None:
        from unetpp_gui.core.batching import best_batch_size, describe

        size, times, cached = best_batch_size(model)
        model.batch_size_choice, model.batch_size_note = size, describe(size, times, cached)
    return model


def load_model_worker(path: str | Path, trust: bool = False, prune_level: int | None = None,
                      tta: bool = False, precision: str = "float32") -> Any:
    """Worker returning a LoadedModel (``returned``) or raising ModelError (``errored``)."""
    return create_worker(_load_model, path, trust, prune_level, tta, precision, _start_thread=False,
                         _ignore_errors=True)


def _discover(paths: list[str]) -> Any:
    from unetpp_gui.core.discovery import discover

    return discover(paths, volumes=True)  # NIfTI studies become one slice path per axial slice


def discover_worker(paths: list[str]) -> Any:
    """Folder walking is file I/O on possibly many entries: never on the GUI thread."""
    return create_worker(_discover, paths, _start_thread=False, _ignore_errors=True)


def _predict(model: Any, paths: list[Path], batch_size: int, patient_filter: Any) -> Iterator[Any]:
    background_priority()  # and the decode thread it starts
    from unetpp_gui.core.inference import predict_patients

    yield from predict_patients(model, paths, model.metadata.pixel_threshold, patient_filter,
                                batch_size=batch_size, keep_maps=True)


def predict_worker(model: Any, paths: list[Path], batch_size: int = 8, patient_filter: Any = None) -> Any:
    """Generator worker: ``yielded`` gets each SliceResult in order; ``quit()`` cancels.

    With ``patient_filter`` a patient's slices arrive together, once its last slice is predicted.
    """
    return create_worker(_predict, model, list(paths), batch_size, patient_filter, _start_thread=False,
                         _ignore_errors=True)


def _export_study(model: Any, file: Path, out: Path, pixel: float, decision: float, patient_filter: Any) -> Any:
    background_priority()
    from unetpp_gui.core.volume import study_of
    from unetpp_gui.core.volume_inference import predict_study, write_study_outputs

    study = study_of(file)
    result, probs = predict_study(model, study, pixel, decision, patient_filter)
    write_study_outputs(study, probs, result, out, pixel)
    return result


def export_study_worker(model: Any, file: Path, out: Path, pixel: float, decision: float,
                        patient_filter: Any = None) -> Any:
    """Worker returning a VolumeResult after writing ``<study>_pred.nii.gz`` to ``out``."""
    return create_worker(_export_study, model, file, out, pixel, decision, patient_filter, _start_thread=False,
                         _ignore_errors=True)
