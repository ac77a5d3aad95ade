"""Self-describing models: preprocessing, thresholds and provenance stored in the model file.

Models written by this project carry a JSON document in the HDF5 root attribute
``unetpp_metadata`` (for ``.keras`` archives: a ``unetpp_metadata.json`` member is not written;
those files fall back to the defaults). Foreign files get :data:`DEFAULTS`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ATTR = "unetpp_metadata"
SCHEMA = 1

#: Default pixel threshold for foreign models: the usual 0.5 on a sigmoid map.
DEFAULT_PIXEL_THRESHOLD = 0.5
#: Default decision threshold (tumour area / image area) for foreign models. 0.001 is about
#: 65 pixels on a 256x256 slice: smaller specks are treated as noise, not as a tumour.
DEFAULT_DECISION_THRESHOLD = 0.001


@dataclass
class ModelMetadata:
    """What a viewer needs to use a model correctly, plus where it came from."""

    input_scale: float = 1.0 / 255.0
    input_offset: float = 0.0
    #: per-channel intensity normalisation applied before the scaling (see core.normalize); {} = none
    input_normalization: dict[str, Any] = field(default_factory=dict)
    pixel_threshold: float = DEFAULT_PIXEL_THRESHOLD
    decision_threshold: float = DEFAULT_DECISION_THRESHOLD
    #: neighbouring slices as extra input channels (see core.context), e.g. {"slices": 1, "channel": 1}; {} = none
    input_context: dict[str, Any] = field(default_factory=dict)
    #: patient-level 3-D filter (see core.consistency), e.g. {"min_fraction": 1.0}; {} = off
    patient_filter: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    architecture: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    from_file: bool = False  # True when read from the file, False when defaults were used

    def to_json(self) -> str:
        doc = asdict(self)
        doc.pop("from_file")
        doc["schema"] = SCHEMA
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMetadata":
        doc = json.loads(text)
        known = {f for f in cls.__dataclass_fields__ if f != "from_file"}
        meta = cls(**{k: v for k, v in doc.items() if k in known})
        meta.from_file = True
        return meta


def read_metadata(path: str | Path) -> ModelMetadata:
    """Metadata stored in ``path``, or the documented defaults for a foreign file."""
    path = Path(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                raw = f.attrs.get(ATTR)
        except OSError:
            raw = None
        if raw is not None:
            if isinstance(raw, bytes):
                raw = raw.decode("utf-8")
            try:
                return ModelMetadata.from_json(str(raw))
            except (ValueError, TypeError):
                pass
    return ModelMetadata(name=path.stem)


def write_metadata(path: str | Path, meta: ModelMetadata) -> None:
    """Store ``meta`` in an existing ``.h5`` file (in place; callers make the file atomic)."""
    import h5py

    with h5py.File(path, "a") as f:
        f.attrs[ATTR] = meta.to_json()


def library_versions() -> dict[str, str]:
    """Versions worth recording next to a trained model."""
    import importlib
    import platform

    import keras
    import numpy

    from unetpp_gui import __version__

    backend = keras.backend.backend()  # tensorflow unless KERAS_BACKEND names another
    return {
        "unetpp_gui": __version__,
        backend: importlib.import_module(backend).__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
