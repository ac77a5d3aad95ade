"""The review session's state, free of Qt: slices, compact results, a bounded map cache.

Memory policy: every slice keeps only its :class:`SliceStats` (~4 KB: two 256-bin histograms)
and its error, from which every threshold-dependent number is re-derived. Full arrays (image,
probability levels, ground truth: ~260 KB per 256x256 slice) are kept for the ``capacity`` most
recently used slices only; an evicted slice is predicted again when it is shown.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from unetpp_gui.core.discovery import patient_of, patients_in_folder
from unetpp_gui.core.image_io import SLICE_TAG
from unetpp_gui.core.inference import SliceResult
from unetpp_gui.core.postprocess import Derived, SliceStats

DEFAULT_CAPACITY = 64


#: What a slice's marker says. With ground truth a wrong decision is named as such: "missed" (the mask
#: has tumour, the model says none) and "false_alarm" (the mask has none, the model says tumour).
STATES = ("pending", "error", "tumour", "clear", "missed", "false_alarm")


def slice_state(result: SliceResult | None, derived: Derived | None) -> str:
    """The state of one slice from its compact result and its numbers at the current thresholds."""
    if result is None:
        return "pending"
    if result.error or derived is None:
        return "error"
    gt = result.stats.gt_pixels if result.stats is not None else None
    if gt is None:
        return "tumour" if derived.tumour else "clear"
    if gt > 0 and not derived.tumour:
        return "missed"
    if gt == 0 and derived.tumour:
        return "false_alarm"
    return "tumour" if derived.tumour else "clear"


@dataclass
class Thresholds:
    pixel: float
    decision: float


class SliceStore:
    """Ordered slices and what is known about each."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.paths: list[Path] = []
        self._index: dict[Path, int] = {}
        self.compact: dict[Path, SliceResult] = {}  # stats + error only
        self._maps: OrderedDict[Path, SliceResult] = OrderedDict()
        self._patients: dict[Path, str] = {}  # summaries ask on every threshold change
        self._by_folder: dict[Path, list[Path]] = {}
        self._removed: dict[Path, tuple] = {}  # 3-D filter's removed pixels, kept across map eviction
        self._voxel_ml: dict[Path, float | None] = {}  # NIfTI study slices: mL per voxel (header read once)
        # each slice's numbers at the thresholds last asked for, with the compact result they came from: the slice
        # list asks for a marker per visible row and role at every paint (~40 us of numpy per derivation)
        self._derived: dict[Path, tuple[SliceResult, Derived]] = {}
        self._derived_at: tuple[float, float] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def add_paths(self, paths: list[Path], patients: dict[Path, str] | None = None) -> list[Path]:
        """Append new paths (duplicates ignored); returns the ones added. ``patients``: each path's patient as
        :func:`~unetpp_gui.core.discovery.patients_of` names it for ``paths`` (e.g. worked out by the discovery
        worker); used for folders new to the store, whose patients it gives exactly."""
        added = []
        new_folders = set()
        for p in paths:
            if p not in self._index:
                self._index[p] = len(self.paths)
                self.paths.append(p)
                if p.parent not in self._by_folder:
                    new_folders.add(p.parent)
                self._by_folder.setdefault(p.parent, []).append(p)
                added.append(p)
        for folder in {p.parent for p in added}:  # a folder's patients can change as slices join it
            members = self._by_folder[folder]
            if patients is not None and folder in new_folders and all(p in patients for p in members):
                self._patients.update((p, patients[p]) for p in members)
            else:
                self._patients.update(patients_in_folder(members))
        return added

    def removed_pixels(self, path: Path) -> int | None:
        """How many pixels the patient 3-D filter removed from ``path`` (None: not filtered)."""
        packed = self._removed.get(path)
        if packed is None:
            return None
        from unetpp_gui.core.consistency import unpack

        return int(unpack(packed).sum())

    def clear(self) -> None:
        self._removed.clear()
        self._voxel_ml.clear()
        self._derived.clear()
        self.paths.clear()
        self._index.clear()
        self.compact.clear()
        self._maps.clear()
        self._patients.clear()
        self._by_folder.clear()

    def index(self, path: Path) -> int:
        return self._index[path]

    def put(self, result: SliceResult) -> None:
        """Record a result: stats always, arrays in the bounded cache.

        A slice predicted again on its own (after its maps were evicted) gets the pixels the patient
        3-D filter removed from it the first time removed again, so it never changes on a revisit.
        """
        if result.removed is not None:
            self._removed[result.path] = result.removed
        elif result.path in self._removed and result.ok and result.prob_q is not None:
            from unetpp_gui.core.consistency import apply_removed, unpack

            removed = unpack(self._removed[result.path])
            if removed.shape == result.prob_q.shape:
                result.removed = self._removed[result.path]
                result.prob_q = apply_removed(result.prob_q, removed)
                result.stats = SliceStats.from_map(result.prob_q, result.gt)
        self.compact[result.path] = SliceResult(result.path, gt_path=result.gt_path, stats=result.stats,
                                                error=result.error, size=result.size, removed=result.removed,
                                                warning=result.warning)
        if result.ok and result.prob_q is not None:
            self._maps[result.path] = result
            self._maps.move_to_end(result.path)
            while len(self._maps) > self.capacity:
                self._maps.popitem(last=False)

    def full(self, path: Path) -> SliceResult | None:
        """The cached arrays for ``path`` (marks it recently used), or None."""
        res = self._maps.get(path)
        if res is not None:
            self._maps.move_to_end(path)
        return res

    def cached_maps(self) -> int:
        return len(self._maps)

    def pending(self) -> list[Path]:
        """Slices not yet predicted."""
        return [p for p in self.paths if p not in self.compact]

    def derived(self, path: Path, t: Thresholds) -> Derived | None:
        """``path``'s numbers at ``t`` (None: no result yet, or an error); derived once per result and thresholds."""
        res = self.compact.get(path)
        if res is None or res.stats is None:
            return None
        at = (t.pixel, t.decision)
        if at != self._derived_at:
            self._derived.clear()
            self._derived_at = at
        hit = self._derived.get(path)
        if hit is None or hit[0] is not res:  # a new result for the slice (predicted again) is derived again
            hit = self._derived[path] = (res, res.stats.derive(*at))
        return hit[1]

    def state(self, path: Path, t: Thresholds) -> str:
        """See :func:`slice_state`."""
        return slice_state(self.compact.get(path), self.derived(path, t))

    def voxel_ml(self, path: Path) -> float | None:
        """mL per voxel of a NIfTI study's slice, None for an ordinary slice."""
        if SLICE_TAG not in path.name:
            return None
        if path not in self._voxel_ml:
            from unetpp_gui.core.volume import voxel_ml_of

            self._voxel_ml[path] = voxel_ml_of(path)
        return self._voxel_ml[path]

    def patient(self, path: Path) -> str:
        name = self._patients.get(path)
        if name is None:
            name = self._patients[path] = patient_of(path)
        return name

    def clear_results(self) -> None:
        """Forget predictions (after a model change); the slice list stays."""
        self._removed.clear()
        self._derived.clear()
        self.compact.clear()
        self._maps.clear()
