"""Batch review: a sortable, filterable results table and per-patient summary for the open slices.

Rows are re-derived from each slice's compact stats whenever thresholds change: no model calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QFileDialog, QHBoxLayout, QHeaderView, QLineEdit, QPushButton, QSplitter,
    QTableView, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from unetpp_gui.core.postprocess import Derived
from unetpp_gui.core.report import row_for, write_csv
from unetpp_gui.core.store import SliceStore, Thresholds
from unetpp_gui.core.summary import SUMMARY_COLUMNS, summarize

COLUMNS = ("File", "Patient / folder", "Area ratio", "Decision", "Max prob.", "Dice", "Error")
FILTERS = ("All slices", "Tumour only", "No tumour only", "Errors only", "Pending")


class ResultsTableModel(QAbstractTableModel):
    """One row per slice in the store; derived numbers cached per threshold pair."""

    def __init__(self, store: SliceStore, thresholds: Thresholds) -> None:
        super().__init__()
        self.store = store
        self.thresholds = thresholds
        self._derived: dict[Path, Derived | None] = {}
        self._rows = 0

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else self._rows

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.DisplayRole) -> Any:
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return COLUMNS[section]
        return None

    def sync_rows(self) -> None:
        """Call after paths were added to the store."""
        n = len(self.store.paths)
        if n > self._rows:
            self.beginInsertRows(QModelIndex(), self._rows, n - 1)
            self._rows = n
            self.endInsertRows()
        elif n < self._rows:
            self.beginResetModel()
            self._rows = n
            self._derived.clear()
            self.endResetModel()

    def slice_updated(self, path: Path) -> None:
        self._derived.pop(path, None)
        row = self.store.index(path)
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def set_thresholds(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self._derived.clear()
        if self._rows:
            self.dataChanged.emit(self.index(0, 0), self.index(self._rows - 1, len(COLUMNS) - 1))

    def derived(self, path: Path) -> Derived | None:
        if path not in self._derived:
            self._derived[path] = self.store.derived(path, self.thresholds)
        return self._derived[path]

    def state(self, row: int) -> str:
        path = self.store.paths[row]
        res = self.store.compact.get(path)
        if res is None:
            return "pending"
        if res.error:
            return "error"
        d = self.derived(path)
        return "tumour" if d and d.tumour else "clear"

    def data(self, index: QModelIndex, role: int = Qt.DisplayRole) -> Any:
        if not index.isValid():
            return None
        path = self.store.paths[index.row()]
        col = index.column()
        res = self.store.compact.get(path)
        d = self.derived(path) if res is not None and res.ok else None
        if role == Qt.DisplayRole:
            if col == 0:
                return path.name
            if col == 1:
                return self.store.patient(path)
            if res is None:
                return "…" if col == 3 else ""
            if col == 6:
                return res.error or ""
            if d is None:
                return ""
            return {2: f"{d.area_ratio * 100:.3f} %", 3: "TUMOUR" if d.tumour else "no tumour",
                    4: f"{d.max_prob:.3f}", 5: "" if d.dice is None else f"{d.dice:.3f}"}[col]
        if role == Qt.UserRole:  # sort keys: numbers sort as numbers
            if col in (0, 1, 6):
                return self.data(index, Qt.DisplayRole)
            if d is None:
                return -1.0
            return {2: d.area_ratio, 3: float(d.tumour), 4: d.max_prob, 5: -1.0 if d.dice is None else d.dice}[col]
        if role == Qt.ForegroundRole and col == 3 and d is not None:
            return QColor("#c5221f" if d.tumour else "#188038")
        if role == Qt.ToolTipRole:
            return str(path)
        return None


class FilterProxy(QSortFilterProxyModel):
    def __init__(self) -> None:
        super().__init__()
        self.mode = FILTERS[0]
        self.text = ""
        self.setSortRole(Qt.UserRole)

    def set_filter(self, mode: str, text: str) -> None:
        self.mode, self.text = mode, text.lower()
        self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent: QModelIndex) -> bool:
        model: ResultsTableModel = self.sourceModel()  # type: ignore[assignment]
        state = model.state(row)
        want = {"Tumour only": "tumour", "No tumour only": "clear", "Errors only": "error", "Pending": "pending"}
        if self.mode in want and state != want[self.mode]:
            return False
        if self.text:
            path = model.store.paths[row]
            return self.text in str(path).lower()
        return True


class BatchView(QWidget):
    """Results table + per-patient summary + CSV/mask export."""

    slice_selected = Signal(object)  # Path
    export_masks_requested = Signal(str)  # folder

    def __init__(self, store: SliceStore, thresholds: Thresholds, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.model = ResultsTableModel(store, thresholds)
        self.proxy = FilterProxy()
        # Re-sorting thousands of rows on every streamed result would stall the GUI: rows update in
        # place, and sorting/filtering is redone at most twice a second (refresh()).
        self.proxy.setDynamicSortFilter(False)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.setColumnWidth(0, 230)
        self.table.setColumnWidth(1, 200)
        self.summary = QTableWidget(0, len(SUMMARY_COLUMNS))
        self.summary.setHorizontalHeaderLabels([c.replace("_", " ") for c in SUMMARY_COLUMNS])
        self.summary.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.summary.verticalHeader().setDefaultSectionSize(20)
        self.filter_mode = QComboBox()
        self.filter_mode.addItems(FILTERS)
        self.filter_text = QLineEdit()
        self.filter_text.setPlaceholderText("Filter by file or folder name…")
        csv_button = QPushButton("Export CSV…")
        masks_button = QPushButton("Export masks and overlays…")
        bar = QHBoxLayout()
        bar.addWidget(self.filter_mode)
        bar.addWidget(self.filter_text, 1)
        bar.addWidget(csv_button)
        bar.addWidget(masks_button)
        split = QSplitter(Qt.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.summary)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes([300, 110])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(bar)
        layout.addWidget(split)
        self.filter_mode.currentTextChanged.connect(self._refilter)
        self.filter_text.textChanged.connect(self._refilter)
        self.table.selectionModel().currentRowChanged.connect(self._on_current)
        csv_button.clicked.connect(self._export_csv_dialog)
        masks_button.clicked.connect(self._export_masks_dialog)
        self._summary_dirty = True
        self._order_dirty = False

    # --- updates from the window ---
    def sync_rows(self) -> None:
        self.model.sync_rows()
        self._summary_dirty = True
        self._order_dirty = True

    def slice_updated(self, path: Path) -> None:
        self.model.slice_updated(path)
        self._summary_dirty = True
        self._order_dirty = True

    def refresh(self, force: bool = False) -> None:
        """Re-sort/re-filter and recompute the summary if results changed (timer-driven)."""
        if self._order_dirty or force:
            self._resort()
        self.refresh_summary(force)

    def _resort(self) -> None:
        self._order_dirty = False
        self.proxy.invalidate()
        header = self.table.horizontalHeader()
        if header.sortIndicatorSection() >= 0:
            self.proxy.sort(header.sortIndicatorSection(), header.sortIndicatorOrder())

    def set_thresholds(self, thresholds: Thresholds) -> None:
        self.model.set_thresholds(thresholds)
        self._resort()
        self.refresh_summary(force=True)

    def select(self, path: Path) -> None:
        src = self.model.index(self.store.index(path), 0)
        idx = self.proxy.mapFromSource(src)
        if idx.isValid() and self.table.currentIndex().row() != idx.row():
            self.table.blockSignals(True)
            self.table.selectRow(idx.row())
            self.table.blockSignals(False)

    # --- summary ---
    def summaries(self) -> list[Any]:
        t = self.model.thresholds
        results = [self.store.compact[p] for p in self.store.paths if p in self.store.compact]
        return summarize(results, self.store.patient, t.pixel, t.decision)

    def refresh_summary(self, force: bool = False) -> None:
        if not (self._summary_dirty or force):
            return
        rows = [s.row() for s in self.summaries()]
        self.summary.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, key in enumerate(SUMMARY_COLUMNS):
                self.summary.setItem(r, c, QTableWidgetItem(str(row[key])))
        self.summary.resizeColumnsToContents()
        self._summary_dirty = False

    # --- export ---
    def table_rows(self) -> list[dict[str, object]]:
        t = self.model.thresholds
        out = []
        for p in self.store.paths:
            res = self.store.compact.get(p)
            if res is None:
                row = {"path": str(p), "error": "not predicted"}
            else:
                row = row_for(res, t.pixel, t.decision)
            row["patient"] = self.store.patient(p)
            out.append(row)
        return out

    def export_csv(self, path: str | Path) -> tuple[Path, Path]:
        from unetpp_gui.core.report import COLUMNS as CSV_COLUMNS

        path = Path(path)
        write_csv(path, self.table_rows(), ("patient", *CSV_COLUMNS))
        summary_path = path.with_name(f"{path.stem}_summary.csv")
        write_csv(summary_path, [s.row() for s in self.summaries()], SUMMARY_COLUMNS)
        return path, summary_path

    def _export_csv_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export results", "results.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def _export_masks_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export masks and overlays to")
        if folder:
            self.export_masks_requested.emit(folder)

    def _refilter(self) -> None:
        self.proxy.set_filter(self.filter_mode.currentText(), self.filter_text.text())
        self._resort()

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            src = self.proxy.mapToSource(current)
            self.slice_selected.emit(self.store.paths[src.row()])
