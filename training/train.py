"""Training run: data -> split -> model -> fit with checkpoints, progress and cancel."""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO


from unetpp_gui.core.metadata import ModelMetadata, library_versions, read_metadata
from unetpp_gui.core.normalize import ChannelNorm, fit_channel_norm

from training.options import ARCHITECTURES, NORMALIZATIONS  # noqa: F401  (re-exported)


@dataclass
class TrainConfig:
    """Every knob of a run; stored in the model's metadata so a run can be repeated."""

    data: list[str]
    out: str
    architecture: str = "unetpp"
    base_filters: int = 16
    depth: int = 5
    deep_supervision: bool = False
    image_size: int = 256
    epochs: int = 20
    batch_size: int = 8
    learning_rate: float = 1e-4
    loss: str = "bce"
    lr_schedule: str = "constant"  # "constant" | "cosine"
    patience: int = 0  # early stopping on validation Dice; 0 = off
    mixed_precision: bool = False
    seed: int = 42
    val_fraction: float = 0.2
    val_patients: list[str] | None = None
    test_patients: list[str] | None = None  # held out of training and selection entirely
    patient_prefix_fields: int | None = None
    augment: bool = True
    oversample: int = 1
    empty_fraction: float = 1.0  # share of tumour-free training slices drawn each epoch
    normalize: str = "auto"  # "auto" (the source model's, else none) | "none" | "channel"
    resume: str | None = None
    init_from: str | None = None
    strategy: str = "auto"  # "auto" | "default" | "mirrored" | "multiworker"
    max_patients: int | None = None  # small runs (tests, smoke checks)
    max_slices: int | None = None
    steps_per_epoch: int | None = None
    progress_every: int = 1
    cancel_file: str | None = None


@dataclass
class TrainResult:
    status: str  # "done" | "cancelled" | "stopped_early"
    best_path: Path | None
    last_path: Path | None
    best_dice: float | None
    best_epoch: int | None
    epochs_run: int
    history: dict[str, list[float]] = field(default_factory=dict)
    train_patients: list[str] = field(default_factory=list)
    val_patients: list[str] = field(default_factory=list)


def last_path_for(out: Path) -> Path:
    """The resumable 'last epoch' checkpoint stored beside the best model."""
    return out.with_name(f"{out.stem}.last{out.suffix}")


def get_strategy(name: str) -> Any:
    """A tf.distribute strategy: TensorFlow's engine spreads the batches, we add nothing."""
    import tensorflow as tf

    if name == "auto":
        if os.environ.get("TF_CONFIG"):
            return tf.distribute.MultiWorkerMirroredStrategy()
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in gpus] or ["/cpu:0"])
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown strategy {name!r}")


def _architecture(cfg: TrainConfig) -> dict[str, Any]:
    arch: dict[str, Any] = {
        "name": cfg.architecture,
        "input_shape": [cfg.image_size, cfg.image_size, 3],
        "base_filters": cfg.base_filters,
        "depth": cfg.depth,
    }
    if cfg.architecture == "unetpp":
        arch["deep_supervision"] = cfg.deep_supervision
    return arch


def _normalization(cfg: TrainConfig, prior: ModelMetadata | None, images: Any) -> ChannelNorm | None:
    """The run's intensity normalisation: a resumed or fine-tuned model keeps its own (so the weights
    see what they were trained on); ``channel`` on a fresh model fits targets to the training slices."""
    if cfg.normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}")
    inherited = ChannelNorm.from_dict(prior.input_normalization) if prior is not None else None
    if cfg.resume:
        if cfg.normalize != "auto" and (cfg.normalize == "channel") != (inherited is not None):
            raise ValueError(f"{cfg.resume} keeps the intensity normalisation it was started with; "
                             "leave --normalize out to resume it")
        return inherited
    if cfg.normalize == "none":
        return None
    if cfg.normalize == "auto" or inherited is not None:
        return inherited
    return fit_channel_norm(images)


def check_output(out: Path) -> None:
    """Refuse an unusable ``--out`` before any data is read, and clear the temporary files a killed
    save left beside it (``.<name>.XXXXXXXX.h5``, never a finished checkpoint)."""
    import re

    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give the model file to write, e.g. {out / 'model.h5'}")
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise ValueError(f"--out {out}: the model is written as HDF5; use a .h5 file name")
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {out}: its folder cannot be created ({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--out {out}: the folder {folder} is not writable")
    for name in (out.name, last_path_for(out).name):
        stale = re.compile(rf"^\.{re.escape(name[:32])}\.[A-Za-z0-9_]{{8}}\.h5$")
        for p in folder.iterdir():
            if stale.match(p.name) and p.is_file():
                p.unlink(missing_ok=True)


def _emit(progress: Any, event: str, **fields: Any) -> None:
    if progress is not None:
        progress.emit(event, **fields)


def train(cfg: TrainConfig, json_stream: TextIO | None = None, cancel: threading.Event | None = None,
          verbose: int = 0) -> TrainResult:
    """Run one training job. Files on disk only ever hold complete epochs."""
    from unetpp_gui.core.quiet import import_tensorflow

    import_tensorflow()
    import keras
    import tensorflow as tf

    from training import callbacks as cb
    from training.data import (epoch_size, find_pairs, load_arrays, make_dataset, normalize_arrays, split_patients,
                               write_split)
    from training.losses import LOSSES, GlobalDice
    from training.models import build
    from training.saving import optimizer_step, read_optimizer_state, restore_optimizer, save_model

    cancel = cancel or threading.Event()
    started = time.monotonic()
    out = Path(cfg.out)
    check_output(out)
    keras.utils.set_random_seed(cfg.seed)

    # Resume / fine-tune: the file's own architecture and split win.
    initial_epoch, prior_meta = 0, None
    source = cfg.resume or cfg.init_from
    if source:
        prior_meta = read_metadata(source)
        if prior_meta.architecture:
            arch = prior_meta.architecture
            cfg.architecture = arch.get("name", cfg.architecture)
            cfg.base_filters = arch.get("base_filters", cfg.base_filters)
            cfg.depth = arch.get("depth", cfg.depth)
            cfg.deep_supervision = arch.get("deep_supervision", cfg.deep_supervision)
            cfg.image_size = int(arch.get("input_shape", [cfg.image_size])[0])
        if cfg.resume:
            initial_epoch = int(prior_meta.training.get("epoch", 0))
            started -= float(prior_meta.training.get("elapsed_s", 0.0))  # training time counts across resumes
            prior_split = prior_meta.training.get("split") or {}
            if not cfg.val_patients and prior_split:
                cfg.val_patients = list(prior_split["validation"])
            if not cfg.test_patients and prior_split.get("test"):
                cfg.test_patients = list(prior_split["test"])
    if cfg.architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}")
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {tuple(LOSSES)}")

    # Data and patient split.
    scan = find_pairs(cfg.data, cfg.patient_prefix_fields)
    patients = scan.patients
    if cfg.max_patients:
        patients = patients[: cfg.max_patients]
    test_p = sorted(set(cfg.test_patients or ()) & set(patients))
    if cfg.val_patients and set(cfg.val_patients) & set(test_p):
        raise ValueError("a patient cannot be in both the validation and the test split: "
                         + ", ".join(sorted(set(cfg.val_patients) & set(test_p))))
    patients = [p for p in patients if p not in set(test_p)]
    if len(patients) < 2:
        raise ValueError(f"need image/mask pairs from at least 2 patients in {cfg.data}; found {len(patients)}")
    if cfg.val_patients:
        val_p = sorted(set(cfg.val_patients) & set(patients))
        train_p = [p for p in patients if p not in set(val_p)]
    else:
        train_p, val_p = split_patients(patients, cfg.val_fraction, cfg.seed)
    if not val_p or not train_p:
        raise ValueError("the split left no training or no validation patients")
    by_patient: dict[str, list[Any]] = {}
    for pair in scan.pairs:
        by_patient.setdefault(pair.patient, []).append(pair)

    def pick(ps: list[str]) -> list[Any]:
        chosen = [pair for p in ps for pair in by_patient.get(p, [])]
        return chosen[: cfg.max_slices] if cfg.max_slices else chosen
    train_pairs, val_pairs = pick(train_p), pick(val_p)
    hw = (cfg.image_size, cfg.image_size)
    split_file = out.with_name(f"{out.stem}.split.json")
    write_split(split_file, train_p, val_p, cfg.seed, cfg.val_fraction, test_p)
    train_arr = load_arrays(train_pairs, hw)
    val_arr = load_arrays(val_pairs, hw)
    if cancel.is_set():  # stopped while the slices were read: nothing was trained, nothing written
        return TrainResult("cancelled", None, None, None, None, 0, {}, train_p, val_p)
    norm = _normalization(cfg, prior_meta, train_arr.images)
    if norm is not None:
        normalize_arrays(train_arr, norm)
        normalize_arrays(val_arr, norm)

    if cfg.mixed_precision:
        from unetpp_gui.core.model_io import cpu_supports_bf16

        if not tf.config.list_physical_devices("GPU") and not cpu_supports_bf16():
            print("warning: this CPU has no native bfloat16 (AVX512-BF16/AMX); mixed precision will be "
                  "emulated and slower than float32", file=sys.stderr, flush=True)
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        strategy = get_strategy(cfg.strategy)
        arch = _architecture(cfg)
        n_outputs = cfg.depth - 1 if (cfg.architecture == "unetpp" and cfg.deep_supervision) else 1
        steps = math.ceil(epoch_size(train_arr, cfg.oversample, cfg.empty_fraction) / cfg.batch_size)
        if cfg.steps_per_epoch:
            steps = min(steps, cfg.steps_per_epoch)
        with strategy.scope():
            model = build(arch)
            if source:
                from unetpp_gui.core.model_io import load_model

                saved = load_model(source).keras_model
                model.set_weights(saved.get_weights())
            total_steps = max(1, steps * cfg.epochs)
            lr: Any = cfg.learning_rate
            if cfg.lr_schedule == "cosine":
                lr = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, total_steps, alpha=0.05)
            optimizer = keras.optimizers.Adam(lr)
            head = model.output_names[-1] if n_outputs > 1 else None
            metrics = {head: [GlobalDice(name="dice")]} if head else [GlobalDice(name="dice")]
            loss = LOSSES[cfg.loss]
            model.compile(optimizer=optimizer, loss=[loss] * n_outputs if n_outputs > 1 else loss, metrics=metrics)
            if cfg.resume:
                state = read_optimizer_state(cfg.resume)
                if state is None:
                    raise ValueError(f"{cfg.resume} holds no optimizer state; use --init-from to fine-tune it")
                restore_optimizer(optimizer, model, state)

        train_ds = make_dataset(train_arr, cfg.batch_size, n_outputs, True, cfg.augment, cfg.oversample, cfg.seed,
                                cfg.empty_fraction)
        if cfg.steps_per_epoch:
            train_ds = train_ds.take(steps)
        train_ds = train_ds.apply(tf.data.experimental.assert_cardinality(steps))
        val_batches = math.ceil(len(val_arr) / cfg.batch_size)
        val_ds = make_dataset(val_arr, cfg.batch_size, n_outputs, training=False)
        val_ds = val_ds.apply(tf.data.experimental.assert_cardinality(val_batches))

        monitor = f"val_{head}_dice" if head else "val_dice"
        progress = cb.JsonProgress(json_stream, cfg.epochs, steps, initial_epoch, cfg.progress_every) if json_stream else None
        history: dict[str, list[float]] = {}
        if prior_meta and cfg.resume:
            history = {k: list(v) for k, v in prior_meta.training.get("history", {}).items()}
        data_summary = {
            "folders": [Path(d).name for d in cfg.data],
            "patients": len(patients),
            "train_slices": len(train_arr),
            "train_tumour_slices": int(train_arr.tumour.sum()),
            "val_slices": len(val_arr),
            "val_tumour_slices": int(val_arr.tumour.sum()),
        }

        def save(path: Path, epoch: int, logs: dict) -> None:
            meta = ModelMetadata(
                name=out.stem,
                architecture=arch,
                training={
                    "config": {k: v for k, v in asdict(cfg).items() if k not in ("cancel_file",)},
                    "epoch": epoch,
                    "optimizer_step": optimizer_step(optimizer),
                    "data": data_summary,
                    "split": {"train": train_p, "validation": val_p, "test": test_p, "seed": cfg.seed},
                    "history": history,
                    "elapsed_s": round(time.monotonic() - started, 1),
                    "hardware": hardware_description(),
                },
                metrics={"val_dice_global": float(logs.get(monitor, float("nan"))), "epoch": epoch},
                versions=library_versions(),
                input_normalization=norm.to_dict() if norm is not None else {},
            )
            if prior_meta is not None and prior_meta.from_file and cfg.resume:
                meta.pixel_threshold = prior_meta.pixel_threshold
                meta.decision_threshold = prior_meta.decision_threshold
            save_model(model, path, meta, optimizer)

        class _History(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                if not cancel.is_set():
                    for k, v in (logs or {}).items():
                        history.setdefault(k, []).append(round(float(v), 6))

        best0, best_epoch0 = -math.inf, None
        if prior_meta is not None and cfg.resume and out.exists():
            best_meta = read_metadata(out)
            best0 = float(best_meta.metrics.get("val_dice_global", -math.inf))
            best_epoch0 = best_meta.metrics.get("epoch")
        ckpt = cb.Checkpoint(
            monitor, out, last_path_for(out), save, cancel, best=best0, best_epoch=best_epoch0,
            on_save=lambda kind, p, e: _emit(progress, "checkpoint", kind=kind, path=str(p), epoch=e),
        )
        cancel_cb = cb.CancelOnFlag(cancel, Path(cfg.cancel_file) if cfg.cancel_file else None)
        callbacks: list[Any] = [cancel_cb, _History(), ckpt]
        if progress:
            callbacks.insert(0, progress)
            _emit(progress, "start", epochs=cfg.epochs, steps=steps, initial_epoch=initial_epoch,
                  train_slices=len(train_arr), val_slices=len(val_arr), train_patients=len(train_p),
                  val_patients=len(val_p), monitor=monitor)
        early = None
        if cfg.patience > 0:
            early = keras.callbacks.EarlyStopping(monitor, mode="max", patience=cfg.patience)
            callbacks.append(early)
        model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, initial_epoch=initial_epoch,
                  callbacks=callbacks, verbose=verbose, shuffle=False)  # tf.data reshuffles per epoch
    finally:
        if cfg.mixed_precision:
            keras.mixed_precision.set_global_policy("float32")

    epochs_run = len(history.get("loss", []))
    status = "cancelled" if cancel.is_set() else ("stopped_early" if early and early.stopped_epoch else "done")
    best_dice = None if ckpt.best == -math.inf else ckpt.best
    result = TrainResult(status, out if out.exists() else None,
                         last_path_for(out) if last_path_for(out).exists() else None,
                         best_dice, ckpt.best_epoch, epochs_run, history, train_p, val_p)
    _emit(progress, status, best_path=str(result.best_path) if result.best_path else None,
          best_dice=best_dice, best_epoch=ckpt.best_epoch, epochs_run=epochs_run)
    return result


def hardware_description() -> str:
    """What trained the model: GPUs if TensorFlow sees any, else the CPU's model, cores and vector units."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return f"{len(gpus)} GPU(s)"
    model, flags = "CPU", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    units = [u for u in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {u}" in flags]
    return f"{os.cpu_count()} CPU cores, {model}" + (f" ({', '.join(units)})" if units else "")


def configure_threads() -> None:
    """Use every core for one op (the machines here have 2): fastest for conv nets on CPU."""
    import tensorflow as tf

    n = os.cpu_count() or 2
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:
        pass  # already initialised


def print_result(result: TrainResult, stream: TextIO = sys.stderr) -> None:
    best = f"{result.best_dice:.4f} (epoch {result.best_epoch})" if result.best_dice is not None else "none"
    print(f"{result.status}: {result.epochs_run} epoch(s); best validation Dice {best}", file=stream)
    if result.best_path:
        print(f"best model: {result.best_path}", file=stream)
    if result.last_path:
        print(f"resumable last checkpoint: {result.last_path}", file=stream)
