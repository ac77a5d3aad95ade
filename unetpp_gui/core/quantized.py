"""An int8 network kept beside its model file, for OpenVINO (``precision="int8"``).

``unetpp quantize`` (:mod:`training.quantize`) quantizes a model's float32 network once, calibrated on slices of
the patients it trained on, and writes ``<model>.int8.xml`` / ``.bin`` next to the ``.h5`` file with
``<model>.int8.json``: the network facts the engine needs and the digest of the network it came from (its
architecture and weights; thresholds stored in the file later do not change it). A sidecar whose digest does
not match (the model was retrained or replaced) is not used. The full network only: a pruned
or TensorFlow run stays float32 and says why.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

#: What ``unetpp quantize`` adds to the model file's name.
SUFFIX = ".int8"


def sidecar(path: str | Path) -> Path:
    """Where the int8 network of model file ``path`` is kept (the .xml; .bin and .json beside it)."""
    path = Path(path)
    return path.with_name(f"{path.stem}{SUFFIX}.xml")


def facts_file(path: str | Path) -> Path:
    return sidecar(path).with_suffix(".json")


def network_digest(path: str | Path) -> str:
    """SHA-256 (24 hex digits) of the file's architecture and weights: what an int8 network was made from."""
    import h5py

    h = hashlib.sha256()
    with h5py.File(path, "r") as f:
        h.update(str(f.attrs.get("model_config", "")).encode())
        weights = f["model_weights"] if "model_weights" in f else f

        def add(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                h.update(name.encode())
                h.update(np.ascontiguousarray(obj[()]).tobytes())

        weights.visititems(add)
    return h.hexdigest()[:24]


def write_facts(path: str | Path, facts: dict[str, Any], calibration: dict[str, Any]) -> None:
    """Record the network facts, the digest of the network it came from and how it was calibrated beside the int8
    network."""
    from unetpp_gui.core.atomic import atomic_write_bytes

    doc = {"source_digest": network_digest(path), "network": facts, "calibration": calibration}
    atomic_write_bytes(facts_file(path), json.dumps(doc, indent=1).encode())


def find(path: str | Path) -> tuple[Path, dict[str, Any]] | str:
    """(the int8 .xml, its network facts) for model file ``path``, or why there is none to use."""
    from unetpp_gui.core.openvino_runtime import sound_facts, version

    path = Path(path)
    xml = sidecar(path)
    if version() is None:
        return "int8 runs on OpenVINO, which is not installed"
    if not (xml.exists() and xml.with_suffix(".bin").exists()):
        return f"no int8 network beside the model ({xml.name}; make it with `unetpp quantize`)"
    try:
        doc = json.loads(facts_file(path).read_text())
    except (OSError, ValueError):
        doc = None
    facts = sound_facts(doc.get("network")) if isinstance(doc, dict) else None
    if facts is None:
        return f"{facts_file(path).name} is missing or damaged"
    try:
        same = doc.get("source_digest") == network_digest(path)
    except (OSError, ValueError):
        return f"{path.name}: its network could not be read"
    if not same:
        return f"{xml.name} was made from another network than {path.name} holds; quantize it again"
    return xml, facts


def calibration_of(path: str | Path) -> dict[str, Any]:
    """How the int8 network beside ``path`` was calibrated ({} if unknown)."""
    try:
        return dict(json.loads(facts_file(path).read_text()).get("calibration", {}))
    except (OSError, ValueError, AttributeError, TypeError):
        return {}
