"""Atomic model saves carrying metadata and optimizer state, and resuming from them.

File layout (.h5): Keras' own architecture + weights, plus the root attribute
``unetpp_metadata`` (JSON, see :mod:`unetpp_gui.core.metadata`) and, for resumable checkpoints,
a group ``unetpp_optimizer`` holding every optimizer variable in order (step count first).
"""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from unetpp_gui.core.atomic import atomic_path
from unetpp_gui.core.metadata import ModelMetadata, write_metadata

OPT_GROUP = "unetpp_optimizer"
_TWINS: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()


def _float32_copy(model: Any, architecture: dict[str, Any]) -> Any:
    """A float32 twin at the stored input size of a mixed-precision model or one trained on crops (any
    input size), so the saved file runs in plain fp32 at the size the viewer feeds it."""
    import keras

    from training.models import build

    policy = keras.config.dtype_policy()
    same_shape = list(model.input_shape[1:]) == list(architecture.get("input_shape", model.input_shape[1:]))
    if same_shape and all(getattr(l.dtype_policy, "name", "float32") == "float32" for l in model.layers):
        return model
    key = json.dumps(architecture, sort_keys=True)
    twin = _TWINS.get(model, {}).get(key)
    if twin is None:  # built once per run: building a UNet++ takes seconds, and every epoch saves
        keras.config.set_dtype_policy("float32")
        try:
            twin = build(architecture)
        finally:
            keras.config.set_dtype_policy(policy)
        _TWINS.setdefault(model, {})[key] = twin
    twin.set_weights(model.get_weights())
    return twin


def save_model(
    model: Any,
    path: str | Path,
    meta: ModelMetadata,
    optimizer: Any = None,
) -> Path:
    """Write ``model`` to ``path`` atomically (temp file + rename); never leaves half a file."""
    path = Path(path)
    with atomic_path(path, suffix=".h5") as tmp:
        export = _float32_copy(model, meta.architecture) if meta.architecture else model
        export.save(tmp, include_optimizer=False)
        if optimizer is not None:
            _write_optimizer(tmp, optimizer)
        write_metadata(tmp, meta)
    return path


def _write_optimizer(path: Path, optimizer: Any) -> None:
    import h5py

    with h5py.File(path, "a") as f:
        g = f.create_group(OPT_GROUP)
        g.attrs["class"] = type(optimizer).__name__
        for i, var in enumerate(optimizer.variables):
            ds = g.create_dataset(f"{i:05d}", data=np.asarray(var))
            ds.attrs["name"] = getattr(var, "path", getattr(var, "name", str(i)))


def load_keras(path: str | Path) -> Any:
    """The network in a saved model, to resume, fine-tune or export. TensorFlow reads it with the viewer's
    checked loader; other backends with Keras' own after the same file checks (the viewer runs on TensorFlow)."""
    from training import backend

    backend.prepare()
    if backend.is_tensorflow():
        from unetpp_gui.core.model_io import load_model

        return load_model(path).keras_model
    import keras

    from unetpp_gui.core.model_io import _check_file

    _check_file(Path(path), trust=False)
    return keras.models.load_model(path, compile=False)


def read_optimizer_state(path: str | Path) -> list[np.ndarray] | None:
    import h5py

    with h5py.File(path, "r") as f:
        if OPT_GROUP not in f:
            return None
        g = f[OPT_GROUP]
        return [np.asarray(g[k]) for k in sorted(g.keys())]


def restore_optimizer(optimizer: Any, model: Any, values: list[np.ndarray]) -> None:
    """Load saved optimizer variables (Adam moments and step) into a fresh optimizer."""
    optimizer.build(model.trainable_variables)
    variables = optimizer.variables
    if len(variables) != len(values):
        raise ValueError(f"optimizer state has {len(values)} variables, the optimizer {len(variables)}")
    for var, value in zip(variables, values):
        if tuple(var.shape) != tuple(value.shape):
            raise ValueError(f"optimizer variable {var.path}: shape {value.shape} != {tuple(var.shape)}")
        var.assign(value.astype(var.dtype))


def swap_ema_weights(optimizer: Any) -> None:
    """Exchange the model's trainable weights and the optimizer's moving averages (``use_ema``).

    A checkpoint written with ``keras.callbacks.SwapEMAWeights(swap_on_epoch=True)`` holds the averages as the
    model's weights and the raw weights in the optimizer's average slots; a resumed run must swap them back,
    or it would train on from the averages and average towards the old raw weights. The same private slots
    as Keras's own callback."""
    import keras

    averages = getattr(optimizer, "_model_variables_moving_average", None)
    if not averages:
        raise ValueError("the optimizer keeps no moving average (use_ema is off)")
    for var, avg in zip(optimizer._trainable_variables, averages):
        held = keras.ops.convert_to_numpy(var)
        var.assign(avg)
        avg.assign(held)


def optimizer_step(optimizer: Any) -> int:
    return int(np.asarray(optimizer.iterations))
