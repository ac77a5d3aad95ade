"""Batched, streaming inference over any number of slices.

The next batch is decoded and resized on a helper thread while the model runs on the current
one. Memory is bounded by two batches regardless of how many files are given. Results come out
in input order as a generator; the caller decides what to keep (full maps or just stats).
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np

from unetpp_gui.core.context import neighbour_offsets, neighbour_paths, stack_neighbours
from unetpp_gui.core.discovery import find_ground_truth
from unetpp_gui.core.errors import ImageError
from unetpp_gui.core.image_io import load_image, load_mask
from unetpp_gui.core.model_io import LoadedModel
from unetpp_gui.core.ood import unusual
from unetpp_gui.core.postprocess import SliceStats, quantize
from unetpp_gui.core.preprocess import Geometry, prepare, restore

if TYPE_CHECKING:
    from unetpp_gui.core.batching import Trial
    from unetpp_gui.core.consistency import PatientFilter

#: What runs a preprocessed batch: the model's ``predict_batch_with_std``, or a :class:`Trial`'s ``run``.
BatchFn = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray | None]"]

DEFAULT_BATCH_SIZE = 8

ProgressFn = Callable[[int, int], None]


class Cancelled(Exception):
    """Raised inside a job when its cancel flag was set; work already yielded stays valid."""


@dataclass
class SliceResult:
    """One slice's outcome. ``error`` is set (and the arrays are None) when it failed."""

    path: Path
    image: np.ndarray | None = None  # (H, W, 3) uint8, only when kept
    prob_q: np.ndarray | None = None  # (H, W) uint8 probability levels, only when kept
    std_q: np.ndarray | None = None  # (H, W) uint8 spread of test-time-augmented passes (with tta)
    gt: np.ndarray | None = None  # (H, W) bool ground truth, when a mask file was found
    gt_path: Path | None = None
    stats: SliceStats | None = None
    error: str | None = None
    size: tuple[int, int] | None = None  # (width, height) of the slice
    removed: tuple | None = None  # pixels the patient 3-D filter removed (core.consistency.pack)
    warning: str | None = None  # the slice was predicted, but looks unlike what the model was made for
    outputs: dict[str, Path] = field(default_factory=dict)  # files written for it ("mask", "overlay")
    write_error: str | None = None  # its prediction is valid, but an output file could not be written

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Prepared:
    path: Path
    x: np.ndarray | None
    geo: Geometry | None
    image: np.ndarray | None
    gt: np.ndarray | None
    gt_path: Path | None
    error: str | None
    warning: str | None = None


class PreparedSlices:
    """Slices already prepared for one model, by decoded array: a 2.5-D model prepares each slice once, though
    it is read as itself and as its neighbours' neighbour. Holds the arrays, so a key stays theirs; ``keep``
    bounds how many (the least recently used go first)."""

    def __init__(self, keep: int | None = None) -> None:
        self._done: OrderedDict[int, tuple[np.ndarray, tuple[np.ndarray, Geometry]]] = OrderedDict()
        self._keep = keep

    def get(self, model: LoadedModel, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        hit = self._done.get(id(image))
        if hit is not None:
            self._done.move_to_end(id(image))
            return hit[1]
        meta = model.metadata
        hit = self._done[id(image)] = (image, prepare(image, model.input_hw, model.image_channels,
                                                      meta.input_scale, meta.input_offset, model.normalization))
        if self._keep is not None and len(self._done) > self._keep:
            self._done.popitem(last=False)
        return hit[1]


def prepare_for(model: LoadedModel, image: np.ndarray, neighbours: Sequence[np.ndarray | None] = (),
                done: PreparedSlices | None = None) -> tuple[np.ndarray, Geometry]:
    """One decoded slice as ``model``'s input: its size, channels, normalisation and scaling; for a model that
    reads neighbouring slices (:mod:`~unetpp_gui.core.context`), ``neighbours`` in channel order, each prepared
    the same way (the slice itself stands in for any missing or of another size). ``done`` keeps the slices
    prepared across calls (a batch's or a volume's)."""
    done = PreparedSlices() if done is None else done
    x, geo = done.get(model, image)
    ctx = model.context
    if ctx is None:
        return x, geo
    own = [n if n is not None and n.shape == image.shape else image for n in neighbours][:ctx.extra_channels]
    own += [image] * (ctx.extra_channels - len(own))
    return stack_neighbours(x, [done.get(model, n)[0] for n in own], ctx.channel), geo


def neighbours_of(model: LoadedModel, path: Path,
                  decoded: dict[Path, np.ndarray] | None = None) -> list[np.ndarray | None]:
    """The decoded neighbours a context model reads beside ``path`` (None where one cannot be read); slices
    already in ``decoded`` are not read again, and those read are added to it."""
    ctx = model.context
    if ctx is None:
        return []
    try:
        paths = neighbour_paths(path, ctx.slices)
    except Exception:  # an unlistable folder or unreadable study header: the slice stands in for them
        return []
    decoded = {} if decoded is None else decoded
    out: list[np.ndarray | None] = []
    for p in paths:
        try:
            if p not in decoded:
                decoded[p] = load_image(p)
            out.append(decoded[p])
        except Exception:
            out.append(None)
    return out


def _prepare_one(model: LoadedModel, path: Path, with_gt: bool,
                 decoded: dict[Path, np.ndarray] | None = None, done: PreparedSlices | None = None) -> _Prepared:
    try:
        image = decoded.pop(path, None) if decoded is not None else None
        image = load_image(path) if image is None else image
        if decoded is not None and model.context is not None:
            decoded[path] = image  # the next slice's neighbour
        x, geo = prepare_for(model, image, neighbours_of(model, path, decoded), done)
        gt = gt_path = None
        if with_gt:
            gt_path = find_ground_truth(path)
            if gt_path is not None:
                try:
                    gt = load_mask(gt_path)
                except ImageError:
                    gt, gt_path = None, None
                if gt is not None and gt.shape != image.shape[:2]:
                    gt, gt_path = None, None  # a mismatched mask is no ground truth for this slice
        return _Prepared(path, x, geo, image, gt, gt_path, None, unusual(image))
    except ImageError as exc:
        return _Prepared(path, None, None, None, None, None, exc.reason)
    except Exception as exc:  # a slice must never stop the batch
        return _Prepared(path, None, None, None, None, None, f"unexpected error: {exc}")


def _prepare_batch(model: LoadedModel, paths: Sequence[Path], with_gt: bool) -> list[_Prepared]:
    decoded: dict[Path, np.ndarray] = {}  # a 2.5-D model's neighbours are the batch's other slices: read once
    done = PreparedSlices()  # ... and prepared once
    return [_prepare_one(model, p, with_gt, decoded, done) for p in paths]


def _chunks(items: Sequence[Path], sizes: Iterator[int]) -> Iterator[Sequence[Path]]:
    i = 0
    while i < len(items):
        n = max(1, next(sizes))
        yield items[i : i + n]
        i += n


def predict_paths(
    model: LoadedModel,
    paths: Iterable[str | Path],
    batch_size: "int | Trial" = DEFAULT_BATCH_SIZE,
    keep_maps: bool = True,
    with_gt: bool = True,
    cancel: threading.Event | None = None,
    progress: ProgressFn | None = None,
) -> Iterator[SliceResult]:
    """Predict every path, yielding one :class:`SliceResult` per path in order.

    ``keep_maps=False`` drops the image and probability map after the stats are computed, for
    large batches. ``cancel`` is checked between batches: a cancelled run raises
    :class:`Cancelled` after the last complete batch has been yielded. ``batch_size`` may be a
    :class:`~unetpp_gui.core.batching.Trial`: the first batches then follow its plan (batch sizes, and
    runtimes, timed on these slices) and the rest its measured size.
    """
    items = [Path(p) for p in paths]
    total = len(items)
    done = 0
    trial = None if isinstance(batch_size, int) else batch_size
    sizes = trial.sizes() if trial is not None else itertools.repeat(max(1, int(batch_size)))
    chunks = _chunks(items, sizes)
    batch = next(chunks, None)
    if batch is not None:
        (trial or model).warm_up()  # before the decode thread starts (see LoadedModel.warm_up)
    pending = _prefetch(_prepare_batch, model, batch, with_gt) if batch is not None else None
    step = 0
    while pending is not None:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        prepared = pending.result()
        batch = next(chunks, None)
        pending = _prefetch(_prepare_batch, model, batch, with_gt) if batch is not None else None
        run: BatchFn = functools.partial(trial.run, step=step) if trial is not None else model.predict_batch_with_std
        step += 1
        for result in _run_batch(model, prepared, keep_maps, run):
            done += 1
            yield result
        if progress is not None:
            progress(done, total)


def _prefetch(fn: Callable[..., list[_Prepared]], *args: object) -> Future:
    """Run ``fn`` on a short-lived daemon thread (one per batch): an abandoned or cancelled job
    leaves no thread behind and never waits for one (a pool's shutdown would)."""
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # delivered to the consumer by future.result()
            future.set_exception(exc)

    threading.Thread(target=run, name="unetpp-decode", daemon=True).start()
    return future


def predict_patients(
    model: LoadedModel,
    paths: Iterable[str | Path],
    pixel_threshold: float,
    patient_filter: "PatientFilter | None",
    batch_size: "int | Trial" = DEFAULT_BATCH_SIZE,
    keep_maps: bool = True,
    cancel: threading.Event | None = None,
    progress: ProgressFn | None = None,
    patient_of: Callable[[Path], str] | None = None,
) -> Iterator[SliceResult]:
    """:func:`predict_paths`, with each patient's consecutive slices passed through the 3-D filter
    (:mod:`unetpp_gui.core.consistency`) when one is given. Patients: ``patient_of``, else as
    :func:`~unetpp_gui.core.discovery.patients_of` finds them among ``paths`` (the slices' folders, or
    the numbered series of a flat folder of several patients)."""
    from unetpp_gui.core.consistency import by_patient
    from unetpp_gui.core.discovery import patient_of as folder_patient, patients_of

    paths = [Path(p) for p in paths]
    if patient_of is None and patient_filter is not None:
        found = patients_of(paths)
        patient_of = lambda path: found.get(Path(path)) or folder_patient(path)  # noqa: E731
    results = predict_paths(model, paths, batch_size, keep_maps=keep_maps or patient_filter is not None,
                            cancel=cancel, progress=progress)
    for res in by_patient(results, patient_of, pixel_threshold, patient_filter):
        if not keep_maps:
            res.image = res.prob_q = res.std_q = res.gt = None
        yield res


def _model_outputs(model: LoadedModel, xs: list[np.ndarray], run: BatchFn | None = None,
                   ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """The model's probabilities (and TTA spread) for each prepared input, by index, each group run by ``run``
    (default: the model's). Inputs are grouped by size: a fixed-size model has one group, an any-size model
    may have several."""
    run = run or model.predict_batch_with_std
    probs: dict[int, np.ndarray] = {}
    stds: dict[int, np.ndarray] = {}
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, x in enumerate(xs):
        by_shape.setdefault(x.shape, []).append(i)
    for idxs in by_shape.values():
        out, std = run(np.stack([xs[i] for i in idxs]))
        for k, i in enumerate(idxs):
            probs[i] = out[k]
            if std is not None:
                stds[i] = std[k]
    return probs, stds


def _run_batch(model: LoadedModel, prepared: list[_Prepared], keep_maps: bool,
               run: BatchFn | None = None) -> list[SliceResult]:
    good = [p for p in prepared if p.error is None]
    probs, stds = _model_outputs(model, [p.x for p in good], run) if good else ({}, {})  # type: ignore[misc]
    results: list[SliceResult] = []
    gi = 0
    for p in prepared:
        if p.error is not None:
            results.append(SliceResult(p.path, error=p.error))
            continue
        prob_q = quantize(restore(probs[gi], p.geo))  # type: ignore[arg-type]
        std_q = quantize(restore(stds[gi], p.geo)) if gi in stds and keep_maps else None  # type: ignore[arg-type]
        gi += 1
        stats = SliceStats.from_map(prob_q, p.gt)
        results.append(
            SliceResult(
                path=p.path,
                image=p.image if keep_maps else None,
                prob_q=prob_q if keep_maps else None,
                std_q=std_q,
                gt=p.gt if keep_maps else None,
                gt_path=p.gt_path,
                stats=stats,
                size=(p.image.shape[1], p.image.shape[0]),  # type: ignore[union-attr]
                warning=p.warning,
            )
        )
    return results


def predict_images(model: LoadedModel, images: Iterable[np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE,
                   cancel: threading.Event | None = None) -> Iterator[np.ndarray]:
    """Probability levels (H, W) uint8 for decoded RGB slices already in memory (a volume's), in order."""
    batch: list[tuple[np.ndarray, Geometry]] = []

    def run() -> Iterator[np.ndarray]:
        probs, _ = _model_outputs(model, [x for x, _geo in batch])
        for i, (_x, geo) in enumerate(batch):
            yield quantize(restore(probs[i], geo))

    ctx = model.context
    if ctx is not None:  # neighbours come from the volume itself
        stack, done = list(images), PreparedSlices(keep=ctx.extra_channels + 1)  # a window moving down the stack
        images = (prepare_for(model, image, [stack[j] for j in neighbour_offsets(k, len(stack), ctx.slices)], done)
                  for k, image in enumerate(stack))
    else:
        images = (prepare_for(model, image) for image in images)
    for prepared in images:
        batch.append(prepared)
        if len(batch) == max(1, batch_size):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            yield from run()
            batch = []
    if batch:
        yield from run()


def predict_array(model: LoadedModel, image: np.ndarray) -> np.ndarray:
    """Probability levels (H, W) uint8 for one decoded RGB slice (used by self-tests; a model that reads
    neighbouring slices sees the slice in their place)."""
    x, geo = prepare_for(model, image)
    return quantize(restore(model.predict_batch(x[None])[0], geo))
