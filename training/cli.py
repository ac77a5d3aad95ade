"""Command line for training and evaluation (``unetpp train|evaluate`` and ``python -m training``)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Sequence

from training.options import ARCHITECTURES, LOSS_NAMES, LR_SCHEDULES, NORMALIZATIONS, SPLITS, STRATEGIES


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, help="folder(s) of <name>.png + <name>_mask.png, or images/ + masks/")
    p.add_argument("--out", required=True, help="best model (.h5); a resumable <out>.last.h5 and <out>.split.json go beside it")
    p.add_argument("--architecture", choices=ARCHITECTURES, default="unetpp")
    p.add_argument("--base-filters", type=int, default=16, help="filters at level 0 (doubling per level); 16 suits CPUs")
    p.add_argument("--depth", type=int, default=5, help="levels (5 as in the paper)")
    p.add_argument("--deep-supervision", action="store_true", help="heads on X_0_1..X_0_4 (allows pruned inference)")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--loss", choices=LOSS_NAMES, default="bce")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant")
    p.add_argument("--patience", type=int, default=0, help="early stopping on validation Dice (0 = off)")
    p.add_argument("--mixed-precision", action="store_true", help="mixed_bfloat16 (CPUs with AVX512-BF16/AMX)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of patients held out (stratified by institution); 0: no validation, every "
                        "epoch is saved and --out ends with the last (a final run whose recipe was chosen by "
                        "cross-validation)")
    p.add_argument("--val-patients", nargs="*", help="explicit validation patients (overrides --val-fraction)")
    p.add_argument("--test-patients", nargs="*",
                   help="patients kept out of training and checkpoint selection (an untouched test split, "
                        "stored in the model for 'unetpp evaluate --split test')")
    p.add_argument("--patient-prefix-fields", type=int, help="patient = first N '_' fields of the file name (flat folders)")
    p.add_argument("--normalize", choices=NORMALIZATIONS, default="auto",
                   help="per-slice, per-channel intensity normalisation (channel: fitted to the training "
                        "slices and stored in the model); auto: the --init-from/--resume model's, else none")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--oversample", type=int, default=1, help="show tumour slices N times per epoch")
    p.add_argument("--empty-fraction", type=float, default=1.0,
                   help="share of tumour-free training slices drawn each epoch (redrawn per epoch)")
    p.add_argument("--crop-size", type=int, default=0,
                   help="train on random N x N crops (about (N/size)^2 of a slice's cost; 0 = whole slices); "
                        "validation and the saved model use whole slices")
    p.add_argument("--crop-tumour", type=float, default=0.5,
                   help="share of crops centred near a tumour pixel (on tumour slices)")
    p.add_argument("--missing-sequence", type=float, default=0.0,
                   help="share of training images given a missing sequence as the LGG slices have them: FLAIR "
                        "copied into the pre-contrast channel, the post-contrast one or both (augmentation; 0 = off)")
    p.add_argument("--context-slices", type=int, default=0,
                   help="2.5-D input: also read one channel (--context-channel) of the N slices before and after "
                        "each slice in its patient's stack (0 = each slice alone); stored in the model, the engine "
                        "reads the neighbours from the slice's folder")
    p.add_argument("--context-channel", type=int, default=1,
                   help="which channel of the neighbouring slices (1: FLAIR, the middle channel of the LGG slices)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="keep an exponential moving average of the weights with this momentum (e.g. 0.995); "
                        "validation and checkpoints use the average (0 = off)")
    p.add_argument("--validate-every", type=int, default=1,
                   help="validate every N epochs and after the last (saves time where the last epoch is kept, "
                        "e.g. cross-validation folds); checkpoints: last every epoch, best among validated ones")
    p.add_argument("--resume", help="continue a checkpoint (weights, optimizer state, epoch, split)")
    p.add_argument("--init-from", help="fine-tune: start from this model's weights with a fresh optimizer")
    p.add_argument("--teacher-maps", help="distillation: a teacher's probability maps of the training slices "
                                          "(scripts/teacher_maps.py); the network fits a blend of them and the masks")
    p.add_argument("--distill-alpha", type=float, default=0.5,
                   help="with --teacher-maps: target = (1 - alpha) * mask + alpha * teacher")
    p.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="tf.distribute strategy; auto = MultiWorkerMirrored with TF_CONFIG, Mirrored with >1 GPU")
    p.add_argument("--max-patients", type=int, help=argparse.SUPPRESS)
    p.add_argument("--max-slices", type=int, help="use at most N slices per split (quick runs)")
    p.add_argument("--steps-per-epoch", type=int, help="cap the steps per epoch (quick runs)")
    p.add_argument("--progress-json", action="store_true", help="one JSON line per batch/epoch on stdout")
    p.add_argument("--progress-every", type=int, default=1, help="emit a batch line every N steps")
    p.add_argument("--cancel-file", help="stop cleanly between batches once this file exists")


def config_from_args(args: argparse.Namespace) -> dict:
    """TrainConfig's fields from the parsed options: same names, except the two spelled negatively."""
    from dataclasses import fields

    from training.train import TrainConfig

    values = vars(args)
    cfg = {f.name: values[f.name] for f in fields(TrainConfig) if f.name in values}
    cfg["augment"] = not args.no_augment
    cfg["val_patients"] = args.val_patients or None
    cfg["test_patients"] = args.test_patients or None
    return cfg


def run_train(args: argparse.Namespace) -> int:
    from training.backend import configure_threads
    from training.train import TrainConfig, print_result, train

    cfg = TrainConfig(**config_from_args(args))
    cancel = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        cancel.set()
        print("\nstopping after the current batch...", file=sys.stderr)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    configure_threads()
    try:
        result = train(cfg, json_stream=sys.stdout if args.progress_json else None, cancel=cancel,
                       verbose=0 if args.progress_json else (1 if sys.stderr.isatty() else 2))
    except (ValueError, OSError) as exc:
        print(f"unetpp train: error: {exc}", file=sys.stderr)
        if args.progress_json:
            import json

            print(json.dumps({"event": "error", "message": str(exc)}), flush=True)
        return 2
    print_result(result)
    return 130 if result.status == "cancelled" else 0


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model file (default: the bundled model)")
    p.add_argument("--data", nargs="+", required=True, help="folder(s) with slices and masks")
    p.add_argument("--patients", nargs="*", help="only these patients (overrides --split)")
    p.add_argument("--split", choices=SPLITS,
                   help="which of the model's stored patient splits to evaluate (default: test if the model "
                        "stores one, else validation, else all)")
    p.add_argument("--all-patients", action="store_true", help="same as --split all")
    p.add_argument("--patient-prefix-fields", type=int)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--pixel-threshold", type=float, help="override the model's pixel threshold")
    p.add_argument("--decision-threshold", type=float, help="override the model's area-ratio threshold")
    p.add_argument("--calibrate", action="store_true",
                   help="pick both thresholds and the patient 3-D filter on these patients and store them in "
                        "the model (refused on the test split)")
    p.add_argument("--report", help="write the report (.md or .json)")
    p.add_argument("--tta", action="store_true",
                   help="predict with test-time augmentation (mean of the slice and its mirror image), as the "
                        "viewer's --tta does; thresholds calibrated with it suit predictions made with it")
    p.add_argument("--precision", choices=("float32", "int8"), default="float32",
                   help="int8: evaluate the quantized network beside the model file (unetpp quantize; OpenVINO)")
    p.add_argument("--trust-model", action="store_true")


def run_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_cli

    return evaluate_cli(args)


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up chatter and Keras' HDF5 notice off the user's terminal."""
    import logging
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("absl").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    parser = argparse.ArgumentParser(prog="python -m training", description="Train or evaluate a UNet++ model.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_arguments(sub.add_parser("train", help="train a model"))
    add_evaluate_arguments(sub.add_parser("evaluate", help="evaluate (and calibrate) a model"))
    args = parser.parse_args(argv)
    return run_train(args) if args.command == "train" else run_evaluate(args)
