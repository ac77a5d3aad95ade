"""NIfTI studies: orientation under any affine, geometry round trip, clear errors, CLI end to end,
and the same Dice as the PNG slices of an LGG patient. Generated volumes only (plus ../shared)."""

from __future__ import annotations

import csv
import gzip
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import bright_model
from unetpp_gui.core.volume import (
    StudySource, VolumeError, group_studies, read_study, to_display, write_like,
)

SHAPE = (48, 40, 10)  # x (R), y (A), z (S) in RAS+


def _phantom_ras() -> tuple[np.ndarray, np.ndarray]:
    """(X, Y, Z, 3) float intensities in RAS+ and the lesion mask: a box to the patient's right and front."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    head = ((x - 24) / 20) ** 2 + ((y - 20) / 17) ** 2 < 1
    lesion = (x >= 30) & (x < 38) & (y >= 26) & (y < 32) & (z >= 3) & (z < 7)
    vol = np.zeros((*SHAPE, 3), np.float32)
    vol[head] = [400.0, 1000.0, 500.0]
    vol[lesion] = [450.0, 2400.0, 520.0]  # bright on FLAIR (the bright model reads channel 1)
    return vol, lesion


def _affine_for(kind: str) -> tuple[np.ndarray, tuple[int, ...], tuple[bool, bool, bool]]:
    """(affine, axis order of the stored array relative to RAS, flips) for each orientation tested."""
    if kind == "ras":
        return np.diag([1.0, 1.0, 2.5, 1.0]), (0, 1, 2), (False, False, False)
    if kind == "lps":
        return np.diag([-1.0, -1.0, 2.5, 1.0]), (0, 1, 2), (True, True, False)
    if kind == "permuted":  # stored as (z, x, y): i -> S, j -> R, k -> A
        a = np.zeros((4, 4))
        a[0, 1], a[1, 2], a[2, 0], a[3, 3] = 1.0, 1.0, 2.5, 1.0
        return a, (2, 0, 1), (False, False, False)
    if kind == "oblique":  # 4 degrees about z: nearest axes are still RAS
        t = np.deg2rad(4)
        a = np.diag([1.0, 1.0, 2.5, 1.0])
        a[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
        return a, (0, 1, 2), (False, False, False)
    raise ValueError(kind)


def _store(ras: np.ndarray, order: tuple[int, ...], flips: tuple[bool, bool, bool]) -> np.ndarray:
    """The RAS array laid out as the file stores it (flip in RAS first, then permute the axes)."""
    for axis, flip in enumerate(flips):
        if flip:
            ras = np.flip(ras, axis)
    return np.transpose(ras, (*order, *range(3, ras.ndim)))


def _write_study(folder: Path, kind: str, four_d: bool = True, with_truth: bool = True) -> tuple[Path, np.ndarray]:
    vol, lesion = _phantom_ras()
    affine, order, flips = _affine_for(kind)
    folder.mkdir(parents=True, exist_ok=True)
    data = _store(vol, order, flips)
    if four_d:
        img = nib.Nifti1Image(data.astype(np.int16), affine)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=2)
        path = folder / f"{kind}.nii.gz"
        nib.save(img, path)
    else:
        for c, name in enumerate(("pre", "flair", "post")):
            nib.save(nib.Nifti1Image(data[..., c].astype(np.float32), affine), folder / f"{kind}_{name}.nii.gz")
        path = folder / f"{kind}_flair.nii.gz"
    truth = _store(lesion, order, flips)
    if with_truth:
        nib.save(nib.Nifti1Image(truth.astype(np.uint8), affine), folder / f"{kind}_mask.nii.gz")
    return path, truth


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    from unetpp_gui.core.model_io import load_model

    return load_model(bright_model(tmp_path_factory.mktemp("m") / "bright.h5", {}))


@pytest.mark.parametrize("kind", ["ras", "lps", "permuted", "oblique"])
def test_any_orientation_gives_the_same_mask_in_world_space(kind: str, model, tmp_path: Path) -> None:
    from unetpp_gui.core.volume_inference import predict_study, write_study_outputs

    path, truth = _write_study(tmp_path / "in", kind)
    studies, problems = group_studies([tmp_path / "in"])
    assert not problems and len(studies) == 1 and studies[0].mask is not None
    study = read_study(studies[0])
    rows, cols = np.nonzero(list(study.slices())[5][..., 1] > 200)  # the model sees every kind the same way:
    assert rows.max() < SHAPE[1] // 2 and cols.max() < SHAPE[0] // 2  # anterior at the top, right on the left
    result, probs = predict_study(model, study, 0.5, 0.0001)
    write_study_outputs(study, probs, result, tmp_path / "out", 0.5)
    written = nib.load(result.mask_file)
    source = nib.load(path)
    assert written.shape == source.shape[:3] and np.allclose(written.affine, source.affine)
    assert int(written.header["qform_code"]) == int(source.header["qform_code"])
    assert int(written.header["sform_code"]) == int(source.header["sform_code"])
    assert written.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(written.dataobj).astype(bool), truth)  # voxel for voxel, in the file's order
    assert result.dice == pytest.approx(1.0) and result.slices_with_tumour == 4
    zoom = float(np.prod(nib.as_closest_canonical(source).header.get_zooms()[:3]))
    assert result.tumour_ml == pytest.approx(truth.sum() * zoom / 1000)


def test_slices_are_shown_radiologically(model, tmp_path: Path) -> None:
    _write_study(tmp_path / "in", "lps")
    study = read_study(group_studies([tmp_path / "in"])[0][0])
    img = list(study.slices())[5]  # through the lesion
    rows, cols = np.nonzero(img[..., 1] > 200)
    # RAS y 26..31 of 40 (anterior half) -> top rows; x 30..37 of 48 (patient's right) -> left columns
    assert rows.max() < 40 // 2 and cols.max() < 48 // 2
    assert to_display(np.arange(6).reshape(3, 2)).shape == (2, 3)


def test_separate_channel_files_and_probability_map(tmp_path: Path) -> None:
    from unetpp_gui.cli import main

    _write_study(tmp_path / "in" / "A", "ras", four_d=False)
    model = bright_model(tmp_path / "bright.h5", {})
    assert main(["predict", str(tmp_path / "in" / "A"), "--model", str(model), "--out", str(tmp_path / "o"),
                 "--save-prob", "--quiet"]) == 0
    rows = list(csv.DictReader((tmp_path / "o" / "volumes.csv").open()))
    assert len(rows) == 1 and rows[0]["error"] == "" and float(rows[0]["dice"]) == 1.0
    assert rows[0]["mask"] == "ras_pred.nii.gz" and rows[0]["probability"] == "ras_prob.nii.gz"
    assert int(rows[0]["tumour_voxels"]) == 8 * 6 * 4 and float(rows[0]["tumour_ml"]) == pytest.approx(0.48)
    assert rows[0]["slices_with_tumour"] == "4" and rows[0]["largest_slice"] == "3"
    slices = list(csv.DictReader((tmp_path / "o" / "results.csv").open()))
    assert len(slices) == SHAPE[2] and slices[0]["path"].endswith("#z000")
    prob = nib.load(tmp_path / "o" / "ras_prob.nii.gz")
    assert prob.get_data_dtype() == np.uint8 and np.asarray(prob.dataobj).max() > 250


def test_cli_mixes_slices_and_studies_and_overwrite_removes_volumes(tmp_path: Path) -> None:
    from conftest import save_png
    from unetpp_gui.cli import main
    from unetpp_gui.core.phantom import phantom

    _write_study(tmp_path / "in", "ras")
    save_png(tmp_path / "in" / "slice.png", phantom(64)[0])
    model = bright_model(tmp_path / "bright.h5", {})
    args = ["predict", str(tmp_path / "in"), "--model", str(model), "--out", str(tmp_path / "o"), "--quiet"]
    assert main(args) == 0
    assert len(list(csv.DictReader((tmp_path / "o" / "results.csv").open()))) == SHAPE[2] + 1
    assert (tmp_path / "o" / "ras_pred.nii.gz").is_file()
    assert main(["predict", str(tmp_path / "in" / "slice.png"), *args[2:], "--overwrite"]) == 0
    assert not (tmp_path / "o" / "ras_pred.nii.gz").exists() and not (tmp_path / "o" / "volumes.csv").exists()


# ----- errors -------------------------------------------------------------------------------------------------------
def _nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


def test_clear_errors(tmp_path: Path) -> None:
    def fails(files: list[Path], match: str, channels: int = 3) -> None:
        with pytest.raises(VolumeError, match=match):
            read_study(StudySource("s", files), channels)

    fails([_nifti(tmp_path / "two.nii.gz", np.ones((8, 8, 4, 2), np.float32))], "2 channels, but the model needs 3")
    fails([_nifti(tmp_path / "one.nii.gz", np.ones((8, 8, 4), np.float32))], "one channel, but the model needs 3")
    fails([_nifti(tmp_path / "flat.nii", np.ones((8, 8), np.float32))], "a 2-D image")
    fails([_nifti(tmp_path / "five.nii", np.ones((4, 4, 4, 3, 2), np.float32))], "a 5-D image")
    nan = np.ones((8, 8, 4, 3), np.float32)
    nan[0, 0, 0, 0] = np.nan
    fails([_nifti(tmp_path / "nan.nii.gz", nan)], "NaN")
    a = _nifti(tmp_path / "a_pre.nii.gz", np.ones((8, 8, 4), np.float32))
    b = _nifti(tmp_path / "a_flair.nii.gz", np.ones((8, 8, 4), np.float32), np.diag([2.0, 1, 1, 1]))
    c = _nifti(tmp_path / "a_post.nii.gz", np.ones((8, 8, 4), np.float32))
    fails([a, b, c], "affine\\) differs")
    fails([a, _nifti(tmp_path / "b.nii", np.ones((8, 9, 4), np.float32)), c], "differs from")
    huge = _nifti(tmp_path / "huge.nii", np.ones((2, 2, 2, 3), np.uint8))
    raw = bytearray(huge.read_bytes())
    raw[40:56] = struct.pack("<8h", 4, 2000, 2000, 100, 3, 1, 1, 1)  # the header claims 2000x2000x100
    huge.write_bytes(bytes(raw))
    fails([huge], "too large")
    full = _nifti(tmp_path / "cut.nii.gz", np.random.default_rng(0).random((32, 32, 16, 3)).astype(np.float32))
    data = full.read_bytes()
    full.write_bytes(data[: len(data) // 2])
    fails([full], "cannot be read|not a readable")
    (tmp_path / "junk.nii.gz").write_bytes(gzip.compress(b"not a nifti header at all" * 20))
    fails([tmp_path / "junk.nii.gz"], "not a readable NIfTI")


def test_missing_channel_file_is_named(tmp_path: Path) -> None:
    _nifti(tmp_path / "x_pre.nii.gz", np.ones((8, 8, 4), np.float32))
    _nifti(tmp_path / "x_flair.nii.gz", np.ones((8, 8, 4), np.float32))
    studies, problems = group_studies([tmp_path])
    assert not studies and "x_post.nii.gz" in problems[0][1]


def test_write_like_keeps_the_header_geometry(tmp_path: Path) -> None:
    affine = np.array([[-0.9, 0, 0, 90], [0, 0, 1.1, -120], [0, 1.2, 0, -60], [0, 0, 0, 1]])
    ref = nib.Nifti1Image(np.zeros((10, 12, 14), np.int16), affine)
    ref.set_qform(affine, code=1)
    ref.set_sform(affine, code=4)
    nib.save(ref, tmp_path / "ref.nii.gz")
    ref = nib.load(tmp_path / "ref.nii.gz")
    canon_shape = nib.as_closest_canonical(ref).shape
    out = write_like(ref, np.ones(canon_shape, np.uint8), tmp_path / "o.nii.gz")
    back = nib.load(out)
    assert back.shape == (10, 12, 14) and np.allclose(back.affine, affine)
    assert int(back.header["sform_code"]) == 4 and int(back.header["qform_code"]) == 1


@pytest.mark.lgg
@pytest.mark.slow
def test_lgg_patient_as_a_volume_scores_as_its_pngs(lgg: Path, tmp_path: Path) -> None:
    """One LGG patient's PNG slices stacked into a NIfTI (RAS, 1 x 1 x 3 mm) and predicted as a volume give the
    same per-patient Dice as the PNGs (within 0.01)."""
    from training.evaluate import collect, metrics_at
    from training.data import find_pairs
    from unetpp_gui.core.image_io import load_image, load_mask
    from unetpp_gui.core.model_io import load_model
    from unetpp_gui.core.volume import from_display
    from unetpp_gui.core.volume_inference import predict_study
    from unetpp_gui.resources import bundled_model_path

    case = sorted(lgg.glob("TCGA_*"))[3]
    pairs = find_pairs([case]).pairs
    model = load_model(bundled_model_path(), precision="float32")
    png = metrics_at(collect(model, pairs), model.metadata.pixel_threshold, model.metadata.decision_threshold)
    vol = np.stack([from_display(load_image(p.image)) for p in pairs], axis=2)
    truth = np.stack([from_display(load_mask(p.mask)) for p in pairs], axis=2)
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    _nifti(tmp_path / "case.nii.gz", vol, affine)
    _nifti(tmp_path / "case_mask.nii.gz", truth.astype(np.uint8), affine)
    study = read_study(group_studies([tmp_path])[0][0])
    result, _ = predict_study(model, study, model.metadata.pixel_threshold, model.metadata.decision_threshold)
    assert result.dice == pytest.approx(png["patient_dice_mean"], abs=0.01)


def test_gui_opens_a_study_pages_it_and_exports_its_mask(qtbot, tmp_path: Path) -> None:
    from PySide6.QtCore import QSettings

    from unetpp_gui.ui.main_window import MainWindow

    path, truth = _write_study(tmp_path / "in", "lps")
    model = bright_model(tmp_path / "bright.h5", {"min_fraction": 1.0})
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.model_changed, timeout=120_000):
        win.load_model(model)
    with qtbot.waitSignal(win.predictions_finished, timeout=120_000):
        win.open_paths([path])  # dropped or opened: the study becomes one patient, one row per axial slice
    assert win.slice_list.count() == SHAPE[2] and {win.store.patient(p) for p in win.store.paths} == {"lps"}
    assert win.store.paths[0].name.endswith("#z000")
    win.slice_list.setCurrentRow(5)
    assert win.results.badge.text() == "TUMOUR" and win.results.dice.text() == "1.000"  # its _mask volume
    assert win.panels.mask.shape == (SHAPE[1], SHAPE[0])
    assert [win.marker(r) for r in range(SHAPE[2])].count("tumour") == 4
    summary = [s for s in win.batch.summaries() if s.patient == "lps"][0]
    assert summary.tumour_ml == pytest.approx(truth.sum() * 2.5 / 1000)
    with qtbot.waitSignal(win.message, timeout=120_000) as said:
        win.export_study(tmp_path / "export")
    assert "lps_pred.nii.gz" in said.args[0] and "mL" in said.args[0]
    written = nib.load(tmp_path / "export" / "lps_pred.nii.gz")
    assert np.array_equal(np.asarray(written.dataobj).astype(bool), truth)
    win.close()
