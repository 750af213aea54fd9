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
    from tuning.oracles import make_oracle
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
    # 4 trainable configurations where the first bracket wants 27: it trains the 4 for 1 epoch, then 2 for 3, 1 for 9, 1 for 27.
    assert any("the space has 4 trainable configurations and a full Hyperband plan draws 49" in w for w in the_plan.warnings)
    assert [(r.bracket, r.round, r.trials, r.epochs) for r in the_plan.rounds] == [(3, 0, 4, 1), (3, 1, 2, 3), (3, 2, 1, 9), (3, 3, 1, 27)]
    assert not any("max_trials" in w for w in the_plan.warnings)  # 8 planned trials, under max_trials = 10
    assert any(
        "max_trials = 10 stops the search before the 70 planned trials" in w
        for w in plan(load_spec(tiny(search={"max_epochs": 27, "max_trials": 10}))).warnings
    )


def drive_oracle_in_parallel(spec, tmp_path, workers, scores=1):
    """As `drive_oracle`, with `workers` trials open at once finishing in random order, as `--workers` runs."""
    from tuning.oracles import make_oracle
    from tuning.space import parameters

    oracle = make_oracle(spec, parameters(spec))
    oracle._set_project_dir(str(tmp_path), "oracle")
    oracle.verbose = 0
    rng = random.Random(scores)
    created, running, stopped = [], [], False
    while not stopped or running:
        while not stopped and len(running) < workers:
            trial = oracle.create_trial(f"tuner{len(created)}")
            stopped = trial.status == "STOPPED"
            if trial.status != "RUNNING":
                break
            values = trial.hyperparameters.values
            created.append((values["tuner/bracket"], values["tuner/round"], values["tuner/initial_epoch"], values["tuner/epochs"]))
            running.append(trial)
        if not running:
            assert stopped, "the oracle is idle with nothing running"
            break
        trial = running.pop(rng.randrange(len(running)))
        oracle.update_trial(trial.trial_id, {"val_accuracy": rng.random()}, step=0)
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    return created


@pytest.mark.parametrize(
    ("configurations", "max_epochs", "iterations", "workers"),
    [(2, 3, 1, 1), (4, 9, 1, 1), (6, 9, 1, 1), (12, 9, 1, 1), (30, 27, 1, 1), (4, 9, 1, 3), (30, 27, 1, 4), (20, 9, 3, 5), (25, 9, 2, 4)],
)
def test_a_space_smaller_than_the_plan_promotes_what_it_has(tmp_path, configurations, max_epochs, iterations, workers):
    """KerasTuner alone stops the search when it cannot draw a new configuration, before any promotion: a
    space of 4 under max_epochs 9 trained 4 models for 1 epoch each. Ours closes the round and promotes, runs
    out only when every configuration is drawn (KerasTuner gives up after 20 repeated draws), and labels each
    trial with its own bracket when several run at once."""
    spec = load_spec(
        tiny(
            model={"blocks": 1, "filters": {"choice": list(range(8, 8 + configurations))}},
            training={"learning_rate": 1e-3},
            search={"max_epochs": max_epochs, "iterations": iterations, "seed": 1},
        )
    )
    created = drive_oracle(spec, tmp_path) if workers == 1 else drive_oracle_in_parallel(spec, tmp_path, workers)
    expected = Counter()
    for r in plan(spec).rounds:
        expected[(r.bracket, r.round, r.initial_epoch, r.epochs)] += r.trials
    assert Counter(created) == expected
    assert max(epochs for *_, epochs in created) == max_epochs  # the best of them is trained to the full budget


def test_a_one_value_boolean_choice_is_not_drawn_twice(tmp_path):
    """KerasTuner keeps `choice: [true]` as 1: the enumeration must hash as it does, or the same configuration
    would be handed out again once the space ran out."""
    spec = load_spec(tiny(model={"blocks": 1, "filters": {"choice": [8, 16, 24, 32, 40, 48]}, "batch_norm": {"choice": [True]}}, search={"max_epochs": 27}))
    spec = load_spec({**spec.to_dict(), "training": {**spec.to_dict()["training"], "learning_rate": 1e-3}})
    created = drive_oracle(spec, tmp_path)
    assert sum(1 for _, rnd, *_ in created if rnd == 0) == 6 == plan(spec).distinct_configurations


def test_a_hyperband_search_with_nothing_to_tune_is_refused_and_train_named(tmp_path, capsys):
    from tuning.cli import main

    from .conftest import write_spec

    fixed = write_spec(tmp_path, tiny(model={"blocks": 1, "filters": 8}, training={"learning_rate": 1e-3}))
    assert main(["validate", str(fixed)]) == 2
    assert "nothing to tune: every value is fixed" in capsys.readouterr().err
    assert main(["search", str(fixed), "--out", str(tmp_path / "reports")]) == 2
    assert "`tuning train SPEC` trains this one" in capsys.readouterr().err


def test_a_random_search_on_a_small_space_is_planned_as_it_will_run():
    spec = load_spec(tiny(search={"algorithm": "random", "max_trials": 10, "max_epochs": 2}))
    the_plan = plan(load_spec({**tiny(search={"algorithm": "random", "max_trials": 10, "max_epochs": 2}), "training": {"learning_rate": 1e-3}}))
    assert (the_plan.total_trials, the_plan.total_epochs) == (4, 8)  # 2 depths x 2 widths: drawn once each
    assert any("the plan above is cut to 4" in w for w in the_plan.warnings)
    assert plan(spec).total_trials == 10  # with a continuous learning rate the space does not run out


def test_up_to_takes_the_rounds_in_the_order_they_run():
    the_plan = plan(load_spec(tiny(search={"max_epochs": 9})))  # brackets of 9+3+1, 5+1 and 3 trials (75 epochs)
    assert the_plan.up_to(None) == (the_plan.total_trials, the_plan.total_epochs, the_plan.distinct_configurations) == (23, 75, 17)
    assert the_plan.up_to(5) == (5, 5, 5)  # the first bracket's first round: 1 epoch each
    assert the_plan.up_to(12) == (12, 15, 9)  # and its second round: 3 trials of 2 more epochs


def test_buildable_configurations_are_counted_one_by_one_in_a_small_space():
    """Only 1-block models fit 8x8 digits with 'valid' padding: 2 kernels x 2 learning rates = 4. The share of
    buildable shapes (2 of 8) times the space (32, most of it block 3's conditional settings) said 8."""
    spec = {
        "version": 1,
        "model": {
            "blocks": {"int": [1, 3]},
            "padding": "valid",
            "convs_per_block": [1, 2, {"choice": [2, 3]}],
            "kernel_size": [{"choice": [3, 5]}, 3, 3],
            "block_dropout": [0.1, 0.2, {"float": [0.2, 0.4], "step": 0.1}],
        },
        "training": {"learning_rate": {"choice": [0.01, 0.001]}},
        "search": {"max_epochs": 3},
    }
    result = plan(spec)
    assert result.space_size == 2 * (2 + 2 + 2 * 3 * 2)
    assert any("the space has 4 trainable configurations" in warning for warning in result.warnings)
    assert result.total_trials == 5


def test_hyperband_never_draws_a_configuration_twice_and_labels_its_iteration(tmp_path):
    """The iteration label (for --extend) must stay out of the hash that finds a configuration drawn before:
    with it in, 5 of 9 configurations were trained, some three times over."""
    from tuning.oracles import make_oracle
    from tuning.space import parameters

    model = {"blocks": 1, "filters": {"choice": [8, 16, 32]}, "dense_units": {"choice": [16, 32, 64]}}
    spec = load_spec(tiny(model=model, training={"learning_rate": 1e-3}, search={"max_epochs": 4, "iterations": 2}))
    oracle = make_oracle(spec, parameters(spec))
    oracle._set_project_dir(str(tmp_path), "oracle")
    oracle.verbose = 0
    drawn, iterations, rng = [], [], random.Random(0)
    while (trial := oracle.create_trial("tuner0")).status != "STOPPED":
        values = trial.hyperparameters.values
        iterations.append(values["tuner/iteration"])
        if values["tuner/round"] == 0:
            drawn.append((values["filters"], values["dense_units"]))
        oracle.update_trial(trial.trial_id, {"val_accuracy": rng.random()}, step=0)
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert len(drawn) == len(set(drawn)) == 9  # every configuration, each once (the space runs out in iteration 1)
    assert set(iterations) == {0, 1} and iterations == sorted(iterations)


def test_a_grid_steps_over_what_cannot_be_built_and_plans_what_it_runs(tmp_path):
    """blocks 1-3 x padding on 8x8 digits: two `valid` configurations shrink the image to nothing. The grid
    records them and runs the four others, the four its plan counts, none taking a trial or max_trials' room."""
    from tuning import feasibility
    from tuning.oracles import make_oracle
    from tuning.space import parameters, resolve

    model = {"blocks": {"int": [1, 3]}, "padding": {"choice": ["valid", "same"]}, "kernel_size": 3, "filters": 8}
    spec = load_spec(tiny(model=model, training={"learning_rate": 1e-3}, search={"algorithm": "grid", "max_epochs": 2}))
    the_plan = plan(spec)
    assert (the_plan.total_trials, the_plan.total_epochs) == (4, 8)
    oracle = make_oracle(spec, parameters(spec))
    oracle._set_project_dir(str(tmp_path), "oracle")
    oracle.verbose = 0
    oracle.is_feasible = lambda values: feasibility.check(resolve(spec, values), the_plan.input_shape, 10, None)
    passed_over: list[tuple] = []
    oracle.on_infeasible = lambda values, reason: passed_over.append((values["blocks"], values["padding"]))
    drawn = []
    while (trial := oracle.create_trial("tuner0")).status != "STOPPED":
        drawn.append((trial.hyperparameters.values["blocks"], trial.hyperparameters.values["padding"]))
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5}, step=0)
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert sorted(drawn) == [(1, "same"), (1, "valid"), (2, "same"), (3, "same")]
    assert sorted(set(passed_over)) == [(2, "valid"), (3, "valid")]
    capped = load_spec(tiny(model=model, training={"learning_rate": 1e-3}, search={"algorithm": "grid", "max_epochs": 2, "max_trials": 3}))
    assert plan(capped).total_trials == 3


def test_a_grid_goes_on_after_a_kill_from_where_it_was(tmp_path):
    """KerasTuner keeps the grid's walk in memory only: reloaded, it ran nothing more, and the trial queued again
    failed when it ended (KeyError in its linked list). Rebuilt from the trials, the walk goes on: every
    configuration runs once, the one the kill cut short under its own id."""
    from tuning.oracles import make_oracle
    from tuning.space import parameters

    spec = load_spec(tiny(model={"blocks": {"int": [1, 3]}, "filters": {"choice": [8, 16]}}, training={"learning_rate": 1e-3}, search={"algorithm": "grid"}))

    def oracle():
        made = make_oracle(spec, parameters(spec))
        made._set_project_dir(str(tmp_path), "oracle")
        made.verbose = 0
        return made

    def run(chosen, limit=None):
        drawn = []
        while (limit is None or len(drawn) < limit) and (trial := chosen.create_trial("tuner0")).status != "STOPPED":
            drawn.append(trial.trial_id)
            chosen.update_trial(trial.trial_id, {"val_accuracy": 0.5}, step=0)
            trial.status = "COMPLETED"
            chosen.end_trial(trial)
        return drawn

    first = oracle()
    assert run(first, limit=2) == ["0", "1"]
    killed = first.create_trial("tuner0").trial_id
    first.save()
    again = oracle()
    again.reload()
    assert run(again) == [killed, "3", "4", "5"]
    values = [tuple(sorted(t.hyperparameters.values.items())) for t in again.trials.values()]
    assert len(values) == len(set(values)) == 6


def test_a_grid_without_max_trials_runs_the_whole_grid_as_planned(tmp_path):
    from tuning.oracles import make_oracle
    from tuning.space import parameters

    model = {"blocks": 1, "filters": {"int": [8, 24], "step": 8}, "head_dropout": {"float": [0.0, 0.4], "step": 0.2}}
    spec = load_spec(tiny(model=model, training={"learning_rate": {"float": [1e-3, 1e-1], "step": 10, "log": True}}, search={"algorithm": "grid"}))
    assert plan(spec).total_trials == 27
    oracle = make_oracle(spec, parameters(spec))
    oracle._set_project_dir(str(tmp_path), "oracle")
    oracle.verbose = 0
    drawn = []
    while (trial := oracle.create_trial("tuner0")).status != "STOPPED":
        drawn.append(tuple(sorted(trial.hyperparameters.values.items())))
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5}, step=0)
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert len(drawn) == len(set(drawn)) == 27  # not KerasTuner's default of 10
