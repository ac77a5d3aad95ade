"""2.5-D models: neighbouring slices as extra channels, found alike in training and inference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import phantom_patients, save_png

from unetpp_gui.core.context import SliceContext, neighbour_indices, neighbour_paths
from unetpp_gui.core.errors import ModelError


def _slice(value: int, size: int = 32) -> np.ndarray:
    """A slice whose FLAIR (middle) channel is ``value`` everywhere; the others are fixed."""
    img = np.full((size, size, 3), 60, np.uint8)
    img[..., 1] = value
    return img


def _folder(root: Path, flair: dict[str, int]) -> Path:
    for name, value in flair.items():
        save_png(root / f"{name}.png", _slice(value))
    return root


def test_neighbours_are_the_series_numeric_order_clamped_at_its_ends(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "flat", {f"P_{i}": 10 * i for i in (1, 2, 3, 9, 10)}
                     | {"Q_1": 5, "Q_2": 6, "scan": 7})
    save_png(folder / "P_2_mask.png", np.zeros((32, 32), np.uint8))  # masks are never neighbours
    p = {n: folder / f"{n}.png" for n in ("P_1", "P_2", "P_3", "P_9", "P_10", "Q_1", "Q_2", "scan")}
    assert neighbour_paths(p["P_1"], 1) == [p["P_1"], p["P_2"]]  # the first slice stands in for the one before
    assert neighbour_paths(p["P_3"], 1) == [p["P_2"], p["P_9"]]  # numeric order: 9 before 10
    assert neighbour_paths(p["P_10"], 1) == [p["P_9"], p["P_10"]]
    assert neighbour_paths(p["P_2"], 2) == [p["P_1"], p["P_1"], p["P_3"], p["P_9"]]
    assert neighbour_paths(p["Q_2"], 1) == [p["Q_1"], p["Q_2"]]  # another series in the same folder
    assert neighbour_paths(p["scan"], 1) == [p["scan"], p["scan"]]  # no number: a series of its own
    # the training arrays' neighbours, found among the slices given, are the same
    paths = list(p.values())
    idx = neighbour_indices(paths, 1)
    for i, path in enumerate(paths):
        assert [paths[j] for j in idx[i]] == neighbour_paths(path, 1)


def test_context_entry_is_checked() -> None:
    assert SliceContext.from_dict({}) is None and SliceContext.from_dict({"slices": 0}) is None
    assert SliceContext.from_dict({"slices": 2}) == SliceContext(2, 1)
    with pytest.raises(ValueError):
        SliceContext.from_dict({"slices": -1})


def _context_model(path: Path, context: dict | None, channels: int = 5) -> Path:
    """A real Keras network whose output reads only the neighbours' channels: sigmoid(8 * (before - after))."""
    import keras

    from unetpp_gui.core.metadata import ModelMetadata, write_metadata

    inputs = keras.Input((32, 32, channels))
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    out = conv(inputs)
    weights = np.zeros((1, 1, channels, 1), np.float32)
    weights[0, 0, 3, 0], weights[0, 0, 4, 0] = 8.0, -8.0
    conv.set_weights([weights, np.zeros(1, np.float32)])
    keras.Model(inputs, out).save(path)
    write_metadata(path, ModelMetadata(input_context=context or {}))
    return path


def _expected(before: int, after: int) -> int:
    return int(np.round(255 / (1 + np.exp(-8 * (before - after) / 255))))


@pytest.mark.parametrize("runtime", ["tensorflow", "openvino"])
def test_engine_feeds_each_slice_its_neighbours(tmp_path: Path, runtime: str) -> None:
    from unetpp_gui.core.inference import predict_array, predict_images, predict_paths
    from unetpp_gui.core.model_io import load_model

    if runtime == "openvino":
        pytest.importorskip("openvino")
    flair = {"P_1": 10, "P_2": 120, "P_3": 250}
    folder = _folder(tmp_path / "patient", flair)
    model = load_model(_context_model(tmp_path / "ctx.h5", {"slices": 1, "channel": 1}), runtime=runtime)
    assert model.context == SliceContext(1, 1) and model.image_channels == 3 and model.runtime == runtime
    assert runtime == "tensorflow" or "built" in model.runtime_note  # from the file, without TensorFlow
    paths = [folder / f"{n}.png" for n in flair]
    got = [int(r.prob_q[5, 5]) for r in predict_paths(model, paths, batch_size=2)]
    want = [_expected(10, 120), _expected(10, 250), _expected(120, 250)]  # ends: the slice stands in
    assert got == want and len(set(got)) == 3
    # one slice asked for alone still reads its neighbours from its folder
    assert int(next(iter(predict_paths(model, [paths[1]], batch_size=1))).prob_q[5, 5]) == want[1]
    # a volume in memory: neighbours from the volume
    assert [int(q[5, 5]) for q in predict_images(model, [_slice(v) for v in flair.values()], 2)] == want
    assert int(predict_array(model, _slice(120))[5, 5]) == _expected(0, 0)  # no neighbours: itself


def test_each_slice_is_prepared_once_though_read_as_a_neighbour(tmp_path: Path, monkeypatch) -> None:
    from unetpp_gui.core import inference
    from unetpp_gui.core.model_io import load_model

    calls: list[tuple] = []
    real = inference.prepare
    monkeypatch.setattr(inference, "prepare", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    flair = [10, 200, 40, 250, 90, 5, 160]
    folder = _folder(tmp_path / "patient", {f"P_{i + 1}": v for i, v in enumerate(flair)})
    model = load_model(_context_model(tmp_path / "ctx.h5", {"slices": 1, "channel": 1}), runtime="tensorflow")
    want = [_expected(flair[max(k - 1, 0)], flair[min(k + 1, len(flair) - 1)]) for k in range(len(flair))]
    paths = [folder / f"P_{i + 1}.png" for i in range(len(flair))]
    got = [int(r.prob_q[5, 5]) for r in inference.predict_paths(model, paths, batch_size=len(flair))]
    assert got == want and len(calls) == len(flair)  # one batch: each slice prepared once, not three times
    calls.clear()
    # a volume: prepared once each through a window that moves down the stack, every slice still right
    got = [int(q[5, 5]) for q in inference.predict_images(model, [_slice(v) for v in flair], 3)]
    assert got == want and len(calls) == len(flair)


def test_a_studys_header_is_read_once_for_its_slices_neighbours(tmp_path: Path, monkeypatch) -> None:
    import nibabel as nib

    from unetpp_gui.core import volume

    study = tmp_path / "flair.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 5), np.int16), np.eye(4)), study)
    reads: list[Path] = []
    real = volume._load
    monkeypatch.setattr(volume, "_load", lambda p: reads.append(p) or real(p))
    got = [neighbour_paths(volume.slice_ref(study, k), 1) for k in range(5)]
    assert got[4] == [volume.slice_ref(study, 3), volume.slice_ref(study, 4)] and len(reads) == 1
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 7), np.int16), np.eye(4)), study)  # the study changes: read again
    assert neighbour_paths(volume.slice_ref(study, 4), 1)[1] == volume.slice_ref(study, 5) and len(reads) == 2


def test_a_model_whose_channels_do_not_add_up_is_refused(tmp_path: Path) -> None:
    from unetpp_gui.core.model_io import load_model

    with pytest.raises(ModelError, match="need 1 or 3 channels"):
        load_model(_context_model(tmp_path / "plain5.h5", None), runtime="tensorflow")
    with pytest.raises(ModelError, match="plus 2 of neighbouring slices"):
        load_model(_context_model(tmp_path / "wrong.h5", {"slices": 1}, channels=6), runtime="tensorflow")


def test_add_context_appends_the_neighbours_channel() -> None:
    from training.data import ArraySet, add_context

    paths = [Path(f"/d/P/P_{i}.png") for i in (3, 1, 2)]  # given out of order
    images = np.stack([_slice(v, 8) for v in (30, 10, 20)])
    arrays = ArraySet(images, np.zeros((3, 8, 8, 1), np.uint8), ["P"] * 3)
    add_context(arrays, paths, 1, 1)
    assert arrays.images.shape == (3, 8, 8, 5)
    assert [tuple(arrays.images[i, 0, 0, 3:]) for i in range(3)] == [(20, 30), (10, 20), (10, 30)]


@pytest.mark.slow
def test_a_25d_run_trains_stores_its_context_and_predicts(tmp_path: Path) -> None:
    from training.cli import main as training_main
    from training.train import TrainConfig, train
    from unetpp_gui.core.metadata import read_metadata
    from unetpp_gui.core.model_io import load_model

    data = phantom_patients(tmp_path / "data", ["PA", "PB", "PC"])
    out = tmp_path / "ctx.h5"
    result = train(TrainConfig(data=[str(data)], out=str(out), architecture="unet", base_filters=2, depth=3,
                               image_size=64, epochs=1, batch_size=4, val_patients=["PC"], strategy="default",
                               context_slices=1, crop_size=32))
    assert result.status == "done"
    meta = read_metadata(out)
    assert meta.input_context == {"slices": 1, "channel": 1} and meta.architecture["input_shape"][2] == 5
    model = load_model(out)
    assert model.channels == 5 and model.context == SliceContext(1, 1)
    # resuming keeps the stored context, whatever the command line says
    again = train(TrainConfig(data=[str(data)], out=str(out), epochs=2, resume=str(result.last_path),
                              strategy="default"))
    assert again.status == "done" and read_metadata(out).input_context == {"slices": 1, "channel": 1}
    report = tmp_path / "r.json"
    assert training_main(["evaluate", "--model", str(out), "--data", str(data), "--split", "validation",
                          "--report", str(report)]) == 0
    assert next(iter(json.loads(report.read_text())["results"].values()))["patients"] == 1


def test_int8_copy_of_a_25d_model_is_calibrated_and_runs_with_neighbours(tmp_path: Path) -> None:
    pytest.importorskip("nncf")
    from training.quantize import calibration_inputs, quantize
    from unetpp_gui.core.inference import predict_paths
    from unetpp_gui.core.model_io import load_model

    flair = {"P_1": 10, "P_2": 120, "P_3": 250}
    folder = _folder(tmp_path / "patient", flair)
    paths = [folder / f"{n}.png" for n in flair]
    path = _context_model(tmp_path / "ctx.h5", {"slices": 1, "channel": 1})
    inputs = calibration_inputs(load_model(path, runtime="tensorflow"), paths)
    assert [x.shape for x in inputs] == [(1, 32, 32, 5)] * 3
    assert [tuple(np.round(x[0, 0, 0, 3:] * 255).astype(int)) for x in inputs] == [(10, 120), (10, 250), (120, 250)]
    quantize(path, [folder], n=3)
    int8 = load_model(path, precision="int8", runtime="openvino")
    assert int8.precision == "int8", int8.precision_note
    got = [int(r.prob_q[5, 5]) for r in predict_paths(int8, paths, batch_size=1)]
    # the output reads only the neighbours' channels: without them all three would be equal; a 1x1 network
    # quantized on three slices is coarse, so only the order is checked (float32: 8, 0, 4)
    assert len(set(got)) == 3 and min(got) == got[1], got


def test_viewer_predicts_a_dropped_folder_with_each_slices_neighbours(qtbot, tmp_path: Path) -> None:
    from PySide6.QtCore import QSettings

    from unetpp_gui.ui.main_window import MainWindow

    flair = {"P_1": 10, "P_2": 120, "P_3": 250}
    folder = _folder(tmp_path / "patient", flair)
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat), batch_size=2)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.model_changed, timeout=120_000):
        win.load_model(_context_model(tmp_path / "ctx.h5", {"slices": 1, "channel": 1}))
    assert "2.5-D" in win.results.model.text() and "1 slice(s) each side" in win.results.model.toolTip()
    with qtbot.waitSignal(win.predictions_finished, timeout=120_000):
        win.open_paths([folder])
    got = [int(win.store.full(folder / f"{n}.png").prob_q[5, 5]) for n in flair]
    assert got == [_expected(10, 120), _expected(10, 250), _expected(120, 250)]
    win.close()
