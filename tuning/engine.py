"""KerasTuner as the engine: the spec's space declared up front, and the hooks we change.

KerasTuner's split is kept: what to build (`SpecHyperModel`), how to search (`oracles`) and the loop
(`SpecTuner`), with a trial's Keras callbacks in `callbacks` and `resume_points`. What changes in KerasTuner,
and why (everything else is KerasTuner's own behaviour):
- the space is declared once from the YAML (`allow_new_entries=False`), not discovered by building
  models repeatedly (`_populate_initial_space`);
- a Hyperband promotion reloads its parent's optimizer state as well as its weights (KerasTuner loads
  the checkpoint before the optimizer has variables, so Adam's moments and step count are dropped);
- infeasible configurations are redrawn instead of taking a Hyperband slot, and recorded (`oracles`);
- no failure is retried (they are deterministic); NaN losses make a trial `diverged`; only runs of
  `failed` trials stop the search, after the limit in the spec;
- `seed: 0` is honoured (KerasTuner reads 0 as "no seed"); `max_trials` and `time_budget` stop cleanly, and a
  trial the time budget cut short runs again under its id when the budget is raised (`run_again`), continuing
  from its resume point (`resume_points`);
- a space smaller than a Hyperband bracket's first round is promoted from, not abandoned (KerasTuner stops
  the search when it cannot draw a new configuration), a small space is drawn to the last configuration
  (KerasTuner gives up after 20 repeated draws), and each trial carries its own bracket with several workers
  (`oracles`).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
import traceback
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
from keras_tuner.src.engine import conditions as kerastuner_conditions

from . import batches, feasibility
from .callbacks import EpochLog, NanGuard, SaveBestEpoch, SeedEachEpoch, StopFlag
from .data import network_shape
from .errors import SearchAborted
from .hypermodel import build_model, compile_model, prepare_for_training
from .model_pool import ModelPool, network_key
from .oracles import declare, save_state
from .records import TrialRecord, utc_now
from .resume_points import ResumePoint, clear_resume_point, cut_by_the_budget, read_resume_point
from .runtime import clear_session, restore_random_state, seed_trial
from .space import parameters, resolve

# KerasTuner 1.4's `Parent.to_proto` prints its first value (a debug line left in): each trial of a conditional
# space sent between the chief and its workers wrote a stray "3" to stdout. That module's `print` goes nowhere.
kerastuner_conditions.print = lambda *args, **kwargs: None  # type: ignore[attr-defined]


def active_values(hp: kt.HyperParameters) -> dict[str, Any]:
    """The trial's own hyperparameter values, without KerasTuner's `tuner/*` bookkeeping. Floats are kept to 12
    significant digits: KerasTuner draws a stepped range's values as low + k * step (0.30000000000000004)."""
    return {k: float(f"{v:.12g}") if isinstance(v, float) else v for k, v in hp.values.items() if not k.startswith("tuner/")}


class SpecHyperModel(kt.HyperModel):
    """Builds the spec's CNN for a trial; reads only hyperparameters the spec declared."""

    def __init__(self, spec: Any, input_shape: tuple[int, int, int], num_classes: int, value_max: float):
        super().__init__(name="tuning")
        self.spec = spec
        self.params = parameters(spec)
        self.input_shape = input_shape
        self.num_classes = num_classes
        self.value_max = value_max
        self.compile_options: dict[str, Any] = {}  # `runtime.compile_options`: from the spec and the machine

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        declare(hp, self.params)

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        config = resolve(self.spec, active_values(hp))
        return compile_model(self.network(config), config, **self.compile_options)

    def build_to_save(self, hp: kt.HyperParameters) -> keras.Model:
        """`build`, but one step per call, as Keras compiles by default: a saved model then trains on every
        backend (PyTorch's allows no other)."""
        config = resolve(self.spec, active_values(hp))
        return compile_model(self.network(config), config, **{**self.compile_options, "steps_per_execution": 1})

    def network(self, config: Any) -> keras.Model:
        """The uncompiled model for a resolved `TrialConfig`."""
        image_size = tuple(self.spec.data.image_size) if self.spec.data.image_size else None
        return build_model(config, self.input_shape, self.num_classes, value_max=self.value_max, image_size=image_size)  # type: ignore[arg-type]


def trial_seed(run_seed: int, trial_id: str) -> int:
    """A distinct, reproducible seed per trial, derived from the run's seed."""
    return (run_seed * 1_000_003 + int(trial_id) * 7_919 + 17) % (2**31 - 1)


def _quiet_kerastuner_failures() -> None:
    """KerasTuner prints every failed trial's traceback to stderr (its `config.DEBUG` is on by default); the
    trial's record keeps it (`trials/<id>.json`) and the progress line names the failure instead."""
    with contextlib.suppress(ImportError, AttributeError):
        from keras_tuner.src import config as kerastuner_config

        kerastuner_config.DEBUG = False


class SpecTuner(kt.Tuner):
    """Runs one trial at a time for any oracle; see the module docstring for what differs from KerasTuner."""

    def __init__(self, *, spec: Any, oracle: kt.Oracle, hypermodel: SpecHyperModel, directory: str, events: Any, store: Any, overwrite: bool = False):
        self.spec = spec
        self.events = events
        self.store = store
        self.deadline: float | None = None
        self.stop = StopFlag()
        self.trials_per_process: int | None = None  # a worker exits (to be replaced by a fresh process) after this many
        self.trials_done = 0
        self._consecutive_failures = 0
        self._last_record: TrialRecord | None = None
        self.models = ModelPool()
        self._validation: tuple[Any, dict[str, Any]] | None = None  # (the images it was built for, fit's keywords)
        self._training: tuple[Any, tuple[Any, Any]] | None = None  # (the data given, as `fit_data` takes it)
        _quiet_kerastuner_failures()
        with contextlib.redirect_stdout(io.StringIO()):  # KerasTuner prints "Reloading Tuner from ..."; we say it our way
            super().__init__(oracle=oracle, hypermodel=hypermodel, directory=directory, project_name="kerastuner", overwrite=overwrite)
        # KerasTuner reloads the oracle only with this tuner's own state file, which a search that served
        # workers (and never ran a trial itself) does not have: without this it would start over.
        if not overwrite and not self._is_worker() and not os.path.exists(self._get_tuner_fname()) and os.path.exists(oracle._get_oracle_fname()):
            oracle.reload()

    def save(self) -> None:
        if not self._is_worker():
            self.oracle.save()
        save_state(self._get_tuner_fname(), self.get_state())  # whole or not at all, as the oracle's

    def _populate_initial_space(self) -> None:
        # The YAML declares the whole space, conditions included: no discovery builds needed.
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    def pre_create_trial(self) -> None:
        self.stop.check()
        if self.trials_per_process is not None and self.trials_done >= self.trials_per_process:
            raise ProcessRecycle(self.trials_done)

    def _try_build(self, hp: kt.HyperParameters) -> keras.Model:
        """The trial's model: a pooled one of the same network when there is one (see `model_pool`), else new."""
        if self.spec.training.reuse_models:
            config = resolve(self.spec, active_values(hp))
            key = network_key(config)
            if key in self.models:
                model = self.models.take(key, self.hypermodel.network(config), config.learning_rate)
                if model is not None:
                    return self._load_parent(model, hp)
        # KerasTuner runs clear_session() (which already garbage-collects) and then gc.collect() again;
        # with TensorFlow's large object graphs each collection costs about half a second per trial. One
        # collection, over what the search froze out of the collector's sight (`long_lived_objects_frozen`).
        clear_session(keep_instantiated=self.spec.training.reuse_models)
        return self._build_hypermodel(hp)

    def _build_hypermodel(self, hp: kt.HyperParameters) -> keras.Model:
        model = self.hypermodel.build(hp)
        prepare_for_training(model, self.hypermodel.input_shape, self.hypermodel.num_classes)
        self.models.remember_start(model)
        return self._load_parent(model, hp)

    def _load_parent(self, model: keras.Model, hp: kt.HyperParameters) -> keras.Model:
        parent = hp.values.get("tuner/trial_id")
        if parent is not None:
            model.load_weights(self._get_checkpoint_fname(parent))
        return model

    def load_trained(self, trial_id: str) -> keras.Model:
        """The model of a finished trial at its best epoch, optimizer state included."""
        hp = self.oracle.get_trial(trial_id).hyperparameters
        model = self.hypermodel.build_to_save(hp)
        prepare_for_training(model, self.hypermodel.input_shape, self.hypermodel.num_classes)
        model.load_weights(self._get_checkpoint_fname(trial_id))
        return model

    def _finished_before_a_kill(self, trial_id: str, values: dict[str, Any], hyperband: dict[str, Any]) -> TrialRecord | None:
        """A trial queued again on resume whose record says it completed: killed after its record was written but
        before KerasTuner's oracle heard of it. Its result stands; it is not trained again."""
        path = self.store.trials_dir / f"{trial_id}.json"
        try:
            record = TrialRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError):
            return None
        same = record.values == values and record.hyperband == hyperband
        return record if same and record.status == "completed" and Path(self._get_checkpoint_fname(trial_id)).exists() else None

    def run_trial(
        self,
        trial: kt.engine.trial.Trial,
        *,
        train: tuple[np.ndarray, np.ndarray],
        validation: tuple[np.ndarray, np.ndarray],
        class_weight: dict[int, float] | None = None,
    ) -> Any:
        hp = trial.hyperparameters
        values = active_values(hp)
        hyperband = {k[6:]: v for k, v in hp.values.items() if k.startswith("tuner/")}
        seed = self._seed(trial.trial_id)
        folder = Path(self.get_trial_dir(trial.trial_id))
        resume = read_resume_point(folder, trial.trial_id)
        finished = self._finished_before_a_kill(trial.trial_id, values, hyperband)
        if finished is not None and not (finished.stopped_by_budget and resume is not None):  # a cut trial continues
            return finished.metrics
        record = TrialRecord(trial_id=trial.trial_id, values=values, hyperband=hyperband, seed=seed, started_at=utc_now())
        start = time.perf_counter()
        epochs = int(hyperband.get("epochs", self.spec.search.max_epochs))
        initial_epoch = int(hyperband.get("initial_epoch", 0))
        log = EpochLog(self.events.epoch_done, self.deadline, self.stop)
        if resume is not None:
            log.epochs = record.history = list(resume["history"])
            record.resumed_from_epoch = int(resume["epoch"])
        self.events.trial_started(record, epochs - (int(resume["epoch"]) if resume else initial_epoch))
        try:
            config = resolve(self.spec, values)
            hm = self.hypermodel
            reason = feasibility.check(config, network_shape(self.spec.data.image_size, hm.input_shape), hm.num_classes, self.spec.search.max_params)
            if reason:
                raise _TrialOutcome("oversized" if "max_params" in reason else "infeasible", reason)
            batch_size = int(resume.get("batch_size", config.batch_size)) if resume else config.batch_size
            while True:
                try:
                    self._fit(hp, record, train, validation, class_weight, log, folder, resume, batch_size, epochs, initial_epoch, seed)
                    break
                except Exception as exc:  # noqa: BLE001 - only memory exhaustion is retried, once, at half the batch
                    if not (_is_out_of_memory(exc) and self.spec.search.halve_batch_on_oom and batch_size == config.batch_size and batch_size > 1):
                        raise
                    self.models.clear()
                    clear_session()
                    batch_size, resume = batch_size // 2, None
                    log.epochs = []
                    record.reason = f"out of memory at batch size {config.batch_size}; retried at {batch_size}"
            record.batch_size = batch_size
            record.history = log.epochs
            losses = [row.get("loss", math.nan) for row in log.epochs]
            if not losses or not all(math.isfinite(v) for v in losses):
                bad = next((row["epoch"] for row in log.epochs if not math.isfinite(row.get("loss", math.nan))), initial_epoch + 1)
                raise _TrialOutcome("diverged", f"training loss became NaN or infinite in epoch {bad}")
            record.finish_completed(self.spec.search.objective, budget_hit=log.budget_hit)
            if log.budget_hit:
                cut = f"stopped by search.time_budget after epoch {log.epochs[-1]['epoch']} of {epochs}: raise it and run the same command to finish the trial"
                record.reason = f"{record.reason}; {cut}" if record.reason else cut
            return dict(record.metrics)  # the best epoch of the whole trial, resumed part included
        except _TrialOutcome as outcome:
            record.history = log.epochs
            record.status, record.reason = outcome.status, outcome.reason
            raise kt.errors.FailedTrialError(f"{outcome.status}: {outcome.reason}") from None
        except Exception as exc:  # noqa: BLE001 - any other error fails this trial only
            record.history = log.epochs
            record.status = "out_of_memory" if _is_out_of_memory(exc) else "failed"
            retried = f"{record.reason}, which failed too: " if record.reason.startswith("out of memory at batch size") else ""
            record.reason = f"{retried}{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            record.traceback = traceback.format_exc(limit=-8)
            raise kt.errors.FailedTrialError(f"failed: {record.reason}") from None
        finally:
            record.wall_time = time.perf_counter() - start
            record.finished_at = utc_now()
            record.rss_mb = resident_memory_mb()
            if record.status != "running":
                # TensorBoard's session end first: a kill between the two leaves a trial that runs again (and
                # logs a fresh session), never a finished trial whose session never ends.
                self.events.trial_finished(record)
                self.store.write_trial(record)
                if not record.stopped_by_budget:  # one the budget cut short continues from it when the budget is raised
                    clear_resume_point(folder)
                self._last_record = record

    def _seed(self, trial_id: str) -> int:
        """The trial's seed: `search.trial_seed` where the spec gives one (a one-trial run replaying an exported
        trial), else one derived from the run's seed and the trial's id."""
        given = self.spec.search.trial_seed
        return given if given is not None else trial_seed(self.spec.search.seed, trial_id)

    def _fit(
        self,
        hp: kt.HyperParameters,
        record: TrialRecord,
        train: tuple[Any, np.ndarray],
        validation: tuple[Any, np.ndarray],
        class_weight: dict[int, float] | None,
        log: EpochLog,
        folder: Path,
        resume: dict[str, Any] | None,
        batch_size: int,
        epochs: int,
        initial_epoch: int,
        seed: int,
    ) -> None:
        """Build the trial's model (continuing a saved epoch if there is one) and train it to `epochs`.

        Seeded alike whether it resumes or not, and every epoch's data order and random draws come from the
        seed and the epoch alone (or the resume point's random state), so resumed epochs train as they would
        have without the interruption."""
        seed_trial(seed)
        model = self._try_build(hp)
        record.params = int(model.count_params())
        if resume is not None:
            model.load_weights(folder / resume["weights"])
            restore_random_state(model, resume.get("random_state"))
            initial_epoch = int(resume["epoch"])
            if resume["stopped"] or initial_epoch >= epochs:
                self._pool(model, hp)
                return
        callbacks = self._callbacks(record.trial_id, log, folder, resume, batch_size, seed)
        model.fit(
            **batches.fit_data(*self._training_data(train), batch_size, seed=seed, callbacks=callbacks),
            **self._validation_data(validation),
            epochs=epochs,
            initial_epoch=initial_epoch,
            class_weight=class_weight,
            verbose=0,
        )
        self._pool(model, hp)  # not reached when training raised: that model's state is not trusted

    def _training_data(self, train: tuple[Any, np.ndarray]) -> tuple[Any, Any]:
        """The same training data for every trial, converted for the backend once (see `batches`)."""
        if self._training is None or self._training[0][0] is not train[0] or self._training[0][1] is not train[1]:
            self._training = (train, batches.training_arrays(*train))
        return self._training[1]

    def _validation_data(self, validation: tuple[Any, np.ndarray]) -> dict[str, Any]:
        """The same held-out data for every trial, so its input pipeline is built once (see `batches`)."""
        if self._validation is None or self._validation[0] is not validation[0]:
            self._validation = (validation[0], batches.validation_data(*validation))
        return self._validation[1]

    def _pool(self, model: keras.Model, hp: kt.HyperParameters) -> None:
        if self.spec.training.reuse_models:
            self.models.give(network_key(resolve(self.spec, active_values(hp))), model)

    def _callbacks(
        self, trial_id: str, log: EpochLog, folder: Path, resume: dict[str, Any] | None, batch_size: int, seed: int
    ) -> list[keras.callbacks.Callback]:
        training, objective = self.spec.training, self.spec.search.objective
        callbacks: list[keras.callbacks.Callback] = [NanGuard()]
        if training.early_stopping:
            es = training.early_stopping
            callbacks.append(keras.callbacks.EarlyStopping(monitor=es.monitor, patience=es.patience, min_delta=es.min_delta, mode="auto"))
        if training.reduce_lr_on_plateau:
            rp = training.reduce_lr_on_plateau
            callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=rp.monitor, factor=rp.factor, patience=rp.patience, min_lr=rp.min_lr, verbose=0))
        save_best = SaveBestEpoch(objective.metric, objective.direction, self._get_checkpoint_fname(trial_id))
        stateful = [*callbacks[1:], save_best]
        if keras.backend.backend() in ("torch", "jax"):
            callbacks.append(SeedEachEpoch(seed))
        callbacks.append(log)
        callbacks.append(save_best)
        every = self.spec.search.resume_every
        callbacks.append(ResumePoint(folder, trial_id, log, save_best, stateful, resume, batch_size, every))  # last: sees every callback's state
        return callbacks

    def prune_checkpoints(self, final: bool = False) -> list[str]:
        """Delete the weights of trials that Hyperband can no longer promote and that are not among the best
        `search.keep_checkpoints`; returns the trial ids whose weights were deleted. A failed promotion's parent
        keeps its weights: `--retry-failed` runs that promotion again from them; so does a trial the time budget
        cut short, which continues when the budget is raised."""
        from .results import rank

        records = self.store.read_trials()
        ranked = [r for r in rank(records, self.spec.search.objective.direction) if r.status == "completed"]
        keep = {r.trial_id for r in ranked[: self.spec.search.keep_checkpoints]}
        keep |= {r.parent for r in records if r.parent is not None and r.status in ("failed", "out_of_memory")}
        keep |= set(cut_by_the_budget(self.store))  # they continue from their best epoch's weights too
        deleted = []
        for trial_id in self.oracle.trials_without_a_future(keep, final):
            path = Path(self._get_checkpoint_fname(trial_id))
            if path.exists():
                path.unlink()
                deleted.append(trial_id)
        return deleted

    def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
        super().on_trial_end(trial)
        record, self._last_record = self._last_record, None
        if record is None:
            return
        if not self._is_worker():  # with workers, the search process prunes (it holds the oracle)
            self.prune_checkpoints()
        self.trials_done += 1
        if record.status == "completed":
            self._consecutive_failures = 0
        elif record.status == "failed":
            self._consecutive_failures += 1
            limit = self.spec.search.max_consecutive_failures
            if self._consecutive_failures >= limit:
                raise SearchAborted(
                    f"stopped after {limit} consecutive failed trials (search.max_consecutive_failures); the last one, "
                    f"trial {record.trial_id}, failed with {record.reason}. Finished trials are kept; fix the cause and run "
                    f"the same command again to continue, or raise search.max_consecutive_failures."
                )


def resident_memory_mb() -> float | None:
    """This process's resident memory now (Linux), to show whether it grows from trial to trial."""
    try:
        with open("/proc/self/statm") as handle:
            return round(int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


def _is_out_of_memory(exc: BaseException) -> bool:
    """Memory exhaustion on any backend: TensorFlow's ResourceExhaustedError, XLA/JAX and CUDA messages."""
    text = f"{type(exc).__name__} {exc}"
    return isinstance(exc, MemoryError) or any(s in text for s in ("ResourceExhausted", "RESOURCE_EXHAUSTED", "out of memory", "OutOfMemory"))


class ProcessRecycle(Exception):
    """A worker has run its share of trials; the search process starts a fresh one in its place."""


class _TrialOutcome(Exception):
    """A trial that ends without a usable score, for a known reason (never retried)."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason
