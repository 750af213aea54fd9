"""The plan `validate` prints is the schedule KerasTuner really runs."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tuning import load_spec, plan
from tuning.planner import hyperband_rounds

from .conftest import tiny


@pytest.mark.parametrize(
    ("max_epochs", "factor", "trials", "configs", "epochs"),
    [(10, 3, 30, 22, 120), (27, 3, 70, 49, 375), (30, 3, 90, 62, 576), (81, 3, 211, 143, 1767)],
)
def test_totals_match_what_kerastuner_really_trains(max_epochs, factor, trials, configs, epochs):
    """The figures measured on KerasTuner 1.4.8 (shared/ANCHORS.md), not its docstring's estimate."""
    rounds = hyperband_rounds(max_epochs, factor, 1)
    assert sum(r.trials for r in rounds) == trials
    assert sum(r.trials for r in rounds if r.round == 0) == configs
    assert sum(r.epochs_trained for r in rounds) == epochs


def drive_oracle(spec, tmp_path):
    """Run KerasTuner's own Hyperband oracle with random scores and no training; list what it created."""
    from tuning.engine import make_oracle
    from tuning.space import parameters

    oracle = make_oracle(spec, parameters(spec))
    oracle._set_project_dir(str(tmp_path), "oracle")
    oracle.verbose = 0
    rng = random.Random(1)
    created = []
    while True:
        trial = oracle.create_trial("tuner0")
        if trial.status == "STOPPED":
            break
        values = trial.hyperparameters.values
        created.append((values["tuner/bracket"], values["tuner/round"], values["tuner/initial_epoch"], values["tuner/epochs"]))
        oracle.update_trial(trial.trial_id, {"val_accuracy": rng.random()}, step=0)
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    return created


@pytest.mark.parametrize(("max_epochs", "factor", "iterations"), [(9, 3, 1), (10, 3, 1), (20, 2, 2)])
def test_plan_equals_the_trials_hyperband_oracle_creates(tmp_path, max_epochs, factor, iterations):
    spec = load_spec(tiny(search={"max_epochs": max_epochs, "factor": factor, "iterations": iterations}))
    created = drive_oracle(spec, tmp_path)
    the_plan = plan(spec)
    expected = Counter()
    for r in the_plan.rounds:
        expected[(r.bracket, r.round, r.initial_epoch, r.epochs)] += r.trials
    assert Counter(created) == expected
    assert len(created) == the_plan.total_trials
    assert sum(e - i for _, _, i, e in created) == the_plan.total_epochs


def test_plan_reports_space_feasibility_and_warnings():
    spec = load_spec(
        {
            "version": 1,
            "model": {"blocks": {"int": [1, 3]}, "padding": {"choice": ["same", "valid"]}, "kernel_size": 3},
            "training": {"learning_rate": 1e-3},
            "search": {"max_epochs": 27, "max_trials": 10},
        }
    )
    the_plan = plan(spec)
    assert the_plan.space_size == 6
    assert the_plan.input_shape == (8, 8, 1)
    feas = the_plan.feasibility
    assert feas.exhaustive and feas.checked == 6 and feas.infeasible == 2
    assert {g[0] for g in feas.groups} == {"blocks=2, padding=valid", "blocks=3, padding=valid"}
    assert any("6 distinct configurations but the plan draws 49" in w for w in the_plan.warnings)
    assert any("max_trials = 10 stops the search before the 70 planned trials" in w for w in the_plan.warnings)
