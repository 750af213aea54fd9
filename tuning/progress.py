"""The live view of a search: trial i of the planned total, epoch, best score, elapsed time and ETA.

On a terminal (or in a notebook) it is one live line drawn by `rich`; elsewhere (CI logs, pipes) it is
one plain line per finished trial. KerasTuner's and Keras' own printing is switched off by the tuner.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from .records import TrialRecord


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class SearchProgress:
    """Receives the tuner's events; `live=None` picks the live view when the output is a terminal."""

    def __init__(
        self,
        *,
        planned_trials: int,
        planned_epochs: int,
        metric: str,
        direction: str,
        done_trials: int = 0,
        done_epochs: int = 0,
        best: float | None = None,
        stream: TextIO | None = None,
        live: bool | None = None,
        quiet: bool = False,
        data: dict[str, Any] | None = None,
    ):
        self.planned_trials, self.planned_epochs = planned_trials, planned_epochs
        self.metric, self.sign = metric, (1.0 if direction == "max" else -1.0)
        self.started = done_trials
        self.best = best
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.start = time.time()
        self.budget_consumed = 0  # this session's: the ETA's pace is this session's, over what is left of the plan
        self.budget_before = done_epochs  # the planned epochs of the trials a resumed run kept
        self.epoch_budget = 0
        self.epoch = 0
        self.trial_id = ""
        if data and not quiet:
            from .data import data_text, skipped_text

            print(f"data: {data_text(data)}", file=self.stream)
            if skipped := skipped_text(data):
                print(f"data: {skipped}", file=self.stream)
        if done_trials and not quiet:
            print(f"resuming: {done_trials} finished trials kept, not retrained", file=self.stream, flush=True)
        # A live line needs a terminal; in notebooks and logs one line per trial is printed instead.
        use_live = self.stream.isatty() and not _in_notebook() if live is None else live
        self._live: Any = None
        if use_live and not quiet:
            from rich.console import Console
            from rich.live import Live

            self._console = Console(file=self.stream, highlight=False)
            self._live = Live(self, console=self._console, refresh_per_second=2, transient=True)
            self._live.start()

    def _eta(self) -> str:
        elapsed = time.time() - self.start
        done = self.budget_consumed + self.epoch  # planned epochs of finished trials, plus the running one's
        if done <= 0:
            return "?"
        return "<=" + _clock(elapsed / done * max(0, self.planned_epochs - self.budget_before - done))

    def _status(self) -> str:
        best = "-" if self.best is None else f"{self.best:.4f}"
        epoch = f"epoch {self.epoch}/{self.epoch_budget}" if self.epoch_budget else ""
        return f"trial {self.started}/{self.planned_trials} ({self.trial_id}) {epoch}  best {self.metric} {best}  elapsed {_clock(time.time() - self.start)}  ETA {self._eta()}"

    def __rich__(self) -> str:
        """Redrawn by `rich.live.Live` twice a second, so elapsed time and ETA move during long epochs."""
        return self._status()

    def _draw(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def trial_started(self, record: TrialRecord, epochs: int) -> None:
        self.started += 1
        self.trial_id, self.epoch, self.epoch_budget = record.trial_id, 0, epochs
        self.initial_epoch = int(record.hyperband.get("initial_epoch", 0))
        self._draw()

    def epoch_done(self, epoch: int, row: dict[str, float]) -> None:
        self.epoch = epoch - self.initial_epoch
        self._draw()

    def trial_finished(self, record: TrialRecord) -> None:
        self.budget_consumed += self.epoch_budget
        if record.status == "completed" and record.score is not None and (self.best is None or self.sign * record.score > self.sign * self.best):
            self.best = record.score
        score = f"{self.metric} {record.score:.4f}" if record.score is not None else record.reason
        line = f"[{self.started}/{self.planned_trials}] {record.trial_id} {record.status}: {score} ({record.epochs_trained} ep, {record.wall_time:.1f}s)"
        if self.quiet:
            return
        if self._live is not None:
            self._console.print(line, soft_wrap=True)
        else:
            best = "-" if self.best is None else f"{self.best:.4f}"
            print(f"{line}  best {best}  elapsed {_clock(time.time() - self.start)}  ETA {self._eta()}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    try:
        return bool(shell and shell.get_ipython() and "IPKernelApp" in shell.get_ipython().config)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - any doubt means "not a notebook"
        return False
