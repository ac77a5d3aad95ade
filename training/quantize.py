"""``unetpp quantize``: an int8 network beside a model file, for ``--precision int8`` (OpenVINO).

NNCF's post-training quantization (weights and activations to int8, no retraining) of the float32 network the
engine runs (batch norms folded), calibrated on slices of the patients the model trained on; never on its
validation or test patients. The result is written as :func:`unetpp_gui.core.quantized.sidecar` says.
NNCF is needed here only (``pip install .[quantize]``); running the int8 network needs OpenVINO alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: Calibration slices drawn when none is said: NNCF's own default subset size.
CALIBRATION_SLICES = 300


def calibration_slices(model_path: str | Path, data: Sequence[str | Path], n: int, seed: int,
                       prefix_fields: int | None = None) -> tuple[list[Path], str]:
    """Up to ``n`` slices under ``data`` from the model's training patients (all slices found there if the model
    records no split), drawn at random with ``seed``; and a sentence saying where they came from."""
    from unetpp_gui.core.discovery import discover, patient_of
    from unetpp_gui.core.metadata import read_metadata

    split = read_metadata(model_path).training.get("split") or {}
    slices = discover(list(data)).slices
    train = set(split.get("train") or ())
    if train:
        slices = [s for s in slices if patient_of(s, prefix_fields) in train]
        source = f"the model's training patients ({len(train)} in its split)"
    else:
        held = set(split.get("validation") or ()) | set(split.get("test") or ())
        slices = [s for s in slices if patient_of(s, prefix_fields) not in held]
        source = "the slices given (the model records no training patients)"
    if not slices:
        raise ValueError(f"no slices for calibration under {', '.join(map(str, data))} ({source})")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(slices), min(n, len(slices)), replace=False))
    return [slices[i] for i in chosen], source


def calibration_inputs(model: Any, paths: Sequence[Path]) -> list[np.ndarray]:
    """Each readable slice as the engine prepares it for ``model`` (a batch of one; a 2.5-D model's neighbours
    included); an unreadable slice is left out, not fatal."""
    from unetpp_gui.core.errors import ImageError
    from unetpp_gui.core.image_io import load_image
    from unetpp_gui.core.inference import neighbours_of, prepare_for

    inputs = []
    for p in paths:
        try:
            rgb = load_image(p)
        except ImageError:
            continue
        inputs.append(prepare_for(model, rgb, neighbours_of(model, p))[0][None])
    return inputs


def quantize(model_path: str | Path, data: Sequence[str | Path], n: int = CALIBRATION_SLICES, seed: int = 0,
             prefix_fields: int | None = None) -> Path:
    """Write the int8 network of ``model_path`` beside it (calibrated as :func:`calibration_slices` says);
    returns its .xml. Raises ValueError for a network the direct OpenVINO build does not cover or no data."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    from unetpp_gui.core import quantized
    from unetpp_gui.core.metadata import read_metadata
    from unetpp_gui.core.model_io import LoadedModel
    from unetpp_gui.core.openvino_graph import build
    from unetpp_gui.core.openvino_runtime import save_network, select_output

    model_path = Path(model_path)
    try:
        network, facts = build(model_path, None)
    except Exception as exc:  # the direct build covers every network this project trains
        raise ValueError(f"{model_path.name}: its network cannot be built for OpenVINO ({exc})") from None
    facts = select_output(facts, -1)
    paths, source = calibration_slices(model_path, data, n, seed, prefix_fields)
    # the model as the engine describes it, so each slice is prepared exactly as inference prepares it
    model = LoadedModel(path=model_path, keras_model=None, metadata=read_metadata(model_path), **facts)
    inputs = calibration_inputs(model, paths)
    if not inputs:
        raise ValueError(f"none of the {len(paths)} calibration slices could be read")
    # Overflow fix on every layer (weights in 7 bits): CPUs without VNNI (AVX2 only) multiply int8 in 16-bit
    # sums that saturate otherwise; NNCF's default fixes the first layer only, and on an AVX2-only AMD EPYC a tiny
    # network's int8 output then correlated 0.88 with float32 (0.999 with the fix)
    int8 = nncf.quantize(network, nncf.Dataset(inputs), subset_size=len(inputs),
                         preset=nncf.QuantizationPreset.PERFORMANCE,
                         advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE))
    xml = quantized.sidecar(model_path)
    save_network(int8, xml)
    quantized.write_facts(model_path, facts, {"slices": len(inputs), "unreadable": len(paths) - len(inputs),
                                              "seed": seed, "source": source,
                                              "method": f"NNCF {nncf.__version__} post-training, performance preset, "
                                                        "overflow fix on every layer"})
    return xml


def add_quantize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model file (default: the bundled model)")
    p.add_argument("--data", nargs="+", required=True,
                   help="folder(s) with the model's training slices (only its training patients are used)")
    p.add_argument("--slices", type=int, default=CALIBRATION_SLICES, help="calibration slices")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patient-prefix-fields", type=int)


def run_quantize(args: argparse.Namespace) -> int:
    from unetpp_gui.core.model_io import resolve_model_path

    path = resolve_model_path(args.model)
    try:
        xml = quantize(path, args.data, args.slices, args.seed, args.patient_prefix_fields)
    except ImportError:
        print("unetpp quantize: error: NNCF is not installed (pip install .[quantize])", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"unetpp quantize: error: {exc}", file=sys.stderr)
        return 2
    size = xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    print(f"wrote {xml} and {xml.with_suffix('.bin').name} ({size / 1e6:.1f} MB); run it with --precision int8")
    return 0
