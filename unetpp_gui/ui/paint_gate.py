"""Run a callback once a widget has been painted: start work after a paint instead of inside it."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QWidget

_PAINT = QEvent.Type.Paint


class PaintGate(QObject):
    """Calls back once after the next paint of ``widget`` has been done, or after ``fallback_ms``."""

    def __init__(self, widget: QWidget, callback: Callable[[], None], fallback_ms: int) -> None:
        super().__init__(widget)
        self._widget, self._callback = widget, callback
        widget.installEventFilter(self)
        QTimer.singleShot(fallback_ms, self, self._fire)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == _PAINT:
            QTimer.singleShot(0, self, self._fire)  # runs once this paint is done
        return False

    def _fire(self) -> None:
        if self._callback is None:
            return
        callback, self._callback = self._callback, None
        self._widget.removeEventFilter(self)
        self.deleteLater()
        callback()


def after_next_paint(widget: QWidget, callback: Callable[[], None], fallback_ms: int) -> PaintGate:
    """Call ``callback`` once, in the event loop's turn after ``widget``'s next paint (or after ``fallback_ms``
    where none comes, e.g. a widget never shown)."""
    return PaintGate(widget, callback, fallback_ms)
