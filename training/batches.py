"""Training and validation batches for every Keras backend (a ``keras.utils.PyDataset``).

The TensorFlow backend keeps its ``tf.data`` pipeline (:func:`training.data.make_dataset`); JAX and
PyTorch runs read these batches instead. Same epoch order, crops and augmentation ranges: a horizontal
flip, one affine warp per slice (rotation and zoom, applied to image and mask together with
``keras.ops.image.affine_transform``, so on a GPU it runs there) and intensity gain and bias.
Each batch draws from its own seeded generator, so worker threads cannot change what a run sees.
"""

from __future__ import annotations

import math
import os
from typing import Any

import keras
import numpy as np

from training.data import BIAS, GAIN, ROTATION, ZOOM, ArraySet, epoch_indices, sample_slices


def affine_params(n: int, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``n`` rotation-and-zoom transforms about the centre, in the 8-number form of ``affine_transform``
    (each maps an output pixel to the input pixel it samples)."""
    h, w = size
    theta = rng.uniform(-ROTATION, ROTATION, n) * 2 * math.pi
    zoom = rng.uniform(1 - ZOOM, 1 + ZOOM, n)
    cos, sin = zoom * np.cos(theta), zoom * np.sin(theta)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    out = np.zeros((n, 8), np.float32)
    out[:, 0], out[:, 1], out[:, 2] = cos, -sin, cx - cos * cx + sin * cy
    out[:, 3], out[:, 4], out[:, 5] = sin, cos, cy - sin * cx - cos * cy
    return out


def augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, soft: bool = False) -> tuple[Any, Any]:
    """Flip, warp and intensity-jitter a uint8 batch ``x`` (N, H, W, C) with its 0/1 masks ``y`` (``soft``: uint8
    levels of soft targets); returns float images in [0, 1] and 0/1 masks (soft targets in [0, 1]) as backend
    tensors. Everything after the random draws runs through
    ``keras.ops`` (on a GPU, there): in NumPy the conversion and flips alone took about 60 ms per 32 slices,
    which bounded a GPU run's step time."""
    ops = keras.ops
    n, h, w, c = x.shape
    flip = rng.random(n) < 0.5
    both = ops.concatenate([ops.cast(x, "float32") / 255.0, ops.cast(y, "float32") / (255.0 if soft else 1.0)],
                           axis=-1)
    both = ops.where(flip[:, None, None, None], ops.flip(both, axis=2), both)
    both = ops.image.affine_transform(both, affine_params(n, (h, w), rng), interpolation="bilinear",
                                      fill_mode="constant", fill_value=0)
    gain = rng.uniform(*GAIN, (n, 1, 1, 1)).astype(np.float32)
    bias = rng.uniform(*BIAS, (n, 1, 1, 1)).astype(np.float32)
    target = both[..., c:] if soft else ops.cast(both[..., c:] > 0.5, "float32")
    return ops.clip(both[..., :c] * gain + bias, 0.0, 1.0), target


class SliceBatches(keras.utils.PyDataset):
    """Batches of (image float [0, 1], mask float {0, 1} or soft target); the same target ``n_outputs`` times for
    deep supervision.

    Training batches follow :func:`training.data.epoch_indices` (redrawn each epoch) and are augmented;
    validation batches are the slices in order, whole and untouched.
    """

    def __init__(self, arrays: ArraySet, batch_size: int, n_outputs: int = 1, training: bool = True,
                 augment: bool = True, oversample: int = 1, seed: int = 0, empty_fraction: float = 1.0,
                 crop_size: int = 0, crop_tumour: float = 0.5, steps: int | None = None,
                 workers: int | None = None, missing_sequence: float = 0.0) -> None:
        workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=2 * workers)
        self.arrays, self.batch_size, self.n_outputs = arrays, batch_size, n_outputs
        self.training, self.augment, self.seed = training, augment, seed
        self.oversample, self.empty_fraction, self.crop_tumour = oversample, empty_fraction, crop_tumour
        self.crop_size = crop_size if training and 0 < crop_size < min(arrays.images.shape[1:3]) else 0
        self.missing_sequence = missing_sequence if training and augment else 0.0
        self.epoch = 0
        self.order = self._order()
        full = math.ceil(len(self.order) / batch_size)
        self.steps = min(steps, full) if steps else full

    def _order(self) -> np.ndarray:
        if not self.training:
            return np.arange(len(self.arrays))
        rng = np.random.default_rng((self.seed, self.epoch))
        return epoch_indices(self.arrays, self.oversample, rng, self.empty_fraction)

    def __len__(self) -> int:
        return self.steps

    def on_epoch_end(self) -> None:
        if self.training:
            self.epoch += 1
            self.order = self._order()

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        order = self.order
        rng = np.random.default_rng((self.seed, self.epoch, index, 1))
        idx = order[index * self.batch_size:(index + 1) * self.batch_size]
        pairs = list(sample_slices(self.arrays, idx, self.crop_size, self.crop_tumour, rng, self.missing_sequence))
        x = np.stack([p[0] for p in pairs])
        y = np.stack([p[1] for p in pairs])
        soft = self.arrays.soft
        if self.training and self.augment:
            x, y = augment(x, y, rng, soft)
        else:
            x, y = keras.ops.cast(x, "float32") / 255.0, keras.ops.cast(y, "float32") / (255.0 if soft else 1.0)
        return x, (tuple([y] * self.n_outputs) if self.n_outputs > 1 else y)
