"""The bundled model really segments: real slices of held-out (validation) patients."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unetpp_gui.core.discovery import discover
from unetpp_gui.core.image_io import load_mask
from unetpp_gui.core.inference import predict_paths
from unetpp_gui.resources import bundled_model_path

pytestmark = pytest.mark.skipif(not bundled_model_path().is_file(), reason="no bundled model")


@pytest.fixture(scope="module")
def bundled():
    from unetpp_gui.core.model_io import load_model

    return load_model(bundled_model_path())


def test_bundled_model_is_self_describing(bundled) -> None:
    meta = bundled.metadata
    assert meta.from_file and meta.architecture["name"] == "unetpp"
    assert bundled.input_hw == (256, 256) and bundled.channels == 3
    assert meta.training["split"]["validation"] and not set(meta.training["split"]["validation"]) & set(
        meta.training["split"]["train"])
    assert 0.0 < meta.pixel_threshold < 1.0 and 0.0 <= meta.decision_threshold < 0.05
    assert bundled_model_path().stat().st_size < 40e6


@pytest.mark.lgg
def test_tumours_found_and_clear_slices_called_clear(bundled, lgg: Path) -> None:
    val = bundled.metadata.training["split"]["validation"][:4]
    tumour, clear = [], []
    for patient in val:
        for s in discover([lgg / patient]).slices:
            px = int(load_mask(s.with_name(f"{s.stem}_mask.png")).sum())
            if px > 1500:
                tumour.append(s)
            elif px == 0:
                clear.append(s)
    tumour, clear = tumour[::3][:10], clear[::4][:10]
    assert len(tumour) >= 5 and len(clear) >= 5
    meta = bundled.metadata
    t = [r.stats.derive(meta.pixel_threshold, meta.decision_threshold) for r in predict_paths(bundled, tumour)]
    c = [r.stats.derive(meta.pixel_threshold, meta.decision_threshold) for r in predict_paths(bundled, clear)]
    dice = np.array([d.dice for d in t])
    assert np.median(dice) > 0.6, dice  # sane floor on large tumours of unseen patients
    assert np.mean([d.tumour for d in t]) >= 0.9
    assert np.mean([not d.tumour for d in c]) >= 0.8, [d.area_ratio for d in c]


def test_bundled_int8_network_was_made_from_the_bundled_model() -> None:
    """The int8 network shipped beside the bundled model matches its network (else --precision int8 would fall
    back to float32 for every user): re-run `unetpp quantize` whenever the bundled model changes."""
    from unetpp_gui.core import quantized
    from unetpp_gui.core.model_io import resolve_model_path

    path = resolve_model_path(None)
    found = quantized.find(path)
    assert isinstance(found, tuple), found
    calibration = quantized.calibration_of(path)
    assert calibration["slices"] >= 100 and "training patients" in calibration["source"]
