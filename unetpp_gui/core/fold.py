"""Inference-only rewrites of a functional Keras model: batch norm folded into the convolution before it.

At inference a batch norm is a fixed per-channel affine map ``y = s * (x - mean) + beta`` with
``s = gamma / sqrt(var + eps)``. When it follows a linear ``Conv2D`` that nothing else reads, the
convolution can absorb it: ``kernel * s`` and ``(bias - mean) * s + beta``. The result computes the
same function (to float round-off) with one memory-bound pass less per block; the batch norm layer
becomes an ``Identity`` that keeps its name, so every other layer and connection is unchanged.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np


def node_sources(node: Any) -> list[str]:
    """Names of the layers whose outputs feed one inbound node of a functional config, in order: Keras 3's
    ``__keras_tensor__`` form, or tf.keras 2's ``[[name, node_index, tensor_index, kwargs], ...]`` (as a .h5 file
    written by tf.keras holds it)."""
    if isinstance(node, list):
        return [entry[0] for entry in node]
    found: list[str] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            if obj.get("class_name") == "__keras_tensor__":
                found.append(obj["config"]["keras_history"][0])
            else:
                for value in obj.values():
                    walk(value)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                walk(value)

    walk(node.get("args", []))
    walk(node.get("kwargs", {}))
    return found


def foldable_pairs(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(conv, batch norm) layer names where the batch norm (over the channel axis) is the only reader of a linear
    channels-last Conv2D, in a functional config (``{"layers": ..., "output_layers": ...}``). The rule both the
    TensorFlow rewrite here and OpenVINO's direct build (:mod:`~unetpp_gui.core.openvino_graph`) fold by."""
    by_name = {layer["config"]["name"]: layer for layer in config["layers"]}
    readers: dict[str, int] = {}
    for layer in config["layers"]:
        for node in layer.get("inbound_nodes", []):
            for src in node_sources(node):
                readers[src] = readers.get(src, 0) + 1
    outputs = {out[0] for out in as_list_of_refs(config.get("output_layers", []))}
    pairs = []
    for layer in config["layers"]:
        if layer["class_name"] != "BatchNormalization" or len(layer.get("inbound_nodes", [])) != 1:
            continue
        srcs = node_sources(layer["inbound_nodes"][0])
        if len(srcs) != 1:
            continue
        conv = by_name.get(srcs[0])
        if conv is None or conv["class_name"] != "Conv2D" or len(conv.get("inbound_nodes", [])) != 1:
            continue
        cc = conv["config"]
        if (readers.get(srcs[0]) != 1 or srcs[0] in outputs
                or cc.get("activation") not in (None, "linear")
                or cc.get("data_format", "channels_last") != "channels_last"
                or list(np.atleast_1d(layer["config"].get("axis", -1))) not in ([-1], [3])):
            continue
        pairs.append((srcs[0], layer["config"]["name"]))
    return pairs


def as_list_of_refs(refs: Any) -> list[list[Any]]:
    """``output_layers`` is one [name, node, tensor] triple or a list of them."""
    if refs and isinstance(refs[0], str):  # one triple
        return [refs]
    return list(refs)


def with_dtype_policy(config: Any, policy: str) -> Any:
    """A model config whose float32 layers compute under ``policy`` (e.g. "mixed_bfloat16"; weights stay
    float32, so the same weights load)."""
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and \
                config.get("config", {}).get("name") == "float32":
            return {**config, "config": {**config["config"], "name": policy}}
        return {k: with_dtype_policy(v, policy) for k, v in config.items()}
    if isinstance(config, list):
        return [with_dtype_policy(v, policy) for v in config]
    return config


def fold_batch_norm(model: Any, dtype_policy: str | None = None) -> tuple[Any, int]:
    """``(model with batch norms folded into their convolutions, how many)``; ``(model, 0)`` if none.

    With ``dtype_policy`` the folded model computes under it (one rebuild instead of two when the engine
    runs in bfloat16: about 0.4 s of each start for the bundled model). Works on functional models saved by
    Keras 3 or loaded from tf.keras 2.x files. Anything it cannot rewrite (subclassed models, shared layers,
    exotic configs) is returned unchanged.
    """
    try:
        config = copy.deepcopy(model.get_config())
        pairs = foldable_pairs(config)
    except Exception:  # not a functional model
        return model, 0
    if not pairs:
        return model, 0
    by_name = {layer["config"]["name"]: layer for layer in config["layers"]}
    for conv_name, bn_name in pairs:
        by_name[conv_name]["config"]["use_bias"] = True
        bn = by_name[bn_name]
        bn["class_name"], bn["module"], bn["registered_name"] = "Identity", "keras.layers", None
        bn["config"] = {"name": bn_name, "trainable": False, "dtype": bn["config"].get("dtype")}
        for node in bn["inbound_nodes"]:
            node["kwargs"] = {}  # batch norm's call takes mask/training; Identity's does not
    try:
        folded = type(model).from_config(with_dtype_policy(config, dtype_policy) if dtype_policy else config)
        convs = dict(pairs)
        skip = set(convs.values())
        for layer in folded.layers:
            if layer.name in skip:
                continue
            old = model.get_layer(layer.name)
            if layer.name in convs:
                layer.set_weights(_folded_weights(old, model.get_layer(convs[layer.name])))
            else:
                layer.set_weights(old.get_weights())
    except Exception:
        return model, 0
    return folded, len(pairs)


def _folded_weights(conv: Any, bn: Any) -> list[np.ndarray]:
    """Kernel and bias of ``conv`` followed by inference-mode ``bn``, in float64 then cast back."""
    kernel = np.asarray(conv.kernel, dtype=np.float64)
    channels = kernel.shape[-1]
    bias = np.asarray(conv.bias, dtype=np.float64) if conv.use_bias else np.zeros(channels)
    gamma = np.asarray(bn.gamma, dtype=np.float64) if bn.scale else np.ones(channels)
    beta = np.asarray(bn.beta, dtype=np.float64) if bn.center else np.zeros(channels)
    mean = np.asarray(bn.moving_mean, dtype=np.float64)
    var = np.asarray(bn.moving_variance, dtype=np.float64)
    scale = gamma / np.sqrt(var + bn.epsilon)
    dtype = np.asarray(conv.kernel).dtype
    return [(kernel * scale).astype(dtype), ((bias - mean) * scale + beta).astype(dtype)]
