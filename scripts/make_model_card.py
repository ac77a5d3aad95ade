"""Write resources/models/MODEL_CARD.md from the model's own metadata and `unetpp evaluate` reports.

Usage: python scripts/make_model_card.py MODEL.h5 EVAL.json [--compare LABEL=REPORT.json ...] [--notes NOTES.md]
Every number in the card comes from these files; nothing is typed in by hand.
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
    lines = ["| thresholds | pixel | area ratio | patient Dice mean | median | min | gated mean | tumour-slice Dice | "
             "small-tumour slice Dice | accuracy | sensitivity | specificity | ROC AUC |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for title, m in results.items():
        lines.append(f"| {title} | {fmt(m['pixel_threshold'], 2)} | {fmt(m['decision_threshold'], 5)} | "
                     f"**{fmt(m['patient_dice_mean'])}** | {fmt(m['patient_dice_median'])} | "
                     f"{fmt(m['patient_dice_min'])} | {fmt(m.get('patient_dice_gated_mean'))} | "
                     f"{fmt(m['tumour_slice_dice_mean'])} | "
                     f"{fmt(m['small_tumour_slice_dice_mean'])} | {fmt(m['slice_accuracy'])} | "
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
    parts.append(f"--loss {cfg.get('loss')} --learning-rate {cfg.get('learning_rate')} --lr-schedule {cfg.get('lr_schedule')} "
                 f"--epochs {cfg.get('epochs')} --batch-size {cfg.get('batch_size')} --empty-fraction {cfg.get('empty_fraction')}")
    if cfg.get("val_patients"):
        parts.append("--val-patients <the 18 validation patients above>")
    else:
        parts.append(f"--val-fraction {cfg.get('val_fraction')}")
    parts.append(f"--seed {cfg.get('seed')} --progress-json --progress-every {cfg.get('progress_every')}")
    return " ".join(parts)


def training_section(meta, out: str) -> list[str]:
    """Command, settings, time and per-epoch history of the run that wrote ``meta``."""
    t = meta.training
    cfg = t.get("config", {})
    hist = t.get("history", {})
    dice_key = next((k for k in hist if k.startswith("val_") and k.endswith("dice")), None)
    lines = [
        "```bash",
        command(cfg, out),
        "```",
        "",
        f"- Loss {cfg.get('loss')} on every deep-supervision head; Adam, learning rate {cfg.get('learning_rate')} "
        f"with a {cfg.get('lr_schedule')} schedule planned over {cfg.get('epochs')} epochs; batch {cfg.get('batch_size')}; "
        f"augmentation {'on' if cfg.get('augment') else 'off'} (flip, rotation, zoom, intensity); each epoch used every "
        f"tumour slice and a fresh random {fmt(cfg.get('empty_fraction'), 2)} of the tumour-free slices; "
        f"mixed_bfloat16 {'on' if cfg.get('mixed_precision') else 'off'} (weights stored in float32).",
        f"- Best epoch **{t.get('epoch')}** (by validation Dice); {len(hist.get('loss', []))} epoch(s) were "
        f"run in {fmt(t.get('elapsed_s', 0) / 3600, 2)} h on {t.get('hardware')} (no GPU). "
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("evaluation")
    ap.add_argument("--compare", nargs="+", metavar="LABEL=REPORT.json",
                    help="`unetpp evaluate` reports of the equal-budget comparison, one table row each")
    ap.add_argument("--notes", help="markdown appended verbatim (interpretation, gap, what would close it)")
    ap.add_argument("--base", help="the model the bundled one was fine-tuned from (its training is stage 1)")
    ap.add_argument("--out", default="resources/models/MODEL_CARD.md")
    args = ap.parse_args()
    meta = read_metadata(args.model)
    base = read_metadata(args.base) if args.base else None
    ev = json.loads(Path(args.evaluation).read_text())
    t = meta.training
    data = t.get("data", {})
    split = t.get("split", {})
    arch = meta.architecture
    norm = meta.input_normalization
    final = list(ev["results"].values())[-1]
    untuned = list(ev["results"].values())[0]
    lines = [
        "# Model card: unetpp_lgg.h5 (bundled)",
        "",
        "**Research and teaching use only. Not a medical device; not for diagnosis.**",
        "",
        f"UNet++ (Zhou et al., MICCAI 2018), {arch.get('depth')} levels, base {arch.get('base_filters')} filters, "
        f"deep supervision {'on (heads on X_0_1..X_0_4; prunable to L1-L3)' if arch.get('deep_supervision') else 'off'}, "
        f"input {arch.get('input_shape')}, 1-channel sigmoid output; {ev.get('parameters', 0):,} parameters. "
        f"Validation on {final['patients']} held-out patients: mean per-patient Dice "
        f"**{fmt(untuned['patient_dice_mean'])}** with untuned thresholds (pixel 0.5), "
        f"{fmt(final['patient_dice_mean'])} with the thresholds calibrated on the same patients "
        f"(median {fmt(final['patient_dice_median'])}); the target was 0.85.",
        "",
        "## Data",
        "",
        "LGG FLAIR-abnormality segmentation data (Buda, Saha, Mazurowski, *Computers in Biology and Medicine* "
        "109, 2019; TCGA-LGG via The Cancer Imaging Archive), the 88-patient development set: 256x256 RGB "
        "slices (pre-contrast, FLAIR, post-contrast) with manual masks.",
        "",
        f"- Patients: {data.get('patients')}; split **by patient**, stratified by institution (second field of the "
        f"case name), seed {split.get('seed')}: {len(split.get('train', []))} training patients "
        f"({data.get('train_slices')} slices, {data.get('train_tumour_slices')} with tumour), "
        f"{len(split.get('validation', []))} validation patients ({data.get('val_slices')} slices, "
        f"{data.get('val_tumour_slices')} with tumour).",
        f"- Validation patients: {', '.join(split.get('validation', []))}.",
        "- Input: " + (
            f"each slice's channels rescaled so that the {fmt(norm.get('percentile'), 0)}th percentile of its "
            f"foreground (pixels above {fmt(norm.get('floor'), 0)} in any channel) lands on "
            f"{', '.join(fmt(v, 1) for v in norm.get('target', []))} (the training slices' medians; gain within "
            f"1/{fmt(norm.get('max_gain'), 0)}..{fmt(norm.get('max_gain'), 0)}; stored in the model, applied by the "
            "engine), then / 255" if norm else "pixel / 255") + ". Masks: > 127 is tumour.",
        "",
        "## Training",
        "",
    ]
    stages = [meta] if base is None else [base, meta]
    for n, stage in enumerate(stages, 1):
        if len(stages) > 1:
            lines += [f"### Stage {n}: " + ("from scratch" if n == 1 else "fine-tuning with intensity normalisation"), ""]
        lines += training_section(stage, "runs/bundled/stage1.h5" if n < len(stages) else "runs/bundled/unetpp_lgg.h5")
    if base is not None:
        lines += ["Stage 2 started from stage 1's best epoch as it was bundled (exported without optimizer state; "
                  "the repository's history holds that file), with a fresh optimizer.", ""]
    lines += [
        "Shipping and measuring:",
        "",
        "```bash",
        "unetpp export --model runs/bundled/unetpp_lgg.h5 --out resources/models/unetpp_lgg.h5",
        "unetpp evaluate --model resources/models/unetpp_lgg.h5 --data ../shared/data/lgg --calibrate "
        "--report evaluation.json",
        "```",
        "",
        "## Validation results (`unetpp evaluate`)",
        "",
        f"{final['patients']} validation patients, {final['slices']} slices ({final['tumour_slices']} with tumour, "
        f"{final['small_tumour_slices']} of them small: under 1 % of the slice). Per-patient Dice is 3-D: all of a "
        "patient's slices together. The slice decision is TUMOUR when the predicted area ratio exceeds the "
        "decision threshold; AUC ranks slices by that ratio. *Gated* Dice counts a slice's mask only when the "
        "decision calls the slice TUMOUR (what a reader of the app does with specks on a NO TUMOUR slice).",
        "",
        *results_table(ev["results"]),
        "",
        f"Thresholds stored in the model: pixel {fmt(meta.pixel_threshold, 2)}, area ratio {fmt(meta.decision_threshold, 5)} "
        "(calibrated on the same validation patients, so the 'calibrated' row is slightly optimistic; the first "
        "row uses untuned defaults).",
        "",
        "Per-patient Dice (stored thresholds):",
        "",
        "| patient | Dice | gated Dice |",
        "|---|---|---|",
        *[f"| {p} | {d:.4f} | {final.get('per_patient_dice_gated', {}).get(p, float('nan')):.4f} |"
          for p, d in final["per_patient_dice"].items()],
        "",
    ]
    if args.compare:
        lines += ["## UNet++ vs U-Net at an equal budget", ""]
        lines += ["| model | parameters | patient Dice mean | median | tumour-slice Dice | small-tumour slice Dice | "
                  "small-tumour detection | slice AUC | training time |", "|---|---|---|---|---|---|---|---|---|"]
        for item in args.compare:
            label, _, path = item.partition("=")
            rep = json.loads(Path(path).read_text())
            m = list(rep["results"].values())[0]
            lines.append(f"| {label} | {rep.get('parameters', 0):,} | {fmt(m['patient_dice_mean'])} | "
                         f"{fmt(m['patient_dice_median'])} | {fmt(m['tumour_slice_dice_mean'])} | "
                         f"{fmt(m['small_tumour_slice_dice_mean'])} | {fmt(m['small_tumour_sensitivity'])} | "
                         f"{fmt(m['slice_auc'])} | {fmt(rep.get('train_seconds'), 0)} s |")
        lines.append("")
    if args.notes:
        lines += [Path(args.notes).read_text().strip(), ""]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
