"""Resume points: what a trial saves at an epoch's end, so that a killed or budget-cut trial continues there.

A trial's folder (`kerastuner/trial_<id>/`) holds at most one: `resume.json` and the weights file it names.
The callback that writes them (`ResumePoint`) and the functions that read and clear them live together, so
the format has one home.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import keras

from .callbacks import EpochLog, SaveBestEpoch
from .records import write_json
from .runtime import random_state


class ResumePoint(keras.callbacks.Callback):
    """Weights, optimizer state and callback state, so a killed trial continues from its last resume point.

    Written at the end of an epoch once `every` seconds have passed since the trial started or since the
    last one (0: after every epoch), whenever a stop is requested, and when the time budget cuts the trial
    short (kept after it ends: it continues from there when the budget is raised). Trials of a few short epochs then
    write none: a kill loses at most `every` seconds of training, and the search does not pay ~60 ms of
    checkpoint per epoch. The weights file is named by its epoch and written before `resume.json` points at
    it, so a kill at any moment leaves a consistent pair (the previous one, or the new one).
    """

    def __init__(
        self,
        folder: Path,
        trial_id: str,
        log: EpochLog,
        save_best: SaveBestEpoch,
        stateful: list[keras.callbacks.Callback],
        restore: dict[str, Any] | None,
        batch_size: int,
        every: float,
    ):
        super().__init__()
        self.folder, self.trial_id, self.log, self.save_best, self.stateful, self.restore = folder, trial_id, log, save_best, stateful, restore
        self.batch_size, self.every = batch_size, every
        self._last = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._last = time.monotonic()
        if self.restore:  # after the other callbacks' own on_train_begin reset them
            for callback, state in zip(self.stateful, self.restore["callbacks"]):
                for key, value in state.items():
                    setattr(callback, key, math.inf if value == "inf" else -math.inf if value == "-inf" else value)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.log.stop.requested or self.log.budget_hit or time.monotonic() - self._last >= self.every:
            self._write(epoch)
            self._last = time.monotonic()
        else:
            self.save_best.remember()
        self.log.stop.check()  # Ctrl-C: the trial stays unfinished in KerasTuner's oracle; a resume continues from here

    def _write(self, epoch: int) -> None:
        weights = self.folder / f"resume-epoch{epoch + 1}.weights.h5"
        self.model.save_weights(weights)
        self.save_best.keep(weights)
        state = {
            "trial_id": self.trial_id,
            "epoch": epoch + 1,
            "weights": weights.name,
            "stopped": bool(self.model.stop_training) and not self.log.budget_hit,  # the budget's cut is no end: it continues
            "batch_size": self.batch_size,
            "history": self.log.epochs,
            "random_state": random_state(self.model),
            "callbacks": [{k: _plain(getattr(c, k)) for k in RESUMABLE_STATE if hasattr(c, k)} for c in self.stateful],
        }
        write_json(self.folder / "resume.json", state)
        for old in self.folder.glob("resume-epoch*.weights.h5"):
            if old != weights:
                old.unlink(missing_ok=True)


RESUMABLE_STATE = ("wait", "best", "best_epoch", "cooldown_counter")


def _plain(value: Any) -> Any:
    """A callback attribute as JSON (numbers may be numpy or backend scalars; JSON has no infinity)."""
    if value is None or isinstance(value, (bool, int)):
        return value
    number = float(keras.ops.convert_to_numpy(value))
    return ("inf" if number > 0 else "-inf") if math.isinf(number) else number


def read_resume_point(folder: Path, trial_id: str) -> dict[str, Any] | None:
    """The state saved after the last finished epoch of an interrupted trial, if it is usable."""
    try:
        state = json.loads((folder / "resume.json").read_text())
    except (OSError, ValueError):
        return None
    if state.get("trial_id") != trial_id or not (folder / str(state.get("weights"))).exists():
        return None
    return state


def cut_by_the_budget(store: Any) -> list[str]:
    """Ids of the trials the time budget stopped before their last epoch that can continue from their resume point
    (`kerastuner/trial_<id>/`), in order: they run again when the run resumes with budget left."""
    folders = store.dir / "kerastuner"
    return [
        r.trial_id
        for r in store.read_trials()
        if r.status == "completed" and r.stopped_by_budget and read_resume_point(folders / f"trial_{r.trial_id}", r.trial_id) is not None
    ]


def clear_resume_point(folder: Path) -> None:
    (folder / "resume.json").unlink(missing_ok=True)
    for old in folder.glob("resume-epoch*.weights.h5"):
        old.unlink(missing_ok=True)
