"""What a running search tells and hears: the listeners of its trial events, and the stop it is asked for.

The tuner reports each trial's start, epochs and end to `Events`, which hands them to every listener: the
progress view, the TensorBoard log, and the run.json clock that a search killed outright would otherwise lose.
Configurations that cannot be built are recorded once each; Ctrl-C or SIGTERM asks the search to stop after
the current epoch, so that every finished trial is on disk.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from .planner import Plan
from .records import RunStore
from .spec import SearchSpec


class Events:
    """Hands each event of the tuner to every listener: the progress view and the TensorBoard log."""

    def __init__(self, *listeners: Any):
        self.listeners = listeners

    def trial_started(self, record: Any, epochs: int) -> None:
        for listener in self.listeners:
            listener.trial_started(record, epochs)

    def epoch_done(self, epoch: int, row: dict[str, float]) -> None:
        for listener in self.listeners:
            listener.epoch_done(epoch, row)

    def trial_finished(self, record: Any) -> None:
        for listener in self.listeners:
            listener.trial_finished(record)

    def close(self) -> None:
        for listener in self.listeners:
            listener.close()


class ElapsedTime:
    """Keeps `elapsed_s` in run.json current as each trial ends: a search killed outright (`kill -9`, a power cut)
    never reaches the end that writes it, and its resumed run would count a `time_budget` from zero again."""

    def __init__(self, store: RunStore, before: float, started: float):
        self.store, self.before, self.started = store, before, started

    def trial_started(self, record: Any, epochs: int) -> None:
        pass

    def epoch_done(self, epoch: int, row: dict[str, float]) -> None:
        pass

    def trial_finished(self, record: Any) -> None:
        self.store.update_manifest(elapsed_s=round(self.before + time.time() - self.started, 3))

    def close(self) -> None:
        pass


def progress_view(
    spec: SearchSpec, the_plan: Plan, store: RunStore, live: bool | None, quiet: bool, data: dict[str, Any], retry_failed: bool = False, cut: Sequence[str] = ()
) -> Any:
    from .progress import SearchProgress
    from .results import rank

    again = ("failed", "out_of_memory") if retry_failed else ()  # they run again, and are counted when they do
    done = [r for r in store.read_trials() if not r.trial_id.startswith("infeasible-") and r.status not in again and r.trial_id not in cut]
    ranked = rank(done, spec.search.objective.direction)
    best = ranked[0].score if ranked and ranked[0].status == "completed" else None
    planned, epochs, _ = the_plan.up_to(spec.search.max_trials)  # the ETA prices what runs, not what max_trials cuts
    return SearchProgress(
        planned_trials=planned,
        planned_epochs=epochs,
        metric=spec.search.objective.metric,
        direction=spec.search.objective.direction,
        done_trials=len(done),
        done_epochs=sum(_planned_epochs(r, spec.search.max_epochs) for r in done),
        best=best,
        live=live,
        quiet=quiet,
        data=data,
    )


def _planned_epochs(record: Any, max_epochs: int) -> int:
    """The epochs the plan gave a trial (its Hyperband round's, less those its parent trained; early stopping aside)."""
    return int(record.hyperband.get("epochs", max_epochs)) - int(record.hyperband.get("initial_epoch", 0))


def record_infeasible(store: RunStore, board_log: Any, values: dict[str, Any], reason: str, recorded: set[str]) -> None:
    """One record per configuration that cannot be built, however often it is drawn again (a space of mostly
    unbuildable configurations redraws them hundreds of times once its buildable ones are used up)."""
    key = values_key(values)
    if key in recorded:
        return
    recorded.add(key)
    record = store.infeasible_record(values, reason)
    board_log.infeasible(record)  # its TensorBoard session first, as for trials: no record without one after a kill
    store.write_trial(record)


def values_key(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, default=str)


@contextlib.contextmanager
def graceful_stop(stop: Any, quiet: bool, notice: str = "stopping after the current epoch (Ctrl-C again to stop now)") -> Iterator[None]:
    """First Ctrl-C or SIGTERM: finish the current epoch (or the results being written), then stop; a second
    Ctrl-C stops at once.

    Either way every finished trial is already on disk; the interrupted one runs again on resume.
    """
    from .runtime import signals_handled

    def request(signum: int, frame: Any) -> None:
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.requested = True
        if not quiet:
            print(f"\n{notice}", file=sys.stderr, flush=True)

    with signals_handled(request, signal.SIGINT, signal.SIGTERM):
        yield
