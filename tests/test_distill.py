"""Distillation: a teacher's maps written by scripts/teacher_maps.py, blended targets, and training on them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import phantom_arrays, phantom_patients

ROOT = Path(__file__).resolve().parent.parent


def _soft_arrays(n: int = 8):
    """Phantom slices whose targets are the masks at level 200 inside and 40 on a band around them."""
    arrays = phantom_arrays(n)
    masks = arrays.masks
    targets = np.where(masks > 0, 200, 0).astype(np.uint8)
    grown = np.pad(masks, ((0, 0), (1, 1), (1, 1), (0, 0)))
    band = (grown[:, 2:, 1:-1] | grown[:, :-2, 1:-1] | grown[:, 1:-1, 2:] | grown[:, 1:-1, :-2]) & (masks == 0)
    targets[band > 0] = 40
    arrays.targets = targets
    return arrays


def test_teacher_maps_script_and_blended_targets(tmp_path: Path, tiny_model_path: Path) -> None:
    """The script stores the engine's own probability levels per slice; the blend is exact at alpha 0 and 1 and
    a training slice without a map is refused with its name."""
    from training.data import find_pairs, load_arrays
    from training.distill import slice_name, soft_targets
    from unetpp_gui.core.image_io import load_image
    from unetpp_gui.core.inference import predict_array
    from unetpp_gui.core.model_io import load_model

    data = phantom_patients(tmp_path / "data", ["PA", "PB", "PC"])
    out = tmp_path / "maps.npz"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "teacher_maps.py"), str(tiny_model_path),
                          "--data", str(data), "--out", str(out), "--patients", "PA", "PB",
                          "--precision", "float32"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "wrote 8 maps of 2 patients" in run.stdout
    pairs = [p for p in find_pairs([str(data)]).pairs if p.patient in ("PA", "PB")]
    with np.load(out) as f:
        names, maps = list(f["names"]), f["maps"]
    assert sorted(names) == sorted(slice_name(p.image) for p in pairs) and maps.dtype == np.uint8
    first = pairs[0]
    expected = predict_array(load_model(tiny_model_path), load_image(first.image))
    np.testing.assert_array_equal(maps[names.index(slice_name(first.image))], expected)

    arrays = load_arrays(pairs, (64, 64))
    keys = [slice_name(p.image) for p in pairs]
    np.testing.assert_array_equal(soft_targets(keys, arrays.masks, out, 0.0), arrays.masks * 255)
    teacher = np.stack([maps[names.index(k)] for k in keys])[..., None]
    np.testing.assert_array_equal(soft_targets(keys, arrays.masks, out, 1.0), teacher)
    half = soft_targets(keys, arrays.masks, out, 0.5).astype(int)
    assert np.abs(half - (arrays.masks * 255 + teacher.astype(int)) / 2).max() <= 0.5
    with pytest.raises(ValueError, match="1 training slice.*PC_1"):
        soft_targets(keys + ["PC_1"], np.concatenate([arrays.masks, arrays.masks[:1]]), out, 0.5)
    with pytest.raises(ValueError, match="weight in"):
        soft_targets(keys, arrays.masks, out, 1.5)

    # maps are keyed by file name: two folders holding the same names would mix up their maps
    import shutil

    from training.distill import write_teacher_maps

    shutil.copytree(data / "PA", data / "PA_copy")
    same = [q for q in find_pairs([str(data)]).pairs if q.patient in ("PA", "PA_copy")]
    with pytest.raises(ValueError, match="more than one folder"):
        write_teacher_maps(tiny_model_path, same, tmp_path / "dup.npz", precision="float32")
    assert not (tmp_path / "dup.npz").exists()


def test_pipelines_keep_soft_targets_soft_and_aligned() -> None:
    """Both input pipelines (tf.data for TensorFlow, SliceBatches for JAX/torch) pass soft targets through as
    levels / 255, warped with their image, instead of binarising them."""
    from training.batches import SliceBatches
    from training.data import make_dataset

    arrays = _soft_arrays()
    plain = np.asarray(next(iter(make_dataset(arrays, 8, training=False, augment=False)))[1])
    np.testing.assert_allclose(plain, arrays.targets / 255.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(SliceBatches(arrays, 8, training=False)[0][1]), arrays.targets / 255.0,
                               atol=1e-6)
    for x, y in (next(iter(make_dataset(arrays, 8, training=True, augment=True, seed=3))),
                 SliceBatches(arrays, 8, training=True, augment=True, seed=3)[0]):
        x, y = np.asarray(x), np.asarray(y)
        assert 0.0 <= y.min() and y.max() <= 200 / 255 + 1e-6
        assert ((y > 0.05) & (y < 0.75)).any()  # the soft band survives (a binarised target has no such values)
        bright = x.mean(axis=-1, keepdims=True)

        def contrast(t: np.ndarray) -> float:
            return float(bright[t > 0.5].mean() - bright[t < 0.05].mean())

        assert contrast(y) > contrast(y[:, ::-1, ::-1]) + 0.1  # the target moved with its image


@pytest.mark.slow
def test_training_on_teacher_maps_records_them(tmp_path: Path, tiny_model_path: Path) -> None:
    """A run with --teacher-maps trains, stores the maps' name and alpha in the model (a resumed run keeps
    them), and a split whose training slices lack maps stops before training with a clear error."""
    from training.data import find_pairs
    from training.distill import write_teacher_maps
    from training.train import TrainConfig, train
    from unetpp_gui.core.metadata import read_metadata

    data = phantom_patients(tmp_path / "data", ["PA", "PB", "PC"])
    maps = tmp_path / "maps.npz"
    write_teacher_maps(tiny_model_path, [p for p in find_pairs([str(data)]).pairs if p.patient != "PC"], maps,
                       precision="float32")
    out = tmp_path / "student.h5"
    cfg = dict(data=[str(data)], base_filters=2, depth=3, image_size=64, epochs=1, batch_size=4,
               strategy="default", crop_size=32, teacher_maps=str(maps), distill_alpha=0.7)
    result = train(TrainConfig(out=str(out), val_patients=["PC"], **cfg))
    assert result.status == "done" and result.best_path == out
    stored = read_metadata(out).training["config"]
    assert stored["teacher_maps"] == str(maps) and stored["distill_alpha"] == 0.7
    again = train(TrainConfig(data=[str(data)], out=str(out), epochs=2, resume=str(result.last_path),
                              strategy="default"))  # a resumed run goes on distilling
    assert again.status == "done"
    stored = read_metadata(again.last_path).training["config"]
    assert stored["teacher_maps"] == str(maps) and stored["distill_alpha"] == 0.7
    with pytest.raises(ValueError, match="no teacher map"):
        train(TrainConfig(out=str(tmp_path / "other.h5"), val_patients=["PA"], **cfg))
