"""Write resources/models/MODEL_CARD.md from the models' own metadata and `unetpp evaluate` reports.

Usage:
  python scripts/make_model_card.py MODEL.h5 --test TEST.json --validation VAL.json
      [--stage LABEL=EARLIER_STAGE.h5 ...] [--before LABEL=TEST_REPORT.json] [--before-val LABEL=VAL_REPORT.json]
      [--compare LABEL=REPORT.json ...] [--figure PNG] [--notes NOTES.md]

Every number in the card comes from these files; nothing is typed in by hand (the notes are prose).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unetpp_gui.core.metadata import read_metadata  # noqa: E402


def fmt(v: object, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def results_table(results: dict) -> list[str]:
    lines = ["| settings | pixel | area ratio | patient Dice mean | median | min | tumour-slice Dice | "
             "small-tumour slice Dice | slice accuracy | sensitivity | specificity | ROC AUC |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for title, m in results.items():
        lines.append(f"| {title} | {fmt(m['pixel_threshold'], 2)} | {fmt(m['decision_threshold'], 5)} | "
                     f"**{fmt(m['patient_dice_mean'])}** | {fmt(m['patient_dice_median'])} | "
                     f"{fmt(m['patient_dice_min'])} | {fmt(m['tumour_slice_dice_mean'])} | "
                     f"{fmt(m['small_tumour_slice_dice_mean'])} | **{fmt(m['slice_accuracy'])}** | "
                     f"{fmt(m['slice_sensitivity'])} | {fmt(m['slice_specificity'])} | {fmt(m['slice_auc'])} |")
    return lines


def command(cfg: dict, out: str) -> str:
    """The `unetpp train` command line a stored config corresponds to."""
    parts = ["unetpp train --data ../shared/data/lgg", f"--out {out}"]
    if cfg.get("init_from"):
        parts.append(f"--init-from {cfg['init_from']}")
    else:
        parts.append(f"--architecture {cfg.get('architecture')} --base-filters {cfg.get('base_filters')}")
        if cfg.get("deep_supervision"):
            parts.append("--deep-supervision")
    if cfg.get("normalize", "auto") != "auto":
        parts.append(f"--normalize {cfg['normalize']}")
    if cfg.get("mixed_precision"):
        parts.append("--mixed-precision")
    parts.append(f"--loss {cfg.get('loss')} --learning-rate {cfg.get('learning_rate')} --lr-schedule "
                 f"{cfg.get('lr_schedule')} --epochs {cfg.get('epochs')} --batch-size {cfg.get('batch_size')} "
                 f"--empty-fraction {cfg.get('empty_fraction')}")
    if cfg.get("crop_size"):
        parts.append(f"--crop-size {cfg['crop_size']} --crop-tumour {cfg.get('crop_tumour')}")
    if cfg.get("ema"):
        parts.append(f"--ema {cfg['ema']}")
    if cfg.get("val_patients"):
        parts.append(f"--val-patients <the {len(cfg['val_patients'])} validation patients>")
    else:
        parts.append(f"--val-fraction {cfg.get('val_fraction')}")
    if cfg.get("test_patients"):
        parts.append(f"--test-patients <the {len(cfg['test_patients'])} test patients>")
    parts.append(f"--seed {cfg.get('seed')} --progress-json --progress-every {cfg.get('progress_every')}")
    return " ".join(parts)


def training_section(meta, out: str, hardware: str | None = None, run=None) -> list[str]:
    """Command, settings, time and per-epoch history of the run that wrote ``meta`` (``run``: the run's
    last checkpoint, when the kept epoch is an earlier one)."""
    t = meta.training
    cfg = t.get("config", {})
    hist = (run or meta).training.get("history", {})
    elapsed = (run or meta).training.get("elapsed_s", 0)
    dice_key = next((k for k in hist if k.startswith("val_") and k.endswith("dice")), None)
    lines = [
        "```bash",
        command(cfg, out),
        "```",
        "",
        f"- Loss {cfg.get('loss')} on every deep-supervision head; Adam, learning rate {cfg.get('learning_rate')} "
        f"with a {cfg.get('lr_schedule')} schedule planned over {cfg.get('epochs')} epochs; batch "
        f"{cfg.get('batch_size')}; augmentation {'on' if cfg.get('augment') else 'off'} (flip, rotation, zoom, "
        f"intensity); each epoch used every tumour slice and a fresh random {fmt(cfg.get('empty_fraction'), 2)} of "
        f"the tumour-free slices"
        + (f", each as a random {cfg['crop_size']}x{cfg['crop_size']} crop ({fmt(cfg.get('crop_tumour'), 2)} of them "
           "centred near a tumour pixel; validation on whole slices)" if cfg.get("crop_size") else "")
        + (f"; validation and checkpoints used an exponential moving average of the weights (momentum "
           f"{cfg['ema']})" if cfg.get("ema") else "")
        + f"; mixed_bfloat16 {'on' if cfg.get('mixed_precision') else 'off'} (weights stored in float32).",
        f"- Kept epoch **{t.get('epoch')}** (best validation Dice); {len(hist.get('loss', []))} epoch(s) were run "
        f"in {fmt(elapsed / 3600, 2)} h on {hardware or t.get('hardware')}"
        + (" (interrupted once and continued with --resume)" if cfg.get("resume") else "") + ". "
        f"Versions: {', '.join(f'{k} {v}' for k, v in meta.versions.items())}.",
        "",
        "| epoch | train loss | val loss | val Dice (global, 0.5) |",
        "|---|---|---|---|",
    ]
    for i, loss in enumerate(hist.get("loss", [])):
        vd = hist[dice_key][i] if dice_key and i < len(hist[dice_key]) else None
        vl = hist.get("val_loss", [None] * (i + 1))[i]
        lines.append(f"| {i + 1} | {fmt(loss)} | {fmt(vl)} | {fmt(vd)} |")
    return lines + [""]


def first(report: dict) -> dict:
    return next(iter(report["results"].values()))


def row(report: dict, startswith: str) -> dict | None:
    return next((m for k, m in report["results"].items() if k.startswith(startswith)), None)


def per_patient(test: dict, before: list[tuple[str, dict]]) -> list[str]:
    main = first(test)
    untuned = row(test, "untuned")
    labels = [label for label, _ in before]
    lines = ["| patient | " + " | ".join(f"{label}" for label in labels) + " | this model, untuned | "
             "**this model** |", "|---" * (len(labels) + 3) + "|"]
    worst = sorted(main["per_patient_dice"].items(), key=lambda kv: kv[1])
    for p, d in main["per_patient_dice"].items():
        olds = [fmt(first(rep)["per_patient_dice"].get(p), 2) for _, rep in before]
        lines.append(f"| {p} | " + " | ".join(olds) + f" | {fmt(untuned['per_patient_dice'].get(p) if untuned else None, 2)}"
                     f" | **{fmt(d, 2)}** |")
    lines.append("| **mean** | " + " | ".join(fmt(first(rep)["patient_dice_mean"], 3) for _, rep in before)
                 + f" | {fmt(untuned['patient_dice_mean'] if untuned else None, 3)} | **{fmt(main['patient_dice_mean'], 3)}** |")
    lines += ["", "Worst test patients (this model's settings): "
              + ", ".join(f"{p} ({d:.2f})" for p, d in worst[:3]) + "."]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--test", required=True, help="`unetpp evaluate` report on the untouched test split (.json)")
    ap.add_argument("--validation", required=True, help="report on the validation split, with --calibrate")
    ap.add_argument("--stage", action="append", default=[], metavar="LABEL=MODEL.h5",
                    help="earlier training stages, oldest first (their own metadata)")
    ap.add_argument("--hardware", action="append", default=[], metavar="STAGE_NUMBER=TEXT",
                    help="what a stage ran on, where its metadata does not say")
    ap.add_argument("--run", help="the last checkpoint of this model's run (its whole history)")
    ap.add_argument("--stage-run", action="append", default=[], metavar="STAGE_NUMBER=LAST.h5",
                    help="the last checkpoint of an earlier stage's run, where it ran past its kept epoch")
    ap.add_argument("--before", action="append", default=[], metavar="LABEL=REPORT.json",
                    help="the previous bundled model on the same test patients")
    ap.add_argument("--before-val", action="append", default=[], metavar="LABEL=REPORT.json")
    ap.add_argument("--compare", nargs="+", metavar="LABEL=REPORT.json")
    ap.add_argument("--figure", help="picture of the worst test patient's missed lesion (path relative to the card)")
    ap.add_argument("--notes", help="markdown appended verbatim (interpretation, gap, what would close it)")
    ap.add_argument("--out", default="resources/models/MODEL_CARD.md")
    args = ap.parse_args()

    meta = read_metadata(args.model)
    test = json.loads(Path(args.test).read_text())
    val = json.loads(Path(args.validation).read_text())
    before = [(lbl, json.loads(Path(p).read_text())) for lbl, _, p in (b.partition("=") for b in args.before)]
    before_val = [(lbl, json.loads(Path(p).read_text())) for lbl, _, p in (b.partition("=") for b in args.before_val)]
    stages = [(lbl, read_metadata(p)) for lbl, _, p in (s.partition("=") for s in args.stage)]
    hardware = {int(k): v for k, _, v in (h.partition("=") for h in args.hardware)}
    t = meta.training
    split = t.get("split", {})
    arch = meta.architecture
    norm = meta.input_normalization
    tm, tu = first(test), row(test, "untuned")
    vm = row(val, "calibrated") or first(val)
    flt = meta.patient_filter
    lines = [
        "# Model card: unetpp_lgg.h5 (bundled)",
        "",
        "**Research and teaching use only. Not a medical device; not for diagnosis.**",
        "",
        f"UNet++ (Zhou et al., MICCAI 2018), {arch.get('depth')} levels, base {arch.get('base_filters')} filters, "
        f"deep supervision {'on (heads on X_0_1..X_0_4; prunable to L1-L3)' if arch.get('deep_supervision') else 'off'}, "
        f"input {arch.get('input_shape')}, 1-channel sigmoid output; {test.get('parameters', 0):,} parameters.",
        "",
        f"- **Untouched test split** ({tm['patients']} patients, {tm['slices']} slices; they chose nothing in this "
        f"model's last training stage, its checkpoint or its settings): mean per-patient 3-D Dice "
        f"**{fmt(tm['patient_dice_mean'], 3)}** (median {fmt(tm['patient_dice_median'], 3)}) and slice decision "
        f"accuracy **{fmt(tm['slice_accuracy'], 3)}** with the settings stored in the file; "
        f"{fmt(tu['patient_dice_mean'], 3)} / {fmt(tu['slice_accuracy'], 3)} with untuned settings (pixel 0.5, area "
        "ratio 0.001, no 3-D filter)." if tu else "",
        f"- Validation split ({vm['patients']} patients; chose the checkpoint, the thresholds and the 3-D filter): "
        f"{fmt(vm['patient_dice_mean'], 3)} / {fmt(vm['slice_accuracy'], 3)}.",
        "- Targets: mean patient Dice ≥ 0.85 (aim 0.90) and slice accuracy ≥ 0.96 on unseen patients.",
        "",
        "## Data and split",
        "",
        "LGG FLAIR-abnormality segmentation data (Buda, Saha, Mazurowski, *Computers in Biology and Medicine* "
        "109, 2019; TCGA-LGG via The Cancer Imaging Archive), the 88-patient development set: 256x256 RGB "
        "slices (pre-contrast, FLAIR, post-contrast) with manual masks. Split **by patient**, stratified by "
        "institution (second field of the case name):",
        "",
        f"- {len(split.get('train', []))} training patients (the same in every stage).",
        f"- {len(split.get('validation', []))} validation patients: {', '.join(split.get('validation', []))}.",
        f"- {len(split.get('test', []))} test patients: {', '.join(split.get('test', []))}.",
        "- Input: " + (
            f"each slice's channels rescaled so that the {fmt(norm.get('percentile'), 0)}th percentile of its "
            f"foreground (pixels above {fmt(norm.get('floor'), 0)} in any channel) lands on "
            f"{', '.join(fmt(v, 1) for v in norm.get('target', []))} (the training slices' medians; gain within "
            f"1/{fmt(norm.get('max_gain'), 0)}..{fmt(norm.get('max_gain'), 0)}; stored in the model, applied by "
            "the engine), then / 255" if norm else "pixel / 255") + ". Masks: > 127 is tumour.",
        "",
        "## Training",
        "",
    ]
    all_stages = [*stages, ("this model", meta)]
    for n, (label, stage) in enumerate(all_stages, 1):
        lines += [f"### Stage {n}: {label}", ""]
        runs = {int(k): v for k, _, v in (r.partition("=") for r in args.stage_run)}
        if args.run:
            runs[len(all_stages)] = args.run
        run = read_metadata(runs[n]) if n in runs else None
        lines += training_section(stage, f"runs/stage{n}/unetpp_lgg.h5", hardware.get(n), run)
    lines += [
        "Shipping and measuring (the thresholds and the 3-D filter are chosen on the validation split; the test "
        "split is evaluated last and chooses nothing):",
        "",
        "```bash",
        f"unetpp export --model runs/stage{len(all_stages)}/unetpp_lgg.h5 --out resources/models/unetpp_lgg.h5",
        "unetpp evaluate --model resources/models/unetpp_lgg.h5 --data ../shared/data/lgg --split validation "
        "--calibrate --report validation.json",
        "unetpp evaluate --model resources/models/unetpp_lgg.h5 --data ../shared/data/lgg --report test.json"
        "   # the stored test split",
        "```",
        "",
        "## Results on the untouched test split",
        "",
        f"{tm['patients']} patients, {tm['slices']} slices ({tm['tumour_slices']} with tumour, "
        f"{tm['small_tumour_slices']} of them small: under 1 % of the slice). Per-patient Dice is 3-D: all of a "
        "patient's slices together. The slice decision is TUMOUR when the predicted area ratio exceeds the "
        "decision threshold; AUC ranks slices by that ratio.",
        "",
        *results_table(test["results"]),
        "",
        "Per patient (3-D Dice), against the previous bundled model on the same patients:",
        "",
        *per_patient(test, before),
        "",
    ]
    if args.figure:
        lines += [f"![Worst test patient: image, ground truth (green) and prediction (red)]({args.figure})", ""]
    lines += [
        "## Validation results and calibration",
        "",
        *results_table({("before calibration" if k == "model's settings" else k): v for k, v in val["results"].items()}),
        "",
        f"Stored in the model: pixel threshold {fmt(meta.pixel_threshold, 2)}, area-ratio threshold "
        f"{fmt(meta.decision_threshold, 5)} ({100 * meta.decision_threshold:.3f} % of the slice), patient 3-D filter "
        + (f"**on** (min_fraction {flt.get('min_fraction')})" if flt else "**off** (it did not raise the validation "
           "patients' mean Dice)") + ".",
        "",
    ]
    for label, rep in before_val:
        m = first(rep)
        lines.append(f"{label} on the same validation patients: patient Dice {fmt(m['patient_dice_mean'], 3)}, "
                     f"slice accuracy {fmt(m['slice_accuracy'], 3)}.")
    if before_val:
        lines.append("")
    if args.compare:
        lines += ["## UNet++ vs U-Net at an equal budget", "",
                  "| model | parameters | patient Dice mean | median | tumour-slice Dice | small-tumour slice Dice | "
                  "small-tumour detection | slice AUC | training time |", "|---|---|---|---|---|---|---|---|---|"]
        for item in args.compare:
            label, _, path = item.partition("=")
            rep = json.loads(Path(path).read_text())
            m = first(rep)
            lines.append(f"| {label} | {rep.get('parameters', 0):,} | {fmt(m['patient_dice_mean'])} | "
                         f"{fmt(m['patient_dice_median'])} | {fmt(m['tumour_slice_dice_mean'])} | "
                         f"{fmt(m['small_tumour_slice_dice_mean'])} | {fmt(m['small_tumour_sensitivity'])} | "
                         f"{fmt(m['slice_auc'])} | {fmt(rep.get('train_seconds'), 0)} s |")
        lines.append("")
    if args.notes:
        lines += [Path(args.notes).read_text().strip(), ""]
    Path(args.out).write_text("\n".join(line for line in lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
