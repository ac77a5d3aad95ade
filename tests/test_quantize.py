"""int8 inference: `unetpp quantize` writes a quantized network beside the model; `--precision int8` runs it on
OpenVINO, and falls back to float32, saying why, wherever it cannot."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import save_png
from unetpp_gui.core import openvino_runtime, quantized
from unetpp_gui.core.metadata import read_metadata, write_metadata
from unetpp_gui.core.model_io import load_model
from unetpp_gui.core.phantom import phantom

needs_nncf = pytest.mark.skipif(openvino_runtime.version() is None or importlib.util.find_spec("nncf") is None,
                                reason="OpenVINO or NNCF not installed")


def _tiny(path: Path, seed: int = 7) -> Path:
    from conftest import _tiny_unetpp
    from training.saving import save_model
    from unetpp_gui.core.metadata import ModelMetadata

    import keras

    keras.utils.set_random_seed(seed)
    arch = {"name": "unetpp", "input_shape": [64, 64, 3], "base_filters": 4, "depth": 3, "deep_supervision": True}
    save_model(_tiny_unetpp(deep_supervision=True), path, ModelMetadata(name="tiny", architecture=arch))
    return path


def _slices(folder: Path, n: int, seed: int = 0) -> list[np.ndarray]:
    images = []
    for i in range(n):
        img, _ = phantom(64, lesion=i % 2 == 0, seed=seed + i)
        save_png(folder / f"s_{i + 1}.png", img)
        images.append(img)
    return images


@pytest.fixture(scope="module")
def quantized_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny UNet++ with its int8 network beside it, calibrated on phantom slices (one of them broken)."""
    from training.quantize import quantize

    work = tmp_path_factory.mktemp("int8")
    _slices(work / "data" / "patient_A", 6)
    (work / "data" / "patient_A" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    model = _tiny(work / "tiny.h5")
    xml = quantize(model, [work / "data"], n=8)
    assert xml == quantized.sidecar(model) == work / "tiny.int8.xml" and xml.with_suffix(".bin").exists()
    return model


def _inputs(seed: int) -> np.ndarray:
    return np.stack([phantom(64, lesion=True, seed=seed + i)[0] for i in range(3)]).astype(np.float32) / 255.0


@needs_nncf
def test_int8_runs_the_quantized_network_close_to_float32(quantized_model: Path) -> None:
    f32 = load_model(quantized_model, runtime="openvino")
    int8 = load_model(quantized_model, precision="int8", runtime="auto")
    assert int8.precision == "int8" and int8.runtime == "openvino", int8.runtime_note
    assert "int8" in int8.runtime_note and int8.keras_model is None  # TensorFlow's network never built
    assert int8.summary()["precision"] == "int8"
    x = _inputs(40)
    (p32, _), (p8, _) = f32.predict_batch_with_std(x), int8.predict_batch_with_std(x)
    assert p32.shape == p8.shape == (3, 64, 64) and p32.std() > 1e-3
    diff = np.abs(p32 - p8)
    assert 0 < diff.max() and diff.mean() < 0.03  # near, not the same
    assert np.corrcoef(p32.ravel(), p8.ravel())[0, 1] > 0.98
    tta = load_model(quantized_model, precision="int8", runtime="openvino", tta=True)
    p_tta, spread = tta.predict_batch_with_std(x)
    assert tta.precision == "int8" and spread.shape == p_tta.shape and spread.max() > 0


@needs_nncf
def test_int8_falls_back_to_float32_saying_why(quantized_model: Path, tmp_path: Path) -> None:
    for kwargs, why in (({"runtime": "tensorflow"}, "TensorFlow was asked for"),
                        ({"runtime": "openvino", "prune_level": 1}, "full network")):
        m = load_model(quantized_model, precision="int8", **kwargs)
        assert m.precision == "float32" and why in m.precision_note and m.precision_note.startswith("int8 not used")
    alone = tmp_path / "alone.h5"
    shutil.copy(quantized_model, alone)
    m = load_model(alone, precision="int8", runtime="openvino")
    assert m.precision == "float32" and m.runtime == "openvino" and "unetpp quantize" in m.precision_note

    # thresholds stored in the file later leave the network, and the int8 copy, valid
    moved = tmp_path / "moved.h5"
    shutil.copy(quantized_model, moved)
    for suffix in (".xml", ".bin", ".json"):
        shutil.copy(quantized.sidecar(quantized_model).with_suffix(suffix), quantized.sidecar(moved).with_suffix(suffix))
    meta = read_metadata(moved)
    meta.pixel_threshold = 0.3
    write_metadata(moved, meta)
    assert load_model(moved, precision="int8", runtime="openvino").precision == "int8"
    # another network under the same name: its int8 copy is refused
    _tiny(moved, seed=11)
    m = load_model(moved, precision="int8", runtime="openvino")
    assert m.precision == "float32" and "another network" in m.precision_note
    # damaged facts
    quantized.facts_file(moved).write_text("{not json")
    m = load_model(moved, precision="int8", runtime="openvino")
    assert m.precision == "float32" and "damaged" in m.precision_note


def test_calibration_uses_only_the_models_training_patients(tmp_path: Path) -> None:
    from training.quantize import calibration_slices

    model = _tiny(tmp_path / "split.h5")
    for patient in ("TCGA_AA_0001_20000101", "TCGA_AA_0002_20000101", "TCGA_AA_0003_20000101"):
        _slices(tmp_path / "data" / patient, 3)
    meta = read_metadata(model)
    meta.training = {"split": {"train": ["TCGA_AA_0001_20000101"], "validation": ["TCGA_AA_0002_20000101"],
                               "test": ["TCGA_AA_0003_20000101"]}}
    write_metadata(model, meta)
    chosen, source = calibration_slices(model, [tmp_path / "data"], 10, seed=0)
    assert len(chosen) == 3 and {p.parent.name for p in chosen} == {"TCGA_AA_0001_20000101"}
    assert "training patients" in source
    meta.training = {"split": {"validation": ["TCGA_AA_0002_20000101"], "test": ["TCGA_AA_0003_20000101"]}}
    write_metadata(model, meta)
    chosen, _ = calibration_slices(model, [tmp_path / "data"], 2, seed=0)
    assert len(chosen) == 2 and {p.parent.name for p in chosen} == {"TCGA_AA_0001_20000101"}


@needs_nncf
def test_cli_quantizes_then_predicts_in_int8(tmp_path: Path, phantom_folder: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "unetpp_gui.cli", *args], capture_output=True, text=True,
                              timeout=300)

    model = _tiny(tmp_path / "cli.h5")
    res = run("predict", str(phantom_folder), "--model", str(model), "--out", str(tmp_path / "none"),
              "--precision", "int8", "--batch-size", "2", "--runtime", "auto")
    assert res.returncode == 0 and "int8 not used" in res.stderr, res.stderr[-2000:]
    assert "int8: none (no int8 network beside the model" in run("info", "--model", str(model)).stdout
    res = run("quantize", "--model", str(model), "--data", str(phantom_folder), "--slices", "4")
    assert res.returncode == 0 and "cli.int8.xml" in res.stdout, res.stderr[-2000:]
    facts = json.loads(quantized.facts_file(model).read_text())
    drawn = facts["calibration"]["slices"] + facts["calibration"]["unreadable"]
    assert drawn == 4 and facts["network"]["n_outputs"] == 2  # depth 3: heads on X_0_1 and X_0_2
    assert "overflow fix on every layer" in facts["calibration"]["method"]  # int8 exact without VNNI too
    res = run("predict", str(phantom_folder), "--model", str(model), "--out", str(tmp_path / "int8"),
              "--precision", "int8", "--batch-size", "2", "--runtime", "auto")
    assert res.returncode == 0 and "OpenVINO" in res.stderr and "int8" in res.stderr, res.stderr[-2000:]
    assert "int8 not used" not in res.stderr
    assert "int8: cli.int8.xml (" in run("info", "--model", str(model)).stdout
    rows = list(csv.DictReader((tmp_path / "int8" / "results.csv").open()))
    assert len(rows) == 5 and sum(r["error"] != "" for r in rows) == 1  # the broken PNG only
    res = run("quantize", "--model", str(model), "--data", str(tmp_path / "nothing-here"))
    assert res.returncode == 2 and "unetpp quantize: error" in res.stderr


@needs_nncf
def test_model_menu_switches_to_int8_and_back(qtbot, tmp_path: Path, quantized_model: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtCore import QSettings

    from unetpp_gui.ui.main_window import MainWindow

    monkeypatch.setenv("UNETPP_RUNTIME", "auto")  # what a user gets
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    alone = tmp_path / "alone.h5"
    shutil.copy(quantized_model, alone)
    with qtbot.waitSignal(win.model_changed, timeout=180_000):
        win.load_model(alone)
    assert not win.int8_action.isEnabled()  # no int8 network beside this file
    with qtbot.waitSignal(win.model_changed, timeout=180_000):
        win.load_model(quantized_model)
    assert win.int8_action.isEnabled() and not win.int8_action.isChecked()
    for now in ("int8", "float32"):
        with qtbot.waitSignal(win.model_changed, timeout=180_000):
            win.int8_action.trigger()
        assert win.model.precision == now and win.settings.value("inference/precision") == now
        assert win.int8_action.isChecked() == (now == "int8")
        assert ("int8" in win.results.model.text()) == (now == "int8")
    with qtbot.waitSignal(win.model_changed, timeout=180_000):
        win.int8_action.trigger()
    said: list[str] = []
    win.message.connect(said.append)
    with qtbot.waitSignal(win.model_changed, timeout=180_000):
        win.load_model(alone)  # int8 stays asked for; this file has no int8 copy
    assert win.model.precision == "float32" and "int8" not in win.results.model.text()
    assert any("int8 not used" in text and "float32 instead" in text for text in said), said
    win.close()
