"""The ``unetpp`` command line, run as a real subprocess."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np

from unetpp_gui.core.image_io import load_mask


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unetpp_gui.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_predict_folder_with_a_broken_file(tiny_model_path: Path, phantom_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run("predict", str(phantom_folder.parent), "--model", str(tiny_model_path), "--out", str(out),
              "--overlay", "--batch-size", "2", "--pixel-threshold", "0.5")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [Path(r["path"]).name for r in rows] == [f"p_{i}.png" for i in range(1, 6)]
    assert "not a readable image" in rows[2]["error"]
    good = [r for r in rows if not r["error"]]
    assert len(good) == 4
    for r in good:
        name = Path(r["path"]).stem
        mask = load_mask(out / "study" / "patient_A" / f"{name}_pred.png")
        assert mask.shape == (64, 64)
        assert int(r["mask_pixels"]) == int(mask.sum())
        assert float(r["area_ratio"]) == np.float64(mask.mean()).round(6)
        assert r["decision"] == ("tumour" if mask.mean() > 0.01 else "no tumour")  # model's stored threshold
        assert r["dice"] and r["ground_truth"].endswith("_mask.png")
        assert (out / "study" / "patient_A" / f"{name}_overlay.png").is_file()
    assert "4 no tumour" in res.stderr or "tumour" in res.stderr


def test_unusable_model_is_one_line_and_nonzero(tmp_path: Path, phantom_folder: Path) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_text("not a model")
    res = run("predict", str(phantom_folder), "--model", str(bad), "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("unetpp: error: bad.h5 is not an HDF5 model")
    assert not (tmp_path / "o" / "results.csv").exists()


def test_info_json(tiny_model_path: Path) -> None:
    import json

    res = run("info", "--model", str(tiny_model_path), "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["input"] == [None, 64, 64, 3] and info["pixel_threshold"] == 0.4
    assert info["parameters"] > 0 and info["architecture"]["name"] == "unetpp"


def test_progress_is_a_line_every_few_seconds_in_a_log() -> None:
    import io

    from unetpp_gui.core.progress import Progress

    log = io.StringIO()  # not a terminal
    p = Progress(100, stream=log, every_s=3600)
    for i in range(1, 101):
        p(i)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 1 and lines[0].startswith("100/100 slices")


def test_progress_redraws_a_bar_on_a_terminal(monkeypatch) -> None:
    import io

    from unetpp_gui.core.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)  # the default stream: whatever stderr is when the bar starts
    p = Progress(10)
    for i in range(1, 11):
        p(i)
    out = term.getvalue()
    assert out.count("\r[") == 10 and out.endswith("\n") and "10/10" in out


def test_info_states_threshold_units(tiny_model_path: Path) -> None:
    res = run("info", "--model", str(tiny_model_path))
    assert res.returncode == 0, res.stderr
    assert "decision_threshold: 0.010000 (area ratio: 1.000 % of the slice" in res.stdout
    assert "pixel_threshold: 0.40 (probability)" in res.stdout


def test_no_tensorflow_chatter_unless_verbose(tiny_model_path: Path) -> None:
    import os

    res = run("info", "--model", str(tiny_model_path))
    assert res.returncode == 0 and "oneDNN" not in res.stderr and "absl" not in res.stderr, res.stderr
    env = {**os.environ, "UNETPP_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "0"}
    loud = subprocess.run([sys.executable, "-m", "unetpp_gui.cli", "info", "--model", str(tiny_model_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert loud.returncode == 0 and ("oneDNN" in loud.stderr or "absl" in loud.stderr)
