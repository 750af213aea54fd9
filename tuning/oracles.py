"""The oracles that draw the search's trials: KerasTuner's own, over the spec's space declared up front.

How to search, apart from what to build (`engine.SpecHyperModel`) and the loop (`engine.SpecTuner`), as
KerasTuner splits them. Each algorithm's oracle is KerasTuner's with `_SearchOracleMixin` mixed in: infeasible
configurations are redrawn instead of taking a trial (and recorded), no failure is retried, a small space is
drawn to its last configuration, `seed: 0` is honoured, the time budget stops cleanly and the trials it cut
short run again (`run_again`), and the state files are written whole or not at all. Hyperband's also promotes
from a bracket whose first round the space could not fill (`_FewConfigurationsHyperband`); the grid steps
over the combinations that cannot be built (`_FeasibleGrid`).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras_tuner as kt
from keras_tuner.src.engine import metrics_tracking

from .domains import Choice, FloatRange, IntRange
from .records import write_atomic
from .space import Param, count_configurations, enumerate_values, listable

UNLIMITED = 10**9


def declare(hp: kt.HyperParameters, params: list[Param]) -> kt.HyperParameters:
    """Declare every hyperparameter of the spec on `hp`, with its condition."""
    for param in params:
        if param.condition is None:
            _declare_one(hp, param)
        else:
            with hp.conditional_scope(param.condition.parent, list(param.condition.values)):
                _declare_one(hp, param)
    return hp


def _declare_one(hp: kt.HyperParameters, param: Param) -> None:
    domain = param.domain
    if isinstance(domain, Choice):
        values = domain.values()
        if sorted(values, key=str) == [False, True] and all(isinstance(v, bool) for v in values):
            hp.Boolean(param.name)
        else:
            hp.Choice(param.name, values)
    elif isinstance(domain, IntRange):
        hp.Int(param.name, int(domain.low), int(domain.high), step=domain.step, sampling="log" if domain.log else "linear")
    elif isinstance(domain, FloatRange):
        hp.Float(param.name, float(domain.low), float(domain.high), step=domain.step, sampling="log" if domain.log else "linear")


def save_state(path: str, state: dict[str, Any]) -> None:
    """Write one of KerasTuner's state files (oracle, trial, tuner) whole or not at all: KerasTuner truncates the
    file and then writes it, so a search killed in between left an empty oracle.json that no resume could read.
    Not flushed to disk: trial.json is rewritten every epoch, and a killed process is the case to survive."""
    write_atomic(Path(path), json.dumps(state), durable=False)


class _SearchOracleMixin:
    """Feasibility-aware sampling, clean stops and crash-safe state files, mixed into each KerasTuner oracle."""

    is_feasible: Callable[[dict[str, Any]], str | None] | None = None
    on_infeasible: Callable[[dict[str, Any], str], None] | None = None
    deadline: float | None = None
    stop_reason: str | None = None
    configurations: list[dict[str, Any]] | None = None  # every configuration of a small finite space (`drawable`)
    interrupted: dict[str, str] = {}  # tuner id -> trial id of the trials running when the state was last saved

    def set_state(self, state: dict[str, Any]) -> None:
        self.interrupted = dict(state.get("ongoing_trials", {}))
        super().set_state(state)  # type: ignore[misc]

    def save(self) -> None:
        save_state(self._get_oracle_fname(), self.get_state())  # type: ignore[attr-defined]

    def _save_trial(self, trial: Any) -> None:
        save_state(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state())  # type: ignore[attr-defined]

    @kt.synchronized
    def trials_without_a_future(self, keep: set[str], final: bool = False) -> list[str]:
        """Ids of the trials, less `keep`, that are not running and that Hyperband can no longer promote (none
        can once the search is `final`); read under the oracle's lock, as workers' calls change these tables
        from the chief's server threads."""
        keep = keep | {t.trial_id for t in self.ongoing_trials.values()}  # type: ignore[attr-defined]
        if not final:
            # A promotion reloads its parent's weights each time it starts: when handed out again after its worker
            # died, or when a killed search runs it again. Its bracket may have filled meanwhile.
            pending = [*self.ongoing_trials.values(), *(self.trials[t] for t in self._retry_queue if t in self.trials)]  # type: ignore[attr-defined]
            keep |= {t.hyperparameters.values["tuner/trial_id"] for t in pending if "tuner/trial_id" in t.hyperparameters.values}
            for bracket in getattr(self, "_brackets", []):
                for round_info in bracket["rounds"][:-1]:
                    keep.update(info["id"] for info in round_info)
        return [trial_id for trial_id in self.trials if trial_id not in keep]  # type: ignore[attr-defined]

    def reload(self) -> None:
        super().reload()  # type: ignore[misc]  # KerasTuner queues every trial that was running to run again
        # ... but oracle.json is written before end_trial forgets the trial, so a finished one may be among them.
        # One that ended once and was queued again (`run_again`) is RUNNING in its trial file until it ends again.
        ended = {t for t in self.end_order if t in self.trials and self.trials[t].status != "RUNNING"}  # type: ignore[attr-defined]
        self._retry_queue = [t for t in self._retry_queue if t not in ended]  # type: ignore[attr-defined,has-type]
        self.interrupted = {tuner: trial for tuner, trial in self.interrupted.items() if trial not in ended}

    def _infeasible(self, values: dict[str, Any]) -> bool:
        """Whether `values` cannot be built; such a configuration is recorded (`on_infeasible`) as it is passed over."""
        reason = None if self.is_feasible is None else self.is_feasible(values)
        if reason is not None and self.on_infeasible is not None:
            self.on_infeasible(values, reason)
        return reason is not None

    def _random_values(self) -> dict[str, Any] | None:
        for _ in range(1000):
            values = super()._random_values()  # type: ignore[misc]
            if values is None:
                return self._an_untried_configuration()
            if not self._infeasible(values):
                return values
        return self._an_untried_configuration()

    def _an_untried_configuration(self) -> dict[str, Any] | None:
        """KerasTuner gives up after 20 repeated draws in a row, which a small space hits while some of its
        configurations are still untried; a feasible untried one is drawn instead, so a finite space runs out
        only when it is used up (and the plan's cut schedule is the one that runs)."""
        if not self.configurations:
            return None
        untried = [v for v in self.configurations if not self._duplicate(v) and (self.is_feasible is None or self.is_feasible(v) is None)]  # type: ignore[attr-defined]
        if not untried:
            return None
        pick = random.Random(self._seed_state).randrange(len(untried))  # type: ignore[attr-defined]
        self._seed_state += 1  # type: ignore[attr-defined]
        return dict(untried[pick])

    def end_trial(self, trial: Any) -> Any:
        # A remote worker that outlived a chief restart reports a trial the restarted chief had queued to run
        # again: it is done, so it leaves the queue.
        if trial.trial_id in self._retry_queue:  # type: ignore[attr-defined]
            self._retry_queue.remove(trial.trial_id)  # type: ignore[attr-defined]
        return super().end_trial(trial)  # type: ignore[misc]

    @kt.synchronized
    def run_again(self, trial_ids: list[str]) -> None:
        """Queue ended trials to run again under their ids, ahead of new trials (KerasTuner's retry queue): the
        trials the time budget cut short, once it is raised. Each is RUNNING again and forgets its score, so
        Hyperband promotes from its round only once it ends again, and KerasTuner records the new score: it
        would otherwise keep a trial's first report (`_run_and_update_trial`) or average two reports of one step."""
        queued = {*self._retry_queue, *(t.trial_id for t in self.ongoing_trials.values())}  # type: ignore[attr-defined]
        again = [t for t in trial_ids if t not in queued and t in self.trials]  # type: ignore[attr-defined]
        for trial_id in again:
            trial = self.trials[trial_id]  # type: ignore[attr-defined]
            trial.status, trial.score, trial.best_step = "RUNNING", None, 0
            trial.metrics = metrics_tracking.MetricsTracker()
            self._save_trial(trial)
            self._retry_queue.insert(0, trial_id)  # type: ignore[attr-defined]  # popped from the end: after any queued before
        if again:
            self.save()

    def create_trial(self, tuner_id: str) -> Any:
        # Past the deadline no trial starts, not even one queued to run again (KerasTuner hands those out before it
        # asks `populate_space`): a resume with the budget used up trains nothing.
        if self.deadline is not None and time.time() >= self.deadline and tuner_id not in self.ongoing_trials:  # type: ignore[attr-defined]
            self.stop_reason = "time budget reached"
            self.tuner_ids.discard(tuner_id)  # type: ignore[attr-defined]
            return kt.engine.trial.Trial(self.get_space(), status="STOPPED")  # type: ignore[attr-defined]
        return super().create_trial(tuner_id)  # type: ignore[misc]


class _FewConfigurationsHyperband:
    """KerasTuner's Hyperband schedule (its `populate_space`), with three changes for small spaces and workers.

    - A bracket whose first round cannot be filled, as the space has run out, closes that round with the
      configurations it drew (`first_round`, kept in the oracle's state) and promotes from them, its later
      rounds shrunk alike (ceil(drawn / factor**round), at most as planned). KerasTuner stopped the whole search
      there: a space of 4 under max_epochs 9 trained 4 models for 1 epoch each.
    - Once the space has certainly run out (every configuration enumerated, `configurations`), no bracket starts.
    - Each trial is labelled with its own bracket; KerasTuner labels it with the bracket started last, which with
      several workers may be another. It is labelled with its iteration too, which `--extend` makes more than one.
    """

    def _size(self, bracket: dict[str, Any], round_num: int) -> int:
        planned = int(self._get_size(bracket["bracket_num"], round_num))  # type: ignore[attr-defined]
        if "first_round" not in bracket:
            return planned
        return min(planned, math.ceil(bracket["first_round"] / self.factor**round_num))  # type: ignore[attr-defined]

    def _remove_completed_brackets(self) -> None:
        self._brackets = [b for b in self._brackets if len(b["rounds"][-1]) != self._size(b, len(b["rounds"]) - 1)]  # type: ignore[has-type]

    def _start_new_bracket(self) -> None:
        super()._start_new_bracket()  # type: ignore[misc]
        self._brackets[-1]["iteration"] = self._current_iteration  # type: ignore[attr-defined]  # its trials say which (--extend)

    def _compute_values_hash(self, values: dict[str, Any]) -> str:
        # KerasTuner's Hyperband leaves its own tuner/* labels out of the hash that finds a configuration drawn
        # before; the iteration label must stay out too, or no draw is ever a duplicate.
        return super()._compute_values_hash({k: v for k, v in values.items() if k != "tuner/iteration"})  # type: ignore[misc,no-any-return]

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        self._remove_completed_brackets()
        for bracket in self._brackets:
            number, rounds = bracket["bracket_num"], bracket["rounds"]
            if len(rounds[0]) < self._size(bracket, 0):
                return self._random_trial(trial_id, bracket)
            for round_num in range(1, len(rounds)):
                size, past_size = self._size(bracket, round_num), self._size(bracket, round_num - 1)
                selected = {info["past_id"] for info in rounds[round_num]}
                candidates = [self.trials[info["id"]] for info in rounds[round_num - 1] if info["id"] not in selected]  # type: ignore[attr-defined]
                candidates = [t for t in candidates if t.status == "COMPLETED"]
                if len(candidates) > past_size - size:  # more are ready than this round throws out: promote the best
                    best = sorted(candidates, key=lambda t: t.score, reverse=self.objective.direction == "max")[0]  # type: ignore[attr-defined]
                    values = best.hyperparameters.values.copy()
                    values.update(
                        {
                            "tuner/trial_id": best.trial_id,
                            "tuner/epochs": self._get_epochs(number, round_num),  # type: ignore[attr-defined]
                            "tuner/initial_epoch": self._get_epochs(number, round_num - 1),  # type: ignore[attr-defined]
                            "tuner/bracket": number,
                            "tuner/round": round_num,
                            "tuner/iteration": bracket.get("iteration", 0),
                        }
                    )
                    rounds[round_num].append({"past_id": best.trial_id, "id": trial_id})
                    return {"status": "RUNNING", "values": values}
        if self._current_bracket == 0 and self._current_iteration + 1 == self.hyperband_iterations:  # type: ignore[attr-defined]
            return {"status": "IDLE" if self.ongoing_trials else "STOPPED"}  # type: ignore[attr-defined]
        self._increment_bracket_num()  # type: ignore[attr-defined]
        self._start_new_bracket()  # type: ignore[attr-defined]
        return self._random_trial(trial_id, self._brackets[-1])

    def _random_trial(self, trial_id: str, bracket: dict[str, Any]) -> dict[str, Any]:
        values = self._random_values()  # type: ignore[attr-defined]
        if values:
            number = bracket["bracket_num"]
            values.update(
                {
                    "tuner/epochs": self._get_epochs(number, 0),  # type: ignore[attr-defined]
                    "tuner/initial_epoch": 0,
                    "tuner/bracket": number,
                    "tuner/round": 0,
                    "tuner/iteration": bracket.get("iteration", 0),
                }
            )
            bracket["rounds"][0].append({"past_id": None, "id": trial_id})
            return {"status": "RUNNING", "values": values}
        if self.configurations is not None:  # type: ignore[attr-defined]  # every one drawn: none is left for a later bracket
            self._current_bracket, self._current_iteration = 0, self.hyperband_iterations - 1  # type: ignore[attr-defined]
        if bracket["rounds"][0]:
            bracket["first_round"] = len(bracket["rounds"][0])
        else:
            self._brackets.remove(bracket)
        return self.populate_space(trial_id)  # type: ignore[no-any-return]  # promotions now, a later bracket, or wait / stop


class _FeasibleGrid:
    """KerasTuner's grid walks the space from each trial's values to the next combination, with two changes.
    A combination that cannot be built is recorded (`on_infeasible`) and stepped over rather than made a trial
    that trains nothing and counts against max_trials, so the grid runs the configurations its plan counts.
    And the walk survives a resume: KerasTuner keeps it (the trials in grid order, and those to step on from)
    in memory only, so a reloaded grid could not go on (`--extend`, a raised max_trials or time budget added
    nothing) or failed when a trial queued again ended; `reload` rebuilds it from the trials."""

    def reload(self) -> None:
        super().reload()  # type: ignore[misc]
        from functools import cmp_to_key

        from keras_tuner.src.tuners.gridsearch import LinkedList

        def in_grid_order(a: Any, b: Any) -> int:
            return int(self._compare(a.hyperparameters.values, b.hyperparameters.values))  # type: ignore[attr-defined]

        ordered = sorted(self.trials.values(), key=cmp_to_key(in_grid_order))  # type: ignore[attr-defined]
        self._ordered_ids = LinkedList()
        for trial in ordered:
            self._ordered_ids.insert(trial.trial_id)
        # Step on from every trial that ended (one already followed is passed over); a queued one joins when it ends.
        self._populate_next = [t.trial_id for t in ordered if t.status != "RUNNING"]

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        response = super().populate_space(trial_id)  # type: ignore[misc]
        values = response.get("values")
        if values is not None and self._infeasible(values):  # type: ignore[attr-defined]
            # Every value is checked; only the first trial's (the defaults) can fail here, as `_get_next_combination`
            # steps over the others.
            values = self._get_next_combination(values)
            if values is None:
                return {"status": "STOPPED", "values": None}
            response = {**response, "values": values}
        return response

    def _get_next_combination(self, values: dict[str, Any]) -> dict[str, Any] | None:
        following = super()._get_next_combination(values)  # type: ignore[misc]
        while following is not None and self._infeasible(following):  # type: ignore[attr-defined]
            following = super()._get_next_combination(following)  # type: ignore[misc]
        return following


def _oracle_class(base: type, *extra: type) -> type:
    return type(f"Tuning{base.__name__}", (_SearchOracleMixin, *extra, base), {})


ORACLES: dict[str, type] = {
    "hyperband": _oracle_class(kt.oracles.HyperbandOracle, _FewConfigurationsHyperband),
    "random": _oracle_class(kt.oracles.RandomSearchOracle),
    "bayesian": _oracle_class(kt.oracles.BayesianOptimizationOracle),
    "grid": _oracle_class(kt.oracles.GridSearchOracle, _FeasibleGrid),
}


def drawable(params: list[Param], hyperparameters: kt.HyperParameters, limit: int = 10_000) -> list[dict[str, Any]] | None:
    """Every configuration of a `listable` space, with the values as KerasTuner stores them (so their hashes
    match: it keeps `choice: [true]` as 1), or None: other ranges are sampled in ways a list would not
    reproduce, and a larger space never nears exhaustion."""
    if not params or not listable(params):
        return None
    options = {hp.name: list(hp.values) for hp in hyperparameters.space}
    return enumerate_values(params, limit, options)


def make_oracle(spec: Any, params: list[Param]) -> kt.Oracle:
    search = spec.search
    objective = kt.Objective(search.objective.metric, direction=search.objective.direction)
    common: dict[str, Any] = dict(
        objective=objective,
        hyperparameters=declare(kt.HyperParameters(), params),
        allow_new_entries=False,
        tune_new_entries=False,
        seed=search.seed,
        max_retries_per_trial=0,
        max_consecutive_failed_trials=UNLIMITED,  # we count only `failed` trials ourselves
    )
    if search.algorithm == "hyperband":
        oracle = ORACLES["hyperband"](max_epochs=search.max_epochs, factor=search.factor, hyperband_iterations=search.iterations, **common)
        oracle.max_trials = search.max_trials
    else:  # random and Bayesian default to 10 trials; a grid to all of it (it stops when its walk ends, as its plan says)
        default = count_configurations(params) if search.algorithm == "grid" else None
        oracle = ORACLES[search.algorithm](max_trials=search.max_trials or default or 10, **common)
    oracle.configurations = drawable(params, common["hyperparameters"])
    oracle.seed = search.seed  # KerasTuner turns seed 0 into a random one (`seed or random.randint`)
    oracle._seed_state = search.seed
    return oracle
