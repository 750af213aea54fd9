"""TensorBoard HParams logs, read back with TensorBoard's own loading code and served by a real TensorBoard."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

from tuning import search

from .conftest import ROOT, interactive_ctrl_c, tiny

pytestmark = pytest.mark.slow

SPEC = tiny(
    model={"blocks": {"int": [1, 2]}, "padding": {"choice": ["same", "valid"]}, "batch_norm": {"choice": [True, False]}, "filters": {"choice": [8, 16]}},
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return search(SPEC, name="board", out=tmp_path_factory.mktemp("hp"), quiet=True)


def load(path):
    accumulator = EventAccumulator(str(path), size_guidance={"tensors": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def plugin_data(accumulator, tag):
    return metadata.parse_session_start_info_plugin_data if tag else None


def test_experiment_config_has_true_domains_and_metrics(run):
    acc = load(run.path / "logs")
    content = acc.PluginTagToContent("hparams")[metadata.EXPERIMENT_TAG]
    experiment = metadata.parse_experiment_plugin_data(content)
    infos = {h.name: h for h in experiment.hparam_infos}
    assert set(infos) == {"blocks", "filters", "padding", "batch_norm", "learning_rate", "bracket", "round", "epochs", "parent_trial"}
    assert (infos["blocks"].domain_interval.min_value, infos["blocks"].domain_interval.max_value) == (1, 2)
    assert [v.string_value for v in infos["padding"].domain_discrete.values] == ["same", "valid"]
    assert sorted(v.bool_value for v in infos["batch_norm"].domain_discrete.values) == [False, True]
    assert sorted(v.number_value for v in infos["filters"].domain_discrete.values) == [8.0, 16.0]
    lr = infos["learning_rate"]
    assert (lr.domain_interval.min_value, lr.domain_interval.max_value) == (1e-3, 1e-2) and "log scale" in lr.description
    assert "training.learning_rate" in lr.description
    assert infos["parent_trial"].type == api_pb2.DATA_TYPE_STRING  # no domain, yet typed: the dashboard filters it as text
    tags = [m.name.tag for m in experiment.metric_infos]
    assert tags[0] == "score" and {"val_loss", "val_accuracy", "loss", "accuracy", "epochs_trained", "params", "wall_time_s"} <= set(tags)


def test_one_session_per_trial_with_values_status_and_score(run):
    with open(run.path / "trials.csv", newline="") as handle:
        rows = {r["trial_id"]: r for r in csv.DictReader(handle)}
    runs = sorted(p.name for p in (run.path / "logs").iterdir() if p.is_dir())
    assert runs == sorted(rows)
    for trial_id, row in rows.items():
        acc = load(run.path / "logs" / trial_id)
        content = acc.PluginTagToContent("hparams")
        start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
        end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
        assert start.group_name == trial_id or start.hparams
        record = json.loads((run.path / "trials" / f"{trial_id}.json").read_text())
        for name, value in record["values"].items():
            logged = start.hparams[name]
            assert (logged.string_value or logged.bool_value or logged.number_value) == value or logged.number_value == pytest.approx(value)
        if row["status"] == "completed":
            assert end.status == api_pb2.STATUS_SUCCESS
            score = acc.Scalars("score")
            assert len(score) == 1 and score[0].value == pytest.approx(float(row["score"]))
            epochs = [e.step for e in acc.Scalars("epoch_val_accuracy")]
            assert epochs == [h["epoch"] for h in record["history"]]
            assert "epoch_learning_rate" in acc.Tags()["scalars"]
            if row["parent_trial"]:  # a promotion continues its parent's steps and names it
                assert start.hparams["parent_trial"].string_value == row["parent_trial"]
                assert epochs[0] == int(row["initial_epoch"]) + 1
        else:
            assert end.status == api_pb2.STATUS_FAILURE
            assert row["status"] in acc.Tensors("status")[0].tensor_proto.string_val[0].decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_real_tensorboard_lists_every_trial_in_leaderboard_order(run):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(run.path / "logs"), "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/data/plugin/hparams"
    try:
        deadline = time.time() + 90
        while True:
            try:
                experiment = post(f"{base}/experiment", {"experimentName": ""})
                groups = post(f"{base}/session_groups", {
                    "experimentName": "", "startIndex": 0, "sliceSize": 1000,
                    "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
                    "colParams": [{"metric": {"tag": "score", "group": ""}, "order": "ORDER_DESC", "missingValuesFirst": False}],
                })  # fmt: skip
                if len(groups.get("sessionGroups", [])) == len(run.trials):
                    break
            except OSError:
                pass
            assert time.time() < deadline, "TensorBoard did not serve the HParams data in time"
            time.sleep(1)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert [h["name"] for h in experiment["hparamInfos"]][:1] and experiment["metricInfos"][0]["name"]["tag"] == "score"
    listed = [g["name"] for g in groups["sessionGroups"]]
    ranked = [t for t in run.trials[run.trials["rank"].notna()]["trial_id"]]
    assert listed[: len(ranked)] == ranked


def test_logging_module_never_imports_tensorflow(tmp_path):
    code = f"""
import sys
from tuning import load_spec
from tuning.space import parameters
from tuning.hparams import HParamsLog
from tuning.records import TrialRecord
spec = load_spec({SPEC!r})
log = HParamsLog(__import__('pathlib').Path({str(tmp_path)!r}), parameters(spec), 'val_accuracy', max_epochs=3, brackets=2)
log.write_experiment()
record = TrialRecord('0000', {{'blocks': 1, 'filters': 8, 'padding': 'same', 'batch_norm': True, 'learning_rate': 0.002}}, {{'bracket': 1, 'round': 0, 'epochs': 1}})
log.trial_started(record, 1); log.epoch_done(1, {{'epoch': 1, 'loss': 1.0}})
record.status, record.score, record.history = 'completed', 0.5, [{{'epoch': 1, 'loss': 1.0}}]
log.trial_finished(record)
print('TF', 'tensorflow' in sys.modules, 'keras' in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "TF False False" in result.stdout
    assert list((tmp_path / "0000").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_board_command_serves_runs_side_by_side_and_stops_on_ctrl_c_or_sigterm(run, tmp_path, stop):
    """SIGTERM (`timeout`, systemd) stops TensorBoard too: it once ended the command alone, TensorBoard serving on."""
    import signal

    from tuning.board import logdir_spec

    assert logdir_spec([run.path]) == ["--logdir", str(run.path / "logs")]
    spec = logdir_spec([run.path, run.path])
    assert spec[0] == "--logdir_spec" and spec[1].count(":") == 2
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tuning", "board", str(run.path), "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, preexec_fn=interactive_ctrl_c,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        assert line.startswith(f"TensorBoard: http://127.0.0.1:{port}/")
        runs = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=30).read())
        assert set(runs) >= set(run.trials["trial_id"])
    finally:
        process.send_signal(getattr(signal, stop))
        assert process.wait(timeout=30) == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=5)


def test_board_refuses_a_folder_without_logs(tmp_path, capsys):
    from tuning.cli import main

    assert main(["board", str(tmp_path)]) == 2
    assert "has no logs/ folder" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_same_search_and_logs_on_other_backends(tmp_path, backend):
    """JAX runs in CI; PyTorch where it is installed (its wheels are too large for CI)."""
    import importlib.util
    import os

    from tuning import open_run

    from .conftest import write_spec

    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    spec = write_spec(tmp_path, tiny(search={"algorithm": "random", "max_trials": 3, "max_epochs": 2}), f"{backend}.yaml")
    env = {**os.environ, "KERAS_BACKEND": backend}
    result = subprocess.run(
        [sys.executable, "-m", "tuning", "search", str(spec), "--out", str(tmp_path), "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    run = open_run(tmp_path / backend)
    assert run.manifest["backend"] == backend and run.best["test"]["accuracy"] > 0.3
    experiment = metadata.parse_experiment_plugin_data(load(run.path / "logs").PluginTagToContent("hparams")[metadata.EXPERIMENT_TAG])
    assert [m.name.tag for m in experiment.metric_infos][0] == "score"
    for row in run.trials.itertuples():
        acc = load(run.path / "logs" / row.trial_id)
        assert acc.Scalars("score")[0].value == pytest.approx(row.score)
        assert len(acc.Scalars("epoch_loss")) == row.epochs_trained


def test_a_jax_search_never_imports_tensorflow(tmp_path):
    """TensorFlow is installed here, and a JAX search has no use for it: not even to save its best model, for
    which Keras imported it (~4 s and ~470 MB at the end of every search)."""
    import importlib.util
    import os

    from .conftest import write_spec

    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    spec = write_spec(tmp_path, tiny(search={"algorithm": "random", "max_trials": 2, "max_epochs": 1}), "jax.yaml")
    code = (
        f"import sys, keras, tuning; run = tuning.search({str(spec)!r}, out={str(tmp_path)!r}, quiet=True);"
        "model = keras.saving.load_model(run.path / 'best_model.keras');"
        "print('RESULT', keras.backend.backend(), model.count_params() > 0, 'tensorflow' in sys.modules)"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "RESULT jax True False" in result.stdout


def test_jax_reuses_compiled_steps_across_trials_and_runs(tmp_path):
    """Trials that differ from an earlier one only in values held in variables (here the learning rate)
    compile nothing new on JAX: its persistent cache serves their steps, across trials and runs."""
    import importlib.util
    import os

    from tuning import open_run

    from .conftest import write_spec

    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    cache = tmp_path / "compiled"
    env = {**os.environ, "KERAS_BACKEND": "jax", "TUNING_COMPILE_CACHE": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    model = {"blocks": 1, "filters": 8}

    def run(name: str, training: dict, trials: int) -> list[str]:
        spec = write_spec(tmp_path, tiny(model=model, training=training, search={"algorithm": "random", "max_trials": trials, "max_epochs": 1}), f"{name}.yaml")
        result = subprocess.run(
            [sys.executable, "-m", "tuning", "search", str(spec), "--out", str(tmp_path), "--quiet"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert open_run(tmp_path / name).manifest["compile_cache"] == str(cache)
        return sorted(p.name for p in cache.iterdir())

    first = run("one", {"learning_rate": 3e-3}, 1)
    assert len(first) >= 2  # at least the training and evaluation steps
    assert run("two", {"learning_rate": {"choice": [1e-3, 1e-2]}}, 2) == first  # two more trials, nothing compiled again


def test_a_trials_session_has_ended_before_its_record_reaches_disk(tmp_path, monkeypatch):
    """A kill between the two must leave a trial that runs again, never a finished trial whose TensorBoard
    session never ends (seen in CI, where a resumed search kept such a trial as finished)."""
    from tuning.records import RunStore

    ended_when_written = {}
    write_trial = RunStore.write_trial

    def checked_write_trial(store, record):
        logs = store.dir / "logs" / record.trial_id
        ended_when_written[record.trial_id] = logs.is_dir() and metadata.SESSION_END_INFO_TAG in load(logs).Tags()["tensors"]
        write_trial(store, record)

    monkeypatch.setattr(RunStore, "write_trial", checked_write_trial)
    spec = tiny(search={"algorithm": "random", "max_trials": 3, "max_epochs": 1}, model={"blocks": {"int": [1, 4]}, "padding": {"choice": ["valid"]}})
    finished = search(spec, name="order", out=tmp_path, quiet=True)
    assert set(ended_when_written) == set(finished.trials["trial_id"]) and len(ended_when_written) >= 3
    assert all(ended_when_written.values()), ended_when_written


def test_a_runs_board_from_python_opens_on_hparams_and_closes_leaving_no_log(run):
    url = run.board()
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/#hparams")
        assert json.loads(urllib.request.urlopen(url.removesuffix("#hparams") + "data/runs", timeout=30).read())
        log = run._board.log
        assert log.exists()
    finally:
        run.close_board()
    assert not log.exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(url.removesuffix("#hparams") + "data/runs", timeout=5)


def test_a_stepped_float_is_offered_by_the_dashboard_as_its_values():
    from tuning import load_spec
    from tuning.hparams import _domain
    from tuning.space import parameters

    spec = load_spec({"version": 1, "model": {"block_dropout": {"float": [0.1, 0.5], "step": 0.1}, "head_dropout": {"float": [0.0, 0.5]}}})
    domains = {p.name: _domain(p) for p in parameters(spec)}
    assert domains["block_dropout"].values == [0.1, 0.2, 0.3, 0.4, 0.5]  # as trials record them, not 0.30000000000000004
    assert (domains["head_dropout"].min_value, domains["head_dropout"].max_value) == (0.0, 0.5)
