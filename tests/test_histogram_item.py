"""The image panel's window/level histogram: counted, with pyqtgraph's bins and counts."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest

from unetpp_gui.ui.panels import CountingImageItem


@pytest.mark.parametrize("make", [
    lambda rng: rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),  # an RGB slice
    lambda rng: rng.integers(10, 201, (256, 256, 3), dtype=np.uint8),  # values not reaching 0 or 255
    lambda rng: rng.integers(0, 256, (601, 403), dtype=np.uint8),  # grey, large: pixels skipped (steps 4, 3)
    lambda rng: np.full((64, 64, 3), 7, np.uint8),  # one value
    lambda rng: np.where(rng.random((256, 256)) < 0.5, 0, 255).astype(np.uint8),  # two values far apart
])
def test_counted_histogram_equals_pyqtgraphs(qapp, make) -> None:
    image = make(np.random.default_rng(3))
    ours, theirs = CountingImageItem(), pg.ImageItem()
    ours.setImage(image, autoLevels=False, levels=(0, 255))
    theirs.setImage(image, autoLevels=False, levels=(0, 255))
    (x, y), (tx, ty) = ours.getHistogram(), theirs.getHistogram()
    np.testing.assert_array_equal(x, tx)
    np.testing.assert_array_equal(y, ty)


def test_other_data_and_options_take_pyqtgraphs_way(qapp) -> None:
    image = np.random.default_rng(4).random((50, 40)).astype(np.float32)
    ours, theirs = CountingImageItem(), pg.ImageItem()
    for item in (ours, theirs):
        item.setImage(image, autoLevels=False, levels=(0, 1))
    for kwargs in ({}, {"bins": 20}):
        (x, y), (tx, ty) = ours.getHistogram(**kwargs), theirs.getHistogram(**kwargs)
        np.testing.assert_array_equal(x, tx)
        np.testing.assert_array_equal(y, ty)
