"""The Keras backend a training run uses, and the few things that differ between backends.

Training is Keras 3 code. TensorFlow is the default backend (the viewer, its bundle and CI use it) and
keeps the ``tf.data`` pipeline and ``tf.distribute`` strategies. With ``KERAS_BACKEND=jax`` the same
command trains wherever JAX is installed, e.g. a GPU machine without TensorFlow (tested; ``torch`` takes the
same path, untested); the input pipeline is then :class:`training.batches.SliceBatches` and the saved ``.h5``
is the same file.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from typing import Any, ContextManager


def current() -> str:
    """The backend Keras runs on: ``tensorflow``, ``jax`` or ``torch``."""
    import keras

    return keras.backend.backend()


def is_tensorflow() -> bool:
    return current() == "tensorflow"


def prepare() -> None:
    """Import the backend (TensorFlow quietly, see :mod:`unetpp_gui.core.quiet`)."""
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        from unetpp_gui.core.quiet import import_tensorflow

        import_tensorflow()
    importlib.import_module("keras")


def version() -> str:
    """The backend library's version, e.g. ``jax 0.10.2``."""
    name = current()
    return f"{name} {importlib.import_module(name).__version__}"


def gpus() -> list[str]:
    """Names of the GPUs the backend trains on (empty on a CPU-only machine)."""
    name = current()
    if name == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_physical_devices("GPU")]
    if name == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    if name == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def get_strategy(name: str) -> Any:
    """A tf.distribute strategy: TensorFlow's engine spreads the batches, we add nothing."""
    import tensorflow as tf

    if name == "auto":
        if os.environ.get("TF_CONFIG"):
            return tf.distribute.MultiWorkerMirroredStrategy()
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in gpus] or ["/cpu:0"])
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown strategy {name!r}")


def strategy_scope(name: str) -> ContextManager[Any]:
    """Where the model is built: a tf.distribute scope, or nothing on the other backends (one device)."""
    if is_tensorflow():
        return get_strategy(name).scope()
    if name not in ("auto", "default"):
        raise ValueError(f"--strategy {name} needs the tensorflow backend (this run uses {current()})")
    return contextlib.nullcontext()


def configure_threads() -> None:
    """Use every core for one op (the machines here have 2): fastest for conv nets on CPU."""
    prepare()
    if not is_tensorflow():
        return
    import tensorflow as tf

    n = os.cpu_count() or 2
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:
        pass  # already initialised
