"""TensorBoard HParams logs, written by us so that they are right and work on every Keras backend.

KerasTuner's own integration writes no experiment config (the dashboard then guesses domains), shows
last-epoch values instead of the trial's score, hides Hyperband's bracket and round, and writes nothing on
JAX. Here: TensorBoard's record framing and hparams protos, nothing from `tf.summary`. (TensorBoard's
`EventFileWriter` imports TensorFlow for file I/O whenever it is installed, so `EventWriter` replaces it.)

Layout under `reports/<name>/logs/`: the experiment config at the top, one run per trial (`<trial_id>/`)
with its per-epoch scalars (`epoch_*`, numbered from the parent's epochs for a promotion), its session
start (hyperparameters and Hyperband fields), summary metrics (`score` first) and session end.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.plugins.hparams import summary_v2 as hp
from tensorboard.plugins.text import summary_v2 as text_summary
from tensorboard.summary.writer.record_writer import RecordWriter

from .domains import Choice, FloatRange, IntRange
from .records import TrialRecord
from .space import Param

SUMMARY_METRICS = (
    ("val_loss", "validation loss", "Validation loss at the best epoch."),
    ("val_accuracy", "validation accuracy", "Validation accuracy at the best epoch."),
    ("loss", "training loss", "Training loss at the best epoch."),
    ("accuracy", "training accuracy", "Training accuracy at the best epoch."),
    ("epochs_trained", "epochs trained", "Epochs this trial trained (a promotion counts only its own)."),
    ("params", "parameters", "Parameters of the model, trainable and not."),
    ("wall_time_s", "wall time (s)", "Seconds the trial took, building and checkpoints included."),
)
HYPERBAND_FIELDS = ("bracket", "round", "epochs", "parent_trial")
MAX_DISCRETE = 100  # a stepped float range with more values is shown as an interval


def _domain(param: Param) -> Any:
    domain = param.domain
    if isinstance(domain, Choice):
        values = domain.values()
        if all(isinstance(v, bool) for v in values):
            return hp.Discrete([bool(v) for v in values])
        if all(isinstance(v, str) for v in values):
            return hp.Discrete([str(v) for v in values])
        return hp.Discrete([float(v) for v in values])
    if isinstance(domain, IntRange):
        return hp.IntInterval(int(domain.low), int(domain.high))
    if isinstance(domain, FloatRange):
        stepped = domain.values()  # a step makes it a list, which the dashboard can offer as one
        if stepped is not None and len(stepped) <= MAX_DISCRETE:
            return hp.Discrete([float(f"{v:.12g}") for v in stepped])  # as trials record them (`engine.active_values`)
        return hp.RealInterval(float(domain.low), float(domain.high))
    raise TypeError(f"unknown domain {domain!r}")


def _description(param: Param) -> str:
    where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in param.path).replace(".[", "[")
    text = f"{param.description} Spec: {where}, {param.domain.kind} {param.domain.describe()}"
    if getattr(param.domain, "log", False):
        text += " (sampled on a log scale)"
    if param.condition:
        text += f"; only when {param.condition.describe()}"
    return text + "."


def experiment_config(params: list[Param], metric: str, max_epochs: int | None, brackets: int | None) -> summary_pb2.Summary:
    """The HParams experiment: every hyperparameter with its true domain, then the metrics, score first."""
    hparams = [hp.HParam(p.name, _domain(p), display_name=p.name, description=_description(p)) for p in params]
    if brackets is not None and max_epochs is not None:
        hparams += [
            hp.HParam("bracket", hp.IntInterval(0, max(0, brackets - 1)), description="Hyperband bracket (the most aggressive first)."),
            hp.HParam("round", hp.IntInterval(0, max(0, brackets - 1)), description="Hyperband round within the bracket; round > 0 is a promotion."),
            hp.HParam("epochs", hp.IntInterval(1, max_epochs), description="Cumulative epoch budget of this trial."),
            hp.HParam("parent_trial", None, description="The trial a promotion continues (weights and optimizer state)."),
        ]
    metrics = [hp.Metric("score", display_name=f"score ({metric})", description=f"The objective {metric} at the trial's best epoch: what the ranking uses.")]
    metrics += [hp.Metric(tag, display_name=name, description=text) for tag, name, text in SUMMARY_METRICS]
    summary = hp.hparams_config_pb(hparams, metrics)
    # TensorBoard's API types an hparam only from a domain, and a parent's trial id has none: typed as text here,
    # the dashboard filters and sorts it as the trial ids it holds.
    content = summary.value[0].metadata.plugin_data
    data = plugin_data_pb2.HParamsPluginData.FromString(content.content)
    for info in data.experiment.hparam_infos:
        if info.name == "parent_trial":
            info.type = api_pb2.DATA_TYPE_STRING
    content.content = data.SerializeToString()
    return summary


class HParamsLog:
    """Receives the tuner's events and writes them as TensorBoard runs under `log_dir`."""

    def __init__(self, log_dir: Path, params: list[Param], metric: str, *, max_epochs: int | None = None, brackets: int | None = None):
        self.dir = Path(log_dir)
        self.params, self.metric = params, metric
        self.max_epochs, self.brackets = max_epochs, brackets
        self._writer: EventWriter | None = None
        self._trial: TrialRecord | None = None

    def write_experiment(self) -> None:
        """Once per run: a resumed search finds the config already there and keeps it."""
        if any(self.dir.glob("events.out.tfevents.*")):
            return
        writer = EventWriter(str(self.dir))
        _add(writer, experiment_config(self.params, self.metric, self.max_epochs, self.brackets), step=0)
        writer.close()

    def trial_started(self, record: TrialRecord, epochs: int) -> None:
        run_dir = self.dir / record.trial_id
        shutil.rmtree(run_dir, ignore_errors=True)  # a trial interrupted earlier leaves no stale session
        self._writer = EventWriter(str(run_dir))
        self._trial = record
        _add(self._writer, self._session_start(record), step=0)
        for row in record.history:  # epochs trained before an interruption, so the session reads as one
            self.epoch_done(int(row["epoch"]), row)
        self._writer.flush()

    def epoch_done(self, epoch: int, row: dict[str, float]) -> None:
        if self._writer is None:
            return
        values = [summary_pb2.Summary.Value(tag=f"epoch_{k}", simple_value=float(v)) for k, v in row.items() if k != "epoch"]
        _add(self._writer, summary_pb2.Summary(value=values), step=epoch)
        self._writer.flush()

    def trial_finished(self, record: TrialRecord) -> None:
        if self._writer is None or self._trial is None or self._trial.trial_id != record.trial_id:
            self.trial_started(record, 0)
        assert self._writer is not None
        step = int(record.history[-1]["epoch"]) if record.history else 0
        summary = {"score": record.score, "epochs_trained": record.epochs_trained, "params": record.params, "wall_time_s": record.wall_time}
        summary.update({k: record.metrics.get(k) for k in ("val_loss", "val_accuracy", "loss", "accuracy")})
        values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in summary.items() if v is not None]
        _add(self._writer, summary_pb2.Summary(value=values), step=step)
        if record.status != "completed":
            _add(self._writer, text_summary.text_pb("status", f"{record.status}: {record.reason}"), step=step)
        status = api_pb2.STATUS_SUCCESS if record.status == "completed" else api_pb2.STATUS_FAILURE
        _add(self._writer, session_end(status), step=step)
        self._writer.close()
        self._writer, self._trial = None, None

    def infeasible(self, record: TrialRecord) -> None:
        """A configuration redrawn before training: a session that starts and fails at once."""
        self.trial_started(record, 0)
        self.trial_finished(record)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _session_start(self, record: TrialRecord) -> summary_pb2.Summary:
        values: dict[str, Any] = {k: v for k, v in record.values.items() if v is not None}
        if self.brackets is not None:
            hb = record.hyperband
            values.update({"bracket": hb.get("bracket"), "round": hb.get("round"), "epochs": hb.get("epochs"), "parent_trial": hb.get("trial_id") or ""})
            values = {k: v for k, v in values.items() if v is not None}
        return hp.hparams_pb(values, trial_id=record.trial_id, start_time_secs=int(time.time()))


class EventWriter:
    """An events file in `log_dir`, written with plain file I/O and TensorBoard's record framing."""

    _count = 0

    def __init__(self, log_dir: str):
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        EventWriter._count += 1
        name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}.{EventWriter._count}.tuning"
        self._file = open(Path(log_dir) / name, "wb")  # noqa: SIM115 - closed in close()
        self._records = RecordWriter(self._file)
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def add_event(self, event: event_pb2.Event) -> None:
        self._records.write(event.SerializeToString())

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()


def session_end(status: int) -> summary_pb2.Summary:
    """The session-end summary, built from TensorBoard's protos (its `session_end_pb` needs TensorFlow)."""
    data = plugin_data_pb2.HParamsPluginData(session_end_info=plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time()))
    summary = summary_pb2.Summary()
    summary.value.add(tag=metadata.SESSION_END_INFO_TAG, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR)
    return summary


def _add(writer: EventWriter, summary: summary_pb2.Summary, step: int) -> None:
    writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
