"""Cross-validation: folds by institution, job lines for the GPU driver, out-of-fold evaluation and calibration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CancelAtFirstCheckpoint, _tiny_unetpp, phantom_patients

ROOT = Path(__file__).resolve().parent.parent


def test_folds_partition_the_patients_by_institution() -> None:
    from training.data import cv_folds

    patients = [f"TCGA_{inst}_{i:04d}_2000" for inst, n in (("CS", 7), ("DU", 11), ("HT", 5), ("EZ", 1))
                for i in range(n)]
    folds = cv_folds(patients, 5, seed=3)
    assert sorted(p for f in folds for p in f) == sorted(patients)  # every patient, once
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    for inst, n in (("CS", 7), ("DU", 11), ("HT", 5)):
        counts = [sum(p.split("_")[1] == inst for p in f) for f in folds]
        assert max(counts) - min(counts) <= 1, (inst, counts)  # each institution spread over the folds
    assert cv_folds(patients, 5, seed=3) == folds and cv_folds(patients, 5, seed=4) != folds
    with pytest.raises(ValueError, match="folds"):
        cv_folds(patients[:3], 5, seed=3)


def test_cv_jobs_keep_test_patients_out_of_every_job(tmp_path: Path) -> None:
    data = phantom_patients(tmp_path / "data", ["PA", "PB", "PC", "PD", "PE"], n=2)
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "cv_jobs.py"), "--data", str(data), "--folds", "2",
                          "--test-patients", "PE", "--final", "--options", "--epochs 3 --seed 9",
                          "--folds-json", str(tmp_path / "folds.json")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["cv1", "cv2", "cv_all"]
    folds = json.loads((tmp_path / "folds.json").read_text())["folds"]
    assert sorted(p for f in folds for p in f) == ["PA", "PB", "PC", "PD"]
    for line, fold in zip(lines, folds):
        assert f"--val-patients {' '.join(fold)} --test-patients PE --epochs 3 --seed 9" in line
    assert "--val-fraction 0 --test-patients PE --epochs 3" in lines[2] and "--val-patients" not in lines[2]


def _fold_model(path: Path, val: list[str], seed: int) -> Path:
    import keras

    from training.saving import save_model
    from unetpp_gui.core.metadata import ModelMetadata

    keras.utils.set_random_seed(seed)
    split = {"train": [], "validation": val, "test": ["PE"]}
    return save_model(_tiny_unetpp(), path, ModelMetadata(name=path.stem, training={"split": split}))


def test_out_of_fold_pools_each_folds_own_patients_and_calibrates_the_final_model(tmp_path: Path) -> None:
    """Each fold model predicts only its held-out patients; the pooled per-patient Dice is exactly the folds'
    own figures side by side; the out-of-fold calibration lands in the final model; overlapping folds are refused."""
    from training.data import find_pairs
    from training.evaluate import collect, metrics_at
    from unetpp_gui.core.metadata import read_metadata
    from unetpp_gui.core.model_io import load_model

    data = phantom_patients(tmp_path / "data", ["PA", "PB", "PC", "PD", "PE"], n=4)
    folds = [_fold_model(tmp_path / "cv1.h5", ["PA", "PB"], 1), _fold_model(tmp_path / "cv2.h5", ["PC", "PD"], 2)]
    final = _fold_model(tmp_path / "cv_all.h5", [], 3)
    report = tmp_path / "oof.json"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "cv_evaluate.py"), *map(str, folds), "--data",
                          str(data), "--report", str(report), "--calibrate-into", str(final)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(report.read_text())
    assert doc["held_out_by"] == {"PA": "cv1.h5", "PB": "cv1.h5", "PC": "cv2.h5", "PD": "cv2.h5"}
    pooled = doc["results"]["untuned (0.5, 0.001, no 3-D filter)"]["per_patient_dice"]
    assert sorted(pooled) == ["PA", "PB", "PC", "PD"]  # the test patient PE never enters
    pairs = find_pairs([str(data)]).pairs
    for path, val in zip(folds, (["PA", "PB"], ["PC", "PD"])):
        own = metrics_at(collect(load_model(path), [q for q in pairs if q.patient in val]), 0.5, 0.001)
        for patient in val:
            assert pooled[patient] == pytest.approx(own["per_patient_dice"][patient])
    cal = doc["calibration"]
    meta = read_metadata(final)
    assert meta.pixel_threshold == cal["pixel_threshold"] and meta.decision_threshold == cal["decision_threshold"]
    assert meta.metrics["calibration_patients"] == ["PA", "PB", "PC", "PD"]

    clash = _fold_model(tmp_path / "cv3.h5", ["PB"], 4)
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "cv_evaluate.py"), str(folds[0]), str(clash),
                          "--data", str(data)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "PB is held out by both cv1.h5 and cv3.h5" in run.stderr


def test_saved_out_of_fold_maps_stand_in_for_the_fold_models(tmp_path: Path) -> None:
    """--save-maps writes each fold's predictions; the pooled report from the maps alone (no models, no
    --data) or mixed with a model equals the report from the models, to the last digit."""
    import numpy as np

    data = phantom_patients(tmp_path / "data", ["PA", "PB", "PC", "PD", "PE"], n=4)
    folds = [_fold_model(tmp_path / "cv1.h5", ["PA", "PB"], 1), _fold_model(tmp_path / "cv2.h5", ["PC", "PD"], 2)]
    script = str(ROOT / "scripts" / "cv_evaluate.py")

    def report(*args: str) -> dict:
        out = tmp_path / "r.json"
        run = subprocess.run([sys.executable, script, *args, "--report", str(out)], capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        doc = json.loads(out.read_text())
        doc.pop("seconds")
        return doc

    maps = tmp_path / "maps"
    from_models = report(*map(str, folds), "--data", str(data), "--save-maps", str(maps))
    saved = sorted(p.name for p in maps.iterdir())
    assert saved == ["cv1.oof.npz", "cv2.oof.npz"]
    with np.load(maps / "cv1.oof.npz") as f:
        assert sorted(set(f["patient"].tolist())) == ["PA", "PB"] and str(f["model"]) == "cv1.h5"
        floor = int(f["floor"])
        assert floor == 12 and not ((f["prob"] > 0) & (f["prob"] <= floor)).any()
    assert report(str(maps / "cv1.oof.npz"), str(maps / "cv2.oof.npz")) == from_models
    (tmp_path / "models.json").write_text(json.dumps(from_models))
    same = subprocess.run([sys.executable, str(ROOT / "scripts" / "cv_compare.py"), str(tmp_path / "models.json"),
                           str(tmp_path / "r.json"), "--json"], capture_output=True, text=True, timeout=120)
    assert same.returncode == 0, same.stderr  # a real report against itself: every patient tied
    assert json.loads(same.stdout)["ties"] == 4 and json.loads(same.stdout)["sign_test_p"] == 1.0
    assert report(str(maps / "cv1.oof.npz"), str(folds[1]), "--data", str(data)) == from_models
    run = subprocess.run([sys.executable, script, str(maps / "cv1.oof.npz"), str(folds[0]), "--data", str(data)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "PA is held out by both cv1.h5 and cv1.h5" in run.stderr
    run = subprocess.run([sys.executable, script, str(folds[0])], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "--data is needed" in run.stderr


def test_two_networks_maps_average_into_one_map_file(tmp_path: Path) -> None:
    """scripts/average_maps.py: the mean level of each pixel, re-floored; the same slices are required."""
    import numpy as np

    from training.evaluate import Evaluated, load_maps, save_maps
    from unetpp_gui.core.postprocess import SliceStats

    rng = np.random.default_rng(0)
    gt = rng.random((3, 16, 16)) > 0.7

    def maps(name: str, levels: np.ndarray, slices: tuple[str, ...] = ("a.png", "b.png", "c.png")) -> Path:
        items = [Evaluated("P1", Path("P1") / s, SliceStats.from_map(q, g), q, g) for s, q, g in zip(slices, levels, gt)]
        return save_maps(tmp_path / name, items, name)

    a, b = rng.integers(0, 256, (2, 3, 16, 16), dtype=np.uint8)
    first, second = maps("a.npz", a.copy()), maps("b.npz", b.copy())
    with np.load(first) as fa, np.load(second) as fb:
        floor = int(fa["floor"])
        expected = np.rint((fa["prob"].astype(float) + fb["prob"]) / 2).astype(np.uint8)
    expected[expected <= floor] = 0
    script = str(ROOT / "scripts" / "average_maps.py")
    run = subprocess.run([sys.executable, script, str(first), str(second), str(tmp_path / "avg.npz")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    items, model = load_maps(tmp_path / "avg.npz")
    assert model == "avg(a.npz,b.npz)" and [it.path.name for it in items] == ["a.png", "b.png", "c.png"]
    assert np.array_equal(np.stack([it.prob_q for it in items]), expected) and (expected > 0).any()
    assert np.array_equal(np.stack([it.gt for it in items]), gt)
    c = rng.integers(0, 256, (3, 16, 16), dtype=np.uint8)
    third = maps("c.npz", c.copy())
    run = subprocess.run([sys.executable, script, str(first), str(second), str(third), str(tmp_path / "avg3.npz")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    with np.load(first) as fa, np.load(second) as fb, np.load(third) as fc:
        expected3 = np.rint((fa["prob"].astype(float) + fb["prob"] + fc["prob"]) / 3).astype(np.uint8)
    expected3[expected3 <= floor] = 0
    items, model = load_maps(tmp_path / "avg3.npz")
    assert model == "avg(a.npz,b.npz,c.npz)"
    assert np.array_equal(np.stack([it.prob_q for it in items]), expected3) and not np.array_equal(expected3, expected)
    other = maps("d.npz", b.copy(), ("a.png", "b.png", "d.png"))
    run = subprocess.run([sys.executable, script, str(first), str(second), str(other), str(tmp_path / "bad.npz")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "not the same slices" in run.stderr and not (tmp_path / "bad.npz").exists()
    run = subprocess.run([sys.executable, script, str(first), str(tmp_path / "one.npz")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "at least two" in run.stderr and not (tmp_path / "one.npz").exists()


@pytest.mark.slow
def test_cpu_jobs_script_starts_resumes_and_skips_finished_jobs(tmp_path: Path) -> None:
    """scripts/cpu_jobs.sh: a fresh job starts (with the extra options), one with an unfinished checkpoint goes
    on from it to its planned epochs, and a second pass skips both as done."""
    import os
    import shutil
    import threading

    from training.train import TrainConfig, train
    from unetpp_gui.core.metadata import read_metadata

    data = phantom_patients(tmp_path / "data", ["PA", "PB", "PC"])
    runs = tmp_path / "runs"
    tiny = "--base-filters 2 --depth 3 --image-size 64 --batch-size 4 --strategy default --val-patients PC"
    cancel = threading.Event()
    train(TrainConfig(data=[str(data)], out=str(runs / "b.h5"), epochs=2, base_filters=2, depth=3, image_size=64,
                      batch_size=4, strategy="default", val_patients=["PC"]),
          json_stream=CancelAtFirstCheckpoint(cancel), cancel=cancel)
    assert read_metadata(runs / "b.last.h5").training["epoch"] == 1
    jobs = tmp_path / "jobs.txt"
    jobs.write_text(f"# a comment\na: --data DATA {tiny} --epochs 1\n\nb: --data DATA {tiny} --epochs 2\n")
    root = Path(__file__).resolve().parent.parent
    bindir = Path(sys.executable).parent
    env = dict(os.environ, DATA=str(data), PYTHON=sys.executable,
               UNETPP=str(bindir / "unetpp") if (bindir / "unetpp").exists() else shutil.which("unetpp") or "unetpp")

    def run() -> str:
        done = subprocess.run(["bash", str(root / "scripts" / "cpu_jobs.sh"), str(jobs), str(runs),
                               "--validate-every", "3"], capture_output=True, text=True, timeout=600, env=env,
                              cwd=root)
        assert done.returncode == 0, done.stdout + done.stderr + (runs / "a.log").read_text()
        return done.stdout

    first = run()
    assert "a: starting" in first and "b: resuming at epoch 1 of 2" in first and "all jobs done" in first
    a, b = read_metadata(runs / "a.last.h5").training, read_metadata(runs / "b.last.h5").training
    assert a["epoch"] == 1 and a["config"]["validate_every"] == 3
    assert b["epoch"] == 2 and len(b["history"]["loss"]) == 2
    second = run()
    assert "a: done (1 of 1 epochs)" in second and "b: done (2 of 2 epochs)" in second


def _report(dice: dict[str, float], calibrated: dict[str, float] | None = None) -> dict:
    results = {"untuned (0.5, 0.001, no 3-D filter)": {"per_patient_dice": dice}}
    if calibrated is not None:
        results["calibrated out of fold"] = {"per_patient_dice": calibrated}
    return {"model": "m", "results": results}


def test_paired_comparison_of_two_evaluations(tmp_path: Path) -> None:
    """cv_compare: patient-by-patient differences, exact sign test, bootstrap interval; refuses evaluations of
    different patients and names a missing result."""
    from training.compare import paired, sign_test

    assert sign_test(10, 0) == pytest.approx(2 / 2 ** 10) and sign_test(5, 5) == 1.0 and sign_test(0, 0) == 1.0
    assert sign_test(14, 4) == pytest.approx(0.0309, abs=1e-4)  # the card's "14 of 18: p = 0.03"
    patients = [f"P{i:02d}" for i in range(12)]
    base = {p: 0.70 + 0.01 * i for i, p in enumerate(patients)}
    better = {p: d + 0.05 for p, d in base.items()}
    better["P03"] = base["P03"] - 0.20  # one patient lost badly
    c = paired(base, better)
    assert (c["wins"], c["losses"], c["ties"]) == (11, 1, 0)
    assert c["mean_difference"] == pytest.approx((11 * 0.05 - 0.20) / 12)
    assert c["sign_test_p"] == pytest.approx(sign_test(11, 1))
    lo, hi = c["bootstrap_95"]
    assert lo < c["mean_difference"] < hi and lo < 0.03 and hi > 0.03
    assert c["largest_losses"] == [("P03", pytest.approx(-0.20))]
    assert paired(base, better) == c  # the bootstrap is seeded: the same figures every time

    files = {}
    for name, doc in {"base": _report(base, base), "cand": _report(better, {p: d + 0.01 for p, d in base.items()}),
                      "other": _report({**base, "P99": 0.5})}.items():
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(doc))
    script = str(ROOT / "scripts" / "cv_compare.py")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=120)
    out = run(str(files["base"]), str(files["cand"]))
    assert out.returncode == 0 and "patients better / worse / tied: 11 / 1 / 0" in out.stdout
    cal = json.loads(run(str(files["base"]), str(files["cand"]), "--result", "calibrated", "--json").stdout)
    assert cal["wins"] == 12 and cal["mean_difference"] == pytest.approx(0.01)
    bad = run(str(files["base"]), str(files["other"]))
    assert bad.returncode == 2 and "different patients" in bad.stderr and "P99" in bad.stderr
    missing = run(str(files["base"]), str(files["other"]), "--result", "calibrated")
    assert missing.returncode == 2 and "no result named 'calibrated'" in missing.stderr
