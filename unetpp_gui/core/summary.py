"""Per-patient (per-folder) and whole-batch summaries, re-derived from compact stats."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from unetpp_gui.core.inference import SliceResult
from unetpp_gui.core.postprocess import Derived

SUMMARY_COLUMNS = ("patient", "slices", "tumour_slices", "errors", "largest_tumour_slice",
                   "largest_tumour_pixels", "total_tumour_pixels", "tumour_ml", "mean_dice", "slices_with_ground_truth")


@dataclass
class Summary:
    patient: str
    slices: int = 0
    tumour_slices: int = 0
    errors: int = 0
    largest_tumour_slice: str = ""
    largest_tumour_pixels: int = 0
    total_tumour_pixels: int = 0
    tumour_ml: float | None = None  # NIfTI studies: tumour pixels x voxel volume (None: no voxel size known)
    dice: list[float] = field(default_factory=list)
    first_path: Path | None = None  # where a reviewer lands without a tumour slice (not a CSV column)
    largest_tumour_path: Path | None = None

    @property
    def landing(self) -> Path | None:
        """The slice to show for this summary: its largest predicted tumour, else its first slice."""
        return self.largest_tumour_path or self.first_path

    @property
    def mean_dice(self) -> float | None:
        return float(np.mean(self.dice)) if self.dice else None

    def row(self) -> dict[str, object]:
        return {
            "patient": self.patient, "slices": self.slices, "tumour_slices": self.tumour_slices,
            "errors": self.errors, "largest_tumour_slice": self.largest_tumour_slice,
            "largest_tumour_pixels": self.largest_tumour_pixels, "total_tumour_pixels": self.total_tumour_pixels,
            "tumour_ml": "" if self.tumour_ml is None else f"{self.tumour_ml:.2f}",
            "mean_dice": "" if self.mean_dice is None else f"{self.mean_dice:.4f}",
            "slices_with_ground_truth": len(self.dice),
        }


def summarize(results: Iterable[SliceResult], patient_of: Callable[[Path], str], pixel_threshold: float,
              decision_threshold: float, derive: Callable[[SliceResult], Derived] | None = None,
              voxel_ml: Callable[[Path], float | None] | None = None) -> list[Summary]:
    """One summary per patient (sorted), then the whole batch under the name 'ALL'.

    ``derive`` may supply already derived numbers (a cache) for these thresholds; ``voxel_ml`` gives the
    voxel volume of a study's slice (NIfTI), for the tumour volume in mL.
    """
    groups: dict[str, Summary] = {}
    total = Summary("ALL")
    for res in results:
        patient = patient_of(res.path)
        group = groups.get(patient) or groups.setdefault(patient, Summary(patient))
        ok = res.ok and res.stats is not None
        d = (derive(res) if derive else res.stats.derive(pixel_threshold, decision_threshold)) if ok else None
        for s in (group, total):
            s.slices += 1
            s.first_path = s.first_path or res.path
            if d is None:
                s.errors += 1
                continue
            if d.tumour:
                s.tumour_slices += 1
                s.total_tumour_pixels += d.mask_pixels
                ml = voxel_ml(res.path) if voxel_ml is not None else None
                if ml is not None:
                    s.tumour_ml = (s.tumour_ml or 0.0) + d.mask_pixels * ml
                if d.mask_pixels > s.largest_tumour_pixels:
                    s.largest_tumour_pixels, s.largest_tumour_slice = d.mask_pixels, res.path.name
                    s.largest_tumour_path = res.path
            if d.dice is not None:
                s.dice.append(d.dice)
    return [groups[k] for k in sorted(groups)] + [total]
