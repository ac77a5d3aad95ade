"""Review state, free of Qt: the thresholds being applied and the bookkeeping of a prediction job.

Widgets edit and observe these objects (a model/view split as in napari); the window reads them.
Tests and the command line can use them without a display.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from unetpp_gui.core.store import Thresholds

PIXEL_RANGE = (0.01, 0.99)  # a pixel threshold of 0 or 1 would call every or no pixel tumour
PIXEL_DECIMALS = 2
DECISION_PERCENT_DECIMALS = 3  # the decision threshold is shown and edited in % of the slice


class ThresholdModel:
    """The pixel and decision thresholds under review. ``set`` clamps and rounds them to what the
    controls can show, and tells every observer once per real change."""

    def __init__(self, pixel: float = 0.5, decision: float = 0.001) -> None:
        self._value = self._clean(pixel, decision)
        self._observers: list[Callable[[Thresholds], None]] = []

    @property
    def value(self) -> Thresholds:
        return self._value

    def connect(self, observer: Callable[[Thresholds], None]) -> None:
        self._observers.append(observer)

    def set(self, pixel: float | None = None, decision: float | None = None) -> bool:
        """Change either threshold (None keeps it); True if the value changed."""
        new = self._clean(self._value.pixel if pixel is None else pixel,
                          self._value.decision if decision is None else decision)
        if new == self._value:
            return False
        self._value = new
        for observer in list(self._observers):
            observer(new)
        return True

    @staticmethod
    def _clean(pixel: float, decision: float) -> Thresholds:
        lo, hi = PIXEL_RANGE
        pixel = round(min(max(float(pixel), lo), hi), PIXEL_DECIMALS)
        percent = round(min(max(float(decision), 0.0), 1.0) * 100.0, DECISION_PERCENT_DECIMALS)
        return Thresholds(pixel, percent / 100.0)


def remembered_thresholds(saved: object, pixel: float, decision: float) -> tuple[float, float]:
    """The thresholds to show for a model whose calibrated ones are ``pixel`` and ``decision``.

    ``saved`` is what :func:`thresholds_to_remember` stored for a model of this name: the user's choice is
    restored only if it was made against the same calibration, so a model file replaced by a recalibrated
    one of the same name starts from its own thresholds, not from the old model's.
    """
    if isinstance(saved, (list, tuple)) and len(saved) == 4:
        try:
            user_p, user_d, calib_p, calib_d = (float(v) for v in saved)
        except (TypeError, ValueError):
            return pixel, decision
        if math.isclose(calib_p, pixel, abs_tol=1e-12) and math.isclose(calib_d, decision, abs_tol=1e-12):
            return user_p, user_d
    return pixel, decision


def thresholds_to_remember(shown: Thresholds, pixel: float, decision: float) -> list[float] | None:
    """What to store for the thresholds ``shown`` when the model's calibrated ones are ``pixel`` and
    ``decision``: None (forget) when they are the model's own, else the choice and its calibration."""
    if shown == ThresholdModel._clean(pixel, decision):
        return None
    return [shown.pixel, shown.decision, float(pixel), float(decision)]


def prediction_order(pending: Sequence[Path], current: Path | None, patient_of: Callable[[Path], str],
                     whole_patient: bool) -> list[Path]:
    """The order to predict ``pending`` in: what the user looks at first — with the patient 3-D filter
    on, the whole of its patient (its slices are shown together) — then the rest in list order."""
    order = list(pending)
    if current not in order:
        return order
    if whole_patient:
        patient = patient_of(current)
        first = [p for p in order if patient_of(p) == patient]
        return first + [p for p in order if patient_of(p) != patient]
    order.remove(current)
    return [current, *order]


@dataclass
class JobProgress:
    """Counts and rate of one prediction job (for the progress bar and the status line)."""

    total: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def tick(self) -> None:
        self.done += 1

    @property
    def complete(self) -> bool:
        return self.done >= self.total

    @property
    def rate(self) -> float:
        """Slices per second so far."""
        return self.done / max(time.monotonic() - self.started, 1e-6)

    @property
    def eta_s(self) -> float:
        rate = self.rate
        return (self.total - self.done) / rate if rate else 0.0

    def fraction_text(self) -> str:
        return f"{self.done} / {self.total}"

    def status_text(self) -> str:
        return (f"Predicting: {self.done}/{self.total} slices, {self.rate:.1f} slices/s, "
                f"ETA {self.eta_s:.0f} s")
