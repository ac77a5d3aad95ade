"""Callbacks: machine-readable progress, clean cancel, atomic best/last checkpoints."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Any, Callable, TextIO

import keras


class JsonProgress(keras.callbacks.Callback):
    """One JSON object per line: ``batch`` (every ``every`` steps), ``epoch``, plus custom events.

    The GUI's training dialog reads these from the training process's stdout.
    """

    def __init__(self, stream: TextIO, epochs: int, steps: int, initial_epoch: int = 0, every: int = 1) -> None:
        super().__init__()
        self.stream, self.epochs, self.steps, self.every = stream, epochs, steps, max(1, every)
        self.initial_epoch = initial_epoch
        self.start = time.monotonic()
        self.epoch = 0
        self.done_steps = 0

    def emit(self, event: str, **fields: Any) -> None:
        doc = {"event": event, "elapsed": round(time.monotonic() - self.start, 2), **fields}
        self.stream.write(json.dumps(doc, default=_jsonable) + "\n")
        self.stream.flush()

    def _eta(self) -> float | None:
        total = (self.epochs - self.initial_epoch) * self.steps
        if not self.done_steps:
            return None
        rate = (time.monotonic() - self.start) / self.done_steps
        return round(rate * max(total - self.done_steps, 0), 1)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.done_steps += 1
        if (batch + 1) % self.every == 0 or batch + 1 == self.steps:
            self.emit("batch", epoch=self.epoch + 1, epochs=self.epochs, step=batch + 1, steps=self.steps,
                      eta=self._eta(), **_scalars(logs))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.model.stop_training:  # cancelled within the epoch (early stopping sets it after this callback)
            return
        self.emit("epoch", epoch=epoch + 1, epochs=self.epochs, eta=self._eta(), **_scalars(logs))


class CancelOnFlag(keras.callbacks.Callback):
    """Stops training between batches when ``flag`` is set or ``cancel_file`` appears, and the validation that
    Keras still runs after a stopped epoch after its first batch (a whole pass: 35 s for 300 LGG slices beside
    another job, 48 s for a fold's 742 on 2 idle cores)."""

    def __init__(self, flag: threading.Event, cancel_file: Path | None = None) -> None:
        super().__init__()
        self.flag, self.cancel_file = flag, cancel_file

    def _check(self) -> None:
        if self.cancel_file is not None and self.cancel_file.exists():
            self.flag.set()
        if self.flag.is_set():
            self.model.stop_training = True
            self.model.stop_evaluating = True  # read after each validation batch (reset when one starts)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._check()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._check()


class Checkpoint(keras.callbacks.Callback):
    """After each complete epoch: save the last state, and the best by ``monitor`` (max) where the epoch was
    validated; with ``monitor`` None (no validation) every epoch is saved to ``best_path`` too, which ends
    holding the last one.

    ``save`` is called with (path, epoch, logs) and must be atomic. A cancelled epoch is never saved, so
    files on disk always hold finished epochs.
    """

    def __init__(self, monitor: str | None, best_path: Path, last_path: Path | None,
                 save: Callable[[Path, int, dict], None], flag: threading.Event,
                 best: float = -math.inf, on_save: Callable[[str, Path, int], None] | None = None,
                 best_epoch: int | None = None) -> None:
        super().__init__()
        self.monitor, self.best_path, self.last_path = monitor, best_path, last_path
        self.save, self.flag, self.best, self.on_save = save, flag, best, on_save
        self.best_epoch = best_epoch  # a resumed run's best so far

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        if self.flag.is_set():
            return
        if self.last_path is not None:
            self.save(self.last_path, epoch + 1, logs)
            if self.on_save:
                self.on_save("last", self.last_path, epoch + 1)
        if self.monitor is not None and self.monitor not in logs:  # not validated this epoch
            return
        value = float(logs[self.monitor]) if self.monitor is not None else math.inf
        if value > self.best or self.monitor is None:
            if self.monitor is not None:
                self.best = value
            self.best_epoch = epoch + 1
            self.save(self.best_path, epoch + 1, logs)
            if self.on_save:
                self.on_save("best", self.best_path, epoch + 1)


def _scalars(logs: dict | None) -> dict[str, float]:
    out = {}
    for k, v in (logs or {}).items():
        try:
            out[k] = round(float(v), 6)
        except (TypeError, ValueError):
            pass
    return out


def _jsonable(o: Any) -> Any:
    try:
        return float(o)
    except (TypeError, ValueError):
        return str(o)
