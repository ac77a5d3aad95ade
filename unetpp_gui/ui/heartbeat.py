"""An event-loop stall meter: a short-interval timer records the gap between its ticks.

A tick that arrives late means the GUI thread was busy (or not scheduled) for that long; the benchmark
and the responsiveness test read the gaps.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, QTimer


class Heartbeat(QObject):
    def __init__(self, interval_ms: int = 10, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.gaps_ms: list[float] = []
        self._last = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._beat)

    def start(self) -> None:
        self.gaps_ms.clear()
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _beat(self) -> None:
        now = time.perf_counter()
        self.gaps_ms.append((now - self._last) * 1000.0)
        self._last = now

    @property
    def worst_ms(self) -> float:
        return max(self.gaps_ms, default=0.0)

    def percentile(self, q: float) -> float:
        """The ``q`` (0..1) quantile of the gaps, nearest rank."""
        ranked = sorted(self.gaps_ms)
        return ranked[int(q * (len(ranked) - 1))] if ranked else 0.0
