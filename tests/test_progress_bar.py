"""The viewer's progress bar: moved without painting the window inside the call."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QListWidget, QMainWindow, QProgressBar

from unetpp_gui.ui.progress_bar import LazyProgressBar


class _Paints(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def eventFilter(self, _obj, event) -> bool:  # noqa: N802 (Qt's name)
        self.count += event.type() == QEvent.Paint
        return False


def _paints_inside_set_value(qtbot, bar: QProgressBar) -> tuple[int, int]:
    """Paints of the bar and of a dirty list in the same window during one setValue that grows the fill."""
    win = QMainWindow()
    qtbot.addWidget(win)
    rows = QListWidget()
    rows.addItems([f"slice {i}" for i in range(50)])
    win.setCentralWidget(rows)
    win.statusBar().addPermanentWidget(bar)
    bar.setRange(0, 300)
    win.resize(600, 400)
    win.show()
    qtbot.waitExposed(win)
    qtbot.wait(50)
    bar_paints, list_paints = _Paints(), _Paints()
    bar.installEventFilter(bar_paints)
    rows.viewport().installEventFilter(list_paints)
    rows.viewport().update()  # the list needs a paint, as after a results turn
    bar.setValue(150)
    inside = (bar_paints.count, list_paints.count)
    qtbot.waitUntil(lambda: bar_paints.count > 0)  # painted later all the same
    assert bar.value() == 150
    return inside


def test_qt_progress_bar_paints_the_window_inside_set_value(qtbot) -> None:
    # why LazyProgressBar exists: Qt's repaints at once, and the dirty list with it
    assert _paints_inside_set_value(qtbot, QProgressBar()) == (1, 1)


def test_lazy_progress_bar_paints_later(qtbot) -> None:
    assert _paints_inside_set_value(qtbot, LazyProgressBar()) == (0, 0)
