"""`validate --time`: a search's duration from a few configurations timed on the data, before it runs."""

from __future__ import annotations

import numpy as np
import pytest

from tuning import load_spec, plan
from tuning.cli import main
from tuning.feasibility import multiply_adds
from tuning.space import resolve
from tuning.wording import counted

from .conftest import tiny, write_spec

pytestmark = pytest.mark.slow


def test_estimate_times_configurations_spanning_the_space_and_prices_the_plan():
    import tuning

    spec = load_spec(tiny(model={"blocks": {"int": [1, 2]}, "filters": {"choice": [8, 16]}, "dense_units": {"choice": [16, 64]}}))
    result = tuning.estimate(spec, samples=3)
    the_plan = plan(spec)
    timed = result["timed"]
    assert len(timed) == 3 and len({repr(sorted(t["values"].items())) for t in timed}) == 3
    work = [multiply_adds(resolve(spec, t["values"]), (8, 8, 1), 10) for t in timed]
    assert work == sorted(work) and work[0] < work[-1]  # the cheapest and the dearest of the drawn points
    small = resolve(spec, timed[0]["values"])
    assert (small.blocks, small.filters[0], small.dense_units) == (1, 8, 16)  # nothing in the space is cheaper
    assert all(t["epoch_s"] > 0 and t["first_epoch_excess_s"] >= 0 and t["params"] > 0 for t in timed)
    assert result["epochs"] == the_plan.total_epochs and result["configurations"] == the_plan.distinct_configurations
    # 2 depths x 2 widths x 2 dense sizes: 8 networks (the learning rate changes none); the plan's 5 configurations,
    # drawn at random, repeat some of them (the pool keeps them all), so fewer than 5 are built
    assert the_plan.distinct_configurations == 5 and 2 <= result["new_networks"] < 5
    epochs = [t["epoch_s"] for t in timed]
    assert result["epoch_s"] == pytest.approx({"min": min(epochs), "mean": sum(epochs) / 3, "max": max(epochs)})
    minutes = result["minutes"]
    # A new network's cost is its build and its first epoch's excess.
    assert result["first_epoch_excess_s"] == pytest.approx(sum(t["first_epoch_excess_s"] + t["build_s"] for t in timed) / 3)
    assert result["per_trial_s"] == pytest.approx(sum(t["fit_overhead_s"] + t["checkpoint_s"] for t in timed) / 3)
    set_up = result["new_networks"] * result["first_epoch_excess_s"] + result["trials"] * result["per_trial_s"]
    assert minutes["expected"] * 60 == pytest.approx(result["epochs"] * result["epoch_s"]["mean"] + set_up)
    assert minutes["low"] <= minutes["expected"] <= minutes["high"]
    assert result["train_images"] + result["validation_images"] == 600


def test_estimate_prices_what_will_run_max_trials_no_reuse_and_one_sample():
    import tuning
    from tuning.errors import RunError

    spec = tiny(search={"max_epochs": 9, "max_trials": 5}, training={"reuse_models": False})
    result = tuning.estimate(spec, samples=1)
    # Hyperband's first five trials: the most aggressive bracket's first round, 1 epoch each.
    assert (result["trials"], result["epochs"], result["configurations"], result["planned_trials"]) == (5, 5, 5, plan(load_spec(spec)).total_trials)
    assert result["new_networks"] == 5  # without reuse every trial builds its model and traces its steps
    one = resolve(load_spec(spec), result["timed"][0]["values"])
    assert len(result["timed"]) == 1 and (one.blocks, one.filters[0]) in {(1, 16), (2, 8)}  # the middle of the space, not its cheapest
    with pytest.raises(RunError, match="samples: expected a positive number"):
        tuning.estimate(spec, samples=0)
    with pytest.raises(RunError, match="worker processes load the data from the spec"):
        tuning.estimate(spec, workers=2, data=(np.zeros((10, 8, 8), "uint8"), np.arange(10)))


def test_validate_time_prints_the_timed_configurations_and_the_estimate(tmp_path, capsys):
    spec = write_spec(tmp_path, tiny(search={"max_epochs": 3, "time_budget": "1s"}))
    assert main(["validate", str(spec), "--time", "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "Time on this machine (CPU, one process), from 2 configurations of the space" in out
    lines = out.splitlines()
    header = lines[next(i for i, line in enumerate(lines) if line.startswith("Time on this machine")) + 1]
    assert header.split() == ["blocks", "filters", "params", "epoch"]  # the learning rate changes no epoch's time
    assert f"the plan's {plan(load_spec(spec)).total_epochs} epochs: about " in out
    assert "note: search.time_budget (1 s) ends the search before the plan's expected end" in out


def test_validate_time_with_workers_times_them_as_they_run_and_lays_the_plan_over_them(tmp_path, capsys):
    """`validate --time --workers 2` prices `search --workers 2`: each worker's share of the cores, timed while the
    other trains, its start, and its own model pool; without GPUs (with them, each worker gets one)."""
    import os
    import re

    from tuning.workers import visible_gpus

    if visible_gpus():
        pytest.skip("with GPUs the workers get GPUs, not shares of the cores")
    spec = write_spec(tmp_path, tiny(search={"max_epochs": 9}))
    assert main(["validate", str(spec), "--workers", "2"]) == 2
    assert "--workers and --gpus say how the search whose time --time estimates will run; add --time" in capsys.readouterr().err
    assert main(["validate", str(spec), "--time", "--samples", "1", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    cpus = os.cpu_count() or 1
    assert f"(CPU, 2 worker processes, {counted(max(1, cpus // 2), 'thread')} each, of {cpus} cores), from 1 configuration" in out
    assert "in 2 processes at once, as 2 workers share the CPU" in out
    # 2 depths x 2 widths: 4 networks, which one process would build once each; each worker builds its own
    built = int(re.search(r"about (\d+) new networks in the plan \(each worker builds the networks it trains\)", out).group(1))
    assert 4 < built <= 8
    start = float(re.search(r"each worker starts in ([\d.]+) s", out).group(1))
    idle = int(re.search(r"Hyperband leaves the workers idle (\d+)% of the time", out).group(1))
    total = re.search(r"the plan's 75 epochs: about ([\d.]+) (s|min) with 2 workers, their start included", out)
    assert start > 0 and 0 < idle < 100 and float(total.group(1)) * (60 if total.group(2) == "min" else 1) > start
