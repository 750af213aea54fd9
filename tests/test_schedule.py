"""The replayed search `validate --time` prices: trials handed out as the oracle hands them out, one process or
several, each with its own model pool."""

from __future__ import annotations

import heapq
import random

import pytest

from tuning import load_spec, plan
from tuning.planner import Round, hyperband_rounds
from tuning.schedule import IDLE_POLL_S, Costs, replay

from .conftest import tiny

EPOCHS_ONLY = Costs(epoch_s=1.0, per_trial_s=0.0, new_network_s=0.0)


def distinct(count: int) -> list[tuple[str, int]]:
    return [(f"network{i}", 1000) for i in range(count)]


def test_one_process_runs_the_plan_back_to_back():
    rounds = hyperband_rounds(9, 3, 1)
    costs = Costs(epoch_s=1.0, per_trial_s=0.1, new_network_s=2.0)
    one = replay(rounds, distinct(17), costs, max_models=100)
    assert (one.trials, one.epochs, one.builds) == (23, 75, 17)  # every drawn network built once, promotions reuse it
    assert one.seconds == pytest.approx(75 * 1.0 + 23 * 0.1 + 17 * 2.0) and one.idle_s == pytest.approx(0)


def test_a_round_is_promoted_from_only_once_enough_of_it_has_completed():
    """Three first-round trials of 1 epoch, the best continued to 3 epochs: on three workers the promotion waits
    for all three (one more than the round throws out), so the search takes 1 + 2 epochs, not 5 / 3."""
    rounds = [Round(0, 1, 0, 3, 0, 1), Round(0, 1, 1, 1, 1, 3)]
    alone, three = replay(rounds, distinct(3), EPOCHS_ONLY), replay(rounds, distinct(3), EPOCHS_ONLY, workers=3)
    assert (alone.seconds, three.seconds) == (5.0, 3.0)
    assert three.idle_s == pytest.approx(3 * 3.0 - 5.0)  # two workers wait through the promotion


def oracle_seconds(spec, tmp_path, workers: int) -> float:
    """The search's own oracle handing out trials to `workers` that each take 1 s per epoch (idle ones ask again
    `IDLE_POLL_S / 2` after a trial ends, as the replay assumes): when the last trial ends."""
    from tuning.oracles import make_oracle
    from tuning.space import parameters

    oracle = make_oracle(spec, parameters(spec))
    oracle._set_project_dir(str(tmp_path), "oracle")
    oracle.verbose = 0
    scores = random.Random(1)
    events = [(0.0, index, index, None) for index in range(workers)]
    order, waiting, end = workers, set(), 0.0
    while events:
        now, _, worker, trial = heapq.heappop(events)
        if trial is not None:
            oracle.update_trial(trial.trial_id, {"val_accuracy": scores.random()}, step=0)
            trial.status = "COMPLETED"
            oracle.end_trial(trial)
            end = now
            for other in sorted(waiting):
                heapq.heappush(events, (now + IDLE_POLL_S / 2, order, other, None))
                order += 1
            waiting.clear()
        new = oracle.create_trial(f"tuner{worker}")
        if new.status == "IDLE":
            waiting.add(worker)
        elif new.status != "STOPPED":
            values = new.hyperparameters.values
            heapq.heappush(events, (now + values["tuner/epochs"] - values["tuner/initial_epoch"], order, worker, new))
            order += 1
    return end


@pytest.mark.parametrize(
    ("search", "workers"),
    [
        ({"max_epochs": 9, "factor": 3}, 2),
        ({"max_epochs": 9, "factor": 3}, 3),
        ({"max_epochs": 20, "factor": 2, "iterations": 2}, 3),
        ({"max_epochs": 9, "factor": 3, "max_trials": 12}, 2),
        ({"max_epochs": 9, "factor": 3, "space": "two configurations"}, 2),  # the plan cut to what the space holds
    ],
)
def test_workers_get_their_trials_when_the_searchs_oracle_hands_them_out(tmp_path, search, workers):
    small = search.pop("space", None)
    spec = load_spec(tiny(search=search, **({"model": {"filters": 8}, "training": {"learning_rate": 0.01}} if small else {})))
    the_plan = plan(spec)
    replayed = replay(the_plan.rounds, distinct(the_plan.distinct_configurations), EPOCHS_ONLY, workers=workers, max_trials=spec.search.max_trials)
    assert replayed.seconds == oracle_seconds(spec, tmp_path, workers)
    alone = replay(the_plan.rounds, distinct(the_plan.distinct_configurations), EPOCHS_ONLY, max_trials=spec.search.max_trials)
    assert alone.seconds / workers < replayed.seconds < alone.seconds  # faster, not `workers` times faster


def test_each_process_builds_the_networks_its_pool_lacks():
    rounds = hyperband_rounds(9, 3, 1)
    assert replay(rounds, distinct(17), EPOCHS_ONLY, max_models=1).builds > replay(rounds, distinct(17), EPOCHS_ONLY, max_models=100).builds == 17
    assert replay(rounds, distinct(17), EPOCHS_ONLY, reuse_models=False).builds == 23  # every trial builds its model
    two = [("a", 1000), ("b", 1000)] * 9
    assert replay(rounds, two, EPOCHS_ONLY).builds == 2
    assert replay(rounds, two, EPOCHS_ONLY, workers=2).builds == 4  # each worker traces both for itself
    assert replay(rounds, [("a", 30_000_000)] * 17, EPOCHS_ONLY).builds == 23  # over the pool's weight cap: never kept
