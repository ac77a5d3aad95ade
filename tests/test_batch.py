"""Folder batch review: results table, filters, sorting, summary, CSV, cancel, re-thresholding."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from unetpp_gui.core.discovery import discover, natural_key, patient_of
from unetpp_gui.core.inference import predict_paths
from unetpp_gui.core.phantom import phantom
from unetpp_gui.core.summary import SUMMARY_COLUMNS, summarize
from unetpp_gui.ui.batch_view import ResultsTableModel
from unetpp_gui.ui.main_window import MainWindow
from unetpp_gui.ui.slice_list import STATE_COLORS, SliceListModel

WAIT = 180_000


def _phantom_patient(folder: Path) -> None:
    """Eight 256x256 phantom slices with masks, named like an LGG patient's (slices 9..16)."""
    folder.mkdir(parents=True)
    for i in range(9, 17):
        img, mask = phantom(256, lesion=i % 3 != 0, seed=i)
        Image.fromarray(img).save(folder / f"{folder.name}_{i}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{folder.name}_{i}_mask.png")


@pytest.fixture(params=["phantom", pytest.param("lgg", marks=pytest.mark.lgg)])
def study(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """study/<patient>/ (8 real LGG slices linked, or 8 phantom slices under an LGG-style name) with masks,
    + study/phantoms/ with broken files."""
    if request.param == "lgg":
        case = sorted(request.getfixturevalue("lgg").glob("TCGA_*"))[0]
        real = tmp_path / "study" / case.name
        real.mkdir(parents=True)
        for s in discover([case]).slices[8:16]:
            (real / s.name).symlink_to(s)
            (real / f"{s.stem}_mask.png").symlink_to(s.with_name(f"{s.stem}_mask.png"))
    else:
        _phantom_patient(tmp_path / "study" / "TCGA_PH_0001_20000101")
    ph = tmp_path / "study" / "phantoms"
    ph.mkdir()
    for i in range(4):
        Image.fromarray(phantom(128, seed=i)[0]).save(ph / f"ph_{i}.png")
    (ph / "ph_9.png").write_bytes(b"\x89PNG broken")
    (ph / "notes.png").write_text("not an image at all")
    return tmp_path / "study"


def _visible(win: MainWindow) -> list[str]:
    proxy = win.batch.model
    return [proxy.index(r, 0).data() for r in range(proxy.rowCount())]


def test_batch_table_summary_filters_csv(qtbot, window: MainWindow, study: Path, tmp_path: Path) -> None:
    with qtbot.waitSignal(window.predictions_finished, timeout=WAIT):
        window.open_paths([study])
    paths = window.store.paths
    assert len(paths) == 14 and window.batch.model.rowCount() == 14
    assert _visible(window) == [p.name for p in paths]  # the table starts in the slice list's order
    # error rows, and the batch went on past them
    window.batch.filter_mode.setCurrentText("Errors only")
    assert sorted(_visible(window)) == ["notes.png", "ph_9.png"]
    window.batch.filter_mode.setCurrentText("Tumour only")
    tumour = [p.name for p in paths if window.store.derived(p, window.thresholds()) and
              window.store.derived(p, window.thresholds()).tumour]
    assert sorted(_visible(window)) == sorted(tumour)
    window.batch.filter_mode.setCurrentText("All slices")
    window.batch.filter_text.setText("phantoms")
    assert len(_visible(window)) == 6
    window.batch.filter_text.setText("")
    # sorting by area ratio (numeric, not text)
    window.batch.table.sortByColumn(2, Qt.DescendingOrder)
    ratios = [window.batch.model.index(r, 2).data(Qt.UserRole) for r in range(14)]
    assert ratios == sorted(ratios, reverse=True)
    # selecting a row shows that slice
    window.batch.table.selectRow(3)
    name = window.batch.model.index(3, 0).data()
    assert window.current.name == name and window.slice_list.path_at(window.slice_list.currentRow()).endswith(name)
    # re-sorting by name keeps the selection on the same slice, and names sort naturally (_2 before _10)
    window.batch.table.sortByColumn(0, Qt.AscendingOrder)
    assert window.batch.model.path_at(window.batch.table.currentIndex().row()).name == name
    shown = _visible(window)
    assert shown == sorted(shown, key=natural_key) and shown != sorted(shown)

    # summary equals the engine's own numbers for the same files
    def engine_summary(t_pix: float, t_dec: float) -> list[dict]:
        res = list(predict_paths(window.model, paths, keep_maps=False))
        return [s.row() for s in summarize(res, patient_of, t_pix, t_dec)]

    t = window.thresholds()
    assert [s.row() for s in window.batch.summaries()] == engine_summary(t.pixel, t.decision)
    rows = {r["patient"]: r for r in engine_summary(t.pixel, t.decision)}
    assert rows["ALL"]["slices"] == 14 and rows["ALL"]["errors"] == 2 and rows["phantoms"]["errors"] == 2
    real_patient = next(p.parent.name for p in paths if p.name.startswith("TCGA_"))
    assert rows[real_patient]["slices"] == 8 and rows[real_patient]["slices_with_ground_truth"] == 8

    # thresholds change: every row and the summary follow, with no model call
    calls = window.predicted_count
    window.controls.set_thresholds(0.05, 0.0)
    assert window.predicted_count == calls
    assert [s.row() for s in window.batch.summaries()] == engine_summary(0.05, 0.0)
    table = window.batch.summary
    shown = [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]
    engine = engine_summary(0.05, 0.0)
    assert engine[-1]["patient"] == "ALL"  # the engine (and CSV) put the whole batch last; the table, first
    assert shown == [[str(row[k]) for k in SUMMARY_COLUMNS] for row in engine[-1:] + engine[:-1]]  # every cell
    assert table.item(0, 0).font().bold() and not table.item(1, 0).font().bold()
    # clicking a patient's row shows its largest predicted tumour; the first row, the batch's
    for r, row in enumerate(engine[-1:] + engine[:-1]):
        window.show_path(paths[-1] if window.current != paths[-1] else paths[0])
        table.scrollToItem(table.item(r, 0))
        qtbot.mouseClick(table.viewport(), Qt.LeftButton, pos=table.visualItemRect(table.item(r, 1)).center())
        patient = [p for p in paths if row["patient"] in ("ALL", patient_of(p))]
        expected = row["largest_tumour_slice"] or patient[0].name  # no predicted tumour: the first slice
        assert window.current.name == expected and window.current in patient, row["patient"]
    # ... and so do the table's cells: each decision and its colour, as the list's marker says
    model = window.batch.model
    for r in range(model.rowCount()):
        path, state = model.path_at(r), window.store.state(model.path_at(r), window.thresholds())
        decision = model.index(r, 3).data()
        assert decision == ("…" if state == "pending" else "" if state == "error" else
                            "TUMOUR" if state == "tumour" else "no tumour" if state == "clear" else
                            "no tumour (missed)" if state == "missed" else "TUMOUR (false alarm)")
        assert model.index(r, 3).data(Qt.ForegroundRole).name() == STATE_COLORS[state]
        assert model.index(r, 0).data(Qt.ForegroundRole) is None and model.index(r, 0).data(Qt.ToolTipRole) == str(path)
        assert model.index(r, 0).data(Qt.DecorationRole) is None
    assert model.headerData(3, Qt.Horizontal) == "Decision" and model.headerData(3, Qt.Vertical) is None

    table_csv, summary_csv = window.batch.export_csv(tmp_path / "out" / "results.csv")
    table = list(csv.DictReader(table_csv.open()))
    assert len(table) == 14 and {r["error"] != "" for r in table} == {True, False}
    broken = next(r for r in table if r["path"].endswith("ph_9.png"))
    assert "not a readable image" in broken["error"] and broken["patient"] == "phantoms"
    real_row = next(r for r in table if Path(r["path"]).name.startswith("TCGA_"))
    assert real_row["width"] == "256" and real_row["dice"] != ""
    summary = list(csv.DictReader(summary_csv.open()))
    assert summary[-1]["patient"] == "ALL" and summary[-1]["slices"] == "14"

    worker = window.export_batch(tmp_path / "masks")
    with qtbot.waitSignal(worker.finished, timeout=WAIT):
        pass
    written = sorted(p.name for p in (tmp_path / "masks").rglob("*.png"))
    assert len(written) == 2 * 12 and "ph_0_pred.png" in written and "ph_0_overlay.png" in written


def test_item_models_name_their_roles_without_pysides_slow_lookup() -> None:
    """A view calls data() for every visible cell and about ten roles at each paint; PySide6 resolves a short
    name such as ``Qt.DisplayRole`` through a compatibility lookup (~8 us on a slow CPU), which made half of a
    list repaint and most of a table repaint during a batch. The models use module constants instead."""
    for fn in (SliceListModel.data, SliceListModel.refresh, ResultsTableModel.data, ResultsTableModel.headerData,
               ResultsTableModel.reorder):
        assert "Qt" not in fn.__code__.co_names, fn.__qualname__


def test_cancel_keeps_finished_rows(qtbot, window: MainWindow, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(120):
        Image.fromarray(phantom(64, seed=i)[0]).save(folder / f"s_{i}.png")
    window.batch_size = 2
    first, emitted, at_cancel = [], [0], []
    with qtbot.waitSignal(window.predictions_finished, timeout=WAIT):
        window.open_paths([folder])
        qtbot.waitUntil(lambda: window._job is not None, timeout=WAIT)
        # counted in the worker's own thread as each result leaves it (not when the GUI gets to it)
        window._job.yielded.connect(lambda _r: emitted.__setitem__(0, emitted[0] + 1), Qt.DirectConnection)
        qtbot.waitUntil(lambda: window.predicted_count >= 4, timeout=WAIT)
        window.cancel_predictions()
        first.append(window.predicted_count)
        at_cancel.append(emitted[0])
    done = len(window.store.compact)
    assert 4 <= first[0] <= done < 120 and window.batch.model.rowCount() == 120
    # after Cancel the worker stops within the batch it is on; what it had sent before still arrives
    assert emitted[0] - at_cancel[0] <= window.batch_size
    window.batch.filter_mode.setCurrentText("Pending")
    assert window.batch.model.rowCount() == 120 - done
    assert np.all([window.store.compact[p].ok for p in window.store.compact])
