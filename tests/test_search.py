"""End-to-end searches on digits, through the CLI as a user runs them and through the engine's hooks."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import yaml

import tuning
from tuning import DataError, RunError, SearchAborted, load_spec, open_run, search
from tuning.cli import main

from .conftest import ROOT, SPACES, tiny, write_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One tiny Hyperband search on digits, run through the CLI; shared by the tests that read it."""
    folder = tmp_path_factory.mktemp("cli")
    spec = write_spec(folder, tiny(model={"blocks": {"int": [1, 3]}, "padding": {"choice": ["same", "valid"]}}), "digits_tiny.yaml")
    out = folder / "reports"
    code = main(["search", str(spec), "--out", str(out), "--quiet"])
    assert code == 0
    return spec, out / "digits_tiny"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_run_directory_holds_every_result(finished):
    spec, run_dir = finished
    for name in ("spec.yaml", "run.json", "trials.csv", "leaderboard.md", "best_model.keras", "kerastuner/oracle.json"):
        assert (run_dir / name).exists(), name
    assert (run_dir / "spec.yaml").read_text() == spec.read_text()
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "finished" and manifest["stop_reason"] == "plan complete"
    assert manifest["spec_hash"] == load_spec(spec).spec_hash()
    assert manifest["seeds"]["run"] == 0
    assert {"python", "tensorflow", "keras", "keras-tuner"} <= set(manifest["versions"])
    assert manifest["backend"] == "tensorflow" and manifest["device"] == "CPU"
    assert manifest["plan"]["trials"] == 6 and manifest["plan"]["epochs"] == 11


def test_the_summary_names_the_results_and_what_to_do_next(finished, capsys):
    from tuning import open_run
    from tuning.cli import _summarize

    _, run_dir = finished
    assert _summarize(open_run(run_dir)) == 0
    printed = capsys.readouterr().out
    assert f"best model:  {run_dir / 'best_model.keras'}" in printed and f"report:      {run_dir / 'report.html'}" in printed
    assert f"next:        tuning board {run_dir}" in printed and f"tuning export {run_dir}" in printed


def test_trial_times_order_the_trials_as_they_ran(finished):
    """Start and end times to the millisecond: short trials start within the same second, and the reports'
    score-over-time figure and the benchmarks order and time trials by them."""
    _, run_dir = finished
    records = sorted(open_run(run_dir).records(), key=lambda r: r.started_at)
    trained = [r for r in records if not r.trial_id.startswith("infeasible-")]
    assert all(len(r.started_at) == len("2026-11-27T04:22:43.123+00:00") for r in trained)
    for earlier, later in zip(trained, trained[1:]):
        assert earlier.started_at < earlier.finished_at <= later.started_at  # one process: one trial at a time


def test_ranking_matches_scores_and_budget_rule(finished):
    _, run_dir = finished
    rows = read_csv(run_dir / "trials.csv")
    trials = [r for r in rows if not r["trial_id"].startswith("infeasible-")]
    assert len(trials) == 6 and {r["status"] for r in trials} == {"completed"}
    ranked = [r for r in rows if r["rank"]]
    assert [int(r["rank"]) for r in ranked] == list(range(1, len(ranked) + 1))
    keys = [(-float(r["score"]), -int(r["epochs"])) for r in ranked]
    assert keys == sorted(keys)
    for row in trials:  # the score is the objective at the best epoch, not the last one
        record = json.loads((run_dir / "trials" / f"{row['trial_id']}.json").read_text())
        best = max(record["history"], key=lambda h: h["val_accuracy"])
        assert math.isclose(float(row["score"]), best["val_accuracy"]) and int(row["best_epoch"]) == best["epoch"]
    promoted = [r for r in trials if r["parent_trial"]]
    assert promoted and all(int(r["initial_epoch"]) > 0 for r in promoted)
    assert "trials trained to the larger epoch budget rank first" in (run_dir / "leaderboard.md").read_text()


def test_infeasible_draws_are_recorded_never_trained(finished):
    _, run_dir = finished
    rows = read_csv(run_dir / "trials.csv")
    infeasible = [r for r in rows if r["status"] == "infeasible"]
    assert infeasible, "blocks 2-3 with valid padding cannot be built on 8x8 digits"
    for row in infeasible:
        assert row["padding"] == "valid" and int(row["blocks"]) >= 2 and row["epochs_trained"] == "0"
        assert "shrink below 1 pixel" in row["reason"]
    trained = [r for r in rows if r["status"] == "completed"]
    assert not [r for r in trained if r["padding"] == "valid" and int(r["blocks"]) >= 2]
    names = json.loads((run_dir / "run.json").read_text())["parameters"]
    drawn = [tuple(row[name] for name in names) for row in infeasible]
    assert len(drawn) == len(set(drawn)), "a configuration drawn again is recorded once"


def test_an_unbuildable_configuration_drawn_again_is_recorded_once(tmp_path):
    from tuning.events import record_infeasible
    from tuning.records import RunStore

    store, logged = RunStore(tmp_path / "run"), []
    board = type("Board", (), {"infeasible": lambda self, record: logged.append(record.trial_id)})()
    recorded: set[str] = set()
    for values in ({"blocks": 3, "padding": "valid"}, {"padding": "valid", "blocks": 3}, {"blocks": 2, "padding": "valid"}):
        record_infeasible(store, board, values, "feature maps shrink below 1 pixel", recorded)
    assert [r.values for r in store.read_trials()] == [{"blocks": 3, "padding": "valid"}, {"blocks": 2, "padding": "valid"}]
    assert logged == ["infeasible-001", "infeasible-002"]


def test_conditional_values_never_recorded(finished):
    _, run_dir = finished
    header = read_csv(run_dir / "trials.csv")[0].keys()
    assert "filters_3" not in header and "momentum" not in header
    for trial_json in (run_dir / "kerastuner").glob("trial_*/trial.json"):
        values = json.loads(trial_json.read_text())["hyperparameters"]["values"]
        assert "momentum" not in values


def test_best_model_and_its_test_metrics(finished):
    import keras

    from tuning.data import load_data

    spec_path, run_dir = finished
    run = open_run(run_dir)
    best = run.best
    assert best["trial_id"] == run.trials.iloc[0]["trial_id"]
    model = keras.saving.load_model(run_dir / "best_model.keras", safe_mode=True)
    spec = load_spec(spec_path)
    data = load_data(spec.data, spec.base_dir, seed=spec.search.seed)
    y = np.eye(10, dtype="float32")[data.y_test]
    test = model.evaluate(data.x_test, y, verbose=0, return_dict=True)
    assert math.isclose(test["accuracy"], best["test"]["accuracy"], abs_tol=1e-6)
    assert math.isclose(test["loss"], best["test"]["loss"], rel_tol=1e-5)  # from the analysis' predictions
    assert model.input_shape == (None, 8, 8, 1)  # raw images in: rescaling lives in the model


def test_open_run_matches_trials_csv(finished):
    _, run_dir = finished
    frame = open_run(run_dir).trials
    rows = read_csv(run_dir / "trials.csv")
    assert list(frame.columns) == list(rows[0].keys())
    assert list(frame["trial_id"]) == [r["trial_id"] for r in rows]
    history = open_run(run_dir).history(frame[frame["parent_trial"].notna()].iloc[0]["trial_id"])
    assert list(history["epoch"]) == list(range(1, len(history) + 1))  # the promotion continues its parent's curve


def test_rerun_resumes_without_retraining(finished, capsys):
    spec, run_dir = finished
    before = {p.name: p.read_text() for p in (run_dir / "trials").glob("*.json")}
    assert main(["search", str(spec), "--out", str(run_dir.parent), "--quiet"]) == 0
    after = {p.name: p.read_text() for p in (run_dir / "trials").glob("*.json")}
    assert after == before
    assert "top 5 by val_accuracy" in capsys.readouterr().out


def test_changed_spec_is_refused(finished, capsys):
    spec, run_dir = finished
    changed = spec.parent / "changed" / spec.name
    changed.parent.mkdir(exist_ok=True)
    changed.write_text(spec.read_text().replace("max_epochs: 3", "max_epochs: 9"))
    assert main(["search", str(changed), "--out", str(run_dir.parent)]) == 2
    err = capsys.readouterr().err
    assert "was started with a different spec (search.max_epochs: 3 -> 9)" in err
    assert "--overwrite" in err and "Traceback" not in err


def test_a_spec_changed_in_many_places_is_refused_naming_every_changed_field(finished, capsys):
    import yaml

    spec, run_dir = finished
    mapping = yaml.safe_load(spec.read_text())
    mapping["data"].update(validation_split=0.25, test_split=0.25, max_test_samples=100)
    mapping["model"].update(dense_units=64, kernel_size=5)
    mapping["training"].update(batch_size=32, label_smoothing=0.1)
    mapping["search"].update(max_epochs=9, seed=3)
    changed = spec.parent / "changed_a_lot" / spec.name
    changed.parent.mkdir(exist_ok=True)
    changed.write_text(yaml.safe_dump(mapping, sort_keys=False))
    assert main(["search", str(changed), "--out", str(run_dir.parent)]) == 2
    err = capsys.readouterr().err
    fields = ["data.max_test_samples", "data.test_split", "data.validation_split", "model.dense_units", "model.kernel_size"]
    fields += ["search.max_epochs", "search.seed", "training.batch_size", "training.label_smoothing"]
    assert all(field in err for field in fields), err
    assert "search.max_epochs: 3 -> 9" in err and "Traceback" not in err


def test_an_edited_description_still_resumes(finished, tmp_path, capsys):
    spec, run_dir = finished
    shutil.copytree(run_dir, tmp_path / run_dir.name)
    edited = tmp_path / spec.name
    edited.write_text(spec.read_text() + "description: the same search, described better\n")
    before = {p.name: p.read_text() for p in (tmp_path / run_dir.name / "trials").glob("*.json")}
    assert main(["search", str(edited), "--out", str(tmp_path), "--quiet"]) == 0
    assert {p.name: p.read_text() for p in (tmp_path / run_dir.name / "trials").glob("*.json")} == before
    assert json.loads((tmp_path / run_dir.name / "run.json").read_text())["spec"]["description"] == "the same search, described better"


def test_a_run_begun_before_a_setting_existed_resumes_with_its_default(finished, tmp_path, capsys):
    """A run written by an earlier version lacks settings added since; at their defaults they are no change."""
    spec, run_dir = finished
    old = tmp_path / run_dir.name
    shutil.copytree(run_dir, old)
    manifest = json.loads((old / "run.json").read_text())
    del manifest["spec"]["training"]["steps_per_execution"]  # added in the seventh session
    manifest["spec_hash"] = "written-by-0.x"
    (old / "run.json").write_text(json.dumps(manifest))
    before = {p.name: p.read_text() for p in (old / "trials").glob("*.json")}
    assert main(["search", str(spec), "--out", str(tmp_path), "--quiet"]) == 0
    assert {p.name: p.read_text() for p in (old / "trials").glob("*.json")} == before  # resumed: nothing retrained
    assert "top 5 by val_accuracy" in capsys.readouterr().out

    manifest = json.loads((old / "run.json").read_text())
    manifest["spec"]["search"]["max_epochs"] = 9  # a real change is still refused, and named
    manifest["spec_hash"] = "written-by-0.x"
    (old / "run.json").write_text(json.dumps(manifest))
    assert main(["search", str(spec), "--out", str(tmp_path)]) == 2
    assert "was started with a different spec (search.max_epochs: 9 -> 3)" in capsys.readouterr().err


def reopen(spec_path: Path, run_dir: Path):
    """The finished run's tuner, reloaded from its KerasTuner state as a resumed search reloads it."""
    from tuning.data import load_data
    from tuning.engine import SpecHyperModel, SpecTuner
    from tuning.oracles import make_oracle
    from tuning.space import parameters

    spec = load_spec(spec_path)
    data = load_data(spec.data, spec.base_dir, seed=0)
    hypermodel = SpecHyperModel(spec, data.input_shape, 10, data.value_max)
    tuner = SpecTuner(spec=spec, oracle=make_oracle(spec, parameters(spec)), hypermodel=hypermodel, directory=str(run_dir), events=None, store=None)
    return tuner, data


def test_optimizer_state_survives_a_promotion(finished):
    """KerasTuner alone restarts Adam at step 0 on promotion; our tuner continues from the parent's."""

    spec_path, run_dir = finished
    tuner, data = reopen(spec_path, run_dir)
    spec = tuner.spec
    promoted = next(t for t in tuner.oracle.trials.values() if "tuner/trial_id" in t.hyperparameters.values)
    parent_id = promoted.hyperparameters.values["tuner/trial_id"]
    parent = json.loads((run_dir / "trials" / f"{parent_id}.json").read_text())
    steps_per_epoch = math.ceil(len(data.y_train) / spec.training.batch_size)

    model = tuner._build_hypermodel(promoted.hyperparameters)
    assert int(model.optimizer.iterations) == parent["best_epoch"] * steps_per_epoch
    parent_model = tuner.load_trained(parent_id)
    for ours, theirs in zip(model.optimizer.variables, parent_model.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs))
    assert any(np.abs(keras.ops.convert_to_numpy(v)).sum() > 0 for v in model.optimizer.variables[2:])  # real moments

    plain = tuner.hypermodel.build(promoted.hyperparameters)  # KerasTuner's way: load before the optimizer is built
    with pytest.warns(UserWarning, match="Skipping variable loading for optimizer"):  # Keras says so, and goes on
        plain.load_weights(tuner._get_checkpoint_fname(parent_id))
    assert int(plain.optimizer.iterations) == 0


def test_a_search_killed_while_saving_its_state_leaves_the_previous_state_whole(finished, monkeypatch):
    """KerasTuner truncates its state files before writing them: a kill in between left an empty oracle.json
    that no resume could read (seen in CI). Ours replace the file whole, or leave it as it was."""
    import tuning.records

    spec_path, run_dir = finished
    tuner, _ = reopen(spec_path, run_dir)
    state_files = [run_dir / "kerastuner" / "oracle.json", run_dir / "kerastuner" / "tuner0.json"]
    trial = next(iter(tuner.oracle.trials.values()))
    state_files.append(run_dir / "kerastuner" / f"trial_{trial.trial_id}" / "trial.json")
    before = {path: path.read_bytes() for path in state_files}
    tuner.oracle.end_order.append("a change not yet on disk")
    trial.metrics.update("loss", 99.0, step=999)

    def killed(*args):
        raise KeyboardInterrupt("killed before the new file took the old one's place")

    monkeypatch.setattr(tuning.records.os, "replace", killed)
    for save in (tuner.oracle.save, tuner.save, lambda: tuner.oracle._save_trial(trial)):
        with pytest.raises(KeyboardInterrupt):
            save()
    assert {path: path.read_bytes() for path in state_files} == before
    assert not [p for p in (run_dir / "kerastuner").rglob("*.tmp")]  # no half-written leftovers either


def test_checkpoint_pruning_reads_the_trial_tables_under_the_oracle_lock(finished):
    """A search serving workers prunes from its main thread while the workers' calls change the oracle's
    tables from server threads ("dictionary changed size during iteration", seen in CI): KerasTuner's
    per-oracle lock, which those calls hold, must keep the pruning out."""
    import threading

    from keras_tuner.src.engine.oracle import LOCKS

    spec_path, run_dir = finished
    tuner, _ = reopen(spec_path, run_dir)
    done = []
    with LOCKS[tuner.oracle]:  # as a worker's create_trial or end_trial holds it
        reader = threading.Thread(target=lambda: done.append(tuner.oracle.trials_without_a_future(set())))
        reader.start()
        reader.join(timeout=1.0)
        assert reader.is_alive() and not done
    reader.join(timeout=10)
    assert done and set(done[0]) <= set(tuner.oracle.trials)
    promotable = {info["id"] for bracket in tuner.oracle._brackets for round_info in bracket["rounds"][:-1] for info in round_info}
    assert not promotable & set(done[0])
    assert set(tuner.oracle.trials_without_a_future(set(), final=True)) == set(tuner.oracle.trials)


def test_a_running_or_requeued_promotion_keeps_its_parents_weights(finished):
    """A promotion reloads its parent's checkpoint whenever it starts: when its worker dies and it is handed out
    again, or when a killed search runs it again. The parent's weights stay while it runs or waits in the queue,
    even after its bracket has filled (they were pruned, and the trial failed with FileNotFoundError)."""
    spec_path, run_dir = finished
    tuner, _ = reopen(spec_path, run_dir)
    oracle = tuner.oracle
    promoted = next(t for t in oracle.trials.values() if "tuner/trial_id" in t.hyperparameters.values)
    parent = promoted.hyperparameters.values["tuner/trial_id"]
    assert parent in oracle.trials_without_a_future(set())  # its bracket is done: nothing keeps the parent now

    oracle.ongoing_trials["worker1"] = promoted
    assert parent not in oracle.trials_without_a_future(set())
    del oracle.ongoing_trials["worker1"]
    oracle._retry_queue.append(promoted.trial_id)  # handed out again, not yet taken
    assert parent not in oracle.trials_without_a_future(set())
    assert parent in oracle.trials_without_a_future(set(), final=True)  # a search that is over keeps nothing


def test_failures_are_not_retried_and_stop_after_the_limit(tmp_path, monkeypatch, capfd):
    import tuning.engine as engine

    def broken(*args, **kwargs):
        raise RuntimeError("out of luck")

    monkeypatch.setattr(engine, "build_model", broken)
    spec = tiny(search={"algorithm": "random", "max_trials": 10, "max_consecutive_failures": 3})
    with pytest.raises(SearchAborted, match="stopped after 3 consecutive failed trials.*RuntimeError: out of luck"):
        search(spec, name="broken", out=tmp_path, quiet=True)
    rows = read_csv(tmp_path / "broken" / "trials.csv")
    assert [r["status"] for r in rows] == ["failed"] * 3
    assert all(r["reason"] == "RuntimeError: out of luck" for r in rows)
    oracle = json.loads((tmp_path / "broken" / "kerastuner" / "oracle.json").read_text())
    assert len(oracle["end_order"]) == 3  # each ran once: no retries
    assert json.loads((tmp_path / "broken" / "run.json").read_text())["status"] == "aborted"
    assert "Traceback" not in capfd.readouterr().err  # the records keep it; the console is not flooded


def test_nan_loss_is_diverged_and_does_not_stop_the_search(tmp_path, capfd):
    spec = tiny(
        training={"optimizer": "sgd", "learning_rate": {"choice": [1e38, 1e-2]}, "momentum": 0.9},
        model={"blocks": 1},
        search={"algorithm": "grid", "max_epochs": 2, "max_consecutive_failures": 1},
    )
    run = search(spec, name="nan", out=tmp_path, quiet=True)
    statuses = dict(zip(run.trials["learning_rate"], run.trials["status"]))
    assert statuses[1e38] == "diverged" and statuses[1e-2] == "completed"
    diverged = run.trials[run.trials["status"] == "diverged"].iloc[0]
    assert diverged["reason"].startswith("training loss became NaN or infinite") and pd_isna(diverged["rank"])
    assert run.best["values"]["learning_rate"] == 1e-2
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err and "Invalid loss" not in printed.out


def test_a_short_hyperband_search_says_what_would_fill_it():
    """`--retry-failed` is advised only for failed trials it would run again; diverged ones need a narrower space."""
    from types import SimpleNamespace

    from tuning.outcome import stop_reason
    from tuning.planner import plan

    spec = load_spec(tiny())
    the_plan = plan(spec)

    def reason(*statuses: str) -> str:
        trials = [SimpleNamespace(trial_id=f"{i:04d}", status=status) for i, status in enumerate(statuses)]
        store: Any = SimpleNamespace(read_trials=lambda: trials)  # what stop_reason reads of a RunStore
        return stop_reason(spec, the_plan, store)

    diverged = reason("completed", "diverged", "completed")
    assert "and 1 diverged, so later rounds had too few" in diverged and "--retry-failed" not in diverged
    assert "narrower learning_rate range" in diverged
    both = reason("failed", "diverged", "completed")
    assert "1 failed and 1 diverged" in both and "`--retry-failed` runs the failed ones again; a diverged trial's loss" in both


def test_a_search_without_a_completed_trial_does_not_suggest_an_export(tmp_path, capsys):
    spec = tiny(
        training={"optimizer": "sgd", "learning_rate": 1e38, "momentum": 0.9},
        model={"blocks": 1, "filters": {"choice": [4, 8]}},
        search={"algorithm": "grid", "max_epochs": 1},
    )
    assert main(["search", str(write_spec(tmp_path, spec, "diverging.yaml")), "--out", str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "next:        tuning board" in printed and "tuning export" not in printed
    assert set(open_run(tmp_path / "diverging").trials["status"]) == {"diverged"}


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_max_trials_and_time_budget_stop_cleanly(tmp_path):
    run = search(tiny(search={"max_trials": 2}), name="capped", out=tmp_path, quiet=True)
    assert len(run.trials) - sum(run.trials["status"] == "infeasible") == 2
    assert run.manifest["stop_reason"] == "max_trials = 2 reached"
    timed = search(tiny(search={"time_budget": "1s"}), name="timed", out=tmp_path, quiet=True)
    assert timed.manifest["stop_reason"] == "time budget reached" and timed.manifest["status"] == "finished"
    assert len(timed.trials) < 6


def test_search_on_numpy_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (120, 10, 10, 3), dtype=np.uint8)
    y = np.arange(120) % 3
    x[y == 1, :5] = 255  # learnable: class 1 is bright on top, class 2 on the left
    x[y == 2, :, :5] = 255
    run = search(
        tiny(search={"algorithm": "random", "max_trials": 2, "max_epochs": 2}),
        name="arrays",
        out=tmp_path,
        data=(x, y),
        class_names=["dark", "top", "left"],
        quiet=True,
    )
    assert run.manifest["data"]["classes"] == ["dark", "top", "left"] and run.manifest["data"]["image_shape"] == [10, 10, 3]
    assert run.best_model().output_shape == (None, 3)


def test_a_search_on_arrays_is_planned_on_their_images_and_classes(tmp_path):
    """The plan and its feasibility check were made on the spec's source (digits' 8x8 by default): six blocks,
    workable on 64x64 arrays, were refused as unbuildable, and run.json planned for 10 classes."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (60, 64, 64), dtype=np.uint8)
    y = np.arange(60) % 2
    spec = tiny(
        model={"blocks": {"int": [5, 6]}, "filters": 4, "dense_units": 8}, training={"learning_rate": 1e-3}, search={"algorithm": "grid", "max_epochs": 1}
    )
    assert tuning.plan(spec, data=(x, y)).input_shape == (64, 64, 1)
    run = search(spec, name="arrays64", out=tmp_path, data=(x, y), class_names=["a", "b"], quiet=True)
    assert sorted(run.trials["status"]) == ["completed", "completed"]
    assert run.manifest["plan"]["input_shape"] == [64, 64, 1] and run.manifest["plan"]["num_classes"] == 2
    chosen = tiny(data={"classes": ["b", "a"]})
    assert tuning.plan(chosen, data=(x, y), class_names=["a", "b"]).num_classes == 2
    with pytest.raises(DataError, match=r"data.classes: 'c' not among the classes of arrays: a, b"):
        tuning.plan(tiny(data={"classes": ["a", "c"]}), data=(x, y), class_names=["a", "b"])


def test_a_grid_search_trains_what_can_be_built_and_lists_the_rest(tmp_path):
    """Two of six grid configurations cannot be built on 8x8 digits: they are listed as infeasible, the four
    others train, and the run ends with its plan complete (it said 4 trials, and ran 4)."""
    model = {"blocks": {"int": [1, 3]}, "padding": {"choice": ["valid", "same"]}, "kernel_size": 3, "filters": 8}
    run = search(tiny(model=model, training={"learning_rate": 3e-3}, search={"algorithm": "grid", "max_epochs": 1}), name="grid", out=tmp_path, quiet=True)
    table = run.trials
    trained = table[table["status"] == "completed"]
    assert len(trained) == 4 and sorted(table[table["status"] == "infeasible"]["blocks"]) == [2, 3]
    assert run.manifest["plan"]["trials"] == 4 and run.manifest["stop_reason"] == "plan complete"


def test_bad_run_names_cannot_escape_the_output_root(tmp_path, capsys):
    with pytest.raises(RunError, match="is not allowed"):
        search(tiny(), name="../outside", out=tmp_path)
    unnamed = {key: value for key, value in tiny().items() if key != "name"}
    spec = write_spec(tmp_path, unnamed, "my spec.yaml")
    assert main(["search", str(spec), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "(from the file name 'my spec.yaml') is not allowed" in err and "pass --name my_spec or set name: in the spec" in err
    fixed = write_spec(tmp_path, {**unnamed, "model": {"blocks": 1}, "training": {"learning_rate": 1e-3}}, "my config.yaml")
    assert main(["train", str(fixed), "--out", str(tmp_path)]) == 2
    assert "pass --name my_config or set name: in the spec" in capsys.readouterr().err


def test_an_unwritable_output_and_a_damaged_manifest_are_named(tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    assert main(["search", str(write_spec(tmp_path, tiny())), "--out", str(tmp_path / "a_file")]) == 2
    assert "cannot write the run folder" in capsys.readouterr().err
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "run.json").write_text('{"name": ')
    assert main(["report", str(tmp_path / "damaged")]) == 2
    assert "run.json is damaged" in capsys.readouterr().err


def test_interrupted_search_resumes_where_it_stopped(tmp_path):
    """Killed with SIGKILL mid-search, the same command finishes it; finished trials are not retrained."""
    spec = write_spec(tmp_path, tiny(), "resume.yaml")
    out = tmp_path / "reports"
    command = [sys.executable, "-m", "tuning", "search", str(spec), "--out", str(out), "--quiet"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trials = out / "resume" / "trials"
    deadline = time.time() + 240
    while time.time() < deadline and len([p for p in trials.glob("0*.json")]) < 2:
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    kept = {p.name: p.read_text() for p in trials.glob("0*.json")}
    assert 2 <= len(kept) < 6
    assert json.loads((out / "resume" / "run.json").read_text())["status"] == "running"

    # Before it resumes, the killed run already has a best trial (the ranking's leader, not yet tested) to report and export.
    killed = open_run(out / "resume")
    assert killed.best["trial_id"] == killed.trials["trial_id"].iloc[0] and "test" not in killed.best
    assert main(["report", str(out / "resume")]) == 0
    assert f"trial {killed.best['trial_id']}: val_accuracy" in (out / "resume" / "report.md").read_text()
    assert main(["export", str(out / "resume"), "--format", "keras", "--out", str(tmp_path / "export")]) == 0
    assert json.loads((tmp_path / "export" / "model_card.json").read_text())["trial_id"] == killed.best["trial_id"]
    leader = keras.saving.load_model(tmp_path / "export" / "model.keras", safe_mode=True)
    assert [w.tolist() for w in killed.best_model().get_weights()] == [w.tolist() for w in leader.get_weights()]

    assert main(["search", str(spec), "--out", str(out), "--quiet"]) == 0
    final = {p.name: p.read_text() for p in trials.glob("0*.json")}
    assert all(final[name] == text for name, text in kept.items())
    run = open_run(out / "resume")
    assert run.status == "finished" and run.manifest["sessions"] == 2
    assert len([t for t in run.trials["trial_id"] if not t.startswith("infeasible")]) == run.plan["trials"]

    # TensorBoard: the trial killed mid-way was logged again from scratch, so one session per trial.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    sessions = sorted(p.name for p in (out / "resume" / "logs").iterdir() if p.is_dir())
    assert sessions == sorted(run.trials["trial_id"])
    for name in sessions:
        acc = EventAccumulator(str(out / "resume" / "logs" / name), size_guidance={"tensors": 0})
        acc.Reload()
        assert len(acc.Tensors(metadata.SESSION_START_INFO_TAG)) == 1 and len(acc.Tensors(metadata.SESSION_END_INFO_TAG)) == 1


def test_ctrl_c_while_the_results_are_written(tmp_path, monkeypatch, capsys):
    """A first Ctrl-C after the last trial lets the tables, best model and reports be written; a second stops
    at once, and then run.json must not claim a finished search: the same command writes the results."""
    import tuning.report

    build_report = tuning.report.build_report

    def interrupted_once(run_dir, **options):
        os.kill(os.getpid(), signal.SIGINT)  # the handler defers it: the writing goes on
        return build_report(run_dir, **options)

    monkeypatch.setattr(tuning.report, "build_report", interrupted_once)
    run = search(tiny(search={"max_epochs": 2, "max_trials": 2}), name="first", out=tmp_path, quiet=False)
    assert "writing the results first (Ctrl-C again to stop now" in capsys.readouterr().err
    assert run.status == "finished" and "test" in run.best and (run.path / "report.html").exists() and (run.path / "trials.csv").exists()

    def interrupted_twice(run_dir, **options):
        os.kill(os.getpid(), signal.SIGINT)  # deferred
        os.kill(os.getpid(), signal.SIGINT)  # "Ctrl-C again to stop now"
        time.sleep(1)  # the handler runs (and raises) between bytecodes
        return build_report(run_dir, **options)

    monkeypatch.setattr(tuning.report, "build_report", interrupted_twice)
    spec = tiny(search={"max_epochs": 2, "max_trials": 2})
    with pytest.raises(KeyboardInterrupt):
        search(spec, name="second", out=tmp_path, quiet=True)
    stopped = open_run(tmp_path / "second")
    assert (stopped.status, stopped.manifest["stop_reason"]) == (
        "interrupted",
        "interrupted while writing the results: run the same command again to write them",
    )
    assert not (stopped.path / "report.html").exists()

    monkeypatch.setattr(tuning.report, "build_report", build_report)
    again = search(spec, name="second", out=tmp_path, quiet=True)
    assert again.status == "finished" and (again.path / "report.html").exists() and "test" in again.best


def test_the_command_exits_with_mains_code_and_without_final_collections(monkeypatch, capsys):
    """The `tuning` executable freezes what exists before exiting (Python's final collections over
    TensorFlow's objects took 1.4 s of every command) and exits with `main`'s code; output comes first."""
    import gc

    from tuning.cli import entry_point

    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(capsys.readouterr()))  # nothing frozen in this process
    for args, code in ((["validate", str(SPACES / "digits.yaml")], 0), (["validate", "missing.yaml"], 2)):
        monkeypatch.setattr(sys, "argv", ["tuning", *args])
        with pytest.raises(SystemExit) as exited:
            entry_point()
        assert exited.value.code == code
    assert len(frozen) == 2
    assert "valid (version 1" in frozen[0].out and "missing.yaml: file not found" in frozen[1].err


def test_validate_does_not_import_tensorflow():
    code = (
        "import sys; from tuning.cli import main; rc = main(['validate', 'search_spaces/digits.yaml']);"
        "heavy = [m for m in ('tensorflow', 'keras', 'keras_tuner', 'pandas', 'sklearn') if m in sys.modules];"
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    assert "totals: 23 trials, 17 distinct configurations, 75 epochs before early stopping" in result.stdout


@pytest.mark.parametrize("backend, jax_at_start", [("tensorflow", False), ("jax", True)])
def test_keras_starts_without_the_optional_jax_imports(backend, jax_at_start):
    """With JAX installed (the test extra installs it), importing Keras on TensorFlow imported JAX as well,
    for features tuning never uses there: ~1 s of every search's start. On JAX nothing changes, and the
    import hook is gone once Keras is in."""
    pytest.importorskip("jax")
    code = (
        "import sys; from tuning.runtime import quiet_logs, _OptionalImportsSkipped; quiet_logs(); import keras;"
        "at_start = 'jax' in sys.modules; import jax;"
        "hooks = [f for f in sys.meta_path if isinstance(f, _OptionalImportsSkipped)];"
        "print('RESULT', keras.backend.backend(), at_start, callable(jax.jit), len(hooks))"
    )
    env = {**os.environ, "KERAS_BACKEND": backend}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"RESULT {backend} {jax_at_start} True 0" in result.stdout


@pytest.mark.parametrize("through", ["the tuning command", "the Python API"])
def test_the_tuning_command_imports_keras_without_its_scikit_learn_and_matplotlib_extras(through):
    """Keras imports scikit-learn (for `keras.wrappers`) and matplotlib (an image-gallery plot) when they are
    installed: ~1 s and ~70 MB at the start of every `predict`, `export` and worker process. The `tuning`
    executable leaves them out, and a later import of either works as usual; the Python API, which runs in
    the user's own session, leaves Keras whole."""
    code = (
        "import sys\n"
        "from tuning import cli, runtime\n"
        "def command():\n"
        "    runtime.quiet_logs()\n"
        "    import keras.src.wrappers.fixes as wrappers\n"
        "    extras = sorted(m for m in ('sklearn', 'scipy.stats', 'matplotlib') if m in sys.modules)\n"
        "    from sklearn.ensemble import RandomForestRegressor\n"
        "    import matplotlib.pyplot\n"
        "    print('RESULT', extras, wrappers.sklearn is not None, RandomForestRegressor.__name__, flush=True)\n"
        "    return 0\n"
        f"if {through == 'the tuning command'}:\n"
        "    cli.main = command\n"
        "    cli.entry_point()\n"
        "command()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    if through == "the tuning command":
        assert "RESULT [] False RandomForestRegressor" in result.stdout
    else:
        assert "RESULT ['matplotlib', 'scipy.stats', 'sklearn'] True RandomForestRegressor" in result.stdout


@pytest.mark.parametrize("algorithm", ["random", "bayesian", "grid"])
def test_other_kerastuner_algorithms(tmp_path, algorithm):
    spec = tiny(
        model={"blocks": 1, "filters": {"choice": [8, 16]}},
        training={"learning_rate": {"choice": [1e-3, 3e-3]}},
        search={"algorithm": algorithm, "max_trials": 3, "max_epochs": 1},
    )
    run = search(spec, name=algorithm, out=tmp_path, quiet=True)
    trials = run.trials
    assert len(trials) == 3 and set(trials["status"]) == {"completed"}
    assert list(trials["epochs_trained"]) == [1, 1, 1] and trials["bracket"].isna().all()
    assert len({(r.filters, r.learning_rate) for r in trials.itertuples()}) == 3  # never the same configuration twice


def test_shipped_digits_space_reaches_its_promised_accuracy(tmp_path):
    """search_spaces/digits.yaml: the quickstart the README promises (>= 0.95 test accuracy)."""
    run = search(ROOT / "search_spaces" / "digits.yaml", out=tmp_path, quiet=True)
    assert run.status == "finished" and run.manifest["stop_reason"] == "plan complete"
    assert run.best["test"]["accuracy"] >= 0.95


def test_one_search_per_run_directory(tmp_path):
    """A second search on a directory in use is refused; the lock dies with its process."""
    spec = write_spec(tmp_path, tiny(), "locked.yaml")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from tuning.records import RunStore; import time; store = RunStore({str(tmp_path / 'out' / 'locked')!r}); store.lock(); print('held', flush=True); time.sleep(120)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match="is in use by a running search \\(pid"):
            search(spec, out=tmp_path / "out", quiet=True)
    finally:
        holder.kill()
        holder.wait()
    run = search(load_spec(spec), out=tmp_path / "out", quiet=True)  # the dead holder left no stuck lock
    assert run.status == "finished"


def test_run_html_view_for_notebooks(finished):
    _, run_dir = finished
    run = open_run(run_dir)
    view = run._repr_html_()
    assert f"tuning run {run.name}</strong>: finished" in view
    assert "hyperband with 6 trials, 11 epochs before early stopping" in view
    ranked = [t for t in run.trials[run.trials["rank"].notna()]["trial_id"]][:5]
    assert view.count("<tr>") == 1 + len(ranked)
    assert all(f"<td>{trial}</td>" in view for trial in ranked)
    assert f"test accuracy {run.best['test']['accuracy']:.4f}" in view


def test_several_kills_resume_each_trial_from_its_last_epoch(tmp_path):
    """SIGKILL three times at random moments inside trials; each time the interrupted trial continues from its
    last finished epoch (weights, optimizer and early-stopping state), and the search still finishes."""
    import random

    spec = write_spec(
        tmp_path,
        tiny(search={"algorithm": "random", "max_trials": 3, "max_epochs": 6, "resume_every": 0}, training={"early_stopping": {"patience": 6}}),
        "kills.yaml",
    )
    out = tmp_path / "reports"
    command = [sys.executable, "-m", "tuning", "search", str(spec), "--out", str(out), "--quiet"]
    chance = random.Random(7)
    kept: dict[str, str] = {}

    def resume_points() -> set[str]:
        found = set()
        for path in (out / "kills" / "kerastuner").glob("trial_*/resume.json"):
            with contextlib.suppress(FileNotFoundError):  # a trial may end (and clear it) between glob and read
                found.add(path.read_text())
        return found

    for _ in range(3):
        before = resume_points()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while time.time() < deadline and not (resume_points() - before):  # this session finished an epoch
            time.sleep(0.05)
        time.sleep(chance.uniform(0.0, 0.6))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        for path in (out / "kills" / "trials").glob("*.json"):
            kept.setdefault(path.name, path.read_text())
        for state in (out / "kills" / "kerastuner").glob("trial_*/resume.json"):
            json.loads(state.read_text())  # never truncated

    assert main(["search", str(spec), "--out", str(out), "--quiet"]) == 0
    run = open_run(out / "kills")
    assert run.status == "finished" and run.manifest["sessions"] == 4 and len(run.trials) == 3
    for name, text in kept.items():  # trials finished before a kill were never retrained
        assert (out / "kills" / "trials" / name).read_text() == text
    records = [json.loads(p.read_text()) for p in (out / "kills" / "trials").glob("*.json")]
    resumed = [r for r in records if r["resumed_from_epoch"]]
    assert resumed, "no trial continued from a saved epoch"
    for record in records:  # one row per epoch, in order, whatever the interruptions
        assert [row["epoch"] for row in record["history"]] == list(range(1, len(record["history"]) + 1))
    assert not list((out / "kills" / "kerastuner").glob("trial_*/resume*"))  # cleaned once trials end

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for record in resumed:
        acc = EventAccumulator(str(out / "kills" / "logs" / record["trial_id"]))
        acc.Reload()
        assert [e.step for e in acc.Scalars("epoch_val_accuracy")] == list(range(1, len(record["history"]) + 1))


def test_a_trial_resumed_after_ctrl_c_trains_its_remaining_epochs_as_if_never_stopped(tmp_path, monkeypatch):
    """Ctrl-C after a trial's second epoch, then the same command: the trial continues from its resume point
    and its remaining epochs see the same batches, in the same order, with the same dropout and augmentation
    draws as in a search that was never stopped, so its history (and Hyperband's promotions) are the same."""
    import tuning.callbacks

    spec = tiny(
        model={"blocks": 1, "filters": 8, "block_dropout": 0.3, "augment": {"flip": "horizontal"}},
        training={"learning_rate": 0.005, "early_stopping": False},
        search={"algorithm": "random", "max_trials": 1, "max_epochs": 4, "resume_every": 0},
    )
    whole = search(spec, name="whole", out=tmp_path, quiet=True)

    epoch_end = tuning.callbacks.EpochLog.on_epoch_end

    def ctrl_c_after_the_second_epoch(log, epoch, logs=None):
        epoch_end(log, epoch, logs)
        if epoch + 1 == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the handler defers it to the end of this epoch

    monkeypatch.setattr(tuning.callbacks.EpochLog, "on_epoch_end", ctrl_c_after_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        search(spec, name="stopped", out=tmp_path, quiet=True)
    assert open_run(tmp_path / "stopped").status == "interrupted"
    monkeypatch.setattr(tuning.callbacks.EpochLog, "on_epoch_end", epoch_end)
    resumed = search(spec, name="stopped", out=tmp_path, quiet=True)

    [record], [reference] = resumed.records(), whole.records()
    assert record.resumed_from_epoch == 2 and len(record.history) == len(reference.history) == 4
    for mine, theirs in zip(record.history, reference.history, strict=True):
        for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert mine[metric] == pytest.approx(theirs[metric], rel=1e-6, abs=1e-7), (mine["epoch"], metric)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_trial_resumed_on_jax_or_pytorch_trains_as_if_never_stopped_too(backend):
    """Keras shuffles arrays in memory itself there, from a global generator (numpy's on JAX, torch's on
    PyTorch) that is seeded from the trial's seed and the epoch at each epoch's start: the test above, run
    on that backend."""
    pytest.importorskip(backend)
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        pytest.skip("the test above runs on this backend itself")
    test = f"{__file__}::test_a_trial_resumed_after_ctrl_c_trains_its_remaining_epochs_as_if_never_stopped"
    env = {**os.environ, "KERAS_BACKEND": backend}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n0", "-p", "no:cacheprovider", test], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-3000:]


def test_retry_failed_runs_failed_trials_again_with_the_same_values(tmp_path, monkeypatch):
    import tuning.engine as engine

    real = engine.build_model
    monkeypatch.setattr(engine, "build_model", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("driver hiccup")))
    spec = tiny(search={"algorithm": "random", "max_trials": 4, "max_consecutive_failures": 2, "max_epochs": 2})
    with pytest.raises(SearchAborted, match="2 consecutive failed trials"):
        search(spec, name="flaky", out=tmp_path, quiet=True)
    failed = {r.trial_id: r.values for r in open_run(tmp_path / "flaky").records()}
    assert len(failed) == 2

    monkeypatch.setattr(engine, "build_model", real)
    resumed = search(spec, name="flaky", out=tmp_path, quiet=True)  # plain resume: failures stay failures
    assert sorted(resumed.trials[resumed.trials["status"] == "failed"]["trial_id"]) == sorted(failed)
    retried = search(spec, name="flaky", out=tmp_path, retry_failed=True, quiet=True)
    records = {r.trial_id: r for r in retried.records()}
    assert len(records) == 4 and all(r.status == "completed" for r in records.values())
    assert all(records[t].values == values for t, values in failed.items())


def test_out_of_memory_is_retried_once_at_half_the_batch(tmp_path, monkeypatch):
    """A callback stands in for the accelerator: batches of more than 40 images exhaust its memory."""
    import keras

    import tuning.engine as engine

    class SmallDevice(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if self.params["steps"] < 480 / 40:
                raise MemoryError("out of memory: batch too large for the device")

    original = engine.SpecTuner._callbacks
    monkeypatch.setattr(engine.SpecTuner, "_callbacks", lambda self, *a: [SmallDevice(), *original(self, *a)])
    spec = tiny(
        training={"batch_size": {"choice": [64, 128]}, "learning_rate": 3e-3}, model={"blocks": 1, "filters": 8}, search={"algorithm": "grid", "max_epochs": 1}
    )
    run = search(spec, name="oom", out=tmp_path, quiet=True)
    outcome = {r.values["batch_size"]: r for r in run.records()}
    assert outcome[64].status == "completed" and outcome[64].batch_size == 32
    assert outcome[64].reason == "out of memory at batch size 64; retried at 32"
    assert outcome[128].status == "out_of_memory" and outcome[128].reason.startswith("out of memory at batch size 128; retried at 64, which failed too")
    config = run.export(trial=outcome[64].trial_id, formats=["keras"])["config"]
    assert yaml.safe_load(config.read_text())["training"]["batch_size"] == 32  # what it trained with, for `tuning train`
    no_retry = search({**spec, "search": {**spec["search"], "halve_batch_on_oom": False}}, name="no_retry", out=tmp_path, quiet=True)
    assert set(no_retry.trials["status"]) == {"out_of_memory"}


def test_extend_adds_hyperband_iterations_and_checkpoints_are_pruned(tmp_path):
    spec = tiny(search={"max_epochs": 3, "keep_checkpoints": 2})
    first = search(spec, name="grow", out=tmp_path, quiet=True)
    planned = first.plan["trials"]
    assert len(first.trials[first.trials["status"] != "infeasible"]) == planned
    weights = sorted(p.parent.name for p in (tmp_path / "grow" / "kerastuner").glob("trial_*/checkpoint.weights.h5"))
    best_two = [f"trial_{t}" for t in first.trials["trial_id"][:2]]
    assert weights == sorted(best_two) and first.manifest["disk_mb"] > 0

    assert main(["search", write_spec(tmp_path, spec, "grow.yaml").as_posix(), "--out", str(tmp_path), "--extend", "1", "--quiet"]) == 0
    grown = open_run(tmp_path / "grow")
    scored = grown.trials[grown.trials["status"] != "infeasible"]
    assert len(scored) == 2 * planned and grown.manifest["iterations"] == 2 and grown.plan["trials"] == 2 * planned
    assert scored["iteration"].value_counts().to_dict() == {0: planned, 1: planned}  # each iteration's brackets told apart
    assert search(spec, name="grow", out=tmp_path, quiet=True).manifest["iterations"] == 2  # a plain resume keeps them
    assert len(list((tmp_path / "grow" / "kerastuner").glob("trial_*/checkpoint.weights.h5"))) == 2


def test_extend_or_a_raised_max_trials_adds_trials_to_a_random_search(tmp_path):
    """`max_trials` limits the whole run, as `time_budget` does: `--extend N` adds N trials to a finished random
    search, a plain resume keeps them, and a limit raised in the spec goes on from there."""
    spec = tiny(search={"algorithm": "random", "max_trials": 2, "max_epochs": 1})
    command = ["search", str(write_spec(tmp_path, spec, "more.yaml")), "--out", str(tmp_path), "--quiet"]
    assert main(command) == 0
    first = open_run(tmp_path / "more").trials.set_index("trial_id")
    assert main([*command, "--extend", "2"]) == 0
    grown = open_run(tmp_path / "more")
    assert len(grown.trials) == 4 and set(grown.trials["status"]) == {"completed"} and grown.plan["trials"] == 4
    assert grown.manifest["stop_reason"] == "max_trials = 4 reached" and grown.manifest["extended_trials"] == 2
    assert grown.trials.set_index("trial_id").loc[first.index, "score"].tolist() == first["score"].tolist()  # kept, not retrained
    assert grown.trials["learning_rate"].nunique() == 4  # new configurations drawn, none again
    assert main(command) == 0 and len(open_run(tmp_path / "more").trials) == 4  # a plain resume keeps the extension
    sessions = open_run(tmp_path / "more").manifest["session_log"]
    assert len(sessions) == 3 and sessions[1]["elapsed_before_s"] > 0 and sessions[1]["backend"] == keras.backend.backend()
    write_spec(tmp_path, tiny(search={**spec["search"], "max_trials": 3}), "more.yaml")
    assert main(command) == 0
    assert len(open_run(tmp_path / "more").trials) == 5  # 3 in the spec, and the 2 added


def test_a_run_continued_on_another_backend_says_so(tmp_path, capsys):
    spec = tiny(search={"algorithm": "random", "max_trials": 1, "max_epochs": 1})
    search(spec, name="moved", out=tmp_path, quiet=True)
    manifest = json.loads((tmp_path / "moved" / "run.json").read_text())
    other = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    (tmp_path / "moved" / "run.json").write_text(json.dumps({**manifest, "backend": other}))  # as if begun there
    capsys.readouterr()
    search({**spec, "search": {**spec["search"], "max_trials": 2}}, name="moved", out=tmp_path, quiet=True)
    assert f"warning: this run trained on {other} before and goes on with {keras.backend.backend()}" in capsys.readouterr().err


def test_a_run_that_ranked_val_loss_by_max_is_told_why_it_cannot_resume(tmp_path):
    """An earlier version's default direction (max) for `metric: val_loss`: the run's ranking was its worst first."""
    spec = tiny(search={"algorithm": "random", "max_trials": 1, "max_epochs": 1, "objective": {"metric": "val_loss"}})
    search(spec, name="maxed", out=tmp_path, quiet=True)
    manifest = json.loads((tmp_path / "maxed" / "run.json").read_text())
    manifest["spec"]["search"]["objective"]["direction"] = "max"  # as the earlier version stored it (and hashed)
    manifest["spec_hash"] = "hash of that spec"
    (tmp_path / "maxed" / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(RunError, match=r"search.objective.direction: 'max' -> 'min'\) \(this run ranked val_loss by direction 'max'"):
        search(spec, name="maxed", out=tmp_path, quiet=True)
    assert open_run(tmp_path / "maxed").export(formats=["keras"])["keras"].exists()  # its models still export


def test_extend_says_what_stops_it_adding_trials(tmp_path, capsys):
    """A Hyperband run stopped by max_trials gains nothing from more iterations; a run of an exported
    best_config.yaml (search.trial_seed: one trial) takes no more trials."""
    capped = tiny(search={"max_epochs": 3, "max_trials": 2})
    search(capped, name="capped", out=tmp_path, quiet=True)
    capsys.readouterr()
    search(capped, name="capped", out=tmp_path, extend=1, quiet=True)
    assert "warning: --extend 1 adds no trials: search.max_trials (2) stops the run before them: raise it" in capsys.readouterr().err
    one = tiny(search={"algorithm": "random", "max_trials": 1, "max_epochs": 1, "trial_seed": 7})
    search(one, name="one", out=tmp_path, quiet=True)
    with pytest.raises(RunError, match="--extend adds trials, but search.trial_seed seeds the one trial of"):
        search(one, name="one", out=tmp_path, extend=1, quiet=True)


def test_extend_adds_the_next_configurations_of_a_grid_cut_by_max_trials(tmp_path):
    """A grid resumed in a new process walked on from nowhere: `--extend 2` trained nothing and said the space ran out."""
    spec = tiny(
        model={"blocks": 1, "filters": {"choice": [8, 16]}},
        training={"learning_rate": {"choice": [1e-3, 3e-3]}},
        search={"algorithm": "grid", "max_trials": 2, "max_epochs": 1},
    )
    first = search(spec, name="grid", out=tmp_path, quiet=True)
    assert len(first.trials) == 2 and first.manifest["stop_reason"] == "max_trials = 2 reached"
    extended = search(spec, name="grid", out=tmp_path, extend=2, quiet=True)
    values = {(row.filters, row.learning_rate) for row in extended.trials.itertuples()}
    assert len(extended.trials) == 4 and len(values) == 4 and extended.manifest["stop_reason"] == "max_trials = 4 reached"


def test_extend_refuses_a_grid_search_that_runs_its_whole_space_already(tmp_path):
    spec = tiny(model={"blocks": 1, "filters": {"choice": [8, 16]}}, training={"learning_rate": 3e-3}, search={"algorithm": "grid", "max_epochs": 1})
    search(spec, name="grid", out=tmp_path, quiet=True)
    with pytest.raises(RunError, match="--extend adds trials to search.max_trials, which this grid search does not set"):
        search(spec, name="grid", out=tmp_path, extend=1, quiet=True)


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow", reason="a TensorFlow leak")
def test_trials_leave_no_traced_graphs_behind_and_trace_their_step_once(tmp_path, monkeypatch):
    """TensorFlow keeps one `CustomGradient-N` registry entry (and its whole graph) per trace; we drop them per trial.
    And each trial traces its training step once, not twice (Keras builds metrics inside the first trace)."""
    import gc

    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
    from tensorflow.python.framework import ops

    from tuning.runtime import clear_session

    def entries() -> int:
        return sum(name.startswith("CustomGradient-") for name in ops._gradient_registry._registry)

    traces = []
    train_step = TensorFlowTrainer.train_step
    monkeypatch.setattr(TensorFlowTrainer, "train_step", lambda model, data: traces.append(model.name) or train_step(model, data))
    frozen = []
    monkeypatch.setattr("tuning.engine.clear_session", lambda **kw: frozen.append(gc.get_freeze_count()) or clear_session(**kw))
    spec = tiny(search={"algorithm": "random", "max_trials": 4, "max_epochs": 1}, training={"reuse_models": False})  # a model per trial
    search(spec, name="leak", out=tmp_path, quiet=True)
    assert len(traces) == 4  # one per trial (8 without building the metrics first)
    assert len(frozen) == 4 and min(frozen) > 100_000 and gc.get_freeze_count() == 0  # collections skip the libraries, then not
    after_four = entries()
    assert after_four <= 4  # only the last trial's traces (train and validation shapes) remain
    records = open_run(tmp_path / "leak").records()
    assert all(r.rss_mb and r.rss_mb > 100 for r in records)  # each trial records the process's memory


def test_trials_of_a_network_seen_before_reuse_its_model_and_train_as_on_their_own(tmp_path, monkeypatch):
    """Two filter counts, any learning rate: a Hyperband search traces two networks, not a model per trial,
    and every trial's epochs (promotions included) are the same as when each trial builds its own model:
    weights, batch-norm statistics, dropout and augmentation seeds, and the (loss-scaled) optimizer's state."""
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    traces = []
    train_step = TensorFlowTrainer.train_step
    monkeypatch.setattr(TensorFlowTrainer, "train_step", lambda model, data: traces.append(model.name) or train_step(model, data))
    space = {
        "model": {"blocks": 1, "filters": {"choice": [8, 16]}, "batch_norm": True, "block_dropout": 0.2, "augment": {"flip": "horizontal"}},
        "training": {"learning_rate": {"float": [1e-3, 1e-2], "log": True}, "mixed_precision": True},
    }
    pooled = search(tiny(**space), name="pooled", out=tmp_path, quiet=True)
    traced_pooled, traces[:] = len(traces), []
    own = search(tiny(model=space["model"], training={**space["training"], "reuse_models": False}), name="own", out=tmp_path, quiet=True)

    trials = len(pooled.trials)
    assert trials >= 6 and traced_pooled == 2 and len(traces) == trials  # one trace per network vs one per trial
    assert any(r.hyperband.get("trial_id") for r in pooled.records())  # promotions continued their parents' state
    ours, theirs = ({r.trial_id: r for r in run.records()} for run in (pooled, own))
    assert ours.keys() == theirs.keys()
    for trial_id, record in ours.items():
        assert record.values == theirs[trial_id].values
        for mine, other in zip(record.history, theirs[trial_id].history, strict=True):
            for metric in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
                assert mine[metric] == pytest.approx(other[metric], rel=1e-4, abs=1e-6), (trial_id, metric)


def test_a_trial_of_a_network_seen_before_keeps_tensorflows_instantiated_functions(tmp_path, monkeypatch):
    """Nothing in a search with pooled models may clear TensorFlow's caches of instantiated functions: not the
    trial's seeding, as `keras.utils.set_random_seed` does (through `tf.random.set_seed`), nor a new network's
    `clear_session`, as Keras' does. Each pooled model's first epoch would then optimise its training and
    evaluation graphs again (bench/first_epoch.py; a 60-trial search 0.83x as long without, bench/memory.py)."""
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
    from tensorflow.python.eager import context

    traces, clears = [], []
    train_step = TensorFlowTrainer.train_step
    monkeypatch.setattr(TensorFlowTrainer, "train_step", lambda model, data: traces.append(model.name) or train_step(model, data))
    clear = context.pywrap_tfe.TFE_ContextClearCaches
    monkeypatch.setattr(context.pywrap_tfe, "TFE_ContextClearCaches", lambda handle: clears.append(len(traces)) or clear(handle))
    spec = tiny(model={"blocks": 1, "filters": {"choice": [8, 16]}}, search={"algorithm": "random", "max_trials": 5, "max_epochs": 1})
    run = search(spec, name="seeded", out=tmp_path, quiet=True)
    assert len(run.trials) == 5 and 1 <= len(traces) <= 2  # five trials, at most two networks traced
    assert clears == []

    spec["training"]["reuse_models"] = False
    own = search(spec, name="own", out=tmp_path, quiet=True)
    assert len(own.trials) == 5 and len(clears) == 5  # a model per trial: each new one frees the last one's


def test_trial_seeding_draws_what_keras_set_random_seed_draws():
    """`seed_trial` leaves TensorFlow's global seed alone but must seed everything a Keras model draws from:
    initializers, `keras.random` without a seed, dropout."""
    import keras

    from tuning.runtime import seed_trial

    def draws():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dropout(0.5)])
        weights = [keras.ops.convert_to_numpy(w) for w in model.weights]
        dropped = keras.ops.convert_to_numpy(model(np.ones((2, 4)), training=True))
        return [*weights, dropped, keras.ops.convert_to_numpy(keras.random.normal((3,)))]

    seed_trial(11)
    ours = draws()
    keras.utils.set_random_seed(11)
    theirs = draws()
    seed_trial(12)
    other = draws()
    for mine, reference in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(mine, reference)
    assert not np.array_equal(ours[0], other[0])


def test_a_short_trial_writes_its_weights_once_and_promotions_continue_from_the_same_best_epoch(tmp_path, monkeypatch):
    """Under `search.resume_every` seconds a trial writes no resume point: its best epoch waits in memory and
    is written when it ends. Every best checkpoint (weights and optimizer state) is then byte for byte the
    values that writing a resume point after each epoch gives, so promotions continue from the same state."""
    import h5py

    writes = []
    save_weights = keras.Model.save_weights
    monkeypatch.setattr(keras.Model, "save_weights", lambda model, path, *a, **k: writes.append(Path(path).name) or save_weights(model, path, *a, **k))
    space = {"training": {"learning_rate": {"float": [0.02, 0.05], "log": True}, "early_stopping": False}}
    once = search(tiny(**space, search={"max_epochs": 6, "keep_checkpoints": 50}), name="once", out=tmp_path, quiet=True)
    written_once, writes[:] = list(writes), []
    each = search(tiny(**space, search={"max_epochs": 6, "keep_checkpoints": 50, "resume_every": 0}), name="each", out=tmp_path, quiet=True)

    records = {r.trial_id: r for r in once.records()}
    epochs = sum(len(r.history) for r in records.values())
    assert written_once == ["checkpoint.partial.weights.h5"] * len(records)  # one write per trial
    assert len(writes) == epochs and all(name.startswith("resume-epoch") for name in writes)  # one per epoch
    assert any(r.hyperband.get("trial_id") for r in records.values())  # promotions loaded those checkpoints
    assert any(r.best_epoch < r.history[-1]["epoch"] for r in records.values())  # a best epoch held in memory
    for record in each.records():
        assert [row["loss"] for row in record.history] == pytest.approx([row["loss"] for row in records[record.trial_id].history], rel=1e-5)

    def arrays(path: Path) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with h5py.File(path, "r") as file:
            file.visititems(lambda name, item: found.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
        return found

    checkpoints = sorted((tmp_path / "once" / "kerastuner").glob("trial_*/checkpoint.weights.h5"))
    assert len(checkpoints) == len(records)
    for path in checkpoints:
        mine, theirs = arrays(path), arrays(tmp_path / "each" / path.relative_to(tmp_path / "once"))
        assert mine.keys() == theirs.keys() and any("optimizer" in name for name in mine)
        for name in mine:
            np.testing.assert_allclose(mine[name], theirs[name], rtol=1e-5, atol=1e-7, err_msg=f"{path.parent.name} {name}")


def test_the_held_out_data_pipeline_is_built_once_per_search(tmp_path, monkeypatch):
    """Given arrays, Keras builds and traces a new tf.data pipeline in every `fit`, for the validation data too:
    the validation batches are built once for the whole search, each trial builds its training pipeline alone
    (from the training arrays, converted to tensors once), and both run without tf.data's autotuning (whose iterators stalled epochs by a second)."""
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    import tuning._tensorflow

    built, trained, pipelines = [], [], []
    held_out_batches, training_batches, get_tf_dataset = (
        tuning._tensorflow.held_out_batches,
        tuning._tensorflow.training_batches,
        ArrayDataAdapter.get_tf_dataset,
    )

    def spy(log, function):
        def record(*args):
            made = function(*args)
            pipeline = made[0] if isinstance(made, tuple) else made  # the training pipeline comes with its reorder function
            log.append((len(args[0]), pipeline.options().autotune.enabled))
            return made

        return record

    monkeypatch.setattr(tuning._tensorflow, "held_out_batches", spy(built, held_out_batches))
    monkeypatch.setattr(tuning._tensorflow, "training_batches", spy(trained, training_batches))
    monkeypatch.setattr(ArrayDataAdapter, "get_tf_dataset", lambda adapter: pipelines.append(bool(adapter._shuffle)) or get_tf_dataset(adapter))
    converted, as_tensors = [], tuning._tensorflow.as_tensors
    monkeypatch.setattr(tuning._tensorflow, "as_tensors", lambda *arrays: converted.append(len(arrays[0])) or as_tensors(*arrays))
    run = search(tiny(search={"algorithm": "random", "max_trials": 3, "max_epochs": 2}), name="pipelines", out=tmp_path, quiet=True)

    assert len(run.trials) == 3 and built == [(run.manifest["data"]["validation"], False)]
    assert trained == [(run.manifest["data"]["train"], False)] * 3  # each trial's own shuffled training data
    assert converted == [run.manifest["data"]["train"]]  # ... from arrays copied into tensors once per search
    assert not any(pipelines)  # Keras' own pipelines: only the best model's test evaluation and analysis, in order


def test_a_trial_killed_after_its_record_was_written_is_not_trained_again(tmp_path):
    """The narrowest kill: the record is on disk, KerasTuner's oracle never heard the trial end."""
    spec = tiny(search={"algorithm": "random", "max_trials": 2, "max_epochs": 1})
    search(spec, name="narrow", out=tmp_path, quiet=True)
    run_dir = tmp_path / "narrow"
    state_file = run_dir / "kerastuner" / "oracle.json"
    state = json.loads(state_file.read_text())
    last = state["end_order"].pop()
    state["ongoing_trials"] = {"tuner0": last}  # as saved before end_trial reached the oracle
    state_file.write_text(json.dumps(state))
    (run_dir / "run.json").write_text(json.dumps({**json.loads((run_dir / "run.json").read_text()), "status": "running"}))
    record = (run_dir / "trials" / f"{last}.json").read_bytes()

    run = search(spec, name="narrow", out=tmp_path, quiet=True)
    assert run.status == "finished" and len(run.trials) == 2
    assert (run_dir / "trials" / f"{last}.json").read_bytes() == record  # its result stands, not retrained
    assert json.loads(state_file.read_text())["end_order"].count(last) == 1


def test_a_trial_lets_keras_dispatch_its_steps_asynchronously(tmp_path, monkeypatch):
    """No callback of a trial waits on every step's result (an accelerator would idle between steps). Keras
    dispatches asynchronously on thread-safe backends (JAX) only when no callback has an unmarked per-batch
    hook; we ask its verdict for the trial's callbacks as a thread-safe backend would (TensorFlow is not one)."""
    from keras.src import backend as keras_backend
    from keras.src.callbacks.callback_list import CallbackList

    from tuning.callbacks import NanGuard

    verdicts = []
    init = CallbackList.__init__

    def spy(self, callbacks=None, **kwargs):
        init(self, callbacks, **kwargs)
        if any(isinstance(c, NanGuard) for c in self.callbacks):
            with monkeypatch.context() as patch:
                patch.setattr(keras_backend, "IS_THREAD_SAFE", True)
                probe = object.__new__(CallbackList)
                init(probe, list(callbacks))
            verdicts.append(probe._async_train)

    monkeypatch.setattr(CallbackList, "__init__", spy)
    search(tiny(search={"algorithm": "random", "max_trials": 1, "max_epochs": 1}), name="async", out=tmp_path, quiet=True)
    assert verdicts == [True]


@pytest.mark.parametrize(
    "arguments", [["report", "reports/x", "--top", "-3"], ["predict", "m.keras", "a.png", "--top", "0"], ["board", "x", "--port", "99999"]]
)
def test_counts_and_ports_out_of_range_are_refused_before_anything_runs(arguments, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(arguments)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and ("at least 1" in err or "from 1 to 65535" in err)


def test_retrying_a_failed_trial_can_still_promote_from_its_round(tmp_path, monkeypatch):
    """A failed first-round trial leaves its round short, so Hyperband cannot promote; the search says so and keeps
    the round's weights, and `--retry-failed` then completes the round and promotes from it."""
    import tuning.engine as engine

    original = engine.SpecTuner._fit

    def failing(self, hp, record, *args, **kwargs):
        if record.trial_id == "0000":
            raise RuntimeError("injected failure")
        return original(self, hp, record, *args, **kwargs)

    monkeypatch.setattr(engine.SpecTuner, "_fit", failing)
    spec = tiny(search={"max_epochs": 3, "factor": 3, "seed": 0, "max_consecutive_failures": 3, "keep_checkpoints": 1})
    first = search(spec, name="retry", out=tmp_path, quiet=True)
    assert dict(zip(first.trials["trial_id"], first.trials["status"]))["0000"] == "failed"
    assert first.manifest["stop_reason"].startswith("5 of 6 planned trials: Hyperband promotes only completed trials, and 1 failed")
    monkeypatch.setattr(engine.SpecTuner, "_fit", original)
    again = search(spec, name="retry", out=tmp_path, quiet=True, retry_failed=True)
    statuses = dict(zip(again.trials["trial_id"], again.trials["status"]))
    assert len(statuses) == 6 and set(statuses.values()) == {"completed"}
    promoted = again.trials[again.trials["parent_trial"].notna()]
    assert len(promoted) == 1 and promoted.iloc[0]["epochs"] == 3


def test_extending_a_space_with_nothing_left_says_so(tmp_path, capsys):
    spec = write_spec(tmp_path, tiny(model={"blocks": 1, "filters": {"choice": [8, 16]}}, training={"learning_rate": 3e-3}, search={"max_epochs": 3}))
    command = ["search", str(spec), "--out", str(tmp_path / "reports"), "--quiet"]
    assert main(command) == 0
    assert "--extend" not in capsys.readouterr().err
    assert main([*command, "--extend", "1"]) == 0
    assert "warning: --extend 1 adds no trials: the space has no configuration left to draw" in capsys.readouterr().err


def test_a_run_begun_with_whole_number_labels_named_as_floats_keeps_those_names():
    """Before whole-number labels were named as integers a CSV's `2.0` made class '2.0': resuming keeps it."""
    from tuning.data import load_data
    from tuning.resume import with_earlier_class_names

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (60, 8, 8), dtype=np.uint8), np.arange(60) % 3
    dataset = load_data(load_spec({"version": 1}).data, ROOT, seed=0, arrays=(x, y))
    assert dataset.class_names == ("0", "1", "2")
    assert with_earlier_class_names(dataset, ["0.0", "1.0", "2.0"]).class_names == ("0.0", "1.0", "2.0")
    assert with_earlier_class_names(dataset, ["a", "b", "c"]) is dataset  # other classes: refused as before, by the caller


def test_arrays_resized_by_image_size_are_judged_at_that_size_in_every_trial(tmp_path):
    """8x8 digits resized to 32x32 inside the model have room for 4 poolings; each trial's own check once used 8x8."""
    spec = tiny(
        data={"image_size": [32, 32]},
        model={"blocks": {"choice": [3, 4]}, "filters": 4},
        training={"learning_rate": 1e-3},
        search={"algorithm": "grid", "max_epochs": 1},
    )
    run = search(spec, name="resized", out=tmp_path, quiet=True)
    assert sorted(run.trials["status"]) == ["completed", "completed"] and sorted(run.trials["blocks"]) == [3, 4]


def test_an_epochs_learning_rate_is_the_one_it_trained_with_when_the_plateau_cuts_it(tmp_path):
    spec = tiny(
        model={"blocks": 1, "filters": 8},
        training={"learning_rate": 0.05, "early_stopping": False, "reduce_lr_on_plateau": {"monitor": "val_loss", "patience": 0, "factor": 0.5}},
        search={"algorithm": "grid", "max_epochs": 10},
    )
    run = search(spec, name="plateau", out=tmp_path, quiet=True)
    history = run.history(run.trials.iloc[0]["trial_id"]).to_dict("records")
    assert history[0]["learning_rate"] == pytest.approx(0.05)
    cuts = [e for e in range(1, len(history)) if history[e]["learning_rate"] < history[e - 1]["learning_rate"]]
    assert cuts  # the epoch after one that did not improve val_loss trains at half the rate
    for e in cuts:
        assert history[e]["learning_rate"] == pytest.approx(history[e - 1]["learning_rate"] / 2)
        assert history[e - 1]["val_loss"] > min(row["val_loss"] for row in history[: e - 1]) - 1e-4  # Keras' min_delta


def test_retrying_a_failed_promotion_continues_from_its_parents_weights(tmp_path, monkeypatch):
    """A promoted trial that failed is run again by `--retry-failed` from its parent's checkpoint, so that
    checkpoint stays on disk while the failure may be retried, even outside the best `keep_checkpoints`."""
    import tuning.engine as engine

    original = engine.SpecTuner._fit

    def failing(self, hp, record, *args, **kwargs):
        if record.parent is not None:
            raise RuntimeError("injected failure")
        return original(self, hp, record, *args, **kwargs)

    monkeypatch.setattr(engine.SpecTuner, "_fit", failing)
    spec = tiny(search={"max_epochs": 3, "factor": 3, "seed": 0, "max_consecutive_failures": 3, "keep_checkpoints": 1})
    first = search(spec, name="retry", out=tmp_path, quiet=True)
    failed = first.trials[first.trials["status"] == "failed"]
    assert len(failed) == 1 and failed.iloc[0]["parent_trial"] is not None
    parent = failed.iloc[0]["parent_trial"]
    assert (tmp_path / "retry" / "kerastuner" / f"trial_{parent}" / "checkpoint.weights.h5").exists()
    monkeypatch.setattr(engine.SpecTuner, "_fit", original)
    again = search(spec, name="retry", out=tmp_path, quiet=True, retry_failed=True)
    retried = again.trials.set_index("trial_id").loc[failed.iloc[0]["trial_id"]]
    assert retried["status"] == "completed", retried["reason"]
    assert retried["initial_epoch"] == 1 and retried["epochs"] == 3


def test_a_killed_search_keeps_the_time_it_used_for_its_time_budget(tmp_path):
    """`kill -9` leaves no chance to write the elapsed time at the end: run.json keeps it as trials end, so a
    resumed search's `time_budget` counts the killed session (it started again from zero) and `elapsed_s` is
    not short of the trials' own time."""
    spec = write_spec(tmp_path, tiny(search={"algorithm": "random", "max_trials": 6, "max_epochs": 2, "time_budget": "10m"}), "killed.yaml")
    out = tmp_path / "reports"
    process = subprocess.Popen([sys.executable, "-m", "tuning", "search", str(spec), "--out", str(out), "--quiet"], cwd=ROOT)
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "killed" / "trials" / "1.json").exists():
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    manifest = json.loads((out / "killed" / "run.json").read_text())
    finished = [json.loads(p.read_text()) for p in (out / "killed" / "trials").glob("*.json")]
    assert len(finished) >= 2 and manifest["status"] == "running"
    assert manifest["elapsed_s"] >= sum(r["wall_time"] for r in finished)


def test_run_json_says_finished_only_once_the_results_are_written(tmp_path, monkeypatch):
    """A process killed while it writes the results leaves a run that the same command resumes, not a `finished`
    run without its tables, best model or reports."""
    import tuning.outcome as outcome

    seen = []
    real = outcome.finish

    def finish(store, *args):
        seen.append(store.read_manifest()["status"])
        real(store, *args)

    monkeypatch.setattr(outcome, "finish", finish)
    run = search(tiny(search={"algorithm": "random", "max_trials": 2, "max_epochs": 1}), name="order", out=tmp_path, quiet=True)
    assert seen == ["running"] and run.manifest["status"] == "finished"
    results = json.loads((run.path / "results.json").read_text())
    assert results["status"] == "finished" and not results["partial"]  # the report knew how the search ended
    assert "partial results" not in (run.path / "leaderboard.md").read_text()


def test_a_run_stopped_by_its_time_budget_goes_on_when_the_budget_is_raised(tmp_path, capsys):
    """The budget limits the whole run's time: raising it is no other search, so the run resumes (other changes
    are refused); with the budget used up, a resume says why it trains nothing."""
    spec = tiny(search={"algorithm": "random", "max_trials": 4, "max_epochs": 1, "time_budget": "1s"})
    path = write_spec(tmp_path, spec, "budget.yaml")
    assert main(["search", str(path), "--out", str(tmp_path), "--quiet"]) == 0
    first = open_run(tmp_path / "budget")
    before = set(first.trials["trial_id"])
    records = {p.name: p.read_text() for p in (tmp_path / "budget" / "trials").glob("*.json")}
    assert first.manifest["stop_reason"] == "time budget reached" and len(before) < 4
    capsys.readouterr()
    assert main(["search", str(path), "--out", str(tmp_path), "--quiet"]) == 0
    assert "search.time_budget (1s) is used up" in capsys.readouterr().err
    assert main(["search", str(path), "--out", str(tmp_path), "--quiet", "--workers", "1"]) == 0
    assert "search.time_budget (1s) is used up" in capsys.readouterr().err
    assert set(open_run(tmp_path / "budget").trials["trial_id"]) == before
    assert not (tmp_path / "budget" / "workers").exists()  # no worker process was started only to be told so
    assert open_run(tmp_path / "budget").manifest["stop_reason"] == "time budget reached"
    spec["search"]["time_budget"] = "10m"
    write_spec(tmp_path, spec, "budget.yaml")
    assert main(["search", str(path), "--out", str(tmp_path), "--quiet"]) == 0
    after = open_run(tmp_path / "budget")
    assert len(after.trials) == 4 and after.manifest["stop_reason"] == "max_trials = 4 reached"
    assert after.manifest["spec"]["search"]["time_budget"] == "10m"
    assert before < set(after.trials["trial_id"])
    assert all((tmp_path / "budget" / "trials" / name).read_text() == text for name, text in records.items())  # kept, not retrained


class _JumpingClock:
    """The wall clock of the engine and the runner (and its elapsed-time listener), which `jump` moves an hour on: a time budget then runs out at
    a chosen epoch's end on any machine, and the run's elapsed time counts the hour."""

    def __init__(self) -> None:
        self.ahead = 0.0
        self.perf_counter, self.monotonic = time.perf_counter, time.monotonic

    def time(self) -> float:
        return time.time() + self.ahead

    def jump(self) -> None:
        self.ahead += 3600.0


def _budget_runs_out_after(epochs: int, monkeypatch) -> _JumpingClock:
    """The time budget runs out as the search's `epochs`-th epoch ends (an hour passes during that epoch)."""
    import tuning.callbacks as callbacks
    import tuning.engine as engine
    import tuning.events as events
    import tuning.oracles as oracles
    import tuning.resume_points as resume_points
    import tuning.runner as runner

    clock, seen, epoch_end = _JumpingClock(), [], callbacks.EpochLog.on_epoch_end
    for module in (engine, oracles, callbacks, resume_points, runner, events):
        monkeypatch.setattr(module, "time", clock)

    def on_epoch_end(log, epoch, logs=None):
        seen.append(epoch)
        if len(seen) == epochs:
            clock.jump()
        epoch_end(log, epoch, logs)

    monkeypatch.setattr(callbacks.EpochLog, "on_epoch_end", on_epoch_end)
    return clock


def test_a_trial_cut_by_the_time_budget_continues_when_the_budget_is_raised(tmp_path, monkeypatch, capsys):
    """The budget runs out after the first of trial 0004's three epochs. While it stays used up, the trial counts
    with that epoch's score, marked `stopped_by_budget` in trials.csv and results.json; once it is raised, the trial
    continues from where it stopped (same id, its saved weights, optimizer, early-stopping and random state) and
    ends as in a search that was never stopped, and Hyperband goes on from there: every trial's score and the best
    trial are those of the uninterrupted search."""
    spec = tiny(
        model={"block_dropout": 0.3, "augment": {"flip": "horizontal"}},
        search={"resume_every": 0, "keep_checkpoints": 1},  # the cut trial keeps its weights, whatever its rank
    )
    whole = search(spec, name="whole", out=tmp_path, quiet=True)
    assert len(whole.records()) == 6

    spec["search"]["time_budget"] = "30m"
    path = write_spec(tmp_path, spec, "cut.yaml")
    _budget_runs_out_after(6, monkeypatch)  # trials 0000-0002 train 1 epoch, promoted 0003 2 more, then 0004's first
    assert main(["search", str(path), "--out", str(tmp_path), "--quiet"]) == 0
    first = open_run(tmp_path / "cut")
    cut = {r.trial_id: r for r in first.records()}["0004"]
    assert first.manifest["stop_reason"] == "time budget reached" and sorted(r.trial_id for r in first.records()) == ["0000", "0001", "0002", "0003", "0004"]
    assert cut.status == "completed" and cut.stopped_by_budget and len(cut.history) == 1 and "time_budget" in cut.reason
    rows = {row["trial_id"]: row for row in json.loads((first.path / "results.json").read_text())["trials"]}
    assert rows["0004"]["stopped_by_budget"] is True and rows["0003"]["stopped_by_budget"] is False
    with open(first.path / "trials.csv", newline="") as handle:
        assert {row["trial_id"]: row["stopped_by_budget"] for row in csv.DictReader(handle)}["0004"] == "True"
    assert (first.path / "kerastuner" / "trial_0004" / "checkpoint.weights.h5").exists()

    records = {p.name: p.read_text() for p in (first.path / "trials").glob("*.json")}
    capsys.readouterr()
    assert main(["search", str(path), "--out", str(tmp_path), "--quiet"]) == 0  # the budget is still used up: nothing changes
    assert "search.time_budget (30m) is used up" in capsys.readouterr().err
    assert {p.name: p.read_text() for p in (first.path / "trials").glob("*.json")} == records
    assert open_run(tmp_path / "cut").manifest["stop_reason"] == "time budget reached"

    spec["search"]["time_budget"] = "1d"
    write_spec(tmp_path, spec, "cut.yaml")
    assert main(["search", str(path), "--out", str(tmp_path), "--quiet"]) == 0
    after, reference = open_run(tmp_path / "cut"), {r.trial_id: r for r in whole.records()}
    resumed = {r.trial_id: r for r in after.records()}
    assert sorted(resumed) == sorted(reference) and after.manifest["stop_reason"] == "plan complete"
    continued = resumed["0004"]
    assert continued.resumed_from_epoch == 1 and not continued.stopped_by_budget and continued.reason == ""
    assert len(continued.history) == len(reference["0004"].history) == 3
    oracle_trial = json.loads((after.path / "kerastuner" / "trial_0004" / "trial.json").read_text())
    assert oracle_trial["status"] == "COMPLETED" and oracle_trial["score"] == continued.score  # what Hyperband promotes by
    for mine, theirs in zip(continued.history, reference["0004"].history, strict=True):
        for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert mine[metric] == pytest.approx(theirs[metric], rel=1e-6, abs=1e-7), (mine["epoch"], metric)
    for trial_id, record in reference.items():
        assert resumed[trial_id].values == record.values and resumed[trial_id].hyperband == record.hyperband, trial_id
        assert resumed[trial_id].score == pytest.approx(record.score, rel=1e-6, abs=1e-7), trial_id
    assert after.best["trial_id"] == whole.best["trial_id"] and after.best["score"] == pytest.approx(whole.best["score"], rel=1e-6, abs=1e-7)
    assert after.best["test"]["accuracy"] == pytest.approx(whole.best["test"]["accuracy"], abs=1e-6)
    assert not list((after.path / "kerastuner").glob("trial_*/resume*"))


def test_a_hyperband_search_stopped_by_its_time_budget_keeps_the_weights_its_rounds_promote_from(tmp_path, monkeypatch):
    """Raised, the budget lets the run go on, and Hyperband promotes from the rounds it had begun: their trials keep
    their weights when the search stops, beyond `search.keep_checkpoints` (a finished search's are deleted)."""
    spec = tiny(search={"time_budget": "30m", "keep_checkpoints": 1})
    _budget_runs_out_after(2, monkeypatch)  # two of the first round's three 1-epoch trials
    run = search(spec, name="rounds", out=tmp_path, quiet=True)
    assert run.manifest["stop_reason"] == "time budget reached" and sorted(r.trial_id for r in run.records()) == ["0000", "0001"]
    assert (run.path / "kerastuner" / "trial_0000" / "checkpoint.weights.h5").exists()
    assert (run.path / "kerastuner" / "trial_0001" / "checkpoint.weights.h5").exists()


def test_a_best_trial_that_continued_after_a_budget_cut_is_evaluated_again(tmp_path, monkeypatch):
    """The best trial is the same one before and after it continues, with another score and weights: run.json's best
    (score, epoch, test metrics) and best_model.keras are those of the finished trial, not of its first epoch."""
    spec = tiny(
        model={"blocks": 1, "filters": 8},
        training={"learning_rate": 0.005, "early_stopping": False},
        search={"algorithm": "random", "max_trials": 1, "max_epochs": 3, "resume_every": 0, "time_budget": "30m"},
    )
    _budget_runs_out_after(1, monkeypatch)
    first = dict(search(spec, name="best", out=tmp_path, quiet=True).best)
    assert first["best_epoch"] == 1
    spec["search"]["time_budget"] = None
    after = search(spec, name="best", out=tmp_path, quiet=True)
    [record] = after.records()
    assert record.best_epoch > 1 and [after.best[key] for key in ("trial_id", "best_epoch", "score")] == [record.trial_id, record.best_epoch, record.score]
    assert after.best["trial_id"] == first["trial_id"] and after.best["test"] != first["test"]  # evaluated again
