"""A progress bar that never paints inside the call that moves it."""

from __future__ import annotations

from PySide6.QtWidgets import QProgressBar


class LazyProgressBar(QProgressBar):
    """``setValue`` marks the bar for the window's next paint. Qt's own repaints at once whenever the fill
    grows by a chunk, and a repaint paints every dirty part of the window (the slice list's rows, the batch
    table) inside the caller's turn: a results turn and a full paint in one stall on a slow CPU."""

    def setValue(self, value: int) -> None:  # noqa: N802 (Qt's name)
        self.setUpdatesEnabled(False)  # QWidget.repaint does nothing while updates are off ...
        try:
            super().setValue(value)
        finally:
            self.setUpdatesEnabled(True)  # ... and turning them on asks for an ordinary, later paint
