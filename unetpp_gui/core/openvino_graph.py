"""A Keras ``.h5`` network built directly as an OpenVINO model: no TensorFlow, no Keras.

OpenVINO's own conversion traces the Keras network, so it needs TensorFlow imported and the model rebuilt
(5-7 s and about 700 MB on 2 cores, and the import holds the interpreter lock for up to 0.9 s in one piece).
The networks this project trains use a handful of layer types (convolutions, batch norms, activations, max
pooling, transposed convolutions, concatenations); this module reads the file's architecture and weights with
h5py and writes the same network with OpenVINO's operations (NHWC in and out, NCHW inside; a batch norm that
follows a linear convolution folded into it, as :mod:`~unetpp_gui.core.fold` folds it for TensorFlow). Any other
layer, or a configuration it does not recognise, raises :class:`Unsupported`, and the caller converts through
Keras as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from unetpp_gui.core.fold import as_list_of_refs, foldable_pairs, node_sources


class Unsupported(Exception):
    """This file's network uses something the direct build does not cover (the Keras conversion does)."""


#: Layers that pass their input through at inference.
_PASS_THROUGH = {"Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "Identity", "ActivityRegularization"}


def _refs(refs: Any) -> list[str]:
    """Layer names of ``input_layers`` / ``output_layers`` (one [name, node, tensor] triple or a list of them)."""
    return [ref[0] for ref in as_list_of_refs(refs)]


class _File:
    """The architecture and weights of a Keras .h5 model file."""

    def __init__(self, path: Path) -> None:
        import h5py

        if path.suffix.lower() not in (".h5", ".hdf5"):
            raise Unsupported(f"{path.suffix} files are converted through Keras")
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            if raw is None or "model_weights" not in f:
                raise Unsupported("no architecture or weights in the file")
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            if config.get("class_name") not in ("Functional", "Model"):
                raise Unsupported(f"a {config.get('class_name')} model")
            self.config = config["config"]
            self.layers = {layer["config"]["name"]: layer for layer in config["config"]["layers"]}
            self.inputs = _refs(config["config"]["input_layers"])
            self.outputs = _refs(config["config"]["output_layers"])
            self.weights: dict[str, dict[str, np.ndarray]] = {}
            group = f["model_weights"]
            for name in self.layers:
                if name not in group:
                    continue
                layer = group[name]
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in layer.attrs.get("weight_names", [])]
                # "X_0_0_conv1/kernel" (Keras 3) or "X_0_0_conv1/kernel:0" (tf.keras 2): keyed by "kernel"
                self.weights[name] = {n.rsplit("/", 1)[-1].split(":")[0]: np.asarray(layer[n], np.float32)
                                      for n in names}

    def source(self, name: str) -> list[str]:
        nodes = self.layers[name].get("inbound_nodes", [])
        if len(nodes) != 1:
            raise Unsupported(f"layer {name} is used {len(nodes)} times")
        return node_sources(nodes[0])


def _check_channels_last(config: dict[str, Any], name: str) -> None:
    if config.get("data_format", "channels_last") != "channels_last":
        raise Unsupported(f"{name}: channels_first")


class _Builder:
    """Walks the layers from the outputs back to the input and emits OpenVINO operations (NCHW)."""

    def __init__(self, file: _File) -> None:
        import openvino.opset13 as ops

        self.ops, self.file = ops, file
        self.done: dict[str, Any] = {}
        self.used: set[str] = set()  # layers whose weights the network uses (the parameter count)
        self.folded = 0
        self.fold_into = {bn: conv for conv, bn in foldable_pairs(file.config)}  # batch norm -> its convolution

    def const(self, value: np.ndarray) -> Any:
        return self.ops.constant(np.ascontiguousarray(value, np.float32))

    def node(self, name: str) -> Any:
        if name not in self.done:
            self.done[name] = self._emit(name)
        return self.done[name]

    def _emit(self, name: str) -> Any:
        layer = self.file.layers[name]
        kind, config = layer["class_name"], layer["config"]
        if kind == "InputLayer":
            raise Unsupported("the input is reached only through the model's input")
        srcs = self.file.source(name)
        if kind == "Concatenate":
            if config.get("axis", -1) not in (-1, 3):
                raise Unsupported(f"{name}: concatenation along axis {config.get('axis')}")
            return self.ops.concat([self.node(s) for s in srcs], 1)
        if len(srcs) != 1:
            raise Unsupported(f"{name}: {kind} with {len(srcs)} inputs")
        if kind in _PASS_THROUGH:
            return self.node(srcs[0])
        if kind == "Activation":
            return self._activation(self.node(srcs[0]), config.get("activation"), name)
        if kind == "ReLU":
            if config.get("max_value") is not None or config.get("negative_slope", 0) or config.get("threshold", 0):
                raise Unsupported(f"{name}: a ReLU with options")
            return self.ops.relu(self.node(srcs[0]))
        if kind == "MaxPooling2D":
            return self._pool(name, config, self.node(srcs[0]))
        if kind == "Conv2D":
            return self._conv(name, config, self.node(srcs[0]))
        if kind == "Conv2DTranspose":
            return self._transposed(name, config, self.node(srcs[0]))
        if kind == "BatchNormalization":
            return self._batch_norm(name, config, srcs[0])
        raise Unsupported(f"layer {name} ({kind})")

    def _activation(self, x: Any, activation: Any, name: str) -> Any:
        if activation in (None, "linear"):
            return x
        if activation == "relu":
            return self.ops.relu(x)
        if activation == "sigmoid":
            return self.ops.sigmoid(x)
        if activation == "softmax":
            return self.ops.softmax(x, 1)
        raise Unsupported(f"{name}: activation {activation!r}")

    def _pool(self, name: str, config: dict[str, Any], x: Any) -> Any:
        _check_channels_last(config, name)
        size = list(config["pool_size"])
        strides = list(config.get("strides") or size)
        pad = {"valid": "valid", "same": "same_upper"}[config.get("padding", "valid")]
        return self.ops.max_pool(x, strides, [1, 1], [0, 0], [0, 0], size, "floor", pad).output(0)

    def _kernel_bias(self, name: str, config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        weights = self.file.weights.get(name, {})
        if "kernel" not in weights or (config.get("use_bias", True) and "bias" not in weights):
            raise Unsupported(f"{name}: weights missing")
        self.used.add(name)
        return weights["kernel"], weights.get("bias") if config.get("use_bias", True) else None

    def _conv(self, name: str, config: dict[str, Any], x: Any,
              scale_shift: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
        _check_channels_last(config, name)
        if config.get("groups", 1) != 1 or list(config.get("dilation_rate", [1, 1])) != [1, 1]:
            raise Unsupported(f"{name}: grouped or dilated convolution")
        kernel, bias = self._kernel_bias(name, config)  # kernel (kh, kw, in, out)
        k = kernel.astype(np.float64)
        b = bias.astype(np.float64) if bias is not None else None
        if scale_shift is not None:  # a batch norm folded in: kernel * s, (bias - mean) * s + beta, as core.fold does
            s, shift = scale_shift
            k = k * s
            b = (b if b is not None else 0.0) * s + shift
        pad = {"valid": "valid", "same": "same_upper"}.get(config.get("padding", "valid"))
        if pad is None:
            raise Unsupported(f"{name}: padding {config.get('padding')!r}")
        y = self.ops.convolution(x, self.const(k.astype(np.float32).transpose(3, 2, 0, 1)),
                                 list(config.get("strides", [1, 1])), [0, 0], [0, 0], [1, 1], pad)
        if b is not None:
            y = self.ops.add(y, self.const(b.astype(np.float32).reshape(1, -1, 1, 1)))
        return self._activation(y, config.get("activation"), name)

    def _transposed(self, name: str, config: dict[str, Any], x: Any) -> Any:
        _check_channels_last(config, name)
        size, strides = list(config["kernel_size"]), list(config.get("strides", [1, 1]))
        if size != strides or config.get("output_padding") is not None \
                or list(config.get("dilation_rate", [1, 1])) != [1, 1]:
            raise Unsupported(f"{name}: a transposed convolution whose kernel is not its stride")
        kernel, bias = self._kernel_bias(name, config)  # kernel (kh, kw, out, in)
        y = self.ops.convolution_backprop_data(x, self.const(kernel.transpose(3, 2, 0, 1)), strides,
                                               pads_begin=[0, 0], pads_end=[0, 0], dilations=[1, 1])
        if bias is not None:
            y = self.ops.add(y, self.const(bias.reshape(1, -1, 1, 1)))
        return self._activation(y, config.get("activation"), name)

    def _batch_norm(self, name: str, config: dict[str, Any], src: str) -> Any:
        if list(np.atleast_1d(config.get("axis", -1))) not in ([-1], [3]):
            raise Unsupported(f"{name}: batch norm over axis {config.get('axis')}")
        w = self.file.weights.get(name, {})
        if not {"moving_mean", "moving_variance"} <= set(w):
            raise Unsupported(f"{name}: weights missing")
        self.used.add(name)
        channels = w["moving_mean"].shape[0]
        gamma = w["gamma"].astype(np.float64) if config.get("scale", True) else np.ones(channels)
        beta = w["beta"].astype(np.float64) if config.get("center", True) else np.zeros(channels)
        s = gamma / np.sqrt(w["moving_variance"].astype(np.float64) + float(config.get("epsilon", 1e-3)))
        shift = beta - w["moving_mean"].astype(np.float64) * s
        if self.fold_into.get(name) == src:  # the convolution exists only folded into this batch norm
            self.folded += 1
            conv_src = self.file.source(src)
            if len(conv_src) != 1:
                raise Unsupported(f"{src}: Conv2D with {len(conv_src)} inputs")
            return self._conv(src, self.file.layers[src]["config"], self.node(conv_src[0]), (s, shift))
        x = self.node(src)
        return self.ops.add(self.ops.multiply(x, self.const(s.reshape(1, -1, 1, 1))),
                            self.const(shift.reshape(1, -1, 1, 1)))


def _input_shape(config: dict[str, Any]) -> list[int | None]:
    shape = config.get("batch_shape") or config.get("batch_input_shape")
    if not shape or len(shape) != 4 or not shape[-1]:  # channels: LoadedModel checks them against the metadata
        raise Unsupported(f"input shape {shape}")
    return list(shape)


def build(path: Path, prune_level: int | None = None) -> tuple[Any, dict[str, Any]]:
    """(OpenVINO model, network facts as :data:`~unetpp_gui.core.openvino_runtime.NETWORK_FACTS` name them
    but ``output_index``, which the caller resolves) for the network in ``path``, pruned to ``prune_level``
    (its head ``head_X_0_L``) if given. Raises :class:`Unsupported` for anything it does not cover and
    ImportError without OpenVINO."""
    import openvino as ov
    import openvino.opset13 as ops

    file = _File(path)
    if len(file.inputs) != 1:
        raise Unsupported(f"{len(file.inputs)} inputs")
    heads = sorted(int(n.rsplit("_", 1)[1]) for n in file.layers if n.startswith("head_X_0_"))
    outputs = file.outputs
    if prune_level is not None:
        if prune_level not in heads or len(heads) < 2:
            raise Unsupported(f"no head at level {prune_level}")
        outputs = [f"head_X_0_{prune_level}"]
    shape = _input_shape(file.layers[file.inputs[0]]["config"])
    param = ops.parameter([-1 if d is None else d for d in shape], np.float32, name=file.inputs[0])
    builder = _Builder(file)
    builder.done[file.inputs[0]] = ops.transpose(param, ops.constant(np.array([0, 3, 1, 2], np.int64)))
    results, facts_out = [], []
    for name in outputs:
        y = ops.transpose(builder.node(name), ops.constant(np.array([0, 2, 3, 1], np.int64)))
        channels = int(y.get_output_partial_shape(0)[3].get_length())
        if channels not in (1, 2):
            raise Unsupported(f"output {name} has {channels} channels")
        activation = builder.file.layers[name]["config"].get("activation")
        facts_out.append((channels, ("softmax" if channels == 2 else "sigmoid") if activation in (None, "linear")
                          else None))
        results.append(ops.result(y))
    model = ov.Model(results, [param], Path(path).stem)
    n_params = sum(int(v.size) for name in builder.used for v in file.weights[name].values())
    hw = (int(shape[1]), int(shape[2])) if shape[1] is not None and shape[2] is not None else None
    facts = {"input_hw": hw, "channels": int(shape[3]), "n_outputs": len(outputs),
             "output_channels": [c for c, _ in facts_out], "apply_activation": [a for _, a in facts_out],
             "n_params": n_params, "prune_levels": tuple(heads) if len(heads) > 1 else (),
             "folded_batch_norms": builder.folded}
    return model, facts
