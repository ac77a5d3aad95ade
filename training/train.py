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


from unetpp_gui.core.context import SliceContext
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
    crop_size: int = 0  # train on random crops of this size (0 = whole slices); validation stays whole
    crop_tumour: float = 0.5  # share of crops centred near a tumour pixel (tumour slices only)
    missing_sequence: float = 0.0  # share of training images given a missing sequence (training.data.drop_sequences)
    ema: float = 0.0  # exponential moving average of the weights (momentum); 0 = off
    normalize: str = "auto"  # "auto" (the source model's, else none) | "none" | "channel"
    resume: str | None = None
    init_from: str | None = None
    strategy: str = "auto"  # "auto" | "default" | "mirrored" | "multiworker"
    max_patients: int | None = None  # small runs (tests, smoke checks)
    max_slices: int | None = None
    steps_per_epoch: int | None = None
    progress_every: int = 1
    cancel_file: str | None = None
    teacher_maps: str | None = None  # distillation: a teacher's maps of the training slices (training.distill)
    distill_alpha: float = 0.5  # target = (1 - alpha) * mask + alpha * teacher
    validate_every: int = 1  # validate every N epochs and after the last (runs that keep their last epoch)
    context_slices: int = 0  # 2.5-D: neighbouring slices each side read as extra channels (core.context)
    context_channel: int = 1  # which channel of the neighbours (1: FLAIR in the LGG slices)


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


def _architecture(cfg: TrainConfig) -> dict[str, Any]:
    arch: dict[str, Any] = {
        "name": cfg.architecture,
        "input_shape": [cfg.image_size, cfg.image_size, 3 + 2 * cfg.context_slices],
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


#: Settings a resumed run takes from its checkpoint, whatever the command line says.
RESUMED_SETTINGS = ("loss", "learning_rate", "lr_schedule", "batch_size", "empty_fraction", "oversample", "augment",
                    "mixed_precision", "seed", "patience", "val_fraction", "patient_prefix_fields", "crop_size",
                    "crop_tumour", "missing_sequence", "ema", "teacher_maps", "distill_alpha", "validate_every")


@dataclass
class _Split:
    """Who is in which split (never one patient in two)."""

    train: list[str]
    val: list[str]
    test: list[str]
    patients: list[str]  # every patient that was available (test ones included)


def _apply_source(cfg: TrainConfig) -> tuple[int, ModelMetadata | None, float]:
    """Resume / fine-tune: the source file's architecture (and, resuming, its epoch, time and split) win.
    Returns (initial epoch, the source's metadata, seconds already trained)."""
    source = cfg.resume or cfg.init_from
    if not source:
        return 0, None, 0.0
    prior = read_metadata(source)
    if prior.architecture:
        arch = prior.architecture
        cfg.architecture = arch.get("name", cfg.architecture)
        cfg.base_filters = arch.get("base_filters", cfg.base_filters)
        cfg.depth = arch.get("depth", cfg.depth)
        cfg.deep_supervision = arch.get("deep_supervision", cfg.deep_supervision)
        cfg.image_size = int(arch.get("input_shape", [cfg.image_size])[0])
    ctx = SliceContext.from_dict(prior.input_context)  # the source's input wins, as its architecture does
    cfg.context_slices, cfg.context_channel = (ctx.slices, ctx.channel) if ctx else (0, cfg.context_channel)
    if not cfg.resume:
        return 0, prior, 0.0
    stored = prior.training.get("config") or {}
    for name in RESUMED_SETTINGS:  # the run goes on as it was started; only --epochs (and paths) are new
        if name in stored:
            setattr(cfg, name, stored[name])
    split = prior.training.get("split") or {}
    if not cfg.val_patients and split:
        cfg.val_patients = list(split["validation"])
    if not cfg.test_patients and split.get("test"):
        cfg.test_patients = list(split["test"])
    return int(prior.training.get("epoch", 0)), prior, float(prior.training.get("elapsed_s", 0.0))


def _split(cfg: TrainConfig, available: list[str]) -> _Split:
    """Test patients out first, then validation (named or stratified by institution), the rest trains."""
    from training.data import split_patients

    patients = available[: cfg.max_patients] if cfg.max_patients else list(available)
    test = sorted(set(cfg.test_patients or ()))  # held out and stored even where this data lacks them
    if cfg.val_patients and set(cfg.val_patients) & set(test):
        raise ValueError("a patient cannot be in both the validation and the test split: "
                         + ", ".join(sorted(set(cfg.val_patients) & set(test))))
    rest = [p for p in patients if p not in set(test)]
    if len(rest) < 2:
        raise ValueError(f"need image/mask pairs from at least 2 patients in {cfg.data}; found {len(rest)}")
    if cfg.val_patients:
        val = sorted(set(cfg.val_patients) & set(rest))
        train = [p for p in rest if p not in set(val)]
    elif cfg.val_fraction == 0:  # no validation: a final run on every patient, its recipe chosen elsewhere
        train, val = rest, []
    else:
        train, val = split_patients(rest, cfg.val_fraction, cfg.seed)
    if not train or (not val and cfg.val_fraction != 0):
        raise ValueError("the split left no training or no validation patients")
    return _Split(train, val, test, rest)


def _pairs_of(pairs: list[Any], patients: list[str], max_slices: int | None) -> list[Any]:
    by_patient: dict[str, list[Any]] = {}
    for pair in pairs:
        by_patient.setdefault(pair.patient, []).append(pair)
    chosen = [pair for p in patients for pair in by_patient.get(p, [])]
    return chosen[:max_slices] if max_slices else chosen


def _set_precision(cfg: TrainConfig) -> None:
    import keras

    from training import backend
    from unetpp_gui.core.model_io import cpu_supports_bf16

    if not backend.gpus() and not cpu_supports_bf16():
        print("warning: this CPU has no native bfloat16 (AVX512-BF16/AMX); mixed precision will be "
              "emulated and slower than float32", file=sys.stderr, flush=True)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")


def _compiled_model(cfg: TrainConfig, arch: dict[str, Any], n_outputs: int, total_steps: int) -> tuple[Any, Any, str | None]:
    """The network (source weights when resuming or fine-tuning), compiled; (model, optimizer, monitored head)."""
    import keras

    from training.losses import LOSSES, GlobalDice
    from training.models import build
    from training.saving import load_keras, read_optimizer_state, restore_optimizer, swap_ema_weights

    if cfg.crop_size:  # any input size: crops train, whole slices validate (saved at the stored size)
        arch = dict(arch, input_shape=[None, None, arch["input_shape"][2]])
    model = build(arch)
    source = cfg.resume or cfg.init_from
    if source:
        model.set_weights(load_keras(source).get_weights())
    lr: Any = cfg.learning_rate
    if cfg.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, max(1, total_steps), alpha=0.05)
    ema = {"use_ema": True, "ema_momentum": cfg.ema} if cfg.ema else {}
    optimizer = keras.optimizers.Adam(lr, **ema)
    head = model.output_names[-1] if n_outputs > 1 else None
    metrics = {head: [GlobalDice(name="dice")]} if head else [GlobalDice(name="dice")]
    loss = LOSSES[cfg.loss]
    model.compile(optimizer=optimizer, loss=[loss] * n_outputs if n_outputs > 1 else loss, metrics=metrics)
    if cfg.resume:
        state = read_optimizer_state(cfg.resume)
        if state is None:
            raise ValueError(f"{cfg.resume} holds no optimizer state; use --init-from to fine-tune it")
        restore_optimizer(optimizer, model, state)
        if cfg.ema:  # the file holds the averages as weights and the raw weights as averages
            swap_ema_weights(optimizer)
    return model, optimizer, head


def training_steps(epoch_slices: int, batch_size: int, full_batches: bool = False) -> int:
    """Steps per epoch. ``full_batches`` (JAX, torch) leaves out an epoch's partial last batch, as XLA compiles
    the training step anew for each batch shape (on CPU JAX, a tiny UNet++: 12 s of the first epoch's 42 s);
    the slices it leaves out are redrawn in the next epoch's shuffled order."""
    if full_batches and epoch_slices >= batch_size:
        return epoch_slices // batch_size
    return math.ceil(epoch_slices / batch_size)


def even_batch(n: int, batch_size: int) -> int:
    """A validation batch size that splits ``n`` slices into equal batches: the largest divisor of ``n`` from
    half to twice ``batch_size``, else ``batch_size``. XLA (JAX, torch) compiles the validation step once per
    batch shape; a partial last batch cost a second compile of 21-24 s per job on an H100 beside four others."""
    if n <= 0:
        return batch_size
    for size in range(min(n, 2 * batch_size), min(n, max(1, batch_size // 2)) - 1, -1):
        if n % size == 0:
            return size
    return batch_size


def _datasets(cfg: TrainConfig, train_arr: Any, val_arr: Any, n_outputs: int, steps: int) -> tuple[Any, Any]:
    """Training and validation batches for the backend in use; no validation batches (None) without patients."""
    from training import backend

    if not backend.is_tensorflow():
        from training.batches import SliceBatches

        return (SliceBatches(train_arr, cfg.batch_size, n_outputs, True, cfg.augment, cfg.oversample, cfg.seed,
                             cfg.empty_fraction, cfg.crop_size, cfg.crop_tumour, steps,
                             missing_sequence=cfg.missing_sequence),
                SliceBatches(val_arr, even_batch(len(val_arr), cfg.batch_size), n_outputs, training=False)
                if len(val_arr) else None)
    import tensorflow as tf

    from training.data import make_dataset

    train_ds = make_dataset(train_arr, cfg.batch_size, n_outputs, True, cfg.augment, cfg.oversample, cfg.seed,
                            cfg.empty_fraction, cfg.crop_size, cfg.crop_tumour, cfg.missing_sequence)
    if cfg.steps_per_epoch:
        train_ds = train_ds.take(steps)
    train_ds = train_ds.apply(tf.data.experimental.assert_cardinality(steps))
    if not len(val_arr):
        return train_ds, None
    val_ds = make_dataset(val_arr, cfg.batch_size, n_outputs, training=False)
    val_ds = val_ds.apply(tf.data.experimental.assert_cardinality(math.ceil(len(val_arr) / cfg.batch_size)))
    return train_ds, val_ds


@dataclass
class _Saver:
    """Writes a checkpoint with everything the run knows in its metadata (called by the Checkpoint callback)."""

    cfg: TrainConfig
    out: Path
    arch: dict[str, Any]
    split: _Split
    data: dict[str, Any]
    norm: ChannelNorm | None
    prior: ModelMetadata | None
    started: float
    monitor: str | None
    model: Any = None
    optimizer: Any = None
    history: dict[str, list[float]] = field(default_factory=dict)

    def __call__(self, path: Path, epoch: int, logs: dict) -> None:
        from training.saving import optimizer_step, save_model

        cfg, s = self.cfg, self.split
        meta = ModelMetadata(
            name=self.out.stem,
            architecture=self.arch,
            training={
                "config": {k: v for k, v in asdict(cfg).items() if k not in ("cancel_file",)},
                "epoch": epoch,
                "optimizer_step": optimizer_step(self.optimizer),
                "data": self.data,
                "split": {"train": s.train, "validation": s.val, "test": s.test, "seed": cfg.seed},
                "history": self.history,
                "elapsed_s": round(time.monotonic() - self.started, 1),
                "hardware": hardware_description(),
            },
            metrics={"val_dice_global": float(logs.get(self.monitor, float("nan")) if self.monitor else float("nan")),
                     "epoch": epoch},
            versions=library_versions(),
            input_normalization=self.norm.to_dict() if self.norm is not None else {},
            input_context=(SliceContext(cfg.context_slices, cfg.context_channel).to_dict()
                           if cfg.context_slices else {}),
        )
        if self.prior is not None and self.prior.from_file and cfg.resume:
            meta.pixel_threshold = self.prior.pixel_threshold
            meta.decision_threshold = self.prior.decision_threshold
        save_model(self.model, path, meta, self.optimizer)


def _callbacks(cfg: TrainConfig, saver: _Saver, cancel: threading.Event, progress: Any) -> tuple[list[Any], Any, Any]:
    """Progress, cancel, history, checkpoints (best and last), early stopping; returns (all, checkpoint, early)."""
    import keras

    from training import callbacks as cb

    out, history = saver.out, saver.history

    class _History(keras.callbacks.Callback):
        """One value per epoch and key; None where an epoch was not validated (--validate-every)."""

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if cancel.is_set():
                return
            done = len(history.get("loss", []))
            for k, v in (logs or {}).items():
                values = history.setdefault(k, [])
                values.extend([None] * (done - len(values)))
                values.append(round(float(v), 6))
            for values in history.values():
                values.extend([None] * (done + 1 - len(values)))

    best0, best_epoch0 = -math.inf, None
    if saver.prior is not None and cfg.resume and out.exists():
        best_meta = read_metadata(out)
        best0 = float(best_meta.metrics.get("val_dice_global", -math.inf))
        best_epoch0 = best_meta.metrics.get("epoch")
    ckpt = cb.Checkpoint(saver.monitor, out, last_path_for(out), saver, cancel, best=best0, best_epoch=best_epoch0,
                         on_save=lambda kind, p, e: _emit(progress, "checkpoint", kind=kind, path=str(p), epoch=e))
    callbacks: list[Any] = [cb.CancelOnFlag(cancel, Path(cfg.cancel_file) if cfg.cancel_file else None), _History(), ckpt]
    if cfg.ema:  # validate and save the averaged weights (swapped in before the checkpoint runs)
        callbacks.insert(0, keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if progress:
        callbacks.insert(0, progress)
    early = None
    if cfg.patience > 0:
        early = keras.callbacks.EarlyStopping(saver.monitor, mode="max", patience=cfg.patience)
        callbacks.append(early)
    return callbacks, ckpt, early


def train(cfg: TrainConfig, json_stream: TextIO | None = None, cancel: threading.Event | None = None,
          verbose: int = 0) -> TrainResult:
    """Run one training job: source model, split, data, model, fit. Files on disk only ever hold complete epochs."""
    from training import backend

    backend.prepare()
    import keras

    from training import callbacks as cb
    from training.data import add_context, epoch_size, find_pairs, load_arrays, normalize_arrays, write_split
    from training.losses import LOSSES

    cancel = cancel or threading.Event()
    out = Path(cfg.out)
    check_output(out)
    keras.utils.set_random_seed(cfg.seed)
    initial_epoch, prior, trained_s = _apply_source(cfg)
    started = time.monotonic() - trained_s  # training time counts across resumes
    if cfg.architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}")
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {tuple(LOSSES)}")
    if cfg.crop_size and (cfg.crop_size % 2 ** (cfg.depth - 1) or not 0 < cfg.crop_size <= cfg.image_size):
        raise ValueError(f"--crop-size must be a multiple of {2 ** (cfg.depth - 1)} between "
                         f"{2 ** (cfg.depth - 1)} and the image size {cfg.image_size} (or 0 for whole slices)")
    if not 0.0 <= cfg.ema < 1.0:
        raise ValueError("--ema is a momentum in [0, 1): e.g. 0.995, or 0 for off")
    if not 0.0 <= cfg.distill_alpha <= 1.0:
        raise ValueError("--distill-alpha is a weight in [0, 1]")
    if not 0.0 <= cfg.missing_sequence <= 1.0:
        raise ValueError("--missing-sequence is a share of the training images in [0, 1]")
    if cfg.val_fraction == 0 and not cfg.val_patients and cfg.patience:
        raise ValueError("--patience stops on validation Dice: it needs validation patients")
    if cfg.validate_every < 1:
        raise ValueError("--validate-every is a number of epochs (1 = every epoch)")
    if cfg.context_slices < 0 or not 0 <= cfg.context_channel < 3:
        raise ValueError("--context-slices is a number of slices each side (0 = none); --context-channel 0, 1 or 2")

    scan = find_pairs(cfg.data, cfg.patient_prefix_fields)
    split = _split(cfg, scan.patients)
    write_split(out.with_name(f"{out.stem}.split.json"), split.train, split.val, cfg.seed, cfg.val_fraction, split.test)
    hw = (cfg.image_size, cfg.image_size)
    train_pairs = _pairs_of(scan.pairs, split.train, cfg.max_slices)
    train_arr = load_arrays(train_pairs, hw)
    if cfg.teacher_maps:
        from training.distill import slice_name, soft_targets

        train_arr.targets = soft_targets([slice_name(p.image) for p in train_pairs], train_arr.masks,
                                         cfg.teacher_maps, cfg.distill_alpha)
    val_pairs = _pairs_of(scan.pairs, split.val, cfg.max_slices)
    val_arr = load_arrays(val_pairs, hw)
    if cancel.is_set():  # stopped while the slices were read: nothing was trained, nothing written
        return TrainResult("cancelled", None, None, None, None, 0, {}, split.train, split.val)
    norm = _normalization(cfg, prior, train_arr.images)
    if norm is not None:
        normalize_arrays(train_arr, norm)
        normalize_arrays(val_arr, norm)
    if cfg.context_slices:  # after the normalisation: each neighbour normalised as a slice of its own
        add_context(train_arr, [p.image for p in train_pairs], cfg.context_slices, cfg.context_channel)
        add_context(val_arr, [p.image for p in val_pairs], cfg.context_slices, cfg.context_channel)

    if cfg.mixed_precision:
        _set_precision(cfg)
    try:
        arch = _architecture(cfg)
        n_outputs = cfg.depth - 1 if (cfg.architecture == "unetpp" and cfg.deep_supervision) else 1
        epoch_slices = epoch_size(train_arr, cfg.oversample, cfg.empty_fraction)
        steps = training_steps(epoch_slices, cfg.batch_size, full_batches=not backend.is_tensorflow())
        steps = min(steps, cfg.steps_per_epoch) if cfg.steps_per_epoch else steps
        with backend.strategy_scope(cfg.strategy):
            model, optimizer, head = _compiled_model(cfg, arch, n_outputs, steps * cfg.epochs)
        train_ds, val_ds = _datasets(cfg, train_arr, val_arr, n_outputs, steps)
        # without validation every epoch is saved as the model (the last one is kept)
        monitor = (f"val_{head}_dice" if head else "val_dice") if len(val_arr) else None
        data = {"folders": [Path(d).name for d in cfg.data], "patients": len(split.patients),
                "train_slices": len(train_arr), "train_tumour_slices": int(train_arr.tumour.sum()),
                "val_slices": len(val_arr), "val_tumour_slices": int(val_arr.tumour.sum())}
        saver = _Saver(cfg, out, arch, split, data, norm, prior, started, monitor, model, optimizer,
                       {k: list(v) for k, v in prior.training.get("history", {}).items()} if prior and cfg.resume else {})
        progress = cb.JsonProgress(json_stream, cfg.epochs, steps, initial_epoch, cfg.progress_every) if json_stream else None
        callbacks, ckpt, early = _callbacks(cfg, saver, cancel, progress)
        _emit(progress, "start", epochs=cfg.epochs, steps=steps, initial_epoch=initial_epoch,
              epoch_slices=epoch_slices, batch_size=cfg.batch_size,
              train_slices=len(train_arr), val_slices=len(val_arr), train_patients=len(split.train),
              val_patients=len(split.val), monitor=monitor)
        model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, initial_epoch=initial_epoch,
                  validation_freq=validation_epochs(cfg.epochs, cfg.validate_every),
                  callbacks=callbacks, verbose=verbose, shuffle=False)  # the pipelines reshuffle per epoch
    finally:
        if cfg.mixed_precision:
            keras.mixed_precision.set_global_policy("float32")
    return _result(cancel, early, ckpt, out, saver.history, split, progress)


def validation_epochs(epochs: int, every: int) -> int | list[int]:
    """Keras's ``validation_freq``: every epoch, or every ``every``-th (1-based) and always the last."""
    return 1 if every <= 1 else sorted({e for e in range(every, epochs + 1, every)} | {epochs})


def _result(cancel: threading.Event, early: Any, ckpt: Any, out: Path, history: dict, split: _Split,
            progress: Any) -> TrainResult:
    epochs_run = len(history.get("loss", []))
    status = "cancelled" if cancel.is_set() else ("stopped_early" if early and early.stopped_epoch else "done")
    best_dice = None if ckpt.best == -math.inf else ckpt.best
    last = last_path_for(out)
    result = TrainResult(status, out if out.exists() else None, last if last.exists() else None,
                         best_dice, ckpt.best_epoch, epochs_run, history, split.train, split.val)
    _emit(progress, status, best_path=str(result.best_path) if result.best_path else None,
          best_dice=best_dice, best_epoch=ckpt.best_epoch, epochs_run=epochs_run)
    return result


def hardware_description() -> str:
    """What trained the model: the backend's GPUs if it sees any, else the CPU's model, cores and vector units."""
    from training import backend

    gpus = backend.gpus()
    if gpus:
        return f"{len(gpus)} GPU(s) ({', '.join(sorted(set(gpus)))}), Keras on {backend.version()}"
    from unetpp_gui.core.model_io import cpu_info

    model, flags = cpu_info()
    units = [u for u in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if u in flags]
    return f"{os.cpu_count()} CPU cores, {model}" + (f" ({', '.join(units)})" if units else "")


def print_result(result: TrainResult, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    best = f"{result.best_dice:.4f} (epoch {result.best_epoch})" if result.best_dice is not None else "none"
    print(f"{result.status}: {result.epochs_run} epoch(s); best validation Dice {best}", file=stream)
    if result.best_path:
        print(f"best model: {result.best_path}", file=stream)
    if result.last_path:
        print(f"resumable last checkpoint: {result.last_path}", file=stream)
