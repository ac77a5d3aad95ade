"""A first run measures batch sizes (and, with "auto", both runtimes) on the slices it predicts: no result is
thrown away, the measurement is remembered, and the masks are those a fixed batch size gives."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import save_png
from unetpp_gui.core import openvino_runtime
from unetpp_gui.core.batching import CANDIDATES, Trial, cache_key, cached_batch_size, runtimes_of
from unetpp_gui.core.inference import predict_paths
from unetpp_gui.core.model_io import load_model
from unetpp_gui.core.phantom import phantom

needs_openvino = pytest.mark.skipif(openvino_runtime.version() is None, reason="OpenVINO not installed")


def _slices(folder: Path, n: int) -> list[Path]:
    return [save_png(folder / f"s_{i:03d}.png", phantom(64, lesion=i % 3 == 0, seed=i)[0]) for i in range(n)]


def _same_maps(results, reference) -> bool:
    """Same slices, same outcome, probability levels equal but for rounding (within one level of 255)."""
    results, reference = list(results), list(reference)
    if [(r.path, r.ok) for r in results] != [(r.path, r.ok) for r in reference]:
        return False
    pairs = [(a.prob_q.astype(int), b.prob_q.astype(int)) for a, b in zip(results, reference) if a.ok]
    return all(np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-3 for a, b in pairs)


def test_a_trial_follows_its_plan_and_keeps_every_result(tiny_model_path: Path, tmp_path: Path) -> None:
    paths = _slices(tmp_path / "in", 20)
    paths[1].write_bytes(b"\x89PNG\r\n\x1a\n broken")  # the plan's second batch (one slice, timed) fails to decode
    model = load_model(tiny_model_path)
    trial = Trial(model, {"tensorflow": None}, tmp_path / "sizes.json")
    assert trial.plan == [("tensorflow", n, timed) for n in CANDIDATES for timed in (False, True)]
    assert trial.slices == 14
    results = list(predict_paths(model, paths, trial))
    assert [r.path for r in results] == paths  # every slice, in order, the broken one as an error
    assert [r.ok for r in results] == [i != 1 for i in range(20)]
    assert trial.done and set(trial.times["tensorflow"]) == set(CANDIDATES) - {1}  # its timed batch failed
    assert trial.size == min(trial.times["tensorflow"], key=trial.times["tensorflow"].get)
    assert cached_batch_size(model, tmp_path / "sizes.json")[0] == trial.size  # a later run finds it
    assert _same_maps(results, predict_paths(load_model(tiny_model_path), paths, 4))


def test_a_run_shorter_than_the_plan_remembers_nothing(tiny_model_path: Path, tmp_path: Path) -> None:
    paths = _slices(tmp_path / "in", 5)
    model = load_model(tiny_model_path)
    trial = Trial(model, {"tensorflow": None}, tmp_path / "sizes.json")
    assert len(list(predict_paths(model, paths, trial))) == 5
    assert not trial.done and trial.size is None and not (tmp_path / "sizes.json").exists()


@pytest.fixture(scope="module")
def tiny_archive(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny network as a .keras archive: OpenVINO gets it only through Keras' conversion (TensorFlow loaded)."""
    path = tmp_path_factory.mktemp("archive") / "tiny.keras"
    load_model(tiny_model_path).keras_model.save(path)
    return path


@needs_openvino
def test_auto_times_both_runtimes_on_the_run_and_keeps_the_faster(tiny_archive: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Where TensorFlow is loaded anyway (the network is converted through Keras), both runtimes are timed."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    paths = _slices(tmp_path / "in", 48)
    model = load_model(tiny_archive, runtime="auto", measure_on_run=True)
    assert model.runtimes_unmeasured and model.runtime == "openvino"  # converted, not measured yet
    trial = Trial(model, runtimes_of(model))
    assert trial.slices == 42
    results = list(predict_paths(model, paths, trial))
    assert trial.done and trial.decision is not None
    keep, best = trial.decision
    assert model.runtime == ("openvino" if keep else "tensorflow")
    assert set(best) == {"tensorflow", "openvino"} and all(set(t) == set(CANDIDATES) for t in trial.times.values())
    known = json.loads((tmp_path / "cache" / "unetpp-viewer" / "batch_sizes.json").read_text())
    assert cache_key(model, "tensorflow") in known and cache_key(model, "openvino") in known
    assert any(k.startswith("runtime-choice:") for k in known)
    # slices run by either runtime: the same masks as TensorFlow alone at a fixed batch size
    assert _same_maps(results, predict_paths(load_model(tiny_archive), paths, 4))
    again = load_model(tiny_archive, runtime="auto", measure_on_run=True)  # a later start: nothing to measure
    assert not again.runtimes_unmeasured and again.runtime == model.runtime and "cached" in again.runtime_note


@needs_openvino
def test_cli_first_run_measures_on_its_slices_and_a_later_run_reads_the_cache(tiny_model_path: Path,
                                                                               tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _slices(folder, 48)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "UNETPP_RUNTIME": "auto"}

    def run(out: str, *extra: str) -> tuple[str, list[tuple[str, str, str]]]:
        res = subprocess.run([sys.executable, "-m", "unetpp_gui.cli", "predict", str(folder), "--model",
                              str(tiny_model_path), "--out", str(tmp_path / out), "--precision", "float32", *extra],
                             capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        rows = [(Path(r["path"]).name, r["mask_pixels"], r["decision"])
                for r in csv.DictReader((tmp_path / out / "results.csv").open())]
        return res.stderr, rows

    first, rows = run("first")  # built for OpenVINO from the file: TensorFlow is neither loaded nor timed
    assert "timing batch sizes 1/2/4 on the first 14 slices" in first and "TensorFlow not timed" in first
    assert "inference runs on OpenVINO" in first and "fastest per slice on this machine:" in first
    later, again = run("later")
    assert "timing" not in later and "cached" in later
    _, reference = run("tf", "--runtime", "tensorflow", "--batch-size", "3")
    assert rows == again == reference and len(rows) == 48
