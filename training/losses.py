"""Losses and the validation Dice metric (Keras 3 ops only, backend-neutral)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from training.options import LOSS_NAMES


@keras.saving.register_keras_serializable(package="unetpp")
def soft_dice_loss(y_true: Any, y_pred: Any) -> Any:
    """1 - soft Dice over the whole batch (smooth 1 keeps empty batches finite)."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    inter = ops.sum(y_true * y_pred)
    return 1.0 - (2.0 * inter + 1.0) / (ops.sum(y_true) + ops.sum(y_pred) + 1.0)


@keras.saving.register_keras_serializable(package="unetpp")
def bce_dice_loss(y_true: Any, y_pred: Any) -> Any:
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred))
    return bce + soft_dice_loss(y_true, y_pred)


LOSSES = {"bce": "binary_crossentropy", "bce_dice": bce_dice_loss}
assert tuple(LOSSES) == LOSS_NAMES


@keras.saving.register_keras_serializable(package="unetpp")
class GlobalDice(keras.metrics.Metric):
    """Hard Dice over every pixel seen in an epoch (threshold 0.5): one number per val set."""

    def __init__(self, threshold: float = 0.5, name: str = "dice", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.threshold = threshold
        self.inter = self.add_variable(shape=(), initializer="zeros", name="inter")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        t = ops.cast(ops.greater(ops.cast(y_true, "float32"), 0.5), "float32")
        p = ops.cast(ops.greater(ops.cast(y_pred, "float32"), self.threshold), "float32")
        self.inter.assign_add(ops.sum(t * p))
        self.total.assign_add(ops.sum(t) + ops.sum(p))

    def result(self) -> Any:
        return ops.where(self.total > 0, 2.0 * self.inter / ops.maximum(self.total, 1.0), 1.0)

    def reset_state(self) -> None:
        self.inter.assign(0.0)
        self.total.assign(0.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "threshold": self.threshold}
