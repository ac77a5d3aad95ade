"""Batch review: a sortable, filterable results table and per-patient summary for the open slices.

Rows are re-derived from each slice's compact stats whenever thresholds change: no model calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QFileDialog, QHBoxLayout, QHeaderView, QLineEdit, QPushButton, QSplitter,
    QTableView, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from unetpp_gui.core.discovery import natural_key
from unetpp_gui.core.postprocess import Derived
from unetpp_gui.core.report import row_for, write_csv
from unetpp_gui.core.store import SliceStore, Thresholds, slice_state
from unetpp_gui.core.summary import SUMMARY_COLUMNS, summarize
from unetpp_gui.ui.slice_list import DISPLAY_ROLE, FOREGROUND_ROLE, STATE_QCOLORS, TOOLTIP_ROLE

COLUMNS = ("File", "Patient / folder", "Area ratio", "Decision", "Max prob.", "Dice", "Error")
#: Short headers for the summary table (its CSV keeps the full column names).
SUMMARY_LABELS = {"tumour_slices": "tumour", "largest_tumour_slice": "largest slice",
                  "largest_tumour_pixels": "largest px", "total_tumour_pixels": "total px", "tumour_ml": "mL",
                  "mean_dice": "mean Dice", "slices_with_ground_truth": "with truth"}
# Full enum names, once (see slice_list: a short name such as ``Qt.UserRole`` costs ~8 us a lookup)
_KEY = Qt.ItemDataRole.UserRole  # the sort key of a cell
_ROLES = frozenset((DISPLAY_ROLE, _KEY, FOREGROUND_ROLE, TOOLTIP_ROLE))
_HORIZONTAL, _DESCENDING = Qt.Orientation.Horizontal, Qt.SortOrder.DescendingOrder
SUMMARY_TIP = ("Click: show this patient's largest predicted tumour, or its first slice where none is predicted "
               "(first row: the whole batch's)")
FILTERS = ("All slices", "Tumour only", "No tumour only", "Disagreements with ground truth", "Missed tumours",
           "False alarms", "Errors only", "Pending")


class ResultsTableModel(QAbstractTableModel):
    """The store's slices as table rows, filtered and sorted here in Python.

    Sorting computes one key per row and reorders a list; a ``QSortFilterProxyModel`` would call back into
    Python for every comparison (n log n calls), which stalled the GUI for hundreds of milliseconds on a
    few hundred slices. Derived numbers come from the store, which keeps them per threshold pair.
    """

    def __init__(self, store: SliceStore, thresholds: Thresholds) -> None:
        super().__init__()
        self.store = store
        self.thresholds = thresholds
        self._order: list[int] = []  # display row -> store index
        self._row_of: dict[int, int] = {}  # store index -> display row
        self._sort: tuple[int, Qt.SortOrder] = (0, Qt.AscendingOrder)
        self.mode, self.text = FILTERS[0], ""
        self.dirty = False

    # --- Qt model interface ---
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._order)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = DISPLAY_ROLE) -> Any:
        if role == DISPLAY_ROLE and orientation == _HORIZONTAL:
            return COLUMNS[section]
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.AscendingOrder) -> None:
        self._sort = (column, order)
        self.reorder()

    def data(self, index: QModelIndex, role: int = DISPLAY_ROLE) -> Any:
        if role not in _ROLES or not index.isValid() or index.row() >= len(self._order):
            return None
        path = self.store.paths[self._order[index.row()]]
        col = index.column()
        if role == DISPLAY_ROLE:
            return self._text(path, col)
        if role == _KEY:
            return self._key(path, col)
        if role == FOREGROUND_ROLE:
            if col != 3:
                return None
            state = self.state(self._order[index.row()])
            return STATE_QCOLORS.get(state)
        if role == TOOLTIP_ROLE:
            return str(path)
        return None

    # --- rows ---
    def path_at(self, row: int) -> Path:
        return self.store.paths[self._order[row]]

    def row_of(self, path: Path) -> int | None:
        return self._row_of.get(self.store.index(path))

    def set_filter(self, mode: str, text: str) -> None:
        self.mode, self.text = mode, text.lower()
        self.reorder()

    def results_decide_order(self) -> bool:
        """Whether new results can move rows (sorted by a result column, or filtered by state)."""
        return self._sort[0] >= 2 or self.mode != FILTERS[0]

    def reorder(self) -> None:
        """Re-filter and re-sort every row; keeps the view's selection on the same slices."""
        self.dirty = False
        paths = self.store.paths
        rows = [i for i in range(len(paths)) if self._accepts(i)]
        column, order = self._sort
        rows.sort(key=lambda i: self._key(paths[i], column), reverse=order == _DESCENDING)
        if rows == self._order:
            return
        if len(rows) != len(self._order):
            self.beginResetModel()
            self._set_order(rows)
            self.endResetModel()
            return
        self.layoutAboutToBeChanged.emit()
        old = self.persistentIndexList()
        slices = [self._order[ix.row()] for ix in old]
        self._set_order(rows)
        self.changePersistentIndexList(old, [
            self.index(self._row_of[s], ix.column()) if s in self._row_of else QModelIndex()
            for s, ix in zip(slices, old)])
        self.layoutChanged.emit()

    def _set_order(self, rows: list[int]) -> None:
        self._order = rows
        self._row_of = {s: r for r, s in enumerate(rows)}

    # --- updates ---
    def slice_updated(self, path: Path) -> None:
        row = self.row_of(path)
        if row is not None:
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
        self.dirty = self.dirty or self.results_decide_order()

    def set_thresholds(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        if self._order:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._order) - 1, len(COLUMNS) - 1))
        if self.results_decide_order():
            self.reorder()

    # --- per-slice values ---
    def derived(self, path: Path) -> Derived | None:
        return self.store.derived(path, self.thresholds)

    def _ok_derived(self, path: Path) -> Derived | None:
        res = self.store.compact.get(path)
        return self.derived(path) if res is not None and res.ok else None

    def state(self, row: int) -> str:
        """State of the slice at store index ``row`` (:func:`~unetpp_gui.core.store.slice_state`)."""
        path = self.store.paths[row]
        res = self.store.compact.get(path)
        return slice_state(res, self.derived(path) if res is not None and res.ok else None)

    def _accepts(self, i: int) -> bool:
        want = _FILTER_STATES.get(self.mode)
        if want is not None and self.state(i) not in want:
            return False
        return not self.text or self.text in str(self.store.paths[i]).lower()

    def _text(self, path: Path, col: int) -> str:
        if col == 0:
            return path.name
        if col == 1:
            return self.store.patient(path)
        res = self.store.compact.get(path)
        if res is None:
            return "…" if col == 3 else ""
        if col == 6:
            return res.error or ""
        d = self._ok_derived(path)
        if d is None:
            return ""
        decision = "TUMOUR" if d.tumour else "no tumour"
        state = slice_state(res, d)
        if state in ("missed", "false_alarm"):
            decision += " (missed)" if state == "missed" else " (false alarm)"
        return {2: f"{d.area_ratio * 100:.3f} %", 3: decision,
                4: f"{d.max_prob:.3f}", 5: "" if d.dice is None else f"{d.dice:.3f}"}[col]

    def _key(self, path: Path, col: int) -> Any:
        """Sort key: natural order for names, numbers as numbers (pending and errors first)."""
        if col == 0:
            return natural_key(path.name)
        if col == 1:
            return natural_key(self.store.patient(path))
        if col == 6:
            res = self.store.compact.get(path)
            return (res.error or "") if res is not None else ""
        d = self._ok_derived(path)
        if d is None:
            return -1.0
        return {2: d.area_ratio, 3: float(d.tumour), 4: d.max_prob, 5: -1.0 if d.dice is None else d.dice}[col]


_FILTER_STATES = {"Tumour only": ("tumour", "false_alarm"), "No tumour only": ("clear", "missed"),
                  "Disagreements with ground truth": ("missed", "false_alarm"), "Missed tumours": ("missed",),
                  "False alarms": ("false_alarm",), "Errors only": ("error",), "Pending": ("pending",)}


class BatchView(QWidget):
    """Results table + per-patient summary + CSV/mask export."""

    slice_selected = Signal(object)  # Path
    export_masks_requested = Signal(str)  # folder

    def __init__(self, store: SliceStore, thresholds: Thresholds, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.model = ResultsTableModel(store, thresholds)
        # Rows update in place as results stream in; re-sorting/filtering, when results can move rows,
        # is redone at most twice a second (refresh()).
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.AscendingOrder)  # Qt 6 starts descending; the list's order is ascending
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        rows = self.table.verticalHeader()  # fixed, unlabelled rows: no per-row sizing for thousands of slices
        rows.setDefaultSectionSize(20)
        rows.setSectionResizeMode(QHeaderView.Fixed)
        rows.setVisible(False)
        self.table.setColumnWidth(0, 230)
        self.table.setColumnWidth(1, 200)
        self.summary = QTableWidget(0, len(SUMMARY_COLUMNS))
        self.summary.setHorizontalHeaderLabels([SUMMARY_LABELS.get(c, c.replace("_", " ")) for c in SUMMARY_COLUMNS])
        # columns sized once per refresh (refresh_summary), not in ResizeToContents mode: that mode sized every
        # column again at each cell set, 47 ms for 89 patients' rows (6 ms sized once; measured offscreen)
        self.summary.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self.summary.horizontalHeader().setStretchLastSection(True)
        self.summary.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.summary.verticalHeader().setDefaultSectionSize(20)
        self.summary.verticalHeader().setVisible(False)
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
        self.summary.cellClicked.connect(self._on_summary_clicked)
        self.summary.cellActivated.connect(self._on_summary_clicked)
        csv_button.clicked.connect(self._export_csv_dialog)
        masks_button.clicked.connect(self._export_masks_dialog)
        self._summary_dirty = True
        self._summary_targets: list[Path | None] = []

    # --- updates from the window ---
    def sync_rows(self) -> None:
        """Call after paths were added to the store."""
        self.model.reorder()
        self._summary_dirty = True

    def slice_updated(self, path: Path) -> None:
        self.model.slice_updated(path)
        self._summary_dirty = True

    def refresh(self, force: bool = False) -> None:
        """Re-sort/re-filter if results can have moved rows, and recompute the summary (timer-driven)."""
        if self.model.dirty or force:
            self.model.reorder()
        self.refresh_summary(force)

    def set_thresholds(self, thresholds: Thresholds) -> None:
        self.model.set_thresholds(thresholds)
        self.refresh_summary(force=True)

    def select(self, path: Path) -> None:
        row = self.model.row_of(path)
        if row is not None and self.table.currentIndex().row() != row:
            self.table.blockSignals(True)
            self.table.selectRow(row)
            self.table.blockSignals(False)

    # --- summary ---
    def summaries(self) -> list[Any]:
        t = self.model.thresholds
        results = [self.store.compact[p] for p in self.store.paths if p in self.store.compact]
        return summarize(results, self.store.patient, t.pixel, t.decision,
                         derive=lambda res: self.model.derived(res.path), voxel_ml=self.store.voxel_ml)

    def refresh_summary(self, force: bool = False) -> None:
        """Show the whole-batch row first, in bold (it stays in view however many patients follow), then one
        row per patient; the CSV keeps the engine's order (patients, then 'ALL')."""
        if not (self._summary_dirty or force):
            return
        summaries = self.summaries()
        summaries = summaries[-1:] + summaries[:-1]
        self._summary_targets = [s.landing for s in summaries]
        self.summary.setRowCount(len(summaries))
        for r, summary in enumerate(summaries):
            row = summary.row()
            for c, key in enumerate(SUMMARY_COLUMNS):
                text, item = str(row[key]), self.summary.item(r, c)
                if item is None:
                    item = QTableWidgetItem(text)
                    item.setToolTip(SUMMARY_TIP)
                    if r == 0:  # row 0 is always the whole batch
                        font = item.font()
                        font.setBold(True)
                        item.setFont(font)
                    self.summary.setItem(r, c, item)
                elif item.text() != text:  # most cells keep their text from one refresh to the next
                    item.setText(text)
        self.summary.resizeColumnsToContents()
        self._summary_dirty = False

    def _on_summary_clicked(self, row: int, _column: int) -> None:
        target = self._summary_targets[row] if 0 <= row < len(self._summary_targets) else None
        if target is not None:
            self.slice_selected.emit(target)

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
        self.model.set_filter(self.filter_mode.currentText(), self.filter_text.text())

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.slice_selected.emit(self.model.path_at(current.row()))
