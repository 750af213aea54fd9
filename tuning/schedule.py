"""How a plan's trials fill the wall clock: the search's oracle replayed on N workers, each with its own model pool.

`validate --time` prices a trial from a few timed configurations; what the plan then takes depends on how its
trials are handed out. In one process they run one after another. With `--workers N` each worker asks the
oracle for its next trial (`oracles._FewConfigurationsHyperband`): a first-round trial of an open bracket, a
promotion once more of the round below have completed than the next round throws out, else a new bracket; once
the last bracket has started, a worker with nothing to take waits for a round to complete (asking twice a
second). Hyperband's later rounds are short and few, so N workers finish sooner, but not N times sooner.

A network is built and traced in each worker that trains it: every worker process keeps its own pool of
models (`model_pool`, least recently used out), so a promotion whose network its worker has evicted, or never
trained, is built again. Which trial Hyperband promotes depends on scores no one knows yet: a replay promotes
one of the candidates at random, and the estimate averages a few replays.
"""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

IDLE_POLL_S = 0.5  # an idle worker asks again after this long (`workers._pace_idle_requests`): half of it on average


@dataclass(frozen=True)
class Costs:
    """What a worker spends on a trial: each epoch, the trial's set-up and weights, and a new network's build and
    first-epoch trace when its pool does not hold the network."""

    epoch_s: float
    per_trial_s: float
    new_network_s: float


@dataclass(frozen=True)
class Replay:
    """One replayed search: `seconds` from the first trial's start to the last one's end, the trials and epochs
    run, the networks built (over all workers) and the worker-seconds with no trial before the end (`idle_s`:
    waiting for a round, or done while others finish)."""

    seconds: float
    trials: int
    epochs: int
    builds: int
    idle_s: float
    workers: int

    @property
    def idle_fraction(self) -> float:
        return self.idle_s / (self.workers * self.seconds) if self.seconds > 0 else 0.0


@dataclass
class _Trial:
    bracket: int
    round: int
    network: str
    params: int
    epochs: int
    parent: int | None = None
    done: bool = False


@dataclass
class _Worker:
    pool: OrderedDict[str, int] = field(default_factory=OrderedDict)  # network -> its weights, least recently used first
    trial: int | None = None
    waiting: bool = False  # told IDLE: asks again when a trial ends


def replay(
    rounds: Sequence[Any],
    draws: Sequence[tuple[str, int]],
    costs: Costs,
    *,
    workers: int = 1,
    max_trials: int | None = None,
    reuse_models: bool = True,
    max_models: int = 8,
    max_params: int = 20_000_000,
    seed: int = 0,
) -> Replay:
    """Replay the search of the plan's `rounds` (`planner.Round`, in the order the plan lists them) on `workers`.

    `draws` are the configurations the first rounds draw, in order, as (network, weights); `max_trials` stops the
    oracle handing out trials, as KerasTuner's does; `reuse_models`, `max_models` and `max_params` are the
    search's model pool, one per worker.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1. Received: workers={workers}")
    if len(draws) < sum(r.trials for r in rounds if r.round == 0):
        raise ValueError(f"draws: one per first-round trial of the plan ({sum(r.trials for r in rounds if r.round == 0)}). Received: {len(draws)}")
    brackets: list[list[Any]] = []
    for r in rounds:
        if r.round == 0:
            brackets.append([])
        brackets[-1].append(r)
    rng = random.Random(seed)
    trials: list[_Trial] = []
    assigned: list[list[list[int]]] = [[[] for _ in bracket] for bracket in brackets]
    open_brackets: list[int] = []
    started = 0  # brackets started so far
    staff = [_Worker() for _ in range(workers)]
    events = [(0.0, index, index) for index in range(workers)]  # (time, tie-break, worker): each asks for a trial
    order = workers
    builds = epochs = 0
    busy = end = 0.0

    def first_round_trial(bracket: int) -> int:
        network, params = draws[sum(len(a[0]) for a in assigned)]
        assigned[bracket][0].append(len(trials))
        trials.append(_Trial(bracket, 0, network, params, brackets[bracket][0].epochs_per_trial))
        return len(trials) - 1

    def hand_out() -> int | str:
        """The oracle's answer to a worker that asks: a trial's index, "IDLE" or "STOPPED"."""
        nonlocal started
        if max_trials and len(trials) >= max_trials:
            return "STOPPED"
        open_brackets[:] = [b for b in open_brackets if len(assigned[b][-1]) < brackets[b][-1].trials]
        for b in open_brackets:
            if len(assigned[b][0]) < brackets[b][0].trials:
                return first_round_trial(b)
            for number in range(1, len(brackets[b])):
                size, past_size = brackets[b][number].trials, brackets[b][number - 1].trials
                promoted = {trials[t].parent for t in assigned[b][number]}
                candidates = [t for t in assigned[b][number - 1] if t not in promoted and trials[t].done]
                if len(candidates) > past_size - size:  # the best of them goes on; which one, no one knows yet
                    parent = rng.choice(candidates)
                    assigned[b][number].append(len(trials))
                    trials.append(_Trial(b, number, trials[parent].network, trials[parent].params, brackets[b][number].epochs_per_trial, parent))
                    return len(trials) - 1
        if started == len(brackets):
            return "IDLE" if any(w.trial is not None for w in staff) else "STOPPED"
        open_brackets.append(started)
        started += 1
        return first_round_trial(started - 1)

    while events:
        now, _, index = heapq.heappop(events)
        worker = staff[index]
        if worker.trial is not None:  # its trial ends: the model goes back to its pool
            finished = trials[worker.trial]
            finished.done, worker.trial, end = True, None, now
            if reuse_models and finished.params <= max_params:
                worker.pool.pop(finished.network, None)
                worker.pool[finished.network] = finished.params
                while len(worker.pool) > max_models or sum(worker.pool.values()) > max_params:
                    worker.pool.popitem(last=False)
            for number, other in enumerate(staff):  # those waiting on a round ask again
                if other.waiting:
                    heapq.heappush(events, (now + IDLE_POLL_S / 2, order, number))
                    order, other.waiting = order + 1, False
        answer = hand_out()
        if answer == "IDLE":
            worker.waiting = True
            continue
        if answer == "STOPPED":
            continue
        assert isinstance(answer, int)
        trial = trials[answer]
        built = not (reuse_models and worker.pool.pop(trial.network, None) is not None)
        builds += built
        epochs += trial.epochs
        worker.trial = answer
        took = trial.epochs * costs.epoch_s + costs.per_trial_s + built * costs.new_network_s
        heapq.heappush(events, (now + took, order, index))
        order, busy = order + 1, busy + took
    return Replay(seconds=end, trials=len(trials), epochs=epochs, builds=builds, idle_s=workers * end - busy, workers=workers)
