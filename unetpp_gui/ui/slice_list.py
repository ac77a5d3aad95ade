"""The slice list: one row per slice with its decision marker, for folders of thousands of slices.

A view over the window's :class:`SliceStore` rather than a list of items: rows are added in one
step and markers are computed only for rows on screen, so adding a 3,000-slice folder or moving a
threshold slider costs the same as for ten slices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QAbstractListModel, QItemSelectionModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QListView

from unetpp_gui.core.store import SliceStore

#: Marker, colour, legend word and tooltip text of each slice state (core.store.STATES).
MARKERS = {"tumour": ("●", "#c5221f", "tumour", "tumour"), "clear": ("●", "#188038", "no tumour", "no tumour"),
           "missed": ("✖", "#8e24aa", "missed", "missed: the ground truth has tumour, the model says none"),
           "false_alarm": ("▲", "#e37400", "false alarm",
                           "false alarm: the model says tumour, the ground truth has none"),
           "error": ("⚠", "#8d6e63", "error", "error: the slice could not be read or predicted"),
           "pending": ("○", "#9aa0a6", "pending", "pending: not predicted yet")}
STATE_COLORS = {kind: marker[1] for kind, marker in MARKERS.items()}
#: Each state's colour, made once (the list's markers and the results table's decisions are drawn with it).
STATE_QCOLORS = {kind: QColor(color) for kind, color in STATE_COLORS.items()}
#: Roles by their full enum names, once, for this list and the results table: PySide6 finds a short name such as
#: ``Qt.DisplayRole`` through a compatibility lookup that costs ~8 us (AMD EPYC), and a view asks data() for about
#: ten roles of every visible row at each paint (half of a 10 ms list repaint went there).
DISPLAY_ROLE, FOREGROUND_ROLE, TOOLTIP_ROLE = (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ForegroundRole,
                                               Qt.ItemDataRole.ToolTipRole)
PATH_ROLE = Qt.ItemDataRole.UserRole
MARKER_ROLE = Qt.ItemDataRole.UserRole + 1
_ROLES = frozenset((DISPLAY_ROLE, FOREGROUND_ROLE, TOOLTIP_ROLE, PATH_ROLE, MARKER_ROLE))


def legend_html() -> str:
    """The markers' legend, for a label under the list: a line breaks between entries, never inside one."""
    return " &nbsp; ".join(f"<span style='color:{color}'>{symbol}</span>&nbsp;{word.replace(' ', '&nbsp;')}"
                           for symbol, color, word, _tip in MARKERS.values())


def legend_tooltip() -> str:
    """Each marker's meaning in a sentence, one per line."""
    return "\n".join(f"{symbol} {tip}" for symbol, _color, _word, tip in MARKERS.values())


class SliceListModel(QAbstractListModel):
    """Rows mirror ``store.paths``; ``kind_of(path)`` says which marker a slice gets now."""

    def __init__(self, store: SliceStore, kind_of: Callable[[Path], str]) -> None:
        super().__init__()
        self.store = store
        self.kind_of = kind_of
        self._rows = 0

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else self._rows

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = DISPLAY_ROLE) -> Any:
        if role not in _ROLES or not index.isValid():  # the other roles a view asks for, at once
            return None
        path = self.store.paths[index.row()]
        if role == DISPLAY_ROLE:
            return f"{MARKERS[self.kind_of(path)][0]} {path.name}"
        if role == FOREGROUND_ROLE:
            return STATE_QCOLORS[self.kind_of(path)]
        if role == TOOLTIP_ROLE:
            res = self.store.compact.get(path)
            if res is not None and res.error:
                return f"{path}\n{res.error}"
            return f"{path}\n{MARKERS[self.kind_of(path)][3]}" + (f"\n⚠ {res.warning}" if res and res.warning else "")
        if role == PATH_ROLE:
            return str(path)
        if role == MARKER_ROLE:
            return self.kind_of(path)
        return None

    def sync(self) -> None:
        """Show the rows the store has gained since the last call (one insert, one repaint)."""
        n = len(self.store.paths)
        if n > self._rows:
            self.beginInsertRows(QModelIndex(), self._rows, n - 1)
            self._rows = n
            self.endInsertRows()
        elif n < self._rows:
            self.beginResetModel()
            self._rows = n
            self.endResetModel()

    def refresh(self, row: int | None = None) -> None:
        """Markers changed: of one row, or of all rows (thresholds, model)."""
        if self._rows == 0:
            return
        first, last = (row, row) if row is not None else (0, self._rows - 1)
        roles = [DISPLAY_ROLE, FOREGROUND_ROLE, TOOLTIP_ROLE, MARKER_ROLE]
        self.dataChanged.emit(self.index(first), self.index(last), roles)


class SliceList(QListView):
    """A list view with the row-based API the window and tests use (like QListWidget's)."""

    currentRowChanged = Signal(int)

    def __init__(self, store: SliceStore, kind_of: Callable[[Path], str]) -> None:
        super().__init__()
        self.list_model = SliceListModel(store, kind_of)
        self.setModel(self.list_model)
        self.setUniformItemSizes(True)  # one row height: no per-row layout pass
        self.setSelectionMode(QListView.SingleSelection)
        self.selectionModel().currentRowChanged.connect(lambda cur, _prev: self.currentRowChanged.emit(cur.row()))

    def count(self) -> int:
        return self.list_model.rowCount()

    def currentRow(self) -> int:
        return self.currentIndex().row()

    def setCurrentRow(self, row: int) -> None:
        index = self.list_model.index(row)
        self.selectionModel().setCurrentIndex(index, QItemSelectionModel.ClearAndSelect)
        self.scrollTo(index)

    def path_at(self, row: int) -> str:
        return self.list_model.data(self.list_model.index(row), PATH_ROLE)

    def marker(self, row: int) -> str:
        return self.list_model.data(self.list_model.index(row), MARKER_ROLE)
