"""Average several networks' probability maps in one .h5 that the viewer and `unetpp evaluate` open like any model.

For measuring ensembles (MODEL_CARD.md, "GPU runs on JAX, second session"); the bundled model is one network.
Each member contributes its full-depth output (UNet++ with deep supervision: head X_0_4); the file carries the
first member's input normalisation and patient split with untuned thresholds, for `unetpp evaluate --calibrate`.

    python scripts/ensemble.py OUT.h5 MEMBER.h5 MEMBER.h5 [...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build_ensemble(out: Path, members: list[Path]) -> Path:
    from training import backend

    backend.prepare()
    import keras

    from training.saving import load_keras, save_model
    from unetpp_gui.core.metadata import DEFAULT_DECISION_THRESHOLD, DEFAULT_PIXEL_THRESHOLD, read_metadata

    nets = [load_keras(p) for p in members]
    image = keras.Input(nets[0].input_shape[1:], name="image")
    maps = []
    for i, net in enumerate(nets):
        net.name = f"member_{i}"  # layer names must be unique in the combined model
        y = net(image)
        maps.append(y[-1] if isinstance(y, (list, tuple)) else y)
    mean = keras.layers.Average(name="average")(maps)
    # an activation layer that leaves probabilities as they are: an output without one is read as logits
    model = keras.Model(image, keras.layers.Activation("relu", name="ensemble")(mean), name="ensemble")
    meta = read_metadata(members[0])
    meta.name = "ensemble_" + "_".join(p.stem for p in members)
    meta.pixel_threshold, meta.decision_threshold, meta.patient_filter = DEFAULT_PIXEL_THRESHOLD, DEFAULT_DECISION_THRESHOLD, {}
    # not one buildable network: no architecture; the first member's split (evaluate's --split) and the members
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
    print(f"wrote {build_ensemble(args.out, args.members)}")


if __name__ == "__main__":
    main()
