"""Image loading: every kind of PNG the product promises, and clear errors for bad files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetpp_gui.core import image_io
from unetpp_gui.core.atomic import atomic_path
from unetpp_gui.core.errors import ImageError
from unetpp_gui.core.image_io import load_image, load_mask, save_png
from unetpp_gui.core.preprocess import geometry_for, prepare, restore, to_channels


def test_rgb_png_roundtrip(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (40, 50, 3)
    np.testing.assert_array_equal(out, arr)


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    g = np.arange(40 * 50, dtype=np.uint8).reshape(40, 50)
    Image.fromarray(g).save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (40, 50, 3)
    np.testing.assert_array_equal(out[:, :, 0], g)
    np.testing.assert_array_equal(out[:, :, 2], g)


def test_rgba_composited_on_black(tmp_path: Path) -> None:
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:10, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out[0, 0].tolist() == [200, 0, 0]
    assert out[15, 0].tolist() == [0, 0, 0]


def test_palette_png(tmp_path: Path) -> None:
    img = Image.fromarray(np.tile(np.arange(16, dtype=np.uint8) * 16, (16, 1))).convert("P")
    img.save(tmp_path / "p.png")
    assert img.mode == "P"
    out = load_image(tmp_path / "p.png")
    assert out.shape == (16, 16, 3) and out[:, -1].max() > out[:, 0].max()


def test_16bit_png_scaled_by_its_range(tmp_path: Path) -> None:
    data = np.linspace(1000, 4000, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(data).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    out = load_image(tmp_path / "d.png")
    assert out.min() == 0 and out.max() == 255 and out.shape == (32, 32, 3)


@pytest.mark.parametrize("ext", ["jpg", "tif", "bmp"])
def test_other_formats(tmp_path: Path, ext: str) -> None:
    arr = np.full((24, 24, 3), 120, np.uint8)
    Image.fromarray(arr).save(tmp_path / f"x.{ext}")
    out = load_image(tmp_path / f"x.{ext}")
    assert out.shape == (24, 24, 3) and abs(int(out.mean()) - 120) <= 2


def test_corrupt_truncated_and_foreign_files_raise_with_name(tmp_path: Path) -> None:
    arr = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("hello")
    for name in ("trunc.png", "text.png", "missing.png"):
        with pytest.raises(ImageError) as err:
            load_image(tmp_path / name)
        assert name in str(err.value)


def test_size_guards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(image_io, "MAX_PIXELS", 1000)
    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "big.png")
    Image.fromarray(np.zeros((4, 64), np.uint8)).save(tmp_path / "thin.png")
    with pytest.raises(ImageError, match="too small"):
        load_image(tmp_path / "thin.png")


def test_mask_binarised_above_threshold(tmp_path: Path) -> None:
    m = np.array([[0, 100, 128, 255]], np.uint8).repeat(8, 0).repeat(2, 1)
    Image.fromarray(m).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png")
    assert mask.dtype == bool
    assert mask[0].tolist() == [False, False, False, False, True, True, True, True]


def test_save_png_is_atomic_and_readable(tmp_path: Path) -> None:
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:7] = True
    save_png(tmp_path / "out" / "m.png", mask)
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / "m.png"]
    np.testing.assert_array_equal(load_mask(tmp_path / "out" / "m.png"), mask)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out" / "m.png").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_failed_atomic_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_channel_adaptation_and_geometry() -> None:
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[..., 1] = 100
    assert to_channels(rgb, 3) is rgb
    lum = to_channels(rgb, 1)
    assert lum.shape == (10, 10, 1) and int(lum[0, 0, 0]) == round(0.587 * 100)
    # fixed-size model: resize, and the map comes back at the original size
    x, geo = prepare(np.zeros((100, 80, 3), np.uint8), (64, 64), 3, 1 / 255)
    assert x.shape == (64, 64, 3) and geo.resized
    assert restore(np.ones((64, 64), np.float32), geo).shape == (100, 80)
    # any-size model: pad to a multiple of 16, crop back
    x, geo = prepare(np.full((50, 70, 3), 255, np.uint8), None, 3, 1 / 255)
    assert x.shape == (64, 80, 3) and not geo.resized and x[60, 75, 0] == 0 and x[0, 0, 0] == 1.0
    assert restore(np.zeros((64, 80), np.float32), geo).shape == (50, 70)
    assert geometry_for((64, 64), None).model_hw == (64, 64)
