"""after_next_paint: work that must wait until a widget has been painted (real widgets, offscreen Qt)."""

from __future__ import annotations

from PySide6.QtCore import QElapsedTimer
from PySide6.QtWidgets import QWidget

from unetpp_gui.ui.paint_gate import after_next_paint


class _Counted(QWidget):
    """A widget that counts its paints."""

    def __init__(self) -> None:
        super().__init__()
        self.paints = 0

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.paints += 1
        super().paintEvent(event)


def test_callback_runs_once_after_the_paint(qtbot) -> None:
    widget = _Counted()
    qtbot.addWidget(widget)
    seen: list[int] = []  # the paint count when the callback ran
    after_next_paint(widget, lambda: seen.append(widget.paints), fallback_ms=5000)
    assert seen == []  # never at once
    widget.show()
    qtbot.waitUntil(lambda: bool(seen), timeout=3000)
    assert seen[0] >= 1  # the paint came first
    widget.update()
    qtbot.waitUntil(lambda: widget.paints > seen[0], timeout=3000)
    qtbot.wait(50)
    assert len(seen) == 1  # once only, whatever paints follow


def test_a_widget_never_painted_gets_the_callback_after_the_fallback(qtbot) -> None:
    widget = _Counted()
    qtbot.addWidget(widget)  # never shown: no paint will come
    seen: list[int] = []
    clock = QElapsedTimer()
    clock.start()
    after_next_paint(widget, lambda: seen.append(clock.elapsed()), fallback_ms=200)
    qtbot.waitUntil(lambda: bool(seen), timeout=3000)
    assert seen[0] >= 190 and widget.paints == 0
    qtbot.wait(50)
    assert len(seen) == 1
