"""The Keras callbacks of a trial's training: its best epoch's checkpoint, its history, its stops.

`engine.SpecTuner` gives them to each trial's `fit`: `SaveBestEpoch` keeps what a Hyperband promotion
continues from, `EpochLog` records each epoch and stops at the time budget or a Ctrl-C (`StopFlag`),
`NanGuard` ends a diverging trial early, and `SeedEachEpoch` makes an epoch draw the same whether or not
it was resumed. The resume point written beside them lives in `resume_points`.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .runtime import seed_epoch


class SaveBestEpoch(keras.callbacks.Callback):
    """Weights and optimizer state at the trial's best epoch: what a promotion continues from.

    Written once, when training ends, not at every improvement: an improved epoch is kept in memory until
    then. When the epoch's resume point (`resume_points.ResumePoint`) is written, it holds the same state and
    is linked here instead; before a resume point is written, a best epoch still in memory goes to disk, so a
    killed trial always finds the best checkpoint that matches its resume point.
    """

    def __init__(self, metric: str, direction: str, path: str):
        super().__init__()
        self.metric, self.sign, self.path = metric, (1.0 if direction == "max" else -1.0), path
        self.partial = path.replace(".weights.h5", ".partial.weights.h5")  # written first, then renamed: never truncated
        self.best = -math.inf
        self.improved = False
        self._pending: list[np.ndarray] | None = None  # the best epoch's variables, not yet on disk

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.metric)
        signed = self.sign * value if value is not None and math.isfinite(value) else -math.inf
        self.improved = signed > self.best
        if self.improved:
            self.best = signed

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._write_pending(restore=False)  # the model is not trained further

    def remember(self) -> None:
        """Keep this epoch's state in memory, if it improved (no resume point was written for it)."""
        if self.improved:
            self._pending = [keras.ops.convert_to_numpy(v) for v in self._variables()]

    def keep(self, saved: Path) -> None:
        """A resume point was just written to `saved`: link it as the best checkpoint if this epoch improved,
        else first write the best epoch still held in memory."""
        if not self.improved:
            self._write_pending(restore=True)
            return
        self._pending = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.partial)
        try:
            os.link(saved, self.partial)  # the resume file is replaced later; the link keeps this one's bytes
        except OSError:  # a file system without hard links
            shutil.copyfile(saved, self.partial)
        os.replace(self.partial, self.path)

    def _variables(self) -> list[Any]:
        return [*self.model.variables, *self.model.optimizer.variables]

    def _write_pending(self, restore: bool) -> None:
        if self._pending is None:
            return
        variables = self._variables()
        current = [keras.ops.convert_to_numpy(v) for v in variables] if restore else None
        for variable, value in zip(variables, self._pending):
            variable.assign(value)
        self.model.save_weights(self.partial)
        os.replace(self.partial, self.path)
        self._pending = None
        if current is not None:
            for variable, value in zip(variables, current):
                variable.assign(value)


class StopFlag:
    """Set by the first Ctrl-C (or SIGTERM): the search stops at the end of the current epoch."""

    requested = False

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt("stop requested")


class NanGuard(keras.callbacks.TerminateOnNaN):
    """Stop at the first NaN or infinite loss, checked off the training thread.

    A callback with a per-batch hook makes Keras wait for every step's result before it dispatches the
    next one, which leaves a GPU idle between steps; marked async-safe, Keras checks it in a thread and
    keeps dispatching (a stop lands a step or two later, and the epoch's loss still shows it).
    """

    async_safe = True

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # Keras' own prints "Batch N: Invalid loss" to stdout; the trial's status and reason say it instead.
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True


class EpochLog(keras.callbacks.Callback):
    """Per-epoch history (with learning rate and time), progress reports, the time budget and Ctrl-C."""

    def __init__(self, on_epoch: Callable[[int, dict[str, float]], None], deadline: float | None, stop: StopFlag):
        super().__init__()
        self.on_epoch, self.deadline, self.stop = on_epoch, deadline, stop
        self.epochs: list[dict[str, float]] = []
        self.budget_hit = False
        self._start = self._rate = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()
        self._rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # The rate this epoch trained with, as Keras' ReduceLROnPlateau logs it (not the one its cut sets for the next).
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}, "learning_rate": self._rate}
        row["seconds"] = time.perf_counter() - self._start
        self.epochs.append(row)
        self.on_epoch(epoch + 1, row)
        # Cut short only if epochs were left and early stopping (called before this) had not ended the trial: a trial
        # that ends at the deadline anyway is whole, and one cut short continues when the budget is raised.
        if self.deadline is not None and time.time() >= self.deadline and not self.model.stop_training and epoch + 1 < (self.params or {}).get("epochs", 0):
            self.budget_hit = True
            self.model.stop_training = True


class SeedEachEpoch(keras.callbacks.Callback):
    """On PyTorch and JAX, Keras draws an epoch's order of arrays in memory (and, on PyTorch, dropout without
    a seed of its own) from a global generator whose state no resume point holds: seeded from the trial's seed
    and the epoch at each epoch's start (`runtime.seed_epoch`), a resumed epoch draws what it would have drawn
    in one uninterrupted run."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seed_epoch(self.seed, epoch)
