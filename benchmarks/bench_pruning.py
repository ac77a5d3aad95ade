"""UNet++ pruning levels L1-L4 and test-time augmentation: speed and Dice on validation patients.

Usage: python benchmarks/bench_pruning.py [N_PATIENTS]
"""

from __future__ import annotations

import sys

from common import model_path, timer, validation_patients

N_PATIENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 6


def main() -> None:
    from training.data import find_pairs
    from training.evaluate import collect, metrics_at
    from unetpp_gui.core.model_io import load_model
    from common import LGG

    patients = validation_patients()[:N_PATIENTS]
    pairs = [p for p in find_pairs([LGG / p for p in patients]).pairs]
    base = load_model(model_path())
    levels = base.prune_levels or (None,)
    print(f"### Pruned inference and test-time augmentation ({len(pairs)} slices of {len(patients)} "
          f"validation patients)\n")
    print("| variant | parameters | slices/s | ratio vs full | patient Dice mean | tumour-slice Dice |")
    print("|---|---|---|---|---|---|")
    rows = []
    for level, tta in [(lvl, False) for lvl in levels] + [(None, True)]:
        model = load_model(model_path(), prune_level=level if level and level != max(levels) else None, tta=tta)
        collect(model, pairs[:8])  # warm-up
        with timer() as t:
            items = collect(model, pairs)
        m = metrics_at(items, base.metadata.pixel_threshold, base.metadata.decision_threshold)
        name = "full + TTA (flip)" if tta else (f"L{level}" if level else "full")
        rows.append((name, model.n_params, len(pairs) / t[0], m))
    full_rate = next(r[2] for r in rows if r[0] in ("L4", "full"))
    for name, params, rate, m in rows:
        tsd = m["tumour_slice_dice_mean"]
        print(f"| {name} | {params:,} | {rate:.2f} | {rate / full_rate:.2f}x | {m['patient_dice_mean']:.4f} | "
              f"{'n/a' if tsd is None else f'{tsd:.4f}'} |")
    print()


if __name__ == "__main__":
    main()
