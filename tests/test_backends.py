"""Training on other Keras backends (JAX here), the backend-neutral batches, and the GPU-session helpers."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, phantom_arrays, phantom_patients, save_png

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")

# Runs `python -m training` with TensorFlow made unimportable: the JAX path must not touch it.
NO_TF = ("import sys, runpy; sys.modules['tensorflow'] = None; sys.argv = ['training'] + sys.argv[1:]; "
         "runpy.run_module('training', run_name='__main__')")


def test_slice_batches_augment_images_and_masks_together() -> None:
    from training.batches import SliceBatches

    arrays = phantom_arrays()
    plain = SliceBatches(arrays, 8, training=False, workers=1)[0]
    x, y = (np.asarray(t) for t in SliceBatches(arrays, 8, augment=True, seed=3, workers=1)[0])
    assert x.shape == (8, 32, 32, 3) and y.shape == (8, 32, 32, 1)
    assert 0.0 <= x.min() and x.max() <= 1.0 and set(np.unique(y)) <= {0.0, 1.0}
    assert np.array_equal(np.asarray(plain[0]), arrays.images / np.float32(255))  # validation is untouched
    assert not np.allclose(np.sort(x.ravel()), np.sort(np.asarray(plain[0]).ravel()))
    bright = x.mean(axis=-1, keepdims=True)

    def contrast(mask: np.ndarray) -> float:
        return float(bright[mask > 0.5].mean() - bright[mask < 0.5].mean())

    assert contrast(y) > contrast(y[:, ::-1, ::-1]) + 0.1  # each mask still sits on its lesion


def test_slice_batches_are_reproducible_reshuffled_and_cropped() -> None:
    from training.batches import SliceBatches

    arrays = phantom_arrays(12)
    a = SliceBatches(arrays, 4, n_outputs=3, seed=5, crop_size=16, crop_tumour=1.0, workers=1)
    b = SliceBatches(arrays, 4, n_outputs=3, seed=5, crop_size=16, crop_tumour=1.0, workers=1)
    assert len(a) == 3
    xa, ya = a[1]
    xb, yb = b[1]
    assert np.asarray(xa).shape == (4, 16, 16, 3) and len(ya) == 3  # one mask per deep-supervision head
    assert np.array_equal(np.asarray(xa), np.asarray(xb))  # same seed, same batch, whatever thread asks
    first = a.order.copy()
    a.on_epoch_end()
    assert sorted(a.order) == sorted(first) and not np.array_equal(a.order, first)  # redrawn each epoch
    assert SliceBatches(arrays, 4, steps=2, workers=1).steps == 2


@needs_jax
@pytest.mark.slow
def test_jax_backend_trains_resumes_and_the_viewer_opens_the_result(tmp_path: Path) -> None:
    """KERAS_BACKEND=jax: the project's own training command, without TensorFlow, writes the usual .h5."""
    from training.saving import read_optimizer_state
    from unetpp_gui.core.metadata import read_metadata
    from unetpp_gui.core.model_io import load_model

    data = phantom_patients(tmp_path / "data", ["PA", "PB", "PC", "PD"])
    out = tmp_path / "jax.h5"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    common = ["train", "--data", str(data), "--out", str(out), "--progress-json"]
    first = subprocess.run([sys.executable, "-c", NO_TF, *common, "--base-filters", "4", "--depth", "3",
                            "--image-size", "64", "--epochs", "2", "--batch-size", "3", "--deep-supervision",
                            "--crop-size", "32", "--ema", "0.9", "--loss", "bce_dice", "--learning-rate", "3e-3",
                            "--val-patients", "PC", "--test-patients", "PD", "--validate-every", "2"],
                           env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    events = [json.loads(line) for line in first.stdout.splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    # only full batches on JAX (a partial one would compile the training step a second time): 8 slices, 2 steps
    assert (events[0]["epoch_slices"], events[0]["steps"]) == (8, 2)
    # --validate-every 2: epoch 1 not validated, epoch 2 (the last) validated
    assert [("val_loss" in e) for e in events if e["event"] == "epoch"] == [False, True]
    meta = read_metadata(out)
    assert meta.versions.get("jax") and "tensorflow" not in meta.versions
    assert meta.training["split"]["test"] == ["PD"] and meta.training["config"]["crop_size"] == 32
    last = out.with_name("jax.last.h5")
    steps = meta.training["optimizer_step"]
    assert steps > 0 and int(read_optimizer_state(last)[0]) == steps

    again = subprocess.run([sys.executable, "-c", NO_TF, *common, "--epochs", "3", "--resume", str(last)],
                           env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = read_metadata(last)
    assert resumed.training["epoch"] == 3 and resumed.training["optimizer_step"] == 3 * steps // 2

    # exported on JAX too (what scripts/gpu_train.sh sends back): no optimizer state
    shipped = tmp_path / "shipped.h5"
    code = ("import sys; sys.modules['tensorflow'] = None; from training.export import export_model; "
            "export_model(sys.argv[1], sys.argv[2])")
    exp = subprocess.run([sys.executable, "-c", code, str(last), str(shipped)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert exp.returncode == 0, exp.stderr[-3000:]
    assert read_optimizer_state(shipped) is None and shipped.stat().st_size < last.stat().st_size
    assert read_metadata(shipped).training["epoch"] == 3

    model = load_model(out)  # the viewer (TensorFlow) opens what JAX trained, at the slice size
    assert model.input_hw == (64, 64) and load_model(shipped).input_hw == (64, 64)
    prob = model.predict_batch(np.zeros((1, 64, 64, 3), np.float32))
    assert np.isfinite(np.asarray(prob)).all()


def test_training_steps_leave_out_the_partial_batch_only_where_asked() -> None:
    from training.train import training_steps

    assert training_steps(1330, 32) == 42  # TensorFlow: the last batch holds the remaining 18 slices
    assert training_steps(1330, 32, full_batches=True) == 41
    assert training_steps(64, 32, full_batches=True) == 2
    assert training_steps(20, 32, full_batches=True) == 1  # fewer slices than a batch: one partial batch


def test_gpu_pack_round_trip_leaves_out_test_patients(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gpu_pack
    finally:
        sys.path.pop(0)
    data = phantom_patients(tmp_path / "data", ["PA", "PB", "PT"], n=3)
    save_png(data / "PA" / "PA_9.png", np.full((64, 64, 3), 200, np.uint8))  # no mask: not a pair, left out
    n, size = gpu_pack.pack(data, {"PT"}, tmp_path / "pack.zip")
    assert n == 6 and size > 0
    assert gpu_pack.unpack(tmp_path / "pack.zip", tmp_path / "out") == 6
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["PA", "PB"]
    from PIL import Image

    assert not (tmp_path / "out" / "PA" / "PA_9.png").exists()
    for src in sorted((data / "PA").glob("PA_[1-3]*.png")):
        a = np.asarray(Image.open(src)).astype(int)
        b = np.asarray(Image.open(tmp_path / "out" / "PA" / src.name)).astype(int)
        if src.stem.endswith("_mask"):
            assert np.array_equal(a > 127, b > 127)  # masks are lossless
        else:
            assert a.shape == b.shape and np.abs(a - b).mean() < 3  # JPEG 4:4:4 q90: about a grey level


@needs_jax
@pytest.mark.slow
def test_gpu_train_probes_only_jobs_without_epochs_and_keeps_the_deadline(tmp_path: Path) -> None:
    """scripts/gpu_train.py on CPU JAX: a job naming --epochs starts at once (no probe, no second start-up);
    one without is probed, then given the epochs that fit; both write their best model."""
    data = phantom_patients(tmp_path / "data", ["PA", "PB", "PC"])
    common = (f"--data {data} --base-filters 4 --depth 3 --image-size 64 --batch-size 4 --val-patients PC "
              "--learning-rate 3e-3")
    out = tmp_path / "runs"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_train.py"), "--deadline", "400",
                          "--probe-steps", "1", "--max-epochs", "2", "--out", str(out),
                          "--job", f"fixed: {common} --epochs 1", "--job", f"probed: {common}"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (out / "fixed.h5").exists() and (out / "probed.h5").exists()
    assert not (out / "fixed.probe.jsonl").exists() and (out / "probed.probe.jsonl").exists()
    assert "probe probed:" in run.stdout and "probed: 2 epochs" in run.stdout
    done = [json.loads(line) for line in (out / "fixed.jsonl").read_text().splitlines()][-1]
    assert done["event"] == "done" and done["epochs_run"] == 1
