"""The bridge: runs engine work off the GUI thread with superqt's thread workers.

Each job is one function decorated with ``@thread_worker``: calling it returns an unstarted
worker (connect its signals, then ``start()``). A generator job ``yield``s each result (delivered
to the GUI thread through ``yielded``) and stops at the next yield when asked to ``quit()``, so a
cancel never cuts a slice in half. Errors arrive on ``errored`` (never raised in the GUI thread).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

from superqt.utils import thread_worker

__all__ = ["discover_worker", "export_masks_worker", "export_study_worker", "inspect_folder_worker",
           "load_model_worker", "predict_worker"]

BACKGROUND_NICE = 10

job = thread_worker(start_thread=False, ignore_errors=True)


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


@job
def load_model_worker(path: str | Path, trust: bool = False, prune_level: int | None = None, tta: bool = False,
                      precision: str = "float32", runtime: str = "tensorflow") -> Any:
    """Returns a LoadedModel (``returned``) or raises ModelError (``errored``)."""
    background_priority()  # before TensorFlow starts its thread pools here
    from unetpp_gui.core.model_io import load_model

    model = load_model(path, trust=trust, prune_level=prune_level, tta=tta, precision=precision, runtime=runtime)
    # Warm up (trace the graph here, so the first real slice is not slowed by it) and choose the batch
    # size by measurement, cached per model and machine (core.batching).
    if model.input_hw is not None:
        from unetpp_gui.core.batching import best_batch_size, describe

        size, times, cached = best_batch_size(model)
        model.batch_size_choice, model.batch_size_note = size, describe(size, times, cached)
    return model


@job
def discover_worker(paths: list[str]) -> Any:
    """Folder walking is file I/O on possibly many entries: never on the GUI thread."""
    from unetpp_gui.core.discovery import discover

    return discover(paths, volumes=True)  # NIfTI studies become one slice path per axial slice


@job
def predict_worker(model: Any, paths: Sequence[Path], batch_size: int = 8, patient_filter: Any = None) -> Iterator[Any]:
    """Yields each SliceResult in order; ``quit()`` cancels.

    With ``patient_filter`` a patient's slices arrive together, once its last slice is predicted.
    """
    background_priority()  # and the decode thread it starts
    from unetpp_gui.core.inference import predict_patients

    yield from predict_patients(model, list(paths), model.metadata.pixel_threshold, patient_filter,
                                batch_size=batch_size, keep_maps=True)


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
