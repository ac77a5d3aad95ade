"""UNet++ (Zhou et al., MICCAI 2018) and U-Net from one conv block, with the paper's node names.

Node X_i_j sits at down-sampling level i (row) and convolution column j. Encoder nodes X_i_0
are conv blocks followed by max pooling; nested nodes are

    X_i_j = block(concat(X_i_0, ..., X_i_{j-1}, up(X_{i+1}_{j-1})))

The last layer of each node's block is named ``X_i_j``; its up-sampling ``X_i_j_up`` (the
transposed convolution feeding X_i_j from the level below), its concatenation ``X_i_j_concat``,
and heads ``head_X_0_j``. Only Keras 3 layers are used, so the models run on any backend.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers


def conv_block(x: Any, filters: int, name: str) -> Any:
    """Two 3x3 convolutions, each with batch norm and ReLU; the output layer is named ``name``."""
    for k in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name=f"{name}_conv{k}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{k}")(x)
        x = layers.Activation("relu", name=name if k == 2 else f"{name}_relu1")(x)
    return x


def _up(x: Any, filters: int, name: str) -> Any:
    return layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=name)(x)


def _head(x: Any, name: str) -> Any:
    # float32 output keeps the sigmoid stable under a mixed_bfloat16 policy.
    return layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name=name)(x)


def _encoder(inputs: Any, base_filters: int, depth: int) -> dict[tuple[int, int], Any]:
    nodes: dict[tuple[int, int], Any] = {}
    x = inputs
    for i in range(depth):
        if i > 0:
            x = layers.MaxPooling2D(2, name=f"X_{i - 1}_0_pool")(nodes[(i - 1, 0)])
        nodes[(i, 0)] = conv_block(x, base_filters * 2**i, f"X_{i}_0")
    return nodes


def build_unetpp(
    input_shape: tuple[int | None, int | None, int] = (256, 256, 3),
    base_filters: int = 32,
    depth: int = 5,
    deep_supervision: bool = False,
    name: str = "unetpp",
) -> keras.Model:
    """UNet++ with ``depth`` levels (5 in the paper: X_0_* .. X_4_0).

    With ``deep_supervision`` the model has one sigmoid head per top node X_0_1 .. X_0_{depth-1}
    (outputs in that order; the last is the full network) and can be pruned with :func:`prune`.
    """
    inputs = keras.Input(input_shape, name="image")
    nodes = _encoder(inputs, base_filters, depth)
    for j in range(1, depth):
        for i in range(depth - j):
            filters = base_filters * 2**i
            up = _up(nodes[(i + 1, j - 1)], filters, f"X_{i}_{j}_up")
            x = layers.Concatenate(name=f"X_{i}_{j}_concat")([*(nodes[(i, k)] for k in range(j)), up])
            nodes[(i, j)] = conv_block(x, filters, f"X_{i}_{j}")
    top = depth - 1
    if deep_supervision:
        outputs = [_head(nodes[(0, j)], f"head_X_0_{j}") for j in range(1, top + 1)]
    else:
        outputs = _head(nodes[(0, top)], f"head_X_0_{top}")
    return keras.Model(inputs, outputs, name=name)


def build_unet(
    input_shape: tuple[int | None, int | None, int] = (256, 256, 3),
    base_filters: int = 32,
    depth: int = 5,
    name: str = "unet",
) -> keras.Model:
    """Plain U-Net on the same blocks: decoder nodes X_i_{depth-1-i} with one skip each."""
    inputs = keras.Input(input_shape, name="image")
    nodes = _encoder(inputs, base_filters, depth)
    x_key = (depth - 1, 0)
    for i in range(depth - 2, -1, -1):
        j = depth - 1 - i
        filters = base_filters * 2**i
        up = _up(nodes[x_key], filters, f"X_{i}_{j}_up")
        x = layers.Concatenate(name=f"X_{i}_{j}_concat")([nodes[(i, 0)], up])
        nodes[(i, j)] = conv_block(x, filters, f"X_{i}_{j}")
        x_key = (i, j)
    outputs = _head(nodes[x_key], f"head_X_0_{depth - 1}")
    return keras.Model(inputs, outputs, name=name)


def build(architecture: dict[str, Any]) -> keras.Model:
    """Build from the ``architecture`` entry stored in a model's metadata."""
    arch = dict(architecture)
    kind = arch.pop("name", "unetpp")
    shape = tuple(arch.pop("input_shape", (256, 256, 3)))
    level = arch.pop("pruned_level", None)
    if kind == "unetpp":
        model = build_unetpp(shape, **arch)
        return prune(model, level) if level else model
    if kind == "unet":
        arch.pop("deep_supervision", None)
        return build_unet(shape, **arch)
    raise ValueError(f"unknown architecture {kind!r}")


def prune(model: keras.Model, level: int) -> keras.Model:
    """UNet++ cut at level L (see :func:`unetpp_gui.core.model_io.prune_model`; ValueError without a head)."""
    from unetpp_gui.core.errors import ModelError
    from unetpp_gui.core.model_io import prune_model

    try:
        return prune_model(model, level)
    except ModelError as exc:
        raise ValueError(str(exc)) from None
