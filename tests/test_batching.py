"""Batch size chosen by measurement, cached per model, variant and machine."""

from __future__ import annotations

import json
from pathlib import Path

from unetpp_gui.core.batching import CANDIDATES, best_batch_size, cache_key


def test_measured_once_then_cached(tiny_model, tmp_path: Path) -> None:
    cache = tmp_path / "sizes.json"
    size, times, cached = best_batch_size(tiny_model, cache)
    assert size in CANDIDATES and set(times) == set(CANDIDATES) and not cached
    assert size == min(times, key=times.get) and all(t > 0 for t in times.values())
    stored = json.loads(cache.read_text())[cache_key(tiny_model)]
    assert stored["size"] == size
    again = best_batch_size(tiny_model, cache)
    assert again[0] == size and again[2]  # no second measurement


def test_key_follows_the_variant(tiny_model_path: Path) -> None:
    from unetpp_gui.core.model_io import load_model

    a = load_model(tiny_model_path, precision="float32")
    b = load_model(tiny_model_path, precision="float32", tta=True)
    assert cache_key(a) != cache_key(b) and "tta=True" in cache_key(b)


def test_cli_says_which_batch_size_it_chose(tiny_model_path: Path, tmp_path: Path, capsys) -> None:
    from conftest import save_png
    from unetpp_gui.cli import main
    from unetpp_gui.core.phantom import phantom

    for i in range(32):
        save_png(tmp_path / "in" / f"s{i}.png", phantom(64, seed=i)[0])
    assert main(["predict", str(tmp_path / "in"), "--model", str(tiny_model_path), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "unetpp: batch size" in err and "fastest per slice on this machine" in err
    assert main(["predict", str(tmp_path / "in"), "--model", str(tiny_model_path), "--out", str(tmp_path / "o2"),
                 "--batch-size", "2"]) == 0
    assert "unetpp: batch size" not in capsys.readouterr().err
