"""Patient 3-D filter: components, grouping by patient, cancel, the CLI, evaluation and the GUI store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unetpp_gui.core.consistency import PatientFilter, by_patient, pack, removed_voxels, unpack
from unetpp_gui.core.image_io import save_png
from unetpp_gui.core.inference import Cancelled, SliceResult
from unetpp_gui.core.postprocess import SliceStats
from conftest import bright_model as _bright_model, patient_folder as _patient_folder


def _stack(n: int = 4, size: int = 32) -> list[np.ndarray]:
    """A lesion through slices 1-3 (6x6 px each) and a 2-px speck alone on slice 0."""
    maps = [np.zeros((size, size), np.uint8) for _ in range(n)]
    for i in (1, 2, 3):
        maps[i][10:16, 10:16] = 230
    maps[0][25:26, 2:4] = 240
    return maps


def test_speck_removed_lesion_kept() -> None:
    maps = _stack()
    removed = removed_voxels(maps, 0.5, 1.0)
    assert removed[0].sum() == 2 and removed[0][25, 2] and removed[0][25, 3]
    assert not any(r.any() for r in removed[1:])


def test_min_fraction_keeps_components_large_enough() -> None:
    maps = _stack()
    assert not any(r.any() for r in removed_voxels(maps, 0.5, 1.5 / 108))  # speck = 2 of 108 voxels
    assert removed_voxels(maps, 0.5, 3 / 108)[0].sum() == 2


def test_threshold_decides_what_is_a_component() -> None:
    maps = _stack()
    maps[0][25, 2:4] = 100  # below 0.5 now: nothing to remove at 0.5, the speck returns at 0.3
    assert not any(r.any() for r in removed_voxels(maps, 0.5, 1.0))
    assert removed_voxels(maps, 0.3, 1.0)[0].sum() == 2


def test_diagonal_neighbours_across_slices_connect() -> None:
    maps = _stack()
    maps[0][:] = 0
    maps[0][9, 9] = 240  # touches slice 1's lesion corner (10, 10) diagonally in 3-D
    assert not removed_voxels(maps, 0.5, 1.0)[0].any()


def test_empty_stack_removes_nothing() -> None:
    removed = removed_voxels([np.zeros((8, 8), np.uint8)] * 3, 0.5, 1.0)
    assert len(removed) == 3 and not any(r.any() for r in removed)


@pytest.mark.parametrize("seed", range(6))
def test_same_as_labelling_the_whole_stack(seed: int) -> None:
    """The filter labels only the box around the predicted pixels: it must remove what labelling the whole
    stack removes (components touching the box's edges and the stack's ends included)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    maps = [np.zeros((40, 48), np.uint8) for _ in range(7)]
    for _ in range(rng.integers(2, 9)):  # blobs and specks anywhere, edges included
        z, r, c = rng.integers(0, 7), rng.integers(0, 40), rng.integers(0, 48)
        h, w = rng.integers(1, 9, size=2)
        for k in range(z, min(7, z + rng.integers(1, 4))):
            maps[k][r : r + h, c : c + w] = rng.integers(100, 256)
    mask = np.stack(maps) > 128
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    for fraction in (1.0, 0.3):
        if n == 0:
            expected = np.zeros_like(mask)
        else:
            sizes = np.bincount(labels.ravel())[1:]
            expected = mask & ~np.isin(labels, 1 + np.flatnonzero(sizes >= fraction * sizes.max()))
        got = np.stack(removed_voxels(maps, 0.5, fraction))
        assert (got == expected).all()


def test_pack_round_trip() -> None:
    rng = np.random.default_rng(0)
    m = rng.random((37, 53)) > 0.7
    assert np.array_equal(unpack(pack(m)), m)
    assert pack(np.zeros((4, 4), bool)) is None


def test_filter_setting_from_metadata() -> None:
    assert PatientFilter.from_dict({}) is None
    assert PatientFilter.from_dict({"min_fraction": 0.2}) == PatientFilter(0.2)
    with pytest.raises(ValueError):
        PatientFilter.from_dict({"min_fraction": 0})


def _results(patient: str, maps: list[np.ndarray], root: Path) -> list[SliceResult]:
    return [SliceResult(root / patient / f"s_{i}.png", prob_q=m, stats=SliceStats.from_map(m), size=m.shape[::-1])
            for i, m in enumerate(maps)]


def _patient(path: Path) -> str:
    return path.parent.name


def test_by_patient_filters_each_patient_alone(tmp_path: Path) -> None:
    a = _results("A", _stack(), tmp_path)
    b = _results("B", [_stack()[0]], tmp_path)  # a patient with one slice: never filtered
    err = [SliceResult(tmp_path / "C" / "bad.png", error="not a readable image")]
    c = _results("C", _stack(), tmp_path)
    out = list(by_patient(iter(a + b + err + c), _patient, 0.5, PatientFilter(1.0)))
    assert [r.path for r in out] == [r.path for r in a + b + err + c]
    assert out[0].stats.mask_pixels(0.5) == 0 and out[0].removed is not None
    assert out[4].stats.mask_pixels(0.5) == 2 and out[4].removed is None  # B alone: as predicted
    assert out[5].error
    assert out[6].stats.mask_pixels(0.5) == 0  # C's speck: its own stack
    assert [r.stats.mask_pixels(0.5) for r in out[1:4]] == [36, 36, 36]


def test_without_filter_results_pass_untouched(tmp_path: Path) -> None:
    a = _results("A", _stack(), tmp_path)
    out = list(by_patient(iter(a), _patient, 0.5, None))
    assert out == a and out[0].stats.mask_pixels(0.5) == 2


def test_cancel_yields_what_was_held_then_raises(tmp_path: Path) -> None:
    a = _results("A", _stack(), tmp_path)

    def source():
        yield from a[:3]
        raise Cancelled()

    got = []
    with pytest.raises(Cancelled):
        for r in by_patient(source(), _patient, 0.5, PatientFilter(1.0)):
            got.append(r)
    assert [r.path for r in got] == [r.path for r in a[:3]]
    assert got[0].stats.mask_pixels(0.5) == 0  # filtered among the slices that were finished


def test_cli_predict_applies_the_models_filter(tmp_path: Path) -> None:
    from PIL import Image

    from unetpp_gui.cli import main

    model = _bright_model(tmp_path / "bright.h5", {"min_fraction": 1.0})
    _patient_folder(tmp_path / "in" / "P1")
    assert main(["predict", str(tmp_path / "in"), "--out", str(tmp_path / "on"), "--model", str(model), "--quiet"]) == 0
    assert main(["predict", str(tmp_path / "in"), "--out", str(tmp_path / "off"), "--model", str(model),
                 "--patient-filter", "off", "--quiet"]) == 0
    on = np.asarray(Image.open(tmp_path / "on" / "in" / "P1" / "case_0_pred.png"))
    off = np.asarray(Image.open(tmp_path / "off" / "in" / "P1" / "case_0_pred.png"))
    assert off.astype(bool).sum() == 4 and on.astype(bool).sum() == 0
    lesion = np.asarray(Image.open(tmp_path / "on" / "in" / "P1" / "case_2_pred.png")).astype(bool)
    assert lesion.sum() == 100
    rows = (tmp_path / "on" / "results.csv").read_text().splitlines()
    assert ",no tumour," in rows[1] and ",tumour," in rows[2]


def test_series_of_strips_the_slice_number() -> None:
    from unetpp_gui.core.discovery import series_of

    assert series_of("x/TCGA_CS_4941_19960909_12.png") == "TCGA_CS_4941_19960909"
    assert series_of("IM-0001-0012.png") == "IM-0001"
    assert series_of("slice 007.tif") == "slice" and series_of("scan12.png") == "scan"
    assert series_of("0001.png") == series_of("0002.png") == ""
    assert series_of("brain.png") == "brain"  # unnumbered: a series of its own
    assert series_of("study.nii.gz#z012") == series_of("study.nii.gz#z013") == "study.nii.gz"


def _flat_folder_of_two_patients(flat: Path) -> None:
    """Patient A: a 10x10 lesion through slices 1-3; patient B: 5x5; a 4-px speck on each one's slice 0."""
    for patient, lesion in (("TCGA_AA_0001", 10), ("TCGA_BB_0002", 5)):
        for i in range(4):
            img = np.full((64, 64, 3), 60, np.uint8)
            if i >= 1:
                img[20:20 + lesion, 20:20 + lesion] = 230
            else:
                img[50:52, 5:7] = 230  # a speck
            save_png(flat / f"{patient}_{i}.png", img)


def test_a_flat_folder_of_two_patients_is_filtered_patient_by_patient(tmp_path: Path) -> None:
    """Patient B's smaller lesion must survive: it is not a speck of patient A's volume."""
    from PIL import Image

    from unetpp_gui.cli import main

    model = _bright_model(tmp_path / "bright.h5", {"min_fraction": 1.0})
    flat = tmp_path / "flat"
    _flat_folder_of_two_patients(flat)
    assert main(["predict", str(flat), "--out", str(tmp_path / "out"), "--model", str(model), "--quiet"]) == 0

    def mask(name: str) -> int:
        return int(np.asarray(Image.open(tmp_path / "out" / "flat" / f"{name}_pred.png")).astype(bool).sum())

    assert mask("TCGA_BB_0002_2") == 25 and mask("TCGA_AA_0001_2") == 100  # both lesions kept
    assert mask("TCGA_BB_0002_0") == 0 and mask("TCGA_AA_0001_0") == 0  # both specks removed


def test_store_names_the_patients_of_a_flat_folder_by_series(tmp_path: Path) -> None:
    from unetpp_gui.core.store import SliceStore

    store = SliceStore()
    flat, own = tmp_path / "flat", tmp_path / "P7"
    store.add_paths([flat / f"TCGA_AA_0001_{i}.png" for i in range(3)] + [own / f"slice_{i}.png" for i in range(3)]
                    + [own / "notes.png"])
    assert {store.patient(p) for p in store.paths} == {"flat", "P7"}  # one series per folder: the folder
    store.add_paths([flat / f"TCGA_BB_0002_{i}.png" for i in range(2)] + [flat / "cover.png"])
    names = [store.patient(p) for p in store.paths if p.parent == flat]
    assert names == ["TCGA_AA_0001"] * 3 + ["TCGA_BB_0002"] * 2 + ["flat"]  # now two patients (and a stray)


def test_patients_worked_out_by_discovery_are_the_stores_own(tmp_path: Path, monkeypatch) -> None:
    """The discovery worker names each slice's patient, so the GUI thread need not; a folder that gains slices
    later is still named again as a whole."""
    from unetpp_gui.core import store as store_module
    from unetpp_gui.core.discovery import discover, patients_in_folder
    from unetpp_gui.core.store import SliceStore

    flat, own = tmp_path / "flat", tmp_path / "P7"
    for folder, names in ((flat, [f"TCGA_AA_0001_{i}" for i in range(3)] + [f"TCGA_BB_0002_{i}" for i in range(2)]),
                          (own, [f"slice_{i}" for i in range(3)])):
        folder.mkdir()
        for name in names:
            save_png(folder / f"{name}.png", np.zeros((8, 8, 3), np.uint8))
    found = discover([flat, own], patients=True)
    assert discover([flat, own]).patients == {}  # only where asked (the viewer's worker): the CLI does not need it
    assert found.patients == {p: ("P7" if p.parent == own else p.stem.rsplit("_", 1)[0]) for p in found.slices}

    plain = SliceStore()
    plain.add_paths(found.slices)
    calls = []

    def counted(paths):  # the store's own naming, counted
        calls.append(len(paths))
        return patients_in_folder(paths)
    monkeypatch.setattr(store_module, "patients_in_folder", counted)
    given = SliceStore()
    given.add_paths(found.slices, found.patients)
    assert calls == []  # both folders were new: named by the discovery, not again here
    assert [given.patient(p) for p in given.paths] == [plain.patient(p) for p in plain.paths]

    late = flat / "TCGA_CC_0003_0.png"
    save_png(late, np.zeros((8, 8, 3), np.uint8))
    again = discover([late], patients=True)
    given.add_paths(again.slices, again.patients)  # the folder is known: named again with all its slices
    assert calls == [6]
    plain.add_paths([late])
    assert [given.patient(p) for p in given.paths] == [plain.patient(p) for p in plain.paths]


def test_calibration_turns_the_filter_on_only_when_it_helps(tmp_path: Path) -> None:
    from training.evaluate import Evaluated, calibrate_filter, metrics_at, with_patient_filter

    gt = np.zeros((32, 32), bool)
    items = []
    for p in ("A", "B"):
        for i, m in enumerate(_stack()):
            g = gt.copy()
            if i:
                g[10:16, 10:16] = True
            items.append(Evaluated(p, tmp_path / p / f"{i}.png", SliceStats.from_map(m, g), m, g))
    t, d, f = calibrate_filter(items)
    assert f is not None
    filtered = metrics_at(with_patient_filter(items, t, f), t, d)
    assert filtered["patient_dice_mean"] == pytest.approx(1.0) and filtered["slice_accuracy"] == 1.0
    clean = [Evaluated(it.patient, it.path, SliceStats.from_map(q := np.where(it.gt, 230, 0).astype(np.uint8), it.gt),
                       q, it.gt) for it in items]
    assert calibrate_filter(clean)[2] is None  # nothing to gain: stays off


def test_store_reapplies_the_filter_to_a_slice_predicted_again(tmp_path: Path) -> None:
    from unetpp_gui.core.consistency import filter_patient
    from unetpp_gui.core.store import SliceStore

    store = SliceStore(capacity=1)
    a = _results("A", _stack(), tmp_path)
    store.add_paths([r.path for r in a])
    filter_patient(a, 0.5, PatientFilter(1.0))
    for r in a:
        store.put(r)
    assert store.full(a[0].path) is None  # evicted (capacity 1)
    again = _results("A", _stack(), tmp_path)[0]  # predicted alone: the speck is back
    assert again.stats.mask_pixels(0.5) == 2
    store.put(again)
    assert store.compact[a[0].path].stats.mask_pixels(0.5) == 0 and store.removed_pixels(a[0].path) == 2
    store.clear_results()
    assert store.removed_pixels(a[0].path) is None


def test_gui_shows_the_filtered_masks_and_the_menu_switches_it(qtbot, tmp_path: Path) -> None:
    from PySide6.QtCore import QSettings

    from unetpp_gui.ui.main_window import MainWindow

    model = _bright_model(tmp_path / "bright.h5", {"min_fraction": 1.0})
    _patient_folder(tmp_path / "in" / "P1")
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.model_changed, timeout=120_000):
        win.load_model(model)
    assert win.patient_filter_action.isEnabled() and win.patient_filter_action.isChecked()
    with qtbot.waitSignal(win.predictions_finished, timeout=120_000):
        win.open_paths([tmp_path / "in"])
    first = win.store.paths[0]
    win.slice_list.setCurrentRow(0)
    assert win.current == first and win._kind(first) == "clear"
    assert win.results.filtered.text() == "removed 4 px" and win.results.pixels.text() == "0"
    with qtbot.waitSignal(win.predictions_finished, timeout=120_000):
        win.patient_filter_action.trigger()  # off: predicted again, the speck is back
    assert not win.patient_filter_action.isChecked() and win._kind(first) == "tumour"
    win.render_current()
    assert win.results.filtered.text() == "off" and win.results.pixels.text() == "4"
    assert win.settings.value("inference/patient_filter") == "off"
    win.close()


def test_gui_filters_a_flat_folder_patient_by_patient(qtbot, tmp_path: Path) -> None:
    from PySide6.QtCore import QSettings

    from unetpp_gui.ui.main_window import MainWindow

    model = _bright_model(tmp_path / "bright.h5", {"min_fraction": 1.0})
    _flat_folder_of_two_patients(tmp_path / "flat")
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.model_changed, timeout=120_000):
        win.load_model(model)
    with qtbot.waitSignal(win.predictions_finished, timeout=120_000):
        win.open_paths([tmp_path / "flat"])
    kinds = {p.stem: win._kind(p) for p in win.store.paths}
    assert kinds["TCGA_BB_0002_2"] == kinds["TCGA_AA_0001_2"] == "tumour"  # both lesions kept
    assert kinds["TCGA_BB_0002_0"] == kinds["TCGA_AA_0001_0"] == "clear"  # both specks removed
    win.close()
