"""Training module: the paper's node structure, the split, a real tiny run, resume, cancel, evaluation."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CancelAtFirstCheckpoint, phantom_patients

from training.data import institution_of, split_patients
from training.evaluate import Evaluated, calibrate, metrics_at
from unetpp_gui.core.architecture import extract_grid
from unetpp_gui.core.postprocess import SliceStats


def test_unetpp_has_the_papers_nodes_and_wiring() -> None:
    from training.models import build_unetpp

    grid = extract_grid(build_unetpp((64, 64, 3), base_filters=4, depth=5))
    assert sorted(grid.nodes) == [(i, j) for i in range(5) for j in range(5 - i)]  # 15 nodes
    for (i, j), node in grid.nodes.items():
        assert node.filters == 4 * 2**i
        inputs = sorted((s, k) for s, d, k in grid.edges if d == (i, j))
        if j == 0:
            assert inputs == ([] if i == 0 else [((i - 1, 0), "down")])
        else:  # X_i_j = block(concat(X_i_0..X_i_{j-1}, up(X_{i+1}_{j-1})))
            assert inputs == sorted([((i, k), "skip") for k in range(j)] + [((i + 1, j - 1), "up")])
    assert [h for h, _ in grid.heads] == ["head_X_0_4"]


def test_unet_deep_supervision_and_pruning() -> None:
    from training.models import build_unet, build_unetpp, prune

    unet = extract_grid(build_unet((64, 64, 3), base_filters=4))
    assert sorted(unet.nodes) == [(0, 0), (0, 4), (1, 0), (1, 3), (2, 0), (2, 2), (3, 0), (3, 1), (4, 0)]
    assert sum(k == "skip" for *_, k in unet.edges) == 4
    ds = build_unetpp((64, 64, 3), base_filters=4, deep_supervision=True)
    assert [o.name if hasattr(o, "name") else o for o in ds.output_names] == [f"head_X_0_{j}" for j in range(1, 5)]
    for level in range(1, 5):
        pruned = extract_grid(prune(ds, level))
        assert sorted(pruned.nodes) == sorted((i, j) for i in range(5) for j in range(5) if i + j <= level)
        assert pruned.total_params < extract_grid(ds).total_params or level == 4
    with pytest.raises(ValueError, match="deep-supervision"):
        prune(build_unetpp((64, 64, 3), base_filters=4), 2)


def test_split_is_by_patient_stratified_and_reproducible() -> None:
    patients = [f"TCGA_{inst}_{n:04d}_2000" for inst in ("CS", "DU", "FG", "HT") for n in range(10)]
    train, val = split_patients(patients, 0.2, seed=7)
    assert not set(train) & set(val) and sorted(train + val) == sorted(patients)
    assert len(val) == 8
    assert {institution_of(p) for p in val} == {"CS", "DU", "FG", "HT"}  # every institution held out
    assert split_patients(patients, 0.2, seed=7) == (train, val)
    assert split_patients(patients, 0.2, seed=8) != (train, val)


def _items() -> list[Evaluated]:
    """Two patients with crafted maps: every number below is computed by hand."""
    def item(patient: str, pred_px: int, gt_px: int, overlap: int) -> Evaluated:
        prob = np.zeros((10, 10), np.uint8)
        gt = np.zeros((10, 10), bool)
        flat_p, flat_g = prob.reshape(-1), gt.reshape(-1)
        flat_g[:gt_px] = True
        start = gt_px - overlap
        flat_p[start:start + pred_px] = 230  # 0.9
        return Evaluated(patient, Path(f"{patient}.png"), SliceStats.from_map(prob, gt))
    return [
        item("A", pred_px=10, gt_px=10, overlap=10),  # perfect slice
        item("A", pred_px=0, gt_px=10, overlap=0),  # missed slice
        item("A", pred_px=0, gt_px=0, overlap=0),  # true negative
        item("B", pred_px=20, gt_px=10, overlap=5),  # half right
        item("B", pred_px=4, gt_px=0, overlap=0),  # false positive
    ]


def test_evaluation_equals_hand_computed_numbers() -> None:
    m = metrics_at(_items(), pixel_threshold=0.5, decision_threshold=0.05)
    # patient A: inter 10, pred 10, gt 20 -> 20/30; patient B: inter 5, pred 24, gt 10 -> 10/34
    assert m["per_patient_dice"]["A"] == pytest.approx(20 / 30)
    assert m["per_patient_dice"]["B"] == pytest.approx(10 / 34)
    assert m["patient_dice_mean"] == pytest.approx((20 / 30 + 10 / 34) / 2)
    # gated by the decision (> 0.05): B's false-positive slice (ratio 0.04) no longer counts -> 10/30
    assert m["per_patient_dice_gated"] == pytest.approx({"A": 20 / 30, "B": 10 / 30})
    assert m["patient_dice_gated_mean"] == pytest.approx((20 / 30 + 10 / 30) / 2)
    # tumour slices: dice 1, 0, 10/30
    assert m["tumour_slice_dice_mean"] == pytest.approx((1 + 0 + 10 / 30) / 3)
    # ratios 0.1, 0, 0, 0.2, 0.04 vs labels T, T, F, T, F; decision > 0.05
    assert (m["slice_tp"], m["slice_fn"], m["slice_tn"], m["slice_fp"]) == (2, 1, 2, 0)
    assert m["slice_sensitivity"] == pytest.approx(2 / 3) and m["slice_specificity"] == 1.0
    # AUC: positives (0.1, 0, 0.2) vs negatives (0, 0.04): pairs won 2+2, tie 0.5, lost 1 -> 4.5/6
    assert m["slice_auc"] == pytest.approx(4.5 / 6)
    pt, dt = calibrate(_items())
    assert 0.05 <= pt <= 0.9 and 0.0 <= dt < 0.1


def test_calibration_reaches_faint_borders_below_0_1() -> None:
    """A map whose lesion borders sit at probability 0.07 is best cut under 0.1; the grid must reach it."""
    prob = np.zeros((10, 10), np.uint8)
    gt = np.zeros((10, 10), bool)
    gt[2:8, 2:8] = True
    prob[2:8, 2:8] = 18  # border ring: ~0.07
    prob[3:7, 3:7] = 230  # core: 0.9
    prob[0, 0] = 10  # background noise at ~0.04 stays out
    items = [Evaluated(p, Path(f"{p}.png"), SliceStats.from_map(prob, gt)) for p in ("A", "B")]
    pt, _dt = calibrate(items)
    assert pt == 0.05
    assert metrics_at(items, pt, 0.0)["patient_dice_mean"] == pytest.approx(1.0)


@pytest.mark.lgg
@pytest.mark.slow
def test_tiny_unetpp_learns_resumes_and_keeps_optimizer_state(lgg: Path, tmp_path: Path) -> None:
    from training.saving import read_optimizer_state
    from training.train import TrainConfig, train
    from unetpp_gui.core.metadata import read_metadata
    from unetpp_gui.core.model_io import load_model

    out = tmp_path / "m.h5"
    cfg = TrainConfig(data=[str(lgg)], out=str(out), base_filters=4, depth=3, image_size=64, epochs=4,
                      batch_size=8, learning_rate=3e-3, loss="bce_dice", max_patients=3, max_slices=48,
                      augment=False, seed=1, strategy="default")
    result = train(cfg)
    loss = result.history["loss"]
    assert result.status == "done" and len(loss) == 4 and loss[-1] < loss[0]
    assert not set(result.train_patients) & set(result.val_patients)
    split = json.loads(out.with_name("m.split.json").read_text())
    assert split["validation"] == result.val_patients
    last = out.with_name("m.last.h5")
    meta = read_metadata(last)
    assert meta.training["epoch"] == 4 and meta.training["optimizer_step"] == 4 * 6
    assert meta.architecture["name"] == "unetpp" and meta.versions["tensorflow"]
    state = read_optimizer_state(last)
    assert state is not None and int(state[0]) == 24  # iterations first, then Adam moments
    assert load_model(out).input_hw == (64, 64)  # the best model opens in the engine

    cfg2 = TrainConfig(data=[str(lgg)], out=str(out), epochs=6, batch_size=8, max_patients=3, max_slices=48,
                       augment=False, seed=1, resume=str(last), strategy="default")
    result2 = train(cfg2)
    meta2 = read_metadata(last)
    assert result2.status == "done" and meta2.training["epoch"] == 6
    assert meta2.training["optimizer_step"] == 6 * 6  # continued from step 24, not restarted
    assert len(meta2.training["history"]["loss"]) == 6
    assert meta2.training["split"]["validation"] == result.val_patients
    assert meta2.training["elapsed_s"] > meta.training["elapsed_s"]  # time accumulates across the resume
    assert result2.best_epoch is not None  # the summary names the best epoch even when the resumed run did not beat it


@pytest.mark.lgg
@pytest.mark.slow
def test_cli_json_progress_and_cancel_leaves_only_complete_files(lgg: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    cancel = tmp_path / "cancel"
    cmd = [sys.executable, "-m", "training", "train", "--data", str(lgg), "--out", str(out), "--base-filters", "4",
           "--depth", "3", "--image-size", "64", "--epochs", "50", "--batch-size", "4", "--max-patients", "3",
           "--max-slices", "24", "--progress-json", "--cancel-file", str(cancel), "--strategy", "mirrored"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = []
    deadline = time.monotonic() + 400
    assert proc.stdout is not None
    for line in proc.stdout:
        ev = json.loads(line)
        events.append(ev)
        if ev["event"] == "checkpoint" and ev["kind"] == "best":
            cancel.touch()  # cancel during epoch 2
        assert time.monotonic() < deadline
    rc = proc.wait(timeout=120)
    kinds = [e["event"] for e in events]
    assert rc == 130, proc.stderr.read()[-2000:] if proc.stderr else ""
    assert kinds[0] == "start" and "batch" in kinds and "epoch" in kinds and kinds[-1] == "cancelled"
    batch = next(e for e in events if e["event"] == "batch")
    assert {"epoch", "step", "steps", "loss", "elapsed", "eta"} <= set(batch)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".h5") == ["c.h5", "c.last.h5"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind
    from unetpp_gui.core.metadata import read_metadata

    saved = read_metadata(out.with_name("c.last.h5")).training["epoch"]
    assert saved < 50
    # an epoch event only for complete epochs: the cancelled one is neither reported nor saved
    assert [e["epoch"] for e in events if e["event"] == "epoch"][-1] == saved


def test_small_tumour_metrics() -> None:
    prob = np.zeros((100, 100), np.uint8)
    gt = np.zeros((100, 100), bool)
    gt[:5, :10] = True  # 50 px = 0.5 % of the slice: small
    prob[:5, :5] = 230  # half of it found
    items = [Evaluated("A", Path("a.png"), SliceStats.from_map(prob, gt))]
    m = metrics_at(items, 0.5, 0.001)
    assert m["small_tumour_slices"] == 1
    assert m["small_tumour_slice_dice_mean"] == pytest.approx(2 * 25 / 75)
    assert m["small_tumour_sensitivity"] == 1.0  # 0.25 % > 0.1 %
    assert metrics_at(items, 0.5, 0.01)["small_tumour_sensitivity"] == 0.0


def test_dataset_augmentation_keeps_images_and_masks_aligned() -> None:
    """Augmented batches: images in [0, 1], binary masks, and each mask moved with its image."""
    from training.data import ArraySet, make_dataset
    from unetpp_gui.core.phantom import phantom

    pairs = [phantom(32, lesion=True, seed=i) for i in range(8)]
    arrays = ArraySet(np.stack([img for img, _ in pairs]).astype(np.uint8),
                      np.stack([m[..., None] for _, m in pairs]).astype(np.uint8) * 255, ["p"] * 8)
    plain = next(iter(make_dataset(arrays, 8, training=False, augment=False)))
    x, y = (np.asarray(t) for t in next(iter(make_dataset(arrays, 8, training=True, augment=True, seed=3))))
    assert x.shape == (8, 32, 32, 3) and y.shape == (8, 32, 32, 1)
    assert 0.0 <= x.min() and x.max() <= 1.0 and set(np.unique(y)) <= {0.0, 1.0}
    assert not np.allclose(np.sort(x.ravel()), np.sort(np.asarray(plain[0]).ravel()))  # something changed
    # the phantom's lesion is its brightest region: the mask must still sit on bright pixels
    bright = x.mean(axis=-1, keepdims=True)

    def contrast(mask: np.ndarray) -> float:
        return float(bright[mask > 0.5].mean() - bright[mask < 0.5].mean())

    assert contrast(y) > contrast(y[:, ::-1, ::-1]) + 0.1  # the mask fits its image better than a turned one


def test_augmented_batches_are_reproducible_and_each_draws_its_own_zoom() -> None:
    """The same slice in every position of every batch. The same seed gives the same batches, and no two
    batches are zoomed alike (a mask's area follows its zoom). With the augmenting map run in parallel, two
    batches sometimes read a random layer's state together and repeated its draws (measured in 2 of 6 runs:
    all 8 mask areas of a batch within 1.5 % of the batch before), and runs with one seed differed."""
    from training.data import ArraySet, make_dataset

    n, batches = 8, 40
    img = np.broadcast_to(np.linspace(0, 255, 64, dtype=np.float32)[None, None, :, None], (n, 64, 64, 3))
    mask = np.zeros((n, 64, 64, 1), np.uint8)
    mask[:, 20:45, 20:32] = 1
    arrays = ArraySet(img.astype(np.uint8).copy(), mask, ["p"] * n)

    def areas() -> np.ndarray:
        return np.array([np.asarray(y).reshape(n, -1).sum(axis=1)
                         for _, y in make_dataset(arrays, n, training=True, augment=True, seed=3,
                                                  oversample=batches).take(batches)])

    runs = [areas() for _ in range(3)]
    assert runs[0].shape == (batches, n)
    assert all(np.array_equal(runs[0], other) for other in runs[1:])
    for a in runs:
        closest = min(float(np.abs(a[i] / a[j] - 1).max()) for i in range(batches) for j in range(i))
        assert closest > 0.02, f"two batches drew the same zooms (areas within {closest:.1%})"


@pytest.mark.slow
def test_test_split_is_untouched_stored_and_evaluated_by_default(tmp_path: Path, capsys) -> None:
    from training.cli import main as training_main
    from training.train import TrainConfig, train
    from unetpp_gui.core.metadata import read_metadata

    data = phantom_patients(tmp_path / "data", ["PA", "PB", "PC", "PD", "PE"])
    out = tmp_path / "m.h5"
    cfg = TrainConfig(data=[str(data)], out=str(out), base_filters=2, depth=3, image_size=64, epochs=1,
                      batch_size=4, augment=False, val_patients=["PC"], test_patients=["PD", "PE"],
                      strategy="default")
    result = train(cfg)
    assert result.train_patients == ["PA", "PB"] and result.val_patients == ["PC"]
    split = read_metadata(out).training["split"]
    assert split["test"] == ["PD", "PE"] and split["validation"] == ["PC"]
    assert json.loads(out.with_name("m.split.json").read_text())["test"] == ["PD", "PE"]
    with pytest.raises(ValueError, match="both the validation and the test"):
        train(TrainConfig(data=[str(data)], out=str(tmp_path / "x.h5"), val_patients=["PC"], test_patients=["PC"]))

    capsys.readouterr()
    assert training_main(["evaluate", "--model", str(out), "--data", str(data)]) == 0
    err = capsys.readouterr().err
    assert "evaluating 2 patient(s): the model's 2 untouched test split" in err
    report = tmp_path / "tta.json"
    assert training_main(["evaluate", "--model", str(out), "--data", str(data), "--tta", "--report", str(report)]) == 0
    assert json.loads(report.read_text())["test_time_augmentation"] is True
    assert training_main(["evaluate", "--model", str(out), "--data", str(data), "--calibrate"]) == 2
    assert "add --split validation" in capsys.readouterr().err
    rc = training_main(["evaluate", "--model", str(out), "--data", str(data / "PC"), str(data / "PA"),
                        "--split", "validation", "--calibrate"])
    assert rc == 0
    meta = read_metadata(out)
    assert meta.metrics["calibration_patients"] == ["PC"] and isinstance(meta.patient_filter, dict)
    assert training_main(["evaluate", "--model", str(out), "--data", str(data / "PA")]) == 2
    err = capsys.readouterr().err
    assert "2 of them have no image/mask pairs" in err and "--split all" in err


def test_crop_window_stays_inside_and_finds_the_tumour() -> None:
    from training.data import crop_window

    rng = np.random.default_rng(0)
    mask = np.zeros((64, 64, 1), np.uint8)
    mask[50:54, 2:6] = 1  # a lesion in a corner
    for _ in range(200):
        y0, x0 = crop_window(mask, 32, rng, on_tumour=1.0)
        assert 0 <= y0 <= 32 and 0 <= x0 <= 32
        assert mask[y0:y0 + 32, x0:x0 + 32].any()  # tumour-centred crops always hold some tumour
    anywhere = {crop_window(mask, 32, rng, on_tumour=0.0) for _ in range(200)}
    assert len(anywhere) > 50 and any(not mask[y:y + 32, x:x + 32].any() for y, x in anywhere)
    empty = np.zeros_like(mask)
    assert all(0 <= v <= 32 for _ in range(50) for v in crop_window(empty, 32, rng, on_tumour=1.0))


@pytest.mark.slow
def test_crop_training_with_weight_average_saves_a_whole_slice_model_and_resumes(tmp_path: Path) -> None:
    from training.saving import read_optimizer_state
    from training.train import TrainConfig, train
    from unetpp_gui.core.metadata import read_metadata
    from unetpp_gui.core.model_io import load_model

    data = phantom_patients(tmp_path / "data", ["PA", "PB", "PC"])
    out = tmp_path / "crop.h5"
    cfg = TrainConfig(data=[str(data)], out=str(out), base_filters=2, depth=3, image_size=64, epochs=1,
                      batch_size=4, val_patients=["PC"], strategy="default", crop_size=32, crop_tumour=0.8,
                      ema=0.9)
    result = train(cfg)
    assert result.status == "done" and result.best_path == out
    model = load_model(out).keras_model
    assert tuple(model.input_shape[1:]) == (64, 64, 3)  # saved at the slice size, not the crop size
    plain = len(read_optimizer_state(result.last_path))
    stored = read_metadata(out).training["config"]
    assert stored["crop_size"] == 32 and stored["ema"] == 0.9

    # resuming keeps the run's crop and average settings (the optimizer holds the averaged copies)
    again = train(TrainConfig(data=[str(data)], out=str(out), epochs=2, resume=str(result.last_path),
                              strategy="default"))
    assert again.status == "done" and len(again.history["loss"]) == 2
    assert len(read_optimizer_state(again.last_path)) == plain
    with pytest.raises(ValueError, match="multiple of 4"):
        train(TrainConfig(data=[str(data)], out=str(tmp_path / "x.h5"), depth=3, image_size=64, crop_size=30))


def test_resume_with_weight_average_trains_on_from_the_raw_weights(tmp_path: Path) -> None:
    """A checkpoint holds the averaged weights as the model and the raw ones in the optimizer's average slots
    (SwapEMAWeights at the epoch's end); resuming swaps them back, so training goes on from the raw weights and
    keeps averaging (before the fix a resumed run restarted from the average: its loss jumped up)."""
    import threading

    import keras

    from training.saving import load_keras
    from training.train import TrainConfig, _compiled_model, train
    from unetpp_gui.core.metadata import read_metadata

    data = phantom_patients(tmp_path / "data", ["PA", "PB", "PC"])
    out = tmp_path / "ema.h5"
    cancel = threading.Event()
    cfg = dict(data=[str(data)], base_filters=2, depth=3, image_size=64, batch_size=4, val_patients=["PC"],
               strategy="default", ema=0.9, learning_rate=1e-2)
    first = train(TrainConfig(out=str(out), epochs=2, **cfg), json_stream=CancelAtFirstCheckpoint(cancel),
                  cancel=cancel)
    assert first.status == "cancelled" and read_metadata(first.last_path).training["epoch"] == 1
    averaged = [keras.ops.convert_to_numpy(v) for v in load_keras(first.last_path).trainable_variables]

    meta = read_metadata(first.last_path)
    model, optimizer, _ = _compiled_model(TrainConfig(out=str(out), resume=str(first.last_path), **cfg),
                                          meta.architecture, 1, 10)
    now = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    slots = [keras.ops.convert_to_numpy(v) for v in optimizer._model_variables_moving_average]
    assert all(np.array_equal(a, s) for a, s in zip(averaged, slots))  # the average stays the average
    assert max(float(np.abs(a - n).max()) for a, n in zip(averaged, now)) > 1e-4  # the model trains from raw


def test_ensemble_script_averages_its_members_probabilities(tmp_path: Path) -> None:
    """scripts/ensemble.py: one .h5 the viewer opens, whose map is the mean of its members' maps (not a sigmoid
    of it: an output layer without an activation is read as logits), with the first member's split kept."""
    from training.models import build_unet, build_unetpp
    from training.saving import save_model
    from unetpp_gui.core.metadata import ModelMetadata, read_metadata
    from unetpp_gui.core.model_io import load_model

    split = {"train": ["PA"], "val": ["PB"], "test": ["PC"]}
    members = []
    for i, net in enumerate([build_unetpp((32, 32, 3), base_filters=4, depth=3, deep_supervision=True),
                             build_unet((32, 32, 3), base_filters=4, depth=3)]):
        members.append(save_model(net, tmp_path / f"m{i}.h5", ModelMetadata(name=f"m{i}", training={"split": split})))
    out = tmp_path / "ens.h5"
    run = subprocess.run([sys.executable, str(Path(__file__).resolve().parent.parent / "scripts" / "ensemble.py"),
                          str(out), *map(str, members)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    maps = [load_model(m).predict_batch(x) for m in members]
    assert np.abs(maps[0] - maps[1]).max() > 1e-3  # two different networks
    np.testing.assert_allclose(load_model(out).predict_batch(x), (maps[0] + maps[1]) / 2, atol=1e-5)
    meta = read_metadata(out)
    assert meta.training["split"] == split and meta.training["ensemble_of"] == ["m0.h5", "m1.h5"]
    assert (meta.pixel_threshold, meta.patient_filter) == (0.5, {})


def test_ensemble_of_a_2d_and_a_2_5d_network_feeds_each_its_channels(tmp_path: Path) -> None:
    """A 2-D member beside a 2.5-D one reads the slice's own (leading) channels of the 2.5-D input; the file keeps
    the 2.5-D member's context; members normalised differently are refused with a message, and nothing is written."""
    from training.models import build_unet
    from training.saving import save_model
    from unetpp_gui.core.metadata import ModelMetadata, read_metadata
    from unetpp_gui.core.model_io import load_model
    from unetpp_gui.core.normalize import ChannelNorm

    script = str(Path(__file__).resolve().parent.parent / "scripts" / "ensemble.py")
    norm = ChannelNorm((133.0, 136.0, 123.0)).to_dict()
    flat = save_model(build_unet((32, 32, 3), base_filters=4, depth=3), tmp_path / "flat.h5",
                      ModelMetadata(name="flat", input_normalization=norm))
    deep = save_model(build_unet((32, 32, 5), base_filters=4, depth=3), tmp_path / "deep.h5",
                      ModelMetadata(name="deep", input_normalization=norm, input_context={"slices": 1, "channel": 1},
                                    training={"split": {"train": ["PA"]}}))
    out = tmp_path / "mix.h5"
    run = subprocess.run([sys.executable, script, str(out), str(flat), str(deep)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    x = np.random.default_rng(1).random((2, 32, 32, 5)).astype(np.float32)
    want = (load_model(flat).predict_batch(x[..., :3]) + load_model(deep).predict_batch(x)) / 2
    mix = load_model(out)
    assert mix.channels == 5 and mix.context is not None and mix.context.slices == 1
    np.testing.assert_allclose(mix.predict_batch(x), want, atol=1e-5)
    assert read_metadata(out).input_normalization == norm and read_metadata(out).training["split"] == {"train": ["PA"]}

    other = save_model(build_unet((32, 32, 3), base_filters=4, depth=3), tmp_path / "other.h5",
                       ModelMetadata(name="other", input_normalization=ChannelNorm((120.0, 136.0, 123.0)).to_dict()))
    refused = subprocess.run([sys.executable, script, str(tmp_path / "bad.h5"), str(other), str(deep)],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "normalise their input differently" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "bad.h5").exists()


@pytest.mark.slow
def test_training_without_validation_keeps_the_last_epoch(tmp_path: Path) -> None:
    """--val-fraction 0: every patient but the test ones trains, each epoch is saved as the model (the last one
    stays), no best Dice is claimed, and early stopping, which needs validation, is refused."""
    from training.train import TrainConfig, train
    from unetpp_gui.core.metadata import read_metadata

    data = phantom_patients(tmp_path / "data", ["PA", "PB", "PC"])
    out = tmp_path / "final.h5"
    cfg = dict(data=[str(data)], base_filters=2, depth=3, image_size=64, batch_size=4, strategy="default",
               val_fraction=0.0, test_patients=["PC"])
    result = train(TrainConfig(out=str(out), epochs=2, ema=0.9, **cfg))
    assert result.status == "done" and result.best_path == out and result.best_dice is None
    assert result.best_epoch == 2 and result.train_patients == ["PA", "PB"] and result.val_patients == []
    meta = read_metadata(out)
    assert meta.training["epoch"] == 2 and meta.training["split"]["validation"] == []
    assert meta.training["split"]["test"] == ["PC"]
    with pytest.raises(ValueError, match="needs validation patients"):
        train(TrainConfig(out=str(tmp_path / "x.h5"), epochs=1, patience=2, **cfg))


def test_validate_every_skips_validation_but_saves_every_epoch(tmp_path: Path) -> None:
    """--validate-every 2 over 3 epochs: validation after epochs 2 and 3 only (the last always), the resumable
    checkpoint after each epoch, the best chosen among validated epochs, history aligned with None gaps."""
    from training.train import TrainConfig, train, validation_epochs
    from unetpp_gui.core.metadata import read_metadata

    assert validation_epochs(75, 1) == 1 and validation_epochs(75, 5)[:2] == [5, 10]
    assert validation_epochs(7, 3) == [3, 6, 7] and validation_epochs(2, 5) == [2]
    data = phantom_patients(tmp_path / "data", ["PA", "PB", "PC"])
    out = tmp_path / "fold.h5"
    stream = io.StringIO()
    result = train(TrainConfig(out=str(out), epochs=3, validate_every=2, data=[str(data)], base_filters=2, depth=3,
                               image_size=64, batch_size=4, strategy="default", val_patients=["PB"],
                               test_patients=["PC"]), json_stream=stream)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    saved = [(ev["kind"], ev["epoch"]) for ev in events if ev["event"] == "checkpoint"]
    assert [ev["epoch"] for ev in events if ev["event"] == "epoch" and "val_loss" in ev] == [2, 3]
    assert result.status == "done" and result.epochs_run == 3
    assert [e for kind, e in saved if kind == "last"] == [1, 2, 3]
    assert {e for kind, e in saved if kind == "best"} <= {2, 3} and result.best_epoch in (2, 3)
    hist = result.history
    assert len(hist["loss"]) == 3 and hist["val_loss"][0] is None
    assert all(isinstance(v, float) for v in hist["val_loss"][1:])
    assert read_metadata(tmp_path / "fold.last.h5").training["epoch"] == 3
    assert read_metadata(out).training["config"]["validate_every"] == 2
    with pytest.raises(ValueError, match="validate-every"):
        train(TrainConfig(out=str(tmp_path / "x.h5"), epochs=1, validate_every=0, data=[str(data)]))


def test_validation_batches_are_equal_where_a_divisor_allows() -> None:
    """JAX/torch validation uses one batch shape (one compile) where the slice count has a divisor near the
    batch size; otherwise the batch size as given."""
    from training.train import even_batch

    assert even_batch(252, 32) == 63 and 252 % 63 == 0  # the 6 LGG validation patients
    assert even_batch(530, 32) == 53 and even_batch(48, 32) == 48 and even_batch(10, 32) == 10
    assert even_batch(251, 32) == 32 and even_batch(0, 8) == 8  # a prime: no equal split near 32
    for n in range(1, 300):
        size = even_batch(n, 16)
        assert n % size == 0 or size == 16
        assert 1 <= size <= max(n, 16)


def test_cancel_skips_the_validation_of_the_stopped_epoch() -> None:
    """Keras validates after an epoch even when training was stopped in it; a cancel stops that validation after
    its first batch instead of a whole pass (35-48 s on 2 CPU cores with 300-742 LGG slices)."""
    import threading

    import keras

    from training.callbacks import CancelOnFlag

    flag = threading.Event()

    class CancelAtTheSecondBatch(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.test_batches = 0
            self.train_batches = 0

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.train_batches += 1
            if batch == 1:
                flag.set()

        def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.test_batches += 1

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    rng = np.random.default_rng(0)
    x, xv = rng.random((16, 4)), rng.random((40, 4))
    counter = CancelAtTheSecondBatch()
    model.fit(x, x[:, :1], validation_data=(xv, xv[:, :1]), batch_size=2, epochs=3, verbose=0,
              callbacks=[counter, CancelOnFlag(flag)])
    assert counter.train_batches == 2  # stopped within the epoch
    assert counter.test_batches == 1  # not the 20 batches of a full validation pass
