"""Average several networks' probability maps in one .h5 that the viewer and `unetpp evaluate` open like any model.

For measuring ensembles (MODEL_CARD.md, "GPU runs on JAX, second session"); the bundled model is one network.
Each member contributes its full-depth output (UNet++ with deep supervision: head X_0_4); the file carries the
widest member's input (the first one's if all are alike: its normalisation, neighbouring-slice context and patient
split) with untuned thresholds, for `unetpp evaluate --calibrate`. A 2-D member beside a 2.5-D one
(``--context-slices``) reads the slice's own channels, which lead the 2.5-D input, through a fixed 1x1 selection;
members whose input normalisation differs are refused (each would see the others' intensities).

    python scripts/ensemble.py OUT.h5 MEMBER.h5 MEMBER.h5 [...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _leading_channels(x, count: int, name: str):
    """The first ``count`` channels of ``x`` through a fixed 1x1 convolution (a standard layer, so the file opens
    without custom code)."""
    import keras
    import numpy as np

    select = keras.layers.Conv2D(count, 1, use_bias=False, trainable=False, name=name)
    y = select(x)
    select.set_weights([np.eye(int(x.shape[-1]), count, dtype="float32")[None, None]])
    return y


def build_ensemble(out: Path, members: list[Path]) -> Path:
    from training import backend

    backend.prepare()
    import keras

    from training.saving import load_keras, save_model
    from unetpp_gui.core.context import SliceContext
    from unetpp_gui.core.metadata import DEFAULT_DECISION_THRESHOLD, DEFAULT_PIXEL_THRESHOLD, read_metadata

    metas = [read_metadata(p) for p in members]
    norms = {json.dumps([m.input_normalization, m.input_scale, m.input_offset], sort_keys=True) for m in metas}
    if len(norms) > 1:
        raise ValueError("the members normalise their input differently (train them on the same patients with the "
                         "same --normalize)")
    nets = [load_keras(p) for p in members]
    widths = [int(net.input_shape[-1]) for net in nets]
    full = max(widths)
    wide = widths.index(full)
    meta = metas[wide]
    ctx = SliceContext.from_dict(meta.input_context)
    own = full - (ctx.extra_channels if ctx else 0)
    if any(w not in (own, full) for w in widths):
        raise ValueError(f"members with {widths} input channels: a narrower member must read exactly the "
                         f"{own} own channels of the widest one's slices")
    image = keras.Input(nets[wide].input_shape[1:], name="image")
    maps = []
    for i, (net, width) in enumerate(zip(nets, widths)):
        net.name = f"member_{i}"  # layer names must be unique in the combined model
        y = net(image if width == full else _leading_channels(image, width, f"member_{i}_input"))
        maps.append(y[-1] if isinstance(y, (list, tuple)) else y)
    mean = keras.layers.Average(name="average")(maps)
    # an activation layer that leaves probabilities as they are: an output without one is read as logits
    model = keras.Model(image, keras.layers.Activation("relu", name="ensemble")(mean), name="ensemble")
    meta.name = "ensemble_" + "_".join(p.stem for p in members)
    meta.pixel_threshold, meta.decision_threshold, meta.patient_filter = DEFAULT_PIXEL_THRESHOLD, DEFAULT_DECISION_THRESHOLD, {}
    # not one buildable network: no architecture; the widest member's split (evaluate's --split) and the members
    meta.architecture = {}
    meta.training = {"split": meta.training.get("split", {}), "ensemble_of": [p.name for p in members]}
    return save_model(model, out, meta, optimizer=None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("members", type=Path, nargs="+")
    args = p.parse_args()
    if len(args.members) < 2:
        p.error("an ensemble needs two or more members")
    try:
        print(f"wrote {build_ensemble(args.out, args.members)}")
    except ValueError as exc:
        p.exit(2, f"ensemble.py: error: {exc}\n")


if __name__ == "__main__":
    main()
