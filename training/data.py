"""Image/mask pairs from disk, a patient-aware split, and the tf.data pipeline.

Slices are decoded with the engine's own loader (:mod:`unetpp_gui.core.image_io`) and resized
the way inference resizes them, so training and the viewer see identical inputs. Decoded arrays
are cached in memory once (uint8, ~260 KB per 256x256 slice with its mask).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image

from unetpp_gui.core.discovery import discover, find_ground_truth, patient_of
from unetpp_gui.core.errors import ImageError
from unetpp_gui.core.image_io import load_image, load_mask


@dataclass(frozen=True)
class Pair:
    image: Path
    mask: Path
    patient: str


@dataclass
class PairScan:
    """What a data folder holds: usable pairs and the problems found."""

    pairs: list[Pair] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def patients(self) -> list[str]:
        return sorted({p.patient for p in self.pairs})


# Augmentation ranges shared by both input pipelines (tf.data here, training.batches elsewhere).
ROTATION = 0.04  # of a full turn: about +/- 15 degrees
ZOOM = 0.1  # scale 0.9 .. 1.1
GAIN = (0.9, 1.1)  # image intensity x gain + bias, then clipped to [0, 1]
BIAS = (-0.05, 0.05)
FLAIR = 1  # the LGG slices' channels: pre-contrast, FLAIR, post-contrast
#: the missing-sequence patterns drawn with equal odds: which of the other two channels FLAIR stands in for
MISSING_PATTERNS = ((0,), (2,), (0, 2))


def find_pairs(data: Sequence[str | Path], prefix_fields: int | None = None) -> PairScan:
    """Every slice with a mask under ``data``; slices without one are reported, not used."""
    found = discover(list(data))
    scan = PairScan(problems=[f"{p}: {why}" for p, why in found.problems])
    for img in found.slices:
        mask = find_ground_truth(img)
        if mask is None:
            scan.problems.append(f"{img}: no mask found (expected {img.stem}_mask{img.suffix})")
            continue
        scan.pairs.append(Pair(img, mask, patient_of(img, prefix_fields)))
    return scan


def institution_of(patient: str) -> str:
    """Second ``_`` field of a TCGA case name (``TCGA_CS_4941_...`` -> ``CS``), else ''."""
    parts = patient.split("_")
    return parts[1] if len(parts) > 2 else ""


def split_patients(
    patients: Sequence[str], val_fraction: float, seed: int, min_val: int = 1
) -> tuple[list[str], list[str]]:
    """Train/validation patients, stratified by institution; no patient is in both."""
    rng = random.Random(seed)
    groups: dict[str, list[str]] = defaultdict(list)
    for p in sorted(set(patients)):
        groups[institution_of(p)].append(p)
    val: list[str] = []
    carry = 0.0
    for key in sorted(groups):
        members = groups[key][:]
        rng.shuffle(members)
        want = len(members) * val_fraction + carry
        take = int(round(want))
        carry = want - take
        val.extend(members[:take])
    all_patients = sorted(set(patients))
    if len(val) < min_val and len(all_patients) > 1:
        rest = [p for p in all_patients if p not in val]
        rng.shuffle(rest)
        val.extend(rest[: min_val - len(val)])
    val_set = set(val)
    return [p for p in all_patients if p not in val_set], sorted(val_set)


def cv_folds(patients: Sequence[str], k: int, seed: int) -> list[list[str]]:
    """``k`` disjoint folds covering ``patients``, stratified by institution: each institution's patients,
    shuffled, are dealt round the folds in turn (the turn carries over between institutions), so fold sizes
    differ by at most one."""
    if not 2 <= k <= len(set(patients)):
        raise ValueError(f"need 2..{len(set(patients))} folds for {len(set(patients))} patients, not {k}")
    rng = random.Random(seed)
    groups: dict[str, list[str]] = defaultdict(list)
    for p in sorted(set(patients)):
        groups[institution_of(p)].append(p)
    folds: list[list[str]] = [[] for _ in range(k)]
    turn = 0
    for key in sorted(groups):
        members = groups[key][:]
        rng.shuffle(members)
        for p in members:
            folds[turn % k].append(p)
            turn += 1
    return [sorted(f) for f in folds]


def write_split(path: Path, train: Sequence[str], val: Sequence[str], seed: int, val_fraction: float,
                test: Sequence[str] = ()) -> None:
    from unetpp_gui.core.image_io import atomic_write_bytes

    doc = {"seed": seed, "val_fraction": val_fraction, "train": list(train), "validation": list(val),
           "test": list(test)}
    atomic_write_bytes(path, (json.dumps(doc, indent=1) + "\n").encode())


@dataclass
class ArraySet:
    """Decoded slices at model size: images (N, H, W, C) uint8, masks (N, H, W, 1) uint8 0/1; ``targets``, when
    set, are soft training targets (N, H, W, 1) uint8 levels 0..255 fitted instead of the masks (distillation,
    :mod:`training.distill`); the masks still choose tumour slices and crop centres."""

    images: np.ndarray
    masks: np.ndarray
    patients: list[str]
    targets: np.ndarray | None = None

    @property
    def soft(self) -> bool:
        return self.targets is not None

    def __len__(self) -> int:
        return len(self.patients)

    @property
    def tumour(self) -> np.ndarray:
        return self.masks.reshape(len(self), -1).max(axis=1) > 0 if len(self) else np.zeros(0, bool)


def _load_pair(pair: Pair, hw: tuple[int, int], channels: int) -> tuple[np.ndarray, np.ndarray]:
    from unetpp_gui.core.preprocess import to_channels

    img = load_image(pair.image)
    mask = load_mask(pair.mask)
    if mask.shape != img.shape[:2]:
        raise ImageError(pair.mask, f"mask size {mask.shape[::-1]} differs from image {img.shape[1::-1]}")
    if img.shape[:2] != hw:
        img = np.asarray(Image.fromarray(img).resize((hw[1], hw[0]), Image.BILINEAR))
        m = Image.fromarray(mask.astype(np.uint8) * 255).resize((hw[1], hw[0]), Image.BILINEAR)
        mask = np.asarray(m) > 127
    return to_channels(img, channels), mask.astype(np.uint8)[:, :, None]


def load_arrays(pairs: Sequence[Pair], hw: tuple[int, int], channels: int = 3, workers: int = 4) -> ArraySet:
    """Decode every pair once (threads: Pillow releases the GIL while decoding)."""
    with ThreadPoolExecutor(workers) as pool:
        loaded = list(pool.map(lambda p: _load_pair(p, hw, channels), pairs))
    if not loaded:
        return ArraySet(np.zeros((0, *hw, channels), np.uint8), np.zeros((0, *hw, 1), np.uint8), [])
    return ArraySet(
        np.stack([a for a, _ in loaded]), np.stack([m for _, m in loaded]), [p.patient for p in pairs]
    )


def normalize_arrays(arrays: ArraySet, norm: Any) -> None:
    """Apply a :class:`~unetpp_gui.core.normalize.ChannelNorm` to every image, in place (uint8 kept)."""
    for i in range(len(arrays)):
        arrays.images[i] = norm.apply_uint8(arrays.images[i])


def add_context(arrays: ArraySet, paths: Sequence[Path], slices: int, channel: int) -> None:
    """Append one channel of each slice's ``slices`` neighbours each side (2.5-D input, :mod:`core.context`):
    images become (N, H, W, C + 2 * slices), neighbours found among ``paths`` as the engine finds them on disk."""
    from unetpp_gui.core.context import neighbour_indices

    if not len(arrays):
        arrays.images = np.zeros((*arrays.images.shape[:3], arrays.images.shape[3] + 2 * slices), np.uint8)
        return
    idx = neighbour_indices(list(paths), slices)
    own = arrays.images[..., channel]
    arrays.images = np.concatenate([arrays.images, *(own[idx[:, j], ..., None] for j in range(2 * slices))], axis=-1)


def epoch_size(arrays: ArraySet, oversample: int, empty_fraction: float = 1.0) -> int:
    n_tumour = int(arrays.tumour.sum())
    n_empty = int(round((len(arrays) - n_tumour) * empty_fraction)) if empty_fraction < 1.0 else len(arrays) - n_tumour
    return n_tumour * max(1, oversample) + n_empty


def epoch_indices(
    arrays: ArraySet, oversample: int, rng: np.random.Generator, empty_fraction: float = 1.0
) -> np.ndarray:
    """One epoch's order: tumour slices ``oversample`` times, a random ``empty_fraction`` of
    the tumour-free slices (redrawn every epoch), shuffled."""
    tumour = arrays.tumour
    idx = np.flatnonzero(tumour)
    empty = np.flatnonzero(~tumour)
    if empty_fraction < 1.0:
        empty = rng.choice(empty, int(round(len(empty) * empty_fraction)), replace=False)
    idx = np.sort(np.concatenate([idx, empty]))
    if oversample > 1:
        idx = np.concatenate([idx, *([np.flatnonzero(arrays.tumour)] * (oversample - 1))])
    return rng.permutation(idx)


def crop_window(mask: np.ndarray, size: int, rng: np.random.Generator, on_tumour: float) -> tuple[int, int]:
    """Top-left corner of a ``size`` x ``size`` training crop: with probability ``on_tumour`` (and only
    on a slice with tumour) around a random tumour pixel, jittered by up to a quarter crop; else anywhere."""
    h, w = mask.shape[:2]
    if rng.random() < on_tumour:
        ys, xs = np.nonzero(mask.reshape(h, w))
        if len(ys):
            k = int(rng.integers(len(ys)))
            jitter = rng.integers(-(size // 4), size // 4 + 1, size=2)
            y0 = int(ys[k]) - size // 2 + int(jitter[0])
            x0 = int(xs[k]) - size // 2 + int(jitter[1])
            return min(max(y0, 0), h - size), min(max(x0, 0), w - size)
    return int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))


def drop_sequences(x: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """With probability ``p``, ``x`` (H, W, C) as a slice with a missing sequence looks in the LGG data: FLAIR
    copied into the pre-contrast channel, the post-contrast one or both (equal odds); channels after the third
    (a 2.5-D model's neighbours) are left alone. Otherwise ``x`` itself. Draws nothing when ``p`` is 0."""
    if p <= 0 or x.shape[-1] < 3 or rng.random() >= p:
        return x
    out = x.copy()
    for c in MISSING_PATTERNS[int(rng.integers(len(MISSING_PATTERNS)))]:
        out[..., c] = x[..., FLAIR]
    return out


def sample_slices(arrays: ArraySet, order: Sequence[int], crop_size: int, crop_tumour: float,
                  rng: np.random.Generator, missing_sequence: float = 0.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(image, target) uint8 pairs in ``order``: whole slices, or one :func:`crop_window` crop each; the target
    is the mask, or the soft target where ``arrays.targets`` is set. ``missing_sequence``: the share of images
    given a missing sequence (:func:`drop_sequences`; training augmentation)."""
    targets = arrays.targets if arrays.targets is not None else arrays.masks
    for i in order:
        if crop_size:
            y0, x0 = crop_window(arrays.masks[i], crop_size, rng, crop_tumour)
            x, y = (arrays.images[i, y0:y0 + crop_size, x0:x0 + crop_size],
                    targets[i, y0:y0 + crop_size, x0:x0 + crop_size])
        else:
            x, y = arrays.images[i], targets[i]
        yield drop_sequences(x, rng, missing_sequence), y


def make_dataset(
    arrays: ArraySet,
    batch_size: int,
    n_outputs: int = 1,
    training: bool = True,
    augment: bool = True,
    oversample: int = 1,
    seed: int = 0,
    empty_fraction: float = 1.0,
    crop_size: int = 0,
    crop_tumour: float = 0.5,
    missing_sequence: float = 0.0,
) -> Any:
    """A ``tf.data`` pipeline of (image float [0,1], mask float {0,1}) batches (soft targets in [0, 1] instead of
    masks where ``arrays.targets`` is set).

    Training data is reshuffled every epoch and augmented identically for image and mask
    (flip, small rotation and zoom) with intensity jitter on the image only. With ``crop_size``
    training batches are random ``crop_size``-square crops (see :func:`crop_window`): the network is
    fully convolutional, so a crop costs about (crop / image)^2 of a whole slice; validation stays whole.
    With ``missing_sequence`` that share of augmented training images gets a missing sequence
    (:func:`drop_sequences`).
    """
    import tensorflow as tf

    h, w, c = arrays.images.shape[1:]
    rng = np.random.default_rng(seed)
    crop = training and 0 < crop_size < min(h, w)
    if crop:
        h = w = crop_size

    def gen() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = epoch_indices(arrays, oversample, rng, empty_fraction) if training else np.arange(len(arrays))
        dropped = missing_sequence if training and augment else 0.0
        return sample_slices(arrays, order, crop_size if crop else 0, crop_tumour, rng, dropped)

    sig = (tf.TensorSpec((h, w, c), tf.uint8), tf.TensorSpec((h, w, 1), tf.uint8))
    ds = tf.data.Dataset.from_generator(gen, output_signature=sig)

    # Plain graph code: no autograph (which also needs source files, absent in the packaged app).
    y_scale = 255.0 if arrays.soft else 1.0

    @tf.autograph.experimental.do_not_convert
    def to_float(x: Any, y: Any) -> tuple[Any, Any]:
        return tf.cast(x, tf.float32) / 255.0, tf.cast(y, tf.float32) / y_scale

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=False)
    if training and augment:
        # sequential: parallel calls read the random layers' state together and repeated each other's draws
        # (and a seed no longer fixed the batches); prefetch still overlaps it with training
        ds = ds.map(_augmenter(c, seed, arrays.soft))
    if n_outputs > 1:
        ds = ds.map(lambda x, y: (x, tuple([y] * n_outputs)))
    return ds.prefetch(tf.data.AUTOTUNE)


def _augmenter(channels: int, seed: int, soft: bool = False) -> Any:
    import tensorflow as tf
    from keras import layers

    geometric = [
        layers.RandomFlip("horizontal", seed=seed, dtype="float32"),
        layers.RandomRotation(ROTATION, fill_mode="constant", seed=seed + 1, dtype="float32"),
        layers.RandomZoom(ZOOM, fill_mode="constant", seed=seed + 2, dtype="float32"),
    ]
    gen = tf.random.Generator.from_seed(seed + 3)

    @tf.autograph.experimental.do_not_convert
    def apply(x: Any, y: Any) -> tuple[Any, Any]:
        both = tf.concat([x, y], axis=-1)
        for layer in geometric:
            both = layer(both, training=True)
        x, y = both[..., :channels], both[..., channels:]
        n = tf.shape(x)[0]
        gain = gen.uniform((n, 1, 1, 1), *GAIN)
        bias = gen.uniform((n, 1, 1, 1), *BIAS)
        x = tf.clip_by_value(x * gain + bias, 0.0, 1.0)
        return x, (y if soft else tf.cast(y > 0.5, tf.float32))  # warped soft targets stay soft

    return apply


@dataclass
class FolderReport:
    """What a training-data folder holds (for the training dialog): counts, problems and previews."""

    images: int = 0
    pairs: int = 0
    patients: int = 0
    tumour: int = 0
    problems: list[str] = field(default_factory=list)
    previews: list[np.ndarray] = field(default_factory=list)  # small RGB overlays of a few tumour slices


def inspect_folder(folder: str | Path, max_previews: int = 4) -> Iterator[tuple[int, int]]:
    """Walk ``folder`` once and check every mask; yields (checked, total) now and then (so a caller can
    show progress and stop early) and returns a :class:`FolderReport`."""
    from unetpp_gui.core.overlay import render_overlay

    scan = find_pairs([folder])
    no_mask = sum(1 for p in scan.problems if ": no mask found" in p)
    report = FolderReport(images=len(scan.pairs) + no_mask, pairs=len(scan.pairs), patients=len(scan.patients),
                          problems=list(scan.problems))
    total = len(scan.pairs)
    yield 0, total
    for k, pair in enumerate(scan.pairs):
        if k % 50 == 0 and k:
            yield k, total
        try:
            mask = load_mask(pair.mask)
        except ImageError as exc:
            report.problems.append(str(exc))
            continue
        report.tumour += bool(mask.any())
        if mask.any() and len(report.previews) < max_previews and k % 3 == 0:
            try:
                img = load_image(pair.image)
            except ImageError as exc:
                report.problems.append(str(exc))
                continue
            if img.shape[:2] != mask.shape:
                report.problems.append(f"{pair.image.name}: size {img.shape[1]}x{img.shape[0]} differs from its mask")
                continue
            ov = render_overlay(img, mask, mode="contour")[:, :, :3]
            step = max(1, ov.shape[0] // 110)
            report.previews.append(np.ascontiguousarray(ov[::step, ::step]))
    yield total, total
    return report
