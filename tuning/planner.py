"""What a search will cost before it runs: the Hyperband schedule exactly as KerasTuner runs it.

KerasTuner's docstring estimate is about 2x too low; these are its own formulas (`HyperbandOracle.
_get_size`, `_get_epochs`, `_get_num_brackets`), replayed without importing it, and pinned by a test
that drives the real oracle.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import data as data_module
from .errors import Problem, SpecError
from .feasibility import FeasibilityReport, check, scan
from .space import Param, count_configurations, enumerate_values, listable, parameters, resolve
from .wording import counted


@dataclass(frozen=True)
class Round:
    """One round of one bracket: `trials` models trained from `initial_epoch` to `epochs`."""

    iteration: int
    bracket: int
    round: int
    trials: int
    initial_epoch: int
    epochs: int

    @property
    def epochs_per_trial(self) -> int:
        return self.epochs - self.initial_epoch

    @property
    def epochs_trained(self) -> int:
        return self.trials * self.epochs_per_trial


@dataclass(frozen=True)
class Plan:
    """The schedule, the space and its feasibility: everything `tuning validate` prints."""

    algorithm: str
    rounds: tuple[Round, ...]
    params: tuple[Param, ...]
    space_size: int | None
    input_shape: tuple[int, int, int]
    num_classes: int
    feasibility: FeasibilityReport
    warnings: tuple[str, ...] = field(default=())

    @property
    def total_trials(self) -> int:
        return sum(r.trials for r in self.rounds)

    @property
    def distinct_configurations(self) -> int:
        return sum(r.trials for r in self.rounds if r.round == 0)

    @property
    def total_epochs(self) -> int:
        return sum(r.epochs_trained for r in self.rounds)

    def up_to(self, max_trials: int | None) -> tuple[int, int, int]:
        """Trials, epochs and distinct configurations of the plan's rounds in the order they run, stopped
        after `max_trials` trials (None: the whole plan)."""
        return rounds_up_to(self.rounds, max_trials)

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "trials": self.total_trials,
            "distinct_configurations": self.distinct_configurations,
            "epochs": self.total_epochs,
            "space_size": self.space_size,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "rounds": [
                {"iteration": r.iteration, "bracket": r.bracket, "round": r.round, "trials": r.trials, "initial_epoch": r.initial_epoch, "epochs": r.epochs}
                for r in self.rounds
            ],
            "feasible_fraction": self.feasibility.fraction_feasible,
            "warnings": list(self.warnings),
        }


def rounds_up_to(rounds: Iterable[Round], max_trials: int | None) -> tuple[int, int, int]:
    """Trials, epochs and distinct configurations of `rounds` in the order one process runs them, stopped after
    `max_trials` trials (None or 0: all of them)."""
    left = max_trials or math.inf
    trials = epochs = configurations = 0
    for r in rounds:
        taken = int(min(r.trials, left))
        trials, epochs, left = trials + taken, epochs + taken * r.epochs_per_trial, left - taken
        configurations += taken if r.round == 0 else 0
    return trials, epochs, configurations


def stored_budget(stored_plan: Mapping[str, Any], max_trials: int | None) -> tuple[int | None, int | None]:
    """The trials and epochs a search of run.json's `plan` runs before early stopping: `max_trials` cuts the
    plan's rounds in the order they run (a report reads this, not the full plan's count, as what was planned)."""
    fields = ("iteration", "bracket", "round", "trials", "initial_epoch", "epochs")
    rounds = [Round(*(int(r.get(name, 0)) for name in fields)) for r in stored_plan.get("rounds", [])]
    if not rounds:  # nothing to cut by: the totals as stored
        return stored_plan.get("trials"), stored_plan.get("epochs")
    trials, epochs, _ = rounds_up_to(rounds, max_trials)
    return trials, epochs


@dataclass(frozen=True)
class RunBudget:
    """What a run plans as its run.json says: the trials and epochs it runs before early stopping, `max_trials`
    cutting the plan's (kept whole in `plan_trials`), and the note saying so."""

    trials: int | None
    epochs: int | None
    max_trials: int | None
    plan_trials: int | None

    @property
    def cut(self) -> str:
        """` (max_trials = 5 of the plan's 23)` when max_trials stops the run before its plan ends; else nothing."""
        if self.trials is None or self.plan_trials is None or self.trials >= self.plan_trials:
            return ""
        return f" (max_trials = {self.max_trials} of the plan's {self.plan_trials})"


def run_budget(manifest: Mapping[str, Any]) -> RunBudget:
    plan = manifest.get("plan") or {}
    max_trials = ((manifest.get("spec") or {}).get("search") or {}).get("max_trials")
    trials, epochs = stored_budget(plan, max_trials)
    return RunBudget(trials, epochs, max_trials, plan.get("trials"))


def hyperband_rounds(max_epochs: int, factor: int, iterations: int, configurations: int | None = None) -> list[Round]:
    """Every round KerasTuner's Hyperband runs, in order, before early stopping and failures.

    With a space of `configurations`, the bracket that runs out closes its first round with what is left and
    shrinks its later rounds alike, and no bracket follows (the search's oracle does the same).
    """
    brackets, epochs = 0, float(max_epochs)
    while epochs >= 1:  # HyperbandOracle.min_epochs is 1
        epochs /= factor
        brackets += 1
    end_size = math.ceil(1 + math.log(max_epochs, factor))

    def size(bracket: int, rnd: int) -> int:
        return math.ceil(end_size / (bracket + 1) * factor ** (bracket - rnd))

    def epochs_at(bracket: int, rnd: int) -> int:
        return math.ceil(max_epochs / factor ** (bracket - rnd))

    rounds: list[Round] = []
    left = configurations
    for iteration in range(iterations):
        for bracket in range(brackets - 1, -1, -1):
            drawn = size(bracket, 0) if left is None else min(size(bracket, 0), left)
            if drawn == 0:
                return rounds
            left = None if left is None else left - drawn
            for rnd in range(bracket + 1):
                initial = epochs_at(bracket, rnd - 1) if rnd > 0 else 0
                trials = min(size(bracket, rnd), math.ceil(drawn / factor**rnd))
                rounds.append(Round(iteration, bracket, rnd, trials, initial, epochs_at(bracket, rnd)))
    return rounds


NOTHING_TO_TUNE = (
    "nothing to tune: every value is fixed (no {choice: [...]}, {int: [low, high]} or {float: [low, high]}), and Hyperband "
    "chooses among configurations; `tuning train SPEC` trains this one for search.max_epochs epochs, or make a value tunable"
)


def plan(spec: Any, *, data: Any = None, class_names: Any = None) -> Plan:
    """The search plan of a loaded spec (see `load_spec`); reads only data headers, never trains. `data` and
    `class_names`: arrays that replace the spec's data, as for `search`.

    Example:
        >>> p = plan(load_spec("search_spaces/digits.yaml"))
        >>> p.total_trials, p.total_epochs
    """
    from .spec import load_spec

    spec = load_spec(spec)
    search = spec.search
    params = parameters(spec)
    if search.algorithm == "hyperband" and not params:
        raise SpecError([Problem("", NOTHING_TO_TUNE, spec.file)])
    space_size = count_configurations(params)
    input_shape, num_classes = data_module.describe(spec.data, spec.base_dir, arrays=data, class_names=class_names, spec_file=spec.file)
    warnings: list[str] = []
    feasibility = scan(spec, input_shape, num_classes, seed=search.seed)
    trainable = _trainable(spec, params, space_size, feasibility, input_shape, num_classes)
    if search.algorithm == "hyperband":
        rounds = hyperband_rounds(search.max_epochs, search.factor, search.iterations, trainable)
        full = sum(r.trials for r in hyperband_rounds(search.max_epochs, search.factor, search.iterations) if r.round == 0)
        if trainable is not None and trainable < full:
            warnings.append(
                f"the space has {trainable} trainable configurations and a full Hyperband plan draws {full}: the bracket that runs "
                "out trains what is left at its first round's budget and promotes from them, and the search ends there (the plan above is "
                "cut to match). To train every configuration for max_epochs, use algorithm: grid; or widen the space"
                + ("" if listable(params) else "; with a float step or a log range KerasTuner draws at random and may stop a few configurations short")
            )
    else:
        trials = search.max_trials or 10
        if search.algorithm == "grid" and space_size is not None:
            runs = space_size if trainable is None else trainable  # the grid steps over what cannot be built
            trials = max(1, min(trials, runs) if search.max_trials else runs)
        if search.algorithm in ("random", "bayesian") and trainable is not None and trainable < trials:
            asked = f"max_trials asks for {trials}" if search.max_trials else f"the default of {trials} trials asks for more"
            warnings.append(
                f"the space has {counted(trainable, 'trainable configuration')} and {asked}; a configuration is never "
                f"drawn twice, so the search ends when the space runs out (the plan above is cut to {trainable}). Widen the space, "
                "or use algorithm: grid to say so"
            )
            trials = max(1, trainable)
        rounds = [Round(0, 0, 0, trials, 0, search.max_epochs)]
    result = Plan(search.algorithm, tuple(rounds), tuple(params), space_size, input_shape, num_classes, feasibility)
    if search.max_trials and search.max_trials < result.total_trials:
        warnings.append(f"max_trials = {search.max_trials} stops the search before the {result.total_trials} planned trials")
    return Plan(search.algorithm, tuple(rounds), tuple(params), space_size, input_shape, num_classes, feasibility, tuple(warnings))


EXACT_COUNT = 2_000  # spaces up to this size have their buildable configurations counted one by one (< 0.5 s)


def _trainable(spec: Any, params: list[Param], space_size: int | None, feasibility: FeasibilityReport, shape: Any, num_classes: int) -> int | None:
    """Configurations the oracle can draw: infeasible ones are never trained. A small space is counted one
    configuration at a time; a larger one is estimated from the scan's share of buildable shapes (exact when
    the scan saw them all and no conditional setting multiplies some shapes' configurations more than others)."""
    if space_size is None:
        return None
    if not feasibility.infeasible:
        return space_size
    if space_size <= EXACT_COUNT:
        configurations = enumerate_values(params, EXACT_COUNT) or []
        return sum(check(resolve(spec, values), shape, num_classes, spec.search.max_params) is None for values in configurations)
    return round(space_size * feasibility.fraction_feasible) if feasibility.exhaustive else space_size


def require_feasible(spec: Any, the_plan: Plan) -> None:
    """Refuse a space of which no configuration can be built, naming the first reasons."""
    if the_plan.feasibility.all_infeasible:
        groups = "; ".join(f"{settings}: {reason}" for settings, reason, _ in the_plan.feasibility.groups[:3])
        raise SpecError([Problem("model", f"no configuration of the space can be built on these images: {groups}", spec.file)])
