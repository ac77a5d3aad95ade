"""OpenVINO as the optional CPU runtime: same probabilities as TensorFlow, converted once, falls back."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import save_png
from unetpp_gui.core import openvino_runtime
from unetpp_gui.core.model_io import load_model
from unetpp_gui.core.phantom import phantom

needs_openvino = pytest.mark.skipif(openvino_runtime.version() is None, reason="OpenVINO not installed")


@pytest.fixture(scope="module")
def ds_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny deep-supervision UNet++ with random weights (its outputs vary over the image)."""
    from conftest import _tiny_unetpp
    from training.saving import save_model
    from unetpp_gui.core.metadata import ModelMetadata

    import keras

    keras.utils.set_random_seed(7)  # fixed weights: every head's output varies over the test batch
    path = tmp_path_factory.mktemp("ov") / "ds.h5"
    arch = {"name": "unetpp", "input_shape": [64, 64, 3], "base_filters": 2, "depth": 3, "deep_supervision": True}
    save_model(_tiny_unetpp(deep_supervision=True), path, ModelMetadata(name="ds", architecture=arch))
    return path


@pytest.fixture(scope="module")
def archive_model(ds_model: Path) -> Path:
    """The same network as a .keras archive: no direct build, so OpenVINO gets it through Keras' conversion
    (TensorFlow loaded), as any network the direct build does not cover (tests/test_openvino_graph.py)."""
    path = ds_model.with_name("ds.keras")
    if not path.exists():
        load_model(ds_model).keras_model.save(path)
    return path


def _batch() -> np.ndarray:
    rng = np.random.default_rng(3)
    x = rng.random((3, 64, 64, 3), np.float32)
    x[:, 20:40, 10:30] = 0.9  # some structure, so the probabilities spread
    return x


@needs_openvino
@pytest.mark.parametrize("variant", [{}, {"tta": True}, {"prune_level": 1}])
def test_openvino_gives_tensorflows_probabilities(ds_model: Path, variant: dict, tmp_path: Path) -> None:
    tf_model = load_model(ds_model, **variant)
    ov_model = load_model(ds_model, runtime="openvino", **variant)
    assert tf_model.runtime == "tensorflow" and ov_model.runtime == "openvino", ov_model.runtime_note
    x = _batch()
    (p_tf, s_tf), (p_ov, s_ov) = tf_model.predict_batch_with_std(x), ov_model.predict_batch_with_std(x)
    assert p_tf.shape == p_ov.shape == (3, 64, 64) and p_tf.std() > 1e-3
    assert np.abs(p_tf - p_ov).max() < 1e-4
    for t in (0.3, 0.5, 0.7):
        differ = (p_tf > t) != (p_ov > t)
        assert not differ.any() or np.abs(p_tf[differ] - t).max() < 1e-4  # masks identical off the knife edge
    if variant.get("tta"):
        assert s_ov is not None and np.abs(s_tf - s_ov).max() < 1e-4


@needs_openvino
def test_openvino_model_is_safe_to_call_from_several_threads(ds_model: Path, tmp_path: Path) -> None:
    """The GUI can predict on two threads at once (a batch and a slice shown again); one shared OpenVINO
    infer request aborted the whole process with 'Infer Request is busy'."""
    from concurrent.futures import ThreadPoolExecutor

    model = load_model(ds_model, runtime="openvino")
    assert model.runtime == "openvino", model.runtime_note
    x = np.repeat(_batch(), 4, axis=0)
    expected = model.predict_batch(x)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _k: model.predict_batch(x), range(32)))
    assert all(np.array_equal(r, expected) for r in results)


@needs_openvino
def test_openvino_compiles_each_input_shape_for_that_shape(ds_model: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed-shape compilation ran 10-12 % faster than the free-shape one: each batch shape gets its own (the
    last few kept), with the same probabilities; a shape whose compilation fails runs on the free-shape one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = load_model(ds_model, runtime="openvino")
    runner = model.runtime_runner
    x = _batch()
    free = np.asarray(runner.compiled.create_infer_request().infer(x)[model.output_index])[..., 0]
    if model.apply_activation == "sigmoid":
        free = 1 / (1 + np.exp(-free))
    p3 = model.predict_batch(x)
    assert np.abs(p3 - free).max() < 1e-5
    compiled3 = runner.compiled_for((3, 64, 64, 3))
    assert compiled3 is not runner.compiled and list(compiled3.inputs[0].shape) == [3, 64, 64, 3]
    assert np.abs(model.predict_batch(x[:1]) - p3[:1]).max() < 1e-5  # batch 1: another compilation, same answer
    for n in (2, 4, 5):
        model.predict_batch(np.repeat(x, 2, axis=0)[:n])
    kept = list(runner._static)
    assert len(kept) == openvino_runtime.STATIC_SHAPES and (3, 64, 64, 3) not in kept  # the oldest dropped
    assert kept[-1] == (5, 64, 64, 3)
    assert set(runner._local.requests) == set(kept)  # this thread holds no request of a dropped compilation

    def fails(shape):
        raise RuntimeError("no such shape")
    monkeypatch.setattr(runner.compiler, "compile", fails)
    assert np.abs(model.predict_batch(x) - p3).max() < 1e-5  # (3, ...) again: the free-shape compilation runs it
    assert runner.compiled_for((3, 64, 64, 3)) is runner.compiled


@needs_openvino
def test_openvino_converts_once_and_falls_back_on_a_broken_cache(ds_model: Path, archive_model: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = load_model(ds_model, runtime="openvino")
    assert "built" in first.runtime_note  # from the file, without TensorFlow
    cached = list((tmp_path / "cache" / "unetpp-viewer" / "openvino").glob("*.xml"))
    assert len(cached) == 1 and cached[0].with_suffix(".bin").is_file()
    assert not [p for p in cached[0].parent.iterdir() if p.name.startswith(".convert-")]  # no work folder left
    again = load_model(ds_model, runtime="openvino")
    assert again.runtime == "openvino" and "cached" in again.runtime_note

    cached[0].write_text("<not a model>")  # a damaged cache: built again from the file
    rebuilt = load_model(ds_model, runtime="auto")
    assert rebuilt.runtime == "openvino" and "built" in rebuilt.runtime_note
    assert rebuilt.predict_batch(_batch()).shape == (3, 64, 64)
    archive = load_model(archive_model, runtime="openvino")  # converted through Keras, once
    assert "converted" in archive.runtime_note
    (copy,) = [p for p in cached[0].parent.glob("ds-*.xml") if p != cached[0]]
    copy.write_text("<not a model>")  # damaged, and nothing builds it directly: TensorFlow runs it, and says why
    broken = load_model(archive_model, runtime="auto")  # (no measurement: OpenVINO never ran)
    assert broken.runtime == "tensorflow" and broken.runtime_note.startswith("TensorFlow: OpenVINO could not run")
    assert broken.predict_batch(_batch()).shape == (3, 64, 64)


def test_models_with_stored_code_stay_on_tensorflow(tmp_path: Path) -> None:
    code = ("import keras\nfrom keras import layers\n"
            "x = keras.Input((16, 16, 3)); y = layers.Lambda(lambda t: t * 0.5)(x)\n"
            "keras.Model(x, layers.Conv2D(1, 1, activation='sigmoid')(y)).save(r'%s')\n"
            "from unetpp_gui.core.model_io import load_model\n"
            "m = load_model(r'%s', trust=True, runtime='openvino'); print(m.runtime, '|', m.runtime_note)"
            % (tmp_path / "l.h5", tmp_path / "l.h5"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "tensorflow | TensorFlow: OpenVINO does not run models with stored code"


@needs_openvino
def test_cli_names_the_runtime_and_predicts_the_same(ds_model: Path, phantom_folder: Path, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        res = subprocess.run([sys.executable, "-m", "unetpp_gui.cli", *args], capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        return res

    info = run("info", "--model", str(ds_model), "--runtime", "openvino").stdout
    assert "runtime: openvino" in info and "OpenVINO " in info
    rows = {}
    for runtime in ("tensorflow", "openvino"):
        res = run("predict", str(phantom_folder), "--model", str(ds_model), "--out", str(tmp_path / runtime),
                  "--runtime", runtime, "--batch-size", "2", "--precision", "float32")
        assert f"inference runs on {'OpenVINO' if runtime == 'openvino' else 'TensorFlow'}" in res.stderr
        rows[runtime] = [(r["path"], r["mask_pixels"], r["decision"]) for r in
                         csv.DictReader((tmp_path / runtime / "results.csv").open())]
    assert rows["tensorflow"] == rows["openvino"] and len(rows["openvino"]) == 5


@needs_openvino
def test_viewers_first_start_runs_openvino_built_from_the_file(qtbot, tmp_path: Path, ds_model: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """"auto" on an empty cache: OpenVINO from the first slice, no Keras network made, nothing left to prepare."""
    from PySide6.QtCore import QSettings

    monkeypatch.setenv("UNETPP_RUNTIME", "auto")
    from unetpp_gui.ui.main_window import MainWindow

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.model_changed, timeout=180_000):
        win.load_model(ds_model)
    assert win.model.runtime == "openvino" and not win.model.openvino_pending and win.model.keras_model is None
    assert "TensorFlow not timed" in win.model.runtime_note and win.openvino_action.isChecked()
    assert win.results.model.text().endswith(", OpenVINO") and "prepared in the background" not in win.status.text()
    assert win.model.batch_size_choice is None  # not timed on blank batches before the first slice: by a batch
    folder = tmp_path / "slices"
    for i in range(16):
        save_png(folder / f"s_{i:02d}.png", phantom(64, lesion=i % 2 == 0, seed=i)[0])
    said: list[str] = []
    win.message.connect(said.append)
    with qtbot.waitSignal(win.predictions_finished, timeout=180_000):
        win.open_paths([str(folder)])
    assert win.model.batch_size_choice in (1, 2, 4)
    assert [m for m in said if "16 slice(s) predicted" in m and "fastest per slice on this machine" in m]
    assert all(win.store.compact[p].ok for p in win.store.paths)  # every slice predicted, the timed ones too
    from unetpp_gui.core.batching import cached_batch_size

    assert cached_batch_size(win.model)[0] == win.model.batch_size_choice  # the next start finds it
    win.close()


@needs_openvino
def test_model_menu_shows_and_switches_the_runtime(qtbot, tmp_path: Path, archive_model: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A network only Keras converts: TensorFlow at once, OpenVINO converted and both measured in the background."""
    from PySide6.QtCore import QSettings

    monkeypatch.setenv("UNETPP_RUNTIME", "auto")  # what a user gets
    from unetpp_gui.ui.main_window import MainWindow

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.model_changed, timeout=180_000):
        win.load_model(archive_model)
    assert win.model.runtime == "tensorflow" and win.model.openvino_pending  # never measured here: deferred
    assert win.results.model.text().endswith("preparing OpenVINO…")
    assert win.model.batch_size_choice is None  # measured once, with both runtimes, by the preparation
    with qtbot.waitSignal(win.runtime_changed, timeout=180_000):
        pass  # converted by a child process, then measured
    assert "measured" in win.model.runtime_note  # auto: whichever ran this model faster here
    assert "preparing" not in win.results.model.text() and "measured here" in win.status.text()
    assert ("runs on OpenVINO" if win.model.runtime == "openvino" else "stays on TensorFlow") in win.status.text()
    assert win.model.batch_size_choice in (1, 2, 4, 8)
    assert win.openvino_action.isEnabled()
    for _ in range(2):  # switch, and switch back; the choice is remembered
        was = win.model.runtime
        assert win.openvino_action.isChecked() == (was == "openvino")
        assert ("OpenVINO" in win.results.model.text()) == (was == "openvino")
        with qtbot.waitSignal(win.model_changed, timeout=180_000):
            win.openvino_action.trigger()
        now = "tensorflow" if was == "openvino" else "openvino"
        assert win.model.runtime == now and win.settings.value("inference/runtime") == now
    win.close()


@needs_openvino
def test_auto_keeps_the_runtime_that_measured_faster(ds_model: Path, archive_model: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from unetpp_gui.core.batching import _choice_key, cache_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = load_model(ds_model, runtime="auto")  # built from the file: TensorFlow not loaded, so not timed
    assert first.runtime == "openvino" and "TensorFlow not timed" in first.runtime_note
    assert not cache_path().exists()
    archive = load_model(archive_model, runtime="auto")  # TensorFlow loaded for Keras' conversion: both timed
    assert "measured" in archive.runtime_note and "cached" not in archive.runtime_note
    from unetpp_gui.core.batching import best_batch_size

    assert best_batch_size(archive)[2]  # the runtime choice's timings served as the batch-size measurement
    assert set(json.loads(cache_path().read_text())[_choice_key(archive)]) == {"tensorflow", "openvino"}
    known, key = {}, _choice_key(first)  # the same choice, read where an earlier start on this machine left it
    for fast, slow, expect, times in (("openvino", "tensorflow", "openvino", (0.01, 0.02)),
                                      ("tensorflow", "openvino", "tensorflow", (0.01, 0.02)),
                                      ("tensorflow", "openvino", "tensorflow", (0.010, 0.011)),  # 10 % slower
                                      ("tensorflow", "openvino", "openvino", (0.0100, 0.0104))):  # a tie: no import
        known[key] = {fast: times[0], slow: times[1]}  # what an earlier start on this machine measured
        cache_path().write_text(json.dumps(known))
        model = load_model(ds_model, runtime="auto")
        assert model.runtime == expect and "cached" in model.runtime_note
        assert model.predict_batch(_batch()).shape == (3, 64, 64)
    explicit = load_model(ds_model, runtime="openvino")  # asked for by name: no measurement overrides it
    assert explicit.runtime == "openvino"


def test_auto_does_not_load_openvino_where_tensorflow_won_before(ds_model: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A start whose cached measurement says TensorFlow is faster never converts or compiles for OpenVINO
    (it cost every such start 0.1-0.2 s and the converted copy's memory); where OpenVINO won, it is loaded."""
    import json
    import shutil

    from unetpp_gui.core.batching import _choice_key, cache_path
    from unetpp_gui.core.openvino_runtime import cache_folder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    key = _choice_key(load_model(ds_model, runtime="auto"))  # built from the file
    known = {key: {"tensorflow": 0.01, "openvino": 0.02}}  # as an earlier start measured it
    cache_path().write_text(json.dumps(known))
    shutil.rmtree(cache_folder())
    model = load_model(ds_model, runtime="auto")
    assert model.runtime == "tensorflow" and "cached" in model.runtime_note
    assert not cache_folder().exists() or not list(cache_folder().glob("*.xml"))  # nothing converted
    assert model.predict_batch(_batch()).shape == (3, 64, 64)
    known[key] = {"tensorflow": 0.02, "openvino": 0.01}
    cache_path().write_text(json.dumps(known))
    assert load_model(ds_model, runtime="auto").runtime == "openvino"
    assert list(cache_folder().glob("*.xml"))


@needs_openvino
def test_openvino_converts_from_float32_when_the_engine_runs_bfloat16(ds_model: Path, archive_model: Path,
                                                                      tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A bfloat16 load builds no float32 network unless OpenVINO must convert: then it converts the float32
    function (its bfloat16 hint applies at compile time), and a later start reuses the conversion."""
    from unetpp_gui.core.openvino_runtime import cache_folder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fp32 = load_model(ds_model)
    for model, notes in ((archive_model, ("converted", "cached")), (ds_model, ("built", "cached"))):
        for note in notes:
            ov = load_model(model, runtime="openvino", precision="bfloat16")
            assert ov.runtime == "openvino" and ov.precision == "bfloat16" and note in ov.runtime_note
            assert np.abs(ov.predict_batch(_batch()) - fp32.predict_batch(_batch())).max() < 0.02
    assert len(list(cache_folder().glob("*.xml"))) == 2


_FAST_START = """
import json, sys
import numpy as np
from unetpp_gui.core.model_io import load_model
m = load_model(sys.argv[1], **json.loads(sys.argv[2]))
x = np.load(sys.argv[3])
np.save(sys.argv[4], m.predict_batch(x))
print(json.dumps({"tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules,
                  "summary": m.summary(), "keras_model": m.keras_model is not None}))
if len(sys.argv) > 5:
    print(json.dumps({"params": int(m.network().count_params()), "layers": len(m.network().layers)}))
"""


def _fresh_start(ds_model: Path, tmp_path: Path, cache: Path, **kwargs: object) -> tuple[dict, np.ndarray, list[str]]:
    """Load and predict in a new process (as a user's start): what it imported, its summary, its probabilities."""
    import json
    import os

    np.save(tmp_path / "x.npy", _batch())
    out = tmp_path / "p.npy"
    extra = ["network"] if kwargs.pop("network", False) else []
    res = subprocess.run([sys.executable, "-c", _FAST_START, str(ds_model), json.dumps(kwargs), str(tmp_path / "x.npy"),
                          str(out), *extra], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "XDG_CACHE_HOME": str(cache)})
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    return json.loads(lines[-1 - len(extra)]), np.load(out), [json.loads(line) for line in lines[len(lines) - len(extra):]]


@needs_openvino
@pytest.mark.parametrize("variant", [{}, {"tta": True}, {"prune_level": 2}])
def test_a_start_that_runs_openvino_does_not_import_tensorflow(ds_model: Path, variant: dict, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a model was converted, a start that runs OpenVINO reads the conversion and the network facts kept
    beside it: TensorFlow and Keras are never imported (seconds of every start and most of its memory), and the
    model describes itself and predicts as a TensorFlow load does."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    tf_model = load_model(ds_model, **variant)
    load_model(ds_model, runtime="openvino", **variant)  # the first start builds it (tests/test_openvino_graph.py)
    facts = list((cache / "unetpp-viewer" / "openvino").glob("*.json"))
    assert len(facts) == 1
    imported, probs, (network,) = _fresh_start(ds_model, tmp_path, cache, runtime="openvino", network=True,
                                               **variant)
    assert imported["tensorflow"] is False and imported["keras"] is False and imported["keras_model"] is False
    summary = imported["summary"]
    assert summary["runtime"] == "openvino" and "TensorFlow not loaded" in summary["runtime_note"]
    expected = {k: v for k, v in tf_model.summary().items() if k not in ("runtime", "runtime_note")}
    assert {k: summary[k] for k in expected} == json_round_trip(expected)
    assert np.abs(probs - tf_model.predict_batch(_batch())).max() < 1e-4
    # the Keras network is still there for whoever asks (the architecture view, --diagram): loaded on demand
    assert network == {"params": tf_model.n_params, "layers": len(tf_model.keras_model.layers)}


def json_round_trip(value: object) -> object:
    import json

    return json.loads(json.dumps(value))


@needs_openvino
def test_fast_start_follows_auto_and_falls_back_on_damaged_facts(ds_model: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """"auto" skips TensorFlow unless an earlier start measured TensorFlow faster; damaged or missing facts (a
    cache from an older version) mean the network is built again from the file, which writes them again."""
    import json

    from unetpp_gui.core.batching import _choice_key, cache_path

    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    key = _choice_key(load_model(ds_model, runtime="auto"))  # built from the file
    for times, runtime, tensorflow in (({"tensorflow": 0.01, "openvino": 0.03}, "tensorflow", True),
                                       ({"tensorflow": 0.03, "openvino": 0.01}, "openvino", False)):
        cache_path().write_text(json.dumps({key: times}))  # as an earlier start measured it
        imported, _, _ = _fresh_start(ds_model, tmp_path, cache, runtime="auto")
        assert imported["summary"]["runtime"] == runtime and imported["tensorflow"] is tensorflow
    (facts,) = (cache / "unetpp-viewer" / "openvino").glob("*.json")
    sound = json.loads(facts.read_text())
    for damage in ("{not json", json.dumps({"n_outputs": sound["n_outputs"]}), None):
        if damage is None:
            facts.unlink()
        else:
            facts.write_text(damage)
        imported, probs, _ = _fresh_start(ds_model, tmp_path, cache, runtime="openvino")
        assert imported["summary"]["runtime"] == "openvino" and imported["tensorflow"] is False
        assert "built" in imported["summary"]["runtime_note"] and probs.shape == (3, 64, 64)
        assert json.loads(facts.read_text()) == sound  # written again


@needs_openvino
def test_architecture_view_of_a_model_started_without_tensorflow(qtbot, tmp_path: Path, ds_model: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The viewer's fast start has no Keras network: the architecture view loads it on a worker, then opens."""
    from PySide6.QtCore import QSettings

    from unetpp_gui.ui.main_window import MainWindow

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    load_model(ds_model, runtime="openvino")  # converted once
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.model_changed, timeout=180_000):
        win.load_model(ds_model, runtime="openvino")
    assert win.model.keras_model is None and "TensorFlow not loaded" in win.model.runtime_note
    with qtbot.waitSignal(win.architecture_shown, timeout=120_000) as shown:
        assert win.show_architecture() is None  # not yet: the layers load off the GUI thread
    dialog = shown.args[0]
    assert dialog is win._arch_dialog and dialog.isVisible()
    assert dialog.grid.is_grid and dialog.grid.total_params == win.model.n_params
    dialog.close()
    win.close()


@needs_openvino
def test_deferred_auto_converts_in_a_child_process_then_measures(archive_model: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The viewer's first start with "auto" on a network only Keras converts: TensorFlow at once, nothing converted
    in its own process; a child process converts, then both runtimes are measured on a copy, which the model
    adopts."""
    ds_model = archive_model
    from unetpp_gui.core.batching import cached_runtime_choice
    from unetpp_gui.core.model_io import DEFERRED_NOTE, finish_openvino
    from unetpp_gui.core.openvino_child import convert
    from unetpp_gui.core.openvino_runtime import cache_folder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = load_model(ds_model, runtime="auto", defer_openvino=True)
    assert model.runtime == "tensorflow" and model.openvino_pending and DEFERRED_NOTE in model.runtime_note
    assert not cache_folder().exists()  # not converted, not measured
    expected = model.predict_batch(_batch())
    import threading
    import time

    from unetpp_gui.core.priority import BACKGROUND_NICE as NICENESS

    seen: set = set()  # the child's niceness while it converts: it lowers its own priority, whoever started it
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(n for pid, c in _conversion_children(with_pid=True) if str(ds_model) in c
                        for n in [_niceness(pid)] if n is not None)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert convert(ds_model, None) is None  # a real child process, started by this (normal-priority) thread
    finally:
        done.set()
        watcher.join()
    if Path("/proc/self/stat").exists() and os.getpriority(os.PRIO_PROCESS, 0) < NICENESS:
        assert NICENESS in seen and max(seen) == NICENESS, seen
    assert len(list(cache_folder().glob("*.xml"))) == 1 and cached_runtime_choice(model) is None
    prepared = finish_openvino(model)
    keep, times = cached_runtime_choice(model)  # measured now, and cached for later starts
    assert prepared.runtime == ("openvino" if keep else "tensorflow") and "measured here" in prepared.runtime_note
    assert not prepared.openvino_pending and prepared.batch_size_choice in (1, 2, 4, 8)
    assert model.runtime == "tensorflow" and model.openvino_pending  # the original is untouched until adopted
    model.take_runtime(prepared)
    assert model.runtime == prepared.runtime and model.runtime_runner is prepared.runtime_runner
    assert not model.openvino_pending and model.batch_size_choice == prepared.batch_size_choice
    assert np.abs(model.predict_batch(_batch()) - expected).max() < 1e-4
    again = load_model(ds_model, runtime="auto", defer_openvino=True)  # measured before: nothing deferred
    assert not again.openvino_pending and "cached" in again.runtime_note


@needs_openvino
def test_deferred_conversion_failing_or_stopped_keeps_tensorflow(archive_model: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ds_model = archive_model
    import threading
    import time

    from unetpp_gui.core.model_io import finish_openvino
    from unetpp_gui.core.openvino_child import convert

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"not a model")
    why = convert(broken, None)
    assert why is not None and "broken.h5" in why, why  # the child's last line names what went wrong
    stop = threading.Event()
    stop.set()
    start = time.monotonic()
    assert "stopped" in convert(ds_model, None, stop)  # a closing window does not wait for the conversion
    assert time.monotonic() - start < 5
    model = load_model(ds_model, runtime="auto", defer_openvino=True)
    kept = finish_openvino(model, why)
    assert kept.runtime == "tensorflow" and kept.runtime_note == f"TensorFlow: {why}" and not kept.openvino_pending
    assert kept.batch_size_choice in (1, 2, 4, 8)  # measured on TensorFlow, as a load without OpenVINO does
    missing = finish_openvino(model)  # the child said yes but the cache holds nothing: no conversion in-process
    assert missing.runtime == "tensorflow" and "not in the cache" in missing.runtime_note


@needs_openvino
def test_short_cli_run_leaves_openvino_for_later(ds_model: Path, archive_model: Path, phantom_folder: Path,
                                                 tmp_path: Path) -> None:
    """A run of a few slices would spend longer converting through Keras and measuring than predicting; a network
    built directly from its file costs well under a second and runs on OpenVINO at once."""
    import os

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "UNETPP_RUNTIME": "auto"}
    for model, runtime in ((archive_model, "TensorFlow"), (ds_model, "OpenVINO")):
        res = subprocess.run([sys.executable, "-m", "unetpp_gui.cli", "predict", str(phantom_folder), "--model",
                              str(model), "--out", str(tmp_path / model.suffix)], capture_output=True, text=True,
                             timeout=300, env=env)
        assert res.returncode == 0, res.stderr[-2000:]
        assert f"inference runs on {runtime}" in res.stderr
        converted = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").rglob("*.xml"))
        if runtime == "TensorFlow":
            assert "not yet converted" in res.stderr and converted == []
        else:
            assert "TensorFlow not timed" in res.stderr and converted == ["ds"]


def _conversion_children(with_pid: bool = False) -> list:
    """Command lines (``with_pid``: (pid, command line)) of running openvino_child processes (Linux: /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "unetpp_gui.core.openvino_child" in text:
            found.append((int(cmdline.parent.name), text) if with_pid else text)
    return found


def _niceness(pid: int) -> int | None:
    """A process's nice value (field 19 of /proc/PID/stat), None once it is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    except (OSError, IndexError, ValueError):
        return None


@needs_openvino
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_another_model_stops_the_background_conversion(qtbot, tmp_path: Path, archive_model: Path,
                                                       tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtCore import QSettings

    ds_model = archive_model
    from unetpp_gui.ui.main_window import MainWindow

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.model_changed, timeout=180_000):
        win.load_model(ds_model, runtime="auto")
    assert win.model.openvino_pending
    qtbot.waitUntil(lambda: any(str(ds_model) in c for c in _conversion_children()), timeout=30_000)
    # the conversion runs at the background priority of the viewer's workers (inherited, and kept: not lowered twice)
    from unetpp_gui.core.priority import BACKGROUND_NICE as NICENESS

    child = next(pid for pid, c in _conversion_children(with_pid=True) if str(ds_model) in c)
    qtbot.wait(1500)
    assert _niceness(child) in (NICENESS, None)  # None: the conversion already ended
    with qtbot.waitSignal(win.model_changed, timeout=180_000):
        win.load_model(tiny_model_path, runtime="tensorflow")
    qtbot.waitUntil(lambda: not any(str(ds_model) in c for c in _conversion_children()), timeout=5_000)
    assert win.model.runtime == "tensorflow" and not win.model.openvino_pending
    win.close()
