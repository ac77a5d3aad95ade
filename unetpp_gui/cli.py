"""``unetpp``: predict, info, train and evaluate from the command line, on the same engine as the GUI."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from unetpp_gui import RESEARCH_NOTICE, __version__
from unetpp_gui.core.errors import UserFacingError


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_predict(args: argparse.Namespace) -> int:
    from unetpp_gui.core.discovery import discover
    from unetpp_gui.core.export import RESULTS_CSV, prepare_output_folder, write_masks
    from unetpp_gui.core.inference import DEFAULT_BATCH_SIZE, Cancelled
    from unetpp_gui.core.progress import Progress
    from unetpp_gui.core.report import row_for, write_csv

    out = Path(args.out)
    removed = prepare_output_folder(out, args.overwrite)  # before anything slow: a bad --out fails at once
    if removed:
        outputs = [p for p in removed if p.suffix != ".csv"]
        print(f"unetpp: --overwrite: removed the earlier run's {len(outputs)} output file(s) and its CSV files",
              file=sys.stderr)
    from unetpp_gui.core.volume import group_studies, is_nifti

    studies, volume_problems = group_studies([p for p in args.paths if is_nifti(p) or Path(p).is_dir()])
    found = discover([p for p in args.paths if not is_nifti(p)], exclude=[out])
    for p, why in [*found.problems, *volume_problems]:
        print(f"unetpp: warning: {p}: {why}", file=sys.stderr)
    if not found.slices and not studies:
        print("unetpp: error: no image slices or NIfTI studies found in the given paths "
              f"({', '.join(str(p) for p in args.paths[:3])}{' ...' if len(args.paths) > 3 else ''})",
              file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"unetpp: {len(found.slices)} slice(s)" + (f" and {len(studies)} NIfTI stud(ies)" if studies else "")
              + " found; loading the model...",
              file=sys.stderr, flush=True)
    from unetpp_gui.core.batching import MIN_SLICES_TO_MEASURE
    from unetpp_gui.core.model_io import load_model, resolve_model_path

    # a short run would spend longer converting for OpenVINO through Keras and measuring it than predicting: it
    # leaves that to a longer run (or the viewer, which converts in the background); a direct build is not deferred
    short = len(found.slices) < MIN_SLICES_TO_MEASURE and not studies
    model = load_model(resolve_model_path(args.model), trust=args.trust_model, prune_level=args.prune, tta=args.tta,
                       precision=args.precision, runtime=args.runtime, defer_openvino=short,
                       measure_on_run=not short and not args.batch_size)
    if not args.quiet:
        print(f"unetpp: inference runs on {_runtime_text(model)}", file=sys.stderr)
        if model.precision_note:
            print(f"unetpp: {model.precision_note}", file=sys.stderr)
    meta = model.metadata
    pt = args.pixel_threshold if args.pixel_threshold is not None else meta.pixel_threshold
    dt = args.decision_threshold if args.decision_threshold is not None else meta.decision_threshold
    batch_size = args.batch_size or _batch_plan(model, len(found.slices), args.quiet)
    trial = None if isinstance(batch_size, int) else batch_size
    roots = [Path(p) for p in args.paths]
    rows: list[dict] = []
    total = len(found.slices)
    progress = Progress(total)
    cancel = threading.Event()
    status = 0
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    last_csv = time.monotonic()
    flt = model.patient_filter if args.patient_filter == "auto" else None
    try:
        if flt is not None and not args.quiet:
            print(f"patient 3-D filter: {flt.describe()} (the model's; --patient-filter off to skip)",
                  file=sys.stderr)
        jobs = write_masks(model, found.slices, out, roots, pt, args.overlay, batch_size=batch_size,
                           cancel=cancel, patient_filter=flt)
        for i, res in enumerate(jobs, 1):
            rows.append(row_for(res, pt, dt, out))
            if trial is not None and trial.done:
                _settle(model, trial, progress.tty and not args.quiet, args.quiet)
                trial = None
            if not args.quiet:
                progress(i)
            if time.monotonic() - last_csv > 30:  # a killed run still leaves a CSV of what it wrote
                write_csv(out / RESULTS_CSV, rows)
                last_csv = time.monotonic()
    except (KeyboardInterrupt, Cancelled):
        print(f"\nunetpp: interrupted; results for {len(rows)} of {total} slices are kept", file=sys.stderr)
        status = 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        write_csv(out / RESULTS_CSV, rows)
    if studies and status == 0:
        sized = batch_size if isinstance(batch_size, int) else batch_size.size or DEFAULT_BATCH_SIZE
        status = _predict_studies(args, model, flt, studies, out, pt, dt, sized, rows)
        write_csv(out / RESULTS_CSV, rows)
    return _report_run(rows, out / RESULTS_CSV, status)


def _batch_plan(model, slices: int, quiet: bool):
    """The batch size measured fastest here (cached), or, where this machine has no measurement for the model yet
    (its batch sizes; with "auto", its two runtimes), a :class:`~unetpp_gui.core.batching.Trial` that measures
    them on the run's first slices, their results kept (on blank batches now if the run is too short to carry
    it). A run too short to pay for measuring takes a default size."""
    from unetpp_gui.core.batching import MIN_SLICES_TO_MEASURE, Trial, cached_batch_size, describe, runtimes_of

    if slices < MIN_SLICES_TO_MEASURE and not model.runtimes_unmeasured:
        return 8 if model.precision == "bfloat16" else 4
    if not model.runtimes_unmeasured:
        known = cached_batch_size(model)
        if known is not None:
            if not quiet:
                print(f"unetpp: {describe(known[0], known[1], True)}", file=sys.stderr)
            return known[0]
    trial = Trial(model, runtimes_of(model) if model.runtimes_unmeasured else {model.runtime: model.runtime_runner})
    if slices < trial.slices:  # too few slices to carry the plan (NIfTI studies only, say): blank batches now
        trial.run_blank()
        _settle(model, trial, False, quiet)
        return trial.size or 4
    if not quiet:
        what = "OpenVINO and TensorFlow at batch sizes" if len(trial.runtimes) > 1 else "batch sizes"
        print(f"unetpp: timing {what} {'/'.join(str(n) for n in sorted({n for _, n, _ in trial.plan}))} on the "
              f"first {trial.slices} slices (their results are kept)", file=sys.stderr)
    return trial


def _settle(model, trial, after_progress: bool, quiet: bool) -> None:
    """After a trial's plan: the runtime it kept (its note) and the batch size it measured, said once."""
    from unetpp_gui.core.batching import describe, describe_runtimes
    from unetpp_gui.core.model_io import settle_runtime

    if trial.decision is not None:
        settle_runtime(model, *trial.decision, cached=False)
    if trial.size is not None:
        model.batch_size_choice = trial.size
        model.batch_size_note = describe(trial.size, trial.times[model.runtime], False)
    if quiet:
        return
    lines = []
    if trial.decision is not None:
        name = {"openvino": "OpenVINO", "tensorflow": "TensorFlow"}[model.runtime]
        lines.append(f"inference runs on {name}, {model.precision} ({describe_runtimes(trial.decision[1], False)})")
    if trial.size is not None:
        lines.append(model.batch_size_note)
    print(("\n" if after_progress and lines else "") + "".join(f"unetpp: {line}\n" for line in lines), end="",
          file=sys.stderr)


def _report_run(rows: list[dict], csv_path: Path, status: int) -> int:
    """The run's one-line summary; exit 1 if no slice at all could be predicted."""
    errors = sum(1 for r in rows if r["error"] and not r["decision"])
    unwritten = sum(1 for r in rows if r["error"] and r["decision"])
    tumour = sum(1 for r in rows if r["decision"] == "tumour")
    warned = sum(1 for r in rows if r["warning"])
    print(f"{len(rows)} slices: {tumour} tumour, {len(rows) - tumour - errors} no tumour, {errors} errors"
          + (f", {unwritten} with outputs not written" if unwritten else "")
          + (f", {warned} flagged as unlike the training data" if warned else "")
          + f"; results in {csv_path}", file=sys.stderr)
    if status == 0 and rows and errors == len(rows):
        print("unetpp: error: no slice could be predicted", file=sys.stderr)
        return 1
    return status


def _predict_studies(args: argparse.Namespace, model, flt, studies: list, out: Path, pt: float, dt: float,
                     batch_size: int, rows: list[dict]) -> int:
    """Segment each NIfTI study, write its mask volume, one ``volumes.csv`` row each and per-slice rows."""
    from unetpp_gui.core.report import row_for, write_csv
    from unetpp_gui.core.volume import VOLUME_COLUMNS, VolumeResult, read_study, volume_row
    from unetpp_gui.core.volume_inference import predict_study, write_study_outputs

    volume_rows = []
    status = 0
    for source in studies:
        start = time.monotonic()
        try:
            study = read_study(source, model.channels)
            result, probs = predict_study(model, study, pt, dt, flt, batch_size)
            write_study_outputs(study, probs, result, out, pt, args.save_prob)
        except KeyboardInterrupt:
            status = 130
            break
        except (UserFacingError, OSError) as exc:
            result = VolumeResult(source.name, source.files[0], error=str(exc))
        for res in result.slice_results:
            row = row_for(res, pt, dt, out)
            row["mask"] = str(result.mask_file.relative_to(out)) if result.mask_file else ""
            rows.append(row)
        volume_rows.append(volume_row(result, out))
        if not args.quiet:
            print(f"{source.name}: " + (f"error: {result.error}" if result.error else
                  f"{result.tumour_ml:.2f} mL tumour in {result.slices_with_tumour} of {len(result.slice_results)} "
                  f"slices" + (f", Dice {result.dice:.3f}" if result.dice is not None else "")
                  + f" ({time.monotonic() - start:.1f} s)"), file=sys.stderr)
    write_csv(out / "volumes.csv", volume_rows, VOLUME_COLUMNS)
    return status


def cmd_info(args: argparse.Namespace) -> int:
    from unetpp_gui.core.model_io import load_model, resolve_model_path
    from unetpp_gui.resources import bundled_model_path, model_card_path

    path = resolve_model_path(args.model)
    model = load_model(path, trust=args.trust_model, precision="auto", runtime=args.runtime)  # as predict runs it
    info = model.summary()
    meta = model.metadata
    info["architecture"] = meta.architecture
    info["metrics"] = meta.metrics
    info["versions"] = meta.versions
    from unetpp_gui.core import quantized

    found = quantized.find(path)  # what --precision int8 would run
    info["int8"] = (f"{found[0].name} ({quantized.calibration_of(path).get('slices', '?')} calibration slices; "
                    "--precision int8)" if isinstance(found, tuple) else f"none ({found})")
    if meta.training:
        t = meta.training
        info["training"] = {k: t.get(k) for k in ("epoch", "elapsed_s", "hardware", "data") if k in t}
    if args.json:
        print(json.dumps(info, indent=1, default=str))
    else:
        for key, value in info.items():
            if key == "decision_threshold":
                value = f"{value:.6f} (area ratio: {100 * value:.3f} % of the slice, as the GUI shows it)"
            elif key == "pixel_threshold":
                value = f"{value:.2f} (probability)"
            print(f"{key:>20}: {value}")
        card = model_card_path()
        if path.resolve() == bundled_model_path().resolve() and card.is_file():
            print("\n" + _card_summary(card.read_text(encoding="utf-8")))
    if args.diagram:
        from unetpp_gui.core.architecture import write_diagram

        write_diagram(model.network(), args.diagram)
        print(f"diagram written to {args.diagram}", file=sys.stderr)
    return 0


def _add_runtime_argument(p: argparse.ArgumentParser) -> None:
    from unetpp_gui.core.openvino_runtime import RUNTIMES, default_runtime

    p.add_argument("--runtime", choices=RUNTIMES, default=default_runtime(),
                   help="what runs the network: auto (default; UNETPP_RUNTIME changes it) = OpenVINO where it is "
                        "installed (a default dependency; the network is built for it from the .h5 file without "
                        "TensorFlow, or converted through Keras, and cached), else TensorFlow; where TensorFlow is "
                        "loaded anyway (a Keras conversion), both are timed and OpenVINO is kept unless over 5 %% "
                        "slower, a choice later starts follow")


def _runtime_text(model: object) -> str:
    runtime = {"openvino": "OpenVINO", "tensorflow": "TensorFlow"}[model.runtime]  # type: ignore[attr-defined]
    note = model.runtime_note  # type: ignore[attr-defined]
    if note.startswith("OpenVINO"):  # "OpenVINO <version> (<its copy>); <why auto chose it>": the why
        note = note.partition("); ")[2]
    return f"{runtime}, {model.precision}" + (f" ({note})" if note else "")  # type: ignore[attr-defined]


def _card_summary(text: str) -> str:
    """The model card's summary section (up to the second heading)."""
    lines, headings = [], 0
    for line in text.splitlines():
        if line.startswith("## "):
            headings += 1
            if headings > 1:
                break
        lines.append(line)
    return "\n".join(lines).strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetpp", description=f"UNet++ Viewer command line. {RESEARCH_NOTICE}")
    parser.add_argument("--version", action="version", version=f"unetpp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="segment slices and write masks, overlays and results.csv")
    p.add_argument("paths", nargs="+",
                   help="PNG/TIFF slices, folders (searched recursively) and NIfTI studies (.nii/.nii.gz: a 4-D "
                        "file, or <study>_pre/_flair/_post files or their folder)")
    p.add_argument("--model", help="model file (default: the bundled model)")
    p.add_argument("--out", required=True,
                   help="output folder (created; one run per folder: see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the earlier run in --out (its results.csv and the masks/overlays it lists)")
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png")
    p.add_argument("--save-prob", action="store_true", help="NIfTI studies: also write <study>_prob.nii.gz "
                   "(uint8, probability x 255)")
    p.add_argument("--batch-size", type=int,
                   help="slices per model call (default: the fastest measured on this machine, cached)")
    p.add_argument("--pixel-threshold", type=float)
    p.add_argument("--decision-threshold", type=float, help="area ratio above which a slice is called tumour")
    p.add_argument("--trust-model", action="store_true", help="allow models with code (Lambda layers)")
    p.add_argument("--prune", type=int, choices=(1, 2, 3, 4), help="run UNet++ only up to level L (faster)")
    p.add_argument("--tta", action="store_true", help="average with the left-right mirror (2x time)")
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16", "int8"), default="auto",
                   help="bfloat16 is faster on CPUs with AVX512-BF16/AMX; auto uses it where the CPU has it; int8 "
                        "runs the quantized network beside the model file (unetpp quantize; OpenVINO, full "
                        "network; fastest, slightly different masks: see the model card)")
    _add_runtime_argument(p)
    p.add_argument("--patient-filter", choices=("auto", "off"), default="auto",
                   help="3-D filter over each patient folder's slices (auto: as the model's metadata says)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("info", help="describe a model")
    p.add_argument("--model")
    p.add_argument("--json", action="store_true")
    p.add_argument("--diagram", help="write the nested-architecture picture (.svg or .png)")
    _add_runtime_argument(p)
    p.add_argument("--trust-model", action="store_true")
    p.set_defaults(func=cmd_info)

    from training.cli import add_evaluate_arguments, add_train_arguments, run_evaluate, run_train

    p = sub.add_parser("train", help="train a UNet++ / U-Net (same as python -m training train)")
    add_train_arguments(p)
    p.set_defaults(func=run_train)
    p = sub.add_parser("evaluate", help="per-patient Dice, detection metrics, calibration")
    add_evaluate_arguments(p)
    p.set_defaults(func=run_evaluate)

    from training.export import add_export_arguments, run_export
    from training.quantize import add_quantize_arguments, run_quantize

    p = sub.add_parser("export", help="strip optimizer state (for shipping) and optionally prune to level L")
    add_export_arguments(p)
    p.set_defaults(func=run_export)
    p = sub.add_parser("quantize", help="write the int8 network beside a model file (for --precision int8)")
    add_quantize_arguments(p)
    p.set_defaults(func=run_quantize)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from training.cli import quiet_tensorflow

    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserFacingError as exc:
        print(f"unetpp: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
