"""Patient-level 3-D consistency: drop predicted specks that no larger 3-D lesion supports.

A patient's slices (:func:`~unetpp_gui.core.discovery.patients_in_folder`: a folder, or one numbered
series of a flat folder holding several), stacked in index order, form a volume. At the pixel threshold
the predicted mask splits into 3-D connected components (26-connectivity); the largest is kept, and so is
every component holding at least ``min_fraction`` of the largest one's voxels. Pixels of the other
components are set to probability 0, so every number derived from the slice (area ratio, decision,
Dice) and every picture of it reflects the filter. A slice predicted alone is never filtered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from unetpp_gui.core.postprocess import SliceStats, threshold_level


@dataclass(frozen=True)
class PatientFilter:
    """The filter's one setting (stored in a model's metadata as ``{"min_fraction": f}``)."""

    min_fraction: float = 1.0  # 1.0 = largest component only

    @classmethod
    def from_dict(cls, doc: dict | None) -> "PatientFilter | None":
        if not doc:
            return None
        f = float(doc.get("min_fraction", 1.0))
        if not 0.0 < f <= 1.0:
            raise ValueError(f"patient filter min_fraction must be in (0, 1], got {f}")
        return cls(f)

    def to_dict(self) -> dict:
        return {"min_fraction": self.min_fraction}

    def describe(self) -> str:
        if self.min_fraction >= 1.0:
            return "largest 3-D component per patient"
        return f"3-D components of at least {self.min_fraction:.0%} of the patient's largest"


def removed_voxels(prob_stack: Sequence[np.ndarray], pixel_threshold: float, min_fraction: float) -> list[np.ndarray]:
    """For each slice of one patient (in index order), the bool map of pixels the filter removes.

    Slices must share one size; a stack with no predicted pixel removes nothing.
    """
    from scipy import ndimage

    level = threshold_level(pixel_threshold)
    mask = np.stack([q > level for q in prob_stack])
    if not mask.any():
        return [np.zeros(q.shape, bool) for q in prob_stack]
    # Label only the in-plane box that holds every predicted pixel (lesions are small: most of a stack is
    # background, and labelling it would cost most of the filter's time).
    rows = np.flatnonzero(mask.any(axis=(0, 2)))
    cols = np.flatnonzero(mask.any(axis=(0, 1)))
    box = np.s_[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    inner = mask[box]
    labels, n = ndimage.label(inner, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    keep = sizes >= min_fraction * sizes.max()
    keep[0] = False
    removed = np.zeros_like(mask)
    removed[box] = inner & ~keep[labels]
    return list(removed)


def apply_removed(prob_q: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """A copy of ``prob_q`` with the removed pixels at probability 0."""
    out = prob_q.copy()
    out[removed] = 0
    return out


def pack(removed: np.ndarray) -> tuple[tuple[int, int], np.ndarray] | None:
    """Bit-packed form (~8 KB per 256x256 slice) kept with a slice's compact result; None if empty."""
    if not removed.any():
        return None
    return removed.shape, np.packbits(removed, axis=None)


def unpack(packed: tuple[tuple[int, int], np.ndarray]) -> np.ndarray:
    shape, bits = packed
    return np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).astype(bool)


def filter_patient(results: list, pixel_threshold: float, flt: PatientFilter) -> None:
    """Apply ``flt`` in place to one patient's SliceResults (which must hold their maps).

    Failed slices are skipped; slices of a size other than the most common one are left as they are
    (a stack needs one size). Each changed result gets new stats and ``removed`` (packed).
    """
    ok = [r for r in results if r.ok and r.prob_q is not None]
    if len(ok) < 2:
        return
    shapes = [r.prob_q.shape for r in ok]
    common = max(set(shapes), key=shapes.count)
    stack = [r for r in ok if r.prob_q.shape == common]
    if len(stack) < 2:
        return
    for r, rem in zip(stack, removed_voxels([r.prob_q for r in stack], pixel_threshold, flt.min_fraction)):
        r.removed = pack(rem)
        if r.removed is not None:
            r.prob_q = apply_removed(r.prob_q, rem)
            r.stats = SliceStats.from_map(r.prob_q, r.gt)


def by_patient(results: Iterable, patient_of: Callable, pixel_threshold: float,
               flt: PatientFilter | None) -> Iterator:
    """Pass results through, filtering each run of consecutive slices of one patient.

    Results of a patient are held back until its last slice has arrived (memory: one patient's
    maps). When the source stops early (a cancelled job), what was held back is filtered and yielded
    before the exception goes on, so no finished slice is lost.
    """
    if flt is None:
        yield from results
        return
    held: list = []
    current = None
    try:
        for res in results:
            patient = patient_of(res.path)
            if held and patient != current:
                filter_patient(held, pixel_threshold, flt)
                yield from held
                held = []
            current = patient
            held.append(res)
    except GeneratorExit:
        raise
    except BaseException:
        filter_patient(held, pixel_threshold, flt)
        for res in held:
            yield res
        raise
    filter_patient(held, pixel_threshold, flt)
    yield from held
