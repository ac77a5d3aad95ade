"""Hostile input: special files, long and clashing names, reused or bad output folders, broken
model files, bombs, unusual slices, and seeded fuzzing of every loader. Generated files only."""

from __future__ import annotations

import csv
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, phantom_patients, save_png
from unetpp_gui.core.discovery import discover
from unetpp_gui.core.errors import ImageError, ModelError
from unetpp_gui.core.image_io import load_image
from unetpp_gui.core.model_io import load_model
from unetpp_gui.core.phantom import phantom


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unetpp_gui.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def _slices(folder: Path, n: int = 3) -> list[Path]:
    return [save_png(folder / f"s_{i}.png", phantom(64, seed=i)[0]) for i in range(n)]


def _rows(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "results.csv").open()))


# ----- special files and names --------------------------------------------------------------------
def test_fifo_in_a_folder_is_skipped_not_waited_on(tiny_model_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _slices(folder)
    os.mkfifo(folder / "z.png")
    found = discover([folder])
    assert [p.name for p in found.slices] == ["s_0.png", "s_1.png", "s_2.png"]
    assert found.problems and "not a regular file" in found.problems[0][1]
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(folder / "z.png")  # named directly: refused without opening it
    res = run("predict", str(folder), str(folder / "z.png"), "--model", str(tiny_model_path),
              "--out", str(tmp_path / "out"), timeout=120)
    assert res.returncode == 0, res.stderr
    assert len(_rows(tmp_path / "out")) == 3 and "not a regular file" in res.stderr


def test_long_names_same_stems_and_the_csv_names_each_file(tiny_model_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    img, _ = phantom(64, seed=1)
    long240, long250 = "a" * 236 + ".png", "b" * 246 + ".png"
    save_png(folder / long240, img)
    save_png(folder / long250, img)
    save_png(folder / "dup.png", img)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(folder / "dup.tif")
    out = tmp_path / "out"
    res = run("predict", str(folder), "--model", str(tiny_model_path), "--out", str(out), "--overlay")
    assert res.returncode == 0, res.stderr
    rows = {Path(r["path"]).name: r for r in _rows(out)}
    assert len(rows) == 4 and not any(r["error"] for r in rows.values())
    masks = [r["mask"] for r in rows.values()]
    assert len(set(masks)) == 4 and all((out / m).is_file() for m in masks)
    assert rows["dup.png"]["mask"].endswith("dup_png_pred.png") and rows["dup.tif"]["mask"].endswith("dup_tif_pred.png")
    assert Path(rows[long250]["mask"]).name.startswith("b" * 200) and "~" in rows[long250]["mask"]
    for r in rows.values():  # every file holds what its row says
        assert int(np.asarray(Image.open(out / r["mask"])).astype(bool).sum()) == int(r["mask_pixels"])
    assert not [p for p in out.rglob(".*")]  # no temp files left


def test_a_write_error_becomes_that_slices_row(tiny_model_path: Path, tmp_path: Path) -> None:
    from unetpp_gui.cli import main

    folder = tmp_path / "in"
    _slices(folder, 3)
    out = tmp_path / "out"
    (out / "in").mkdir(parents=True)
    (out / "in" / "s_1_pred.png").mkdir()  # a folder where the mask should go: that write fails
    assert main(["predict", str(folder), "--model", str(tiny_model_path), "--out", str(out), "--quiet"]) == 0
    rows = _rows(out)
    assert [bool(r["error"]) for r in rows] == [False, True, False]
    assert "could not write s_1_pred.png" in rows[1]["error"] and rows[1]["decision"]  # prediction kept
    assert (out / "in" / "s_2_pred.png").is_file()


# ----- the output folder contract -------------------------------------------------------------------
def test_output_folder_holds_one_run(tiny_model_path: Path, tmp_path: Path) -> None:
    from unetpp_gui.cli import main

    folder = tmp_path / "in"
    _slices(folder, 3)
    out = tmp_path / "out"
    args = ["predict", str(folder), "--model", str(tiny_model_path), "--out", str(out), "--quiet"]
    assert main(args) == 0 and len(_rows(out)) == 3
    assert main(["predict", str(folder / "s_0.png"), *args[2:]]) == 2  # refused: would mix two runs
    assert len(_rows(out)) == 3
    assert main(["predict", str(folder / "s_0.png"), *args[2:], "--overwrite"]) == 0
    rows = _rows(out)
    assert len(rows) == 1
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*_pred.png"))
    assert on_disk == [rows[0]["mask"]]  # the CSV describes exactly the masks beside it


def test_output_inside_the_input_is_not_read_as_slices(tiny_model_path: Path, tmp_path: Path) -> None:
    from unetpp_gui.cli import main

    folder = tmp_path / "in"
    _slices(folder, 2)
    out = folder / "results"
    args = ["predict", str(folder), "--model", str(tiny_model_path), "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert main([*args, "--overwrite"]) == 0
    assert sorted(Path(r["path"]).name for r in _rows(out)) == ["s_0.png", "s_1.png"]


@pytest.mark.parametrize("kind", ["file", "devnull", "under_file"])
def test_bad_out_is_refused_before_the_model_loads(kind: str, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _slices(folder, 1)
    target = {"file": tmp_path / "f.txt", "devnull": Path("/dev/null"), "under_file": tmp_path / "f.txt" / "o"}[kind]
    (tmp_path / "f.txt").write_text("x")
    res = run("predict", str(folder), "--model", str(tmp_path / "missing.h5"), "--out", str(target), timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("unetpp: error: --out")  # not the model's error
    assert "Traceback" not in res.stderr


def test_no_input_and_all_failed_are_nonzero(tiny_model_path: Path, tmp_path: Path) -> None:
    from unetpp_gui.cli import main

    assert main(["predict", str(tmp_path / "nope"), "--model", str(tiny_model_path), "--out",
                 str(tmp_path / "o1"), "--quiet"]) == 2
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"not a png")
    assert main(["predict", str(bad), "--model", str(tiny_model_path), "--out", str(tmp_path / "o2"), "--quiet"]) == 1
    assert "not a readable image" in _rows(tmp_path / "o2")[0]["error"]


# ----- broken model files -------------------------------------------------------------------------------
def _h5_with_config(path: Path, config: str) -> Path:
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = config
    return path


@pytest.mark.parametrize("what,message", [
    ("not_json", "not valid JSON"),
    ("deep_json", "nested too deeply"),
    ("json_list", "not a Keras model"),
    ("empty_h5", "holds no Keras model"),
    ("keras_not_json", "not valid JSON"),
])
def test_malformed_model_files_get_one_sentence(what: str, message: str, tmp_path: Path) -> None:
    import zipfile

    import h5py

    if what == "not_json":
        path = _h5_with_config(tmp_path / "m.h5", "{'class_name': oops")
    elif what == "deep_json":
        path = _h5_with_config(tmp_path / "m.h5", "[" * 100_000 + "]" * 100_000)
    elif what == "json_list":
        path = _h5_with_config(tmp_path / "m.h5", "[1, 2, 3]")
    elif what == "empty_h5":
        path = tmp_path / "m.h5"
        h5py.File(path, "w").close()
    else:
        path = tmp_path / "m.keras"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("config.json", "{not json")
    with pytest.raises(ModelError, match=message):
        load_model(path)
    res = run("info", "--model", str(path), timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr and message in res.stderr


# ----- image bombs and unusual slices -----------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width: int, height: int, extra: bytes = b"", idat: bytes | None = None) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    if idat is None:
        idat = zlib.compress(b"".join(b"\x00" + b"\x00" * (3 * width) for _ in range(height)))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def test_huge_declared_size_says_too_large(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(_png(60000, 60000, idat=zlib.compress(b"\x00" * 100)))
    with pytest.raises(ImageError, match=r"too large \(it declares 3,600,000,000 pixels; the limit is 40,000,000"):
        load_image(path)


@pytest.mark.parametrize("kind", [b"zTXt", b"iTXt"])
def test_text_chunk_bomb_is_named(kind: bytes, tmp_path: Path) -> None:
    bomb = zlib.compress(b"A" * 20_000_000, 9)
    data = b"Comment\x00\x00" + bomb if kind == b"zTXt" else b"Comment\x00\x01\x00\x00\x00" + bomb
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(16, 16, extra=_chunk(kind, data)))
    with pytest.raises(ImageError, match="text chunk decompresses to too much data"):
        load_image(path)


def test_all_white_slice_is_flagged_not_silently_decided(tiny_model_path: Path, tmp_path: Path) -> None:
    from unetpp_gui.cli import main

    folder = tmp_path / "in"
    save_png(folder / "white.png", np.full((64, 64, 3), 255, np.uint8))
    save_png(folder / "gray.png", np.full((64, 64, 3), 128, np.uint8))
    save_png(folder / "ok.png", phantom(64, seed=3)[0])
    save_png(folder / "blank.png", np.zeros((64, 64, 3), np.uint8))  # an empty end slice: normal in MR
    assert main(["predict", str(folder), "--model", str(tiny_model_path), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    rows = {Path(r["path"]).name: r for r in _rows(tmp_path / "o")}
    assert "saturated" in rows["white.png"]["warning"] and "uniform" in rows["gray.png"]["warning"]
    assert rows["ok.png"]["warning"] == "" and rows["blank.png"]["warning"] == ""
    assert rows["white.png"]["decision"]  # still predicted, with the warning beside it


def test_unusual_slice_bounds() -> None:
    """The check's two bounds, just inside and just outside (saturation counted on any channel; spread
    from the slice's histogram)."""
    from unetpp_gui.core.ood import unusual

    img = np.zeros((100, 100, 3), np.uint8)
    img.reshape(-1, 3)[:100, 2] = 255  # 1.00 % of the pixels saturated in one channel: not flagged
    assert unusual(img) is None
    img.reshape(-1, 3)[100, 1] = 255  # 1.01 %
    assert "1% of its pixels are saturated" in unusual(img)
    flat = np.full((100, 100, 3), 30, np.uint8)
    noisy = flat.copy()
    noisy.reshape(-1)[::2] += 4  # std 2.0 over all values (half 30, half 34): not uniform
    assert "uniform" in unusual(flat) and unusual(noisy) is None
    rng = np.random.default_rng(0)
    for k in (5, 6, 7, 8, 9) * 4:  # spreads from 1.4 to 2.6 around 2: the histogram's std decides as numpy's
        x = rng.integers(30, 30 + k, (64, 64, 3), dtype=np.uint8)
        assert (unusual(x) is None) == (x.std() >= 2.0)


def test_single_sequence_slices_are_flagged_through_predict(tiny_model_path: Path, tmp_path: Path) -> None:
    """A grayscale PNG (one image in every channel) with anatomy is predicted with a warning; a colour slice,
    one with a single channel differing, and a blank grayscale end slice are not flagged."""
    from unetpp_gui.cli import main
    from unetpp_gui.core.ood import single_sequence

    rgb = phantom(64, seed=3)[0]
    flair = rgb[..., 1]
    assert single_sequence(np.stack([flair] * 3, -1)) and not single_sequence(rgb)
    partly = np.stack([flair, flair, rgb[..., 2]], -1)  # pre-contrast missing, as some LGG slices store it
    assert not single_sequence(partly)
    sparse = np.zeros((100, 100, 3), np.uint8)
    sparse.reshape(-1, 3)[:99] = 11  # anatomy on 0.99 % of the pixels: a near-empty end slice
    assert not single_sequence(sparse)
    sparse.reshape(-1, 3)[99] = 11  # 1.00 %
    assert single_sequence(sparse)
    folder = tmp_path / "in"
    save_png(folder / "gray.png", flair)  # saved as an 8-bit grayscale PNG
    save_png(folder / "rgb.png", rgb)
    save_png(folder / "blank.png", np.zeros((64, 64), np.uint8))
    assert main(["predict", str(folder), "--model", str(tiny_model_path), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    rows = {Path(r["path"]).name: r for r in _rows(tmp_path / "o")}
    assert "one MR sequence only" in rows["gray.png"]["warning"] and rows["gray.png"]["decision"]
    assert rows["rgb.png"]["warning"] == "" and rows["blank.png"]["warning"] == ""


# ----- fuzzing ------------------------------------------------------------------------------------------------
def _mutants(data: bytes, n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        b = bytearray(data)
        if i % 3 == 0:
            b = b[: int(rng.integers(0, len(b)))]  # truncation
        else:
            for _ in range(int(rng.integers(1, 12))):  # byte flips
                b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        out.append(bytes(b))
    return out


@pytest.mark.parametrize("fmt,n", [("PNG", 200), ("TIFF", 120)])
def test_fuzzed_images_give_one_line_errors(fmt: str, n: int, tmp_path: Path) -> None:
    import io

    buf = io.BytesIO()
    Image.fromarray(phantom(64, seed=5)[0]).save(buf, format=fmt)
    path = tmp_path / f"f.{fmt.lower()}"
    outcomes = {"ok": 0, "error": 0}
    for data in _mutants(buf.getvalue(), n, seed=7):
        path.write_bytes(data)
        try:
            arr = load_image(path)
            assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
            outcomes["ok"] += 1
        except ImageError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(str(path))
            outcomes["error"] += 1
    assert outcomes["error"] > n // 3  # the corpus really is broken, mostly


@pytest.mark.slow
def test_fuzzed_model_files_give_one_line_errors(tiny_model_path: Path, tmp_path: Path) -> None:
    data = tiny_model_path.read_bytes()
    path = tmp_path / "f.h5"
    errors = 0
    for mutant in _mutants(data, 60, seed=11):
        path.write_bytes(mutant)
        try:
            load_model(path)
        except ModelError as exc:
            assert "\n" not in str(exc).strip()
            errors += 1
    assert errors >= 20


# ----- training ----------------------------------------------------------------------------------------------
def test_training_out_checked_first_and_stale_temp_files_cleared(tmp_path: Path) -> None:
    from training.train import TrainConfig, check_output, train

    with pytest.raises(ValueError, match="is a folder"):
        train(TrainConfig(data=[str(tmp_path / "no-data")], out=str(tmp_path)))  # fails before any data is read
    stale = tmp_path / ".model.last.h5.ab12cd_3.h5"
    stale.write_bytes(b"half a checkpoint")
    keep = tmp_path / "model.h5"
    keep.write_bytes(b"x")
    check_output(tmp_path / "model.h5")
    assert not stale.exists() and keep.exists()


def test_cli_json_error_for_a_bad_out(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "training", "train", "--data", str(tmp_path), "--out",
                          str(tmp_path), "--progress-json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert json.loads(res.stdout.strip().splitlines()[-1])["event"] == "error"


def test_the_gui_takes_the_hostile_folder_too(qtbot, tiny_model_path: Path, tmp_path: Path) -> None:
    from PySide6.QtCore import QSettings

    from unetpp_gui.ui.main_window import MainWindow

    folder = tmp_path / "hostile"
    _slices(folder, 2)
    os.mkfifo(folder / "z.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "huge.png").write_bytes(_png(60000, 60000, idat=zlib.compress(b"\x00" * 100)))
    bomb = zlib.compress(b"A" * 20_000_000, 9)
    (folder / "bomb.png").write_bytes(_png(16, 16, extra=_chunk(b"zTXt", b"Comment\x00\x00" + bomb)))
    save_png(folder / ("c" * 240 + ".png"), phantom(64, seed=9)[0])
    save_png(folder / "white.png", np.full((64, 64, 3), 255, np.uint8))
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.model_changed, timeout=120_000):
        win.load_model(tiny_model_path)
    with qtbot.waitSignal(win.predictions_finished, timeout=120_000):
        win.open_paths([folder])
    names = {p.name: p for p in win.store.paths}
    assert "z.png" not in names and len(names) == 7  # the FIFO is reported, never opened
    errors = {n: win.store.compact[p].error for n, p in names.items() if win.store.compact[p].error}
    assert set(errors) == {"broken.png", "huge.png", "bomb.png"}
    assert "too large" in errors["huge.png"] and "text chunk" in errors["bomb.png"]
    assert win.store.compact[names["white.png"]].warning and win.marker(win.store.index(names["white.png"])) != "error"
    assert all(win.store.compact[p].ok for n, p in names.items() if n not in errors)
    win.close()


def test_flair_only_script_writes_grayscale_copies_that_predict_with_the_warning(tiny_model_path: Path,
                                                                                   tmp_path: Path) -> None:
    """scripts/flair_only.py: each slice's FLAIR channel as a grayscale PNG beside its mask; the copies are
    predicted, every slice with anatomy flagged as a single sequence."""
    from unetpp_gui.cli import main

    data = phantom_patients(tmp_path / "data", ["PA", "PB"], n=2)
    script = str(ROOT / "scripts" / "flair_only.py")
    run = subprocess.run([sys.executable, script, str(data), str(tmp_path / "flair"), "--patients", "PA"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    written = sorted(p.name for p in (tmp_path / "flair").rglob("*.png"))
    assert written == ["PA_1.png", "PA_1_mask.png", "PA_2.png", "PA_2_mask.png"]  # PB was not asked for
    gray = Image.open(tmp_path / "flair" / "PA" / "PA_1.png")
    assert gray.mode == "L"
    assert np.array_equal(np.asarray(gray), np.asarray(Image.open(data / "PA" / "PA_1.png"))[..., 1])
    assert main(["predict", str(tmp_path / "flair"), "--model", str(tiny_model_path), "--out", str(tmp_path / "o"),
                 "--quiet"]) == 0
    rows = _rows(tmp_path / "o")
    assert len(rows) == 2 and all("one MR sequence only" in r["warning"] for r in rows)
    missing = subprocess.run([sys.executable, script, str(data), str(tmp_path / "x"), "--patients", "PZ"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "no such patient folder" in missing.stderr
