"""Run a search: spec -> plan -> data (once) -> KerasTuner -> records -> tables and best model.

Running the same search again resumes it (finished trials are never retrained); a changed spec is
refused unless the caller asks to overwrite or picks a new name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import shutil
import signal
import sys
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import feasibility
from .data import load_data, network_shape
from .errors import DataError, Problem, RunError, SearchAborted, SpecError, TuningError
from .planner import Plan, require_feasible
from .planner import plan as make_plan
from .records import RunStore, utc_now, write_atomic
from .runtime import (
    Accelerator,
    compile_options,
    dtype_policy,
    long_lived_objects_frozen,
    precision_policy,
    prepare_devices,
    quiet_logs,
    saving_without_tensorflow,
    versions,
)
from .space import parameters as the_params
from .space import resolve
from .spec import MAX_NAME, RUN_NAME, SearchSpec, load_spec, wrong_direction

DEFAULT_OUT = "reports"


def run_directory(spec: SearchSpec, name: str | None, out: str | Path | None) -> Path:
    """`out/name`, refusing names that could write outside `out` (no separators, no `..`)."""
    from_file = not name and not spec.name and spec.file
    name = name or spec.name or (Path(spec.file).stem if spec.file else "search")
    if not RUN_NAME.match(name) or name in (".", ".."):
        rule = "use letters, digits, '_', '.' or '-' (no '/' or '..'), at most 64 characters"
        if from_file:
            suggestion = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-")[:MAX_NAME] or "search"
            raise RunError(
                f"run name {name!r} (from the file name {Path(str(spec.file)).name!r}) is not allowed: {rule}; pass --name {suggestion} or set name: in the spec"
            )
        raise RunError(f"run name {name!r} is not allowed: {rule}")
    return Path(out or DEFAULT_OUT) / name


def search(
    spec: str | Path | Mapping[str, Any] | SearchSpec,
    *,
    name: str | None = None,
    out: str | Path | None = None,
    data: Sequence[np.ndarray] | None = None,
    class_names: Sequence[str] | None = None,
    overwrite: bool = False,
    retry_failed: bool = False,
    extend: int = 0,
    workers: int = 0,
    gpus: Sequence[str] | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    trials_per_process: int | None = None,
    progress: bool | None = None,
    quiet: bool = False,
) -> Any:
    """Run (or resume) a search and return its `Run`.

    Args:
        spec: a YAML path, a mapping, or a spec from `load_spec`.
        name: the run's name (default: the spec's `name`, else the file's stem); results go to `out/name`.
        out: the output root (default `reports/`).
        data: `(x_train, y_train)` or `(x_train, y_train, x_test, y_test)` numpy arrays replacing the spec's data.
        class_names: names of the classes of `data`, in label order (default "0", "1", ...).
        overwrite: start over, deleting an existing run of that name.
        retry_failed: when resuming, run the `failed` and `out_of_memory` trials again (same values, same ids).
        extend: add this many Hyperband iterations (with `algorithm: hyperband`) or this many trials (random,
            Bayesian, grid) to an existing (usually finished) search.
        workers: run trials in this many worker processes (0: in this process). This process serves the
            oracle on `host:port`; more workers can join from other machines with `tuning worker`.
        gpus: GPU indices handed to workers round-robin (default: every GPU `nvidia-smi` lists; none: CPU).
        host, port: where the oracle listens (default 127.0.0.1 and a free port). Unauthenticated: trusted networks only.
        trials_per_process: replace each worker by a fresh process after this many trials (1: every trial in its own
            process), for stacks that leak memory; implies one worker if `workers` is 0.
        progress: force the live progress view on or off (default: on in a terminal or notebook).
        quiet: print nothing while searching.

    Example:
        >>> run = tuning.search("search_spaces/digits.yaml", name="digits")
        >>> run.trials[["rank", "trial_id", "score"]].head()
    """

    spec = load_spec(spec)
    run_dir = run_directory(spec, name, out)
    store = RunStore(run_dir)
    if store.dir.exists() and (store.dir / ".lock").exists():
        store.lock()  # refuse before touching anything if another search holds it
        store.unlock()
    if extend < 0:
        raise RunError(f"--extend takes a positive number of Hyperband iterations (or trials, for other algorithms) to add, not {extend}")
    if trials_per_process is not None and trials_per_process < 1:
        raise RunError(f"--trials-per-process takes a positive number, not {trials_per_process}")
    if trials_per_process and not workers:
        workers = 1
    if workers < 0:
        raise RunError(f"--workers takes a number of worker processes (0 runs trials in this process), not {workers}")
    if workers and data is not None:
        raise RunError("worker processes load the data from the spec; arrays passed as `data=` need workers=0")
    if extend and overwrite:
        raise RunError(f"--extend adds to the search in {store.dir}, which --overwrite would delete first; use one of them")
    if extend and not store.exists():
        raise RunError(f"--extend adds to an existing search, and {store.dir} has none; run the search first")
    if extend and spec.search.trial_seed is not None:
        raise RunError(
            f"--extend adds trials, but search.trial_seed seeds the one trial of {store.dir} (a run of an exported best_config.yaml); run a search instead"
        )
    if data is not None and not isinstance(data, (tuple, list)):
        raise DataError(f"data: expected a tuple of numpy arrays, (x_train, y_train) or (x_train, y_train, x_test, y_test); received a {type(data).__name__}")
    iterations, extended_trials, unextended = spec.search.iterations, 0, None
    if store.exists() and not overwrite:
        before = store.read_manifest()
        iterations = max(iterations, int(before.get("iterations", iterations)))
        extended_trials = int(before.get("extended_trials", 0))
        unextended = (
            make_plan(with_iterations(with_max_trials(spec, _run_max_trials(spec, extended_trials)), iterations), data=data, class_names=class_names)
            if extend
            else None
        )
        if spec.search.algorithm == "hyperband":
            iterations += extend
        elif extend and spec.search.max_trials is None and spec.search.algorithm == "grid":
            raise RunError(
                f"--extend adds trials to search.max_trials, which this grid search does not set: it runs every configuration of its space already ({store.dir})"
            )
        elif extend:
            extended_trials += extend
    spec = with_max_trials(spec, _run_max_trials(spec, extended_trials))
    the_plan = make_plan(with_iterations(spec, iterations), data=data, class_names=class_names)
    if unextended is not None and the_plan.up_to(spec.search.max_trials)[0] == unextended.up_to(spec.search.max_trials)[0]:
        why = (
            f"search.max_trials ({spec.search.max_trials}) stops the run before them: raise it"
            if the_plan.total_trials > unextended.total_trials
            else "the space has no configuration left to draw (see `tuning validate`)"
        )
        print(f"warning: --extend {extend} adds no trials: {why}", file=sys.stderr)
    require_feasible(spec, the_plan)

    resumed = _prepare_directory(store, spec, overwrite)
    store.lock()
    try:
        parallel = {"workers": workers, "gpus": gpus, "host": host, "port": port, "trials_per_process": trials_per_process}
        quiet_logs()
        accelerator = prepare_devices()
        with dtype_policy(precision_policy(spec.training.mixed_precision, accelerator)):
            return _search_locked(
                accelerator, spec, store, the_plan, resumed, data, class_names, progress, quiet, retry_failed, (iterations, extended_trials), parallel
            )
    finally:
        store.unlock()


def _warn_of_another_backend(previous: dict[str, Any]) -> None:
    """A run continued on another Keras backend: its checkpoints load there, but the same trial scores differently on
    each (other kernels, other random streams), so trials from before and after are not strictly comparable."""
    from .runtime import backend

    earlier = previous.get("backend")
    if earlier and earlier != backend():
        print(
            f"warning: this run trained on {earlier} before and goes on with {backend()} (KERAS_BACKEND): the same trial scores "
            f"differently on each, so trials from before and after are not strictly comparable (each session's backend is in "
            f"run.json, session_log); set KERAS_BACKEND={earlier} to continue as it began",
            file=sys.stderr,
        )


def _data_changes(before: dict[str, Any], now: dict[str, Any]) -> dict[str, str]:
    """What differs between the data a resumed run started with and what loads now (images added to a folder,
    a different subset), key -> "old -> new": the spec is the same, so nothing else would tell."""
    keys = ("classes", "image_shape", "train", "validation", "test")
    return {key: f"{key} {before[key]} -> {now.get(key)}" for key in keys if key in before and before[key] != now.get(key)}


def _with_earlier_class_names(dataset: Any, earlier: list[str] | None) -> Any:
    """A run begun before whole-number labels were named as integers keeps its class names (`2.0`), which its
    trials' models and the reports use; they name the same classes."""
    from .manifests import whole_number_name

    if not earlier or list(dataset.class_names) == earlier or [whole_number_name(name) for name in earlier] != list(dataset.class_names):
        return dataset
    return dataclasses.replace(dataset, class_names=tuple(earlier))


def _run_max_trials(spec: SearchSpec, extended: int) -> int | None:
    """A run's trial limit: the spec's `search.max_trials` (random and Bayesian default to 10 trials, a grid to
    all of it), plus the trials `--extend` added to it in earlier sessions and this one. Like `time_budget`, it
    limits the whole run and may be changed in the spec when the run resumes."""
    limit = spec.search.max_trials
    if not extended:
        return limit  # the spec's own (None: the algorithm's default), as written
    if limit is None and spec.search.algorithm in ("random", "bayesian"):
        limit = 10
    return limit + extended if limit is not None else None


def with_max_trials(spec: SearchSpec, max_trials: int | None) -> SearchSpec:
    """The spec with the run's trial limit (`_run_max_trials`); its file and text are kept."""
    if max_trials == spec.search.max_trials:
        return spec
    return spec.model_copy(update={"search": spec.search.model_copy(update={"max_trials": max_trials})})


def with_iterations(spec: SearchSpec, iterations: int) -> SearchSpec:
    """The spec with another Hyperband iteration count (for `--extend`); its file and text are kept."""
    if iterations == spec.search.iterations:
        return spec
    return spec.model_copy(update={"search": spec.search.model_copy(update={"iterations": iterations})})


def _search_locked(
    accelerator: Accelerator,
    spec: SearchSpec,
    store: RunStore,
    the_plan: Plan,
    resumed: bool,
    data: Any,
    class_names: Any,
    progress: bool | None,
    quiet: bool,
    retry_failed: bool,
    extensions: tuple[int, int],
    parallel: dict[str, Any],
) -> Any:
    """The search itself, run while this process holds the run directory's lock, in the chosen precision.
    `extensions`: the run's Hyperband iterations and the trials `--extend` added to `max_trials`, all sessions'."""
    from .run import Run

    iterations, extended_trials = extensions

    run_dir = store.dir
    options = compile_options(spec, accelerator)  # first: a setting this backend refuses fails before the data loads
    dataset = load_data(spec.data, spec.base_dir, seed=spec.search.seed, arrays=data, class_names=class_names)

    from .engine import SpecHyperModel, SpecTuner, cut_by_the_budget, make_oracle

    previous = store.read_manifest() if resumed else {}
    dataset = _with_earlier_class_names(dataset, (previous.get("data") or {}).get("classes"))
    changed = _data_changes(previous.get("data") or {}, dataset.summary())
    if changed.keys() & {"classes", "image_shape"}:
        raise DataError(
            f"{run_dir}: the data are not those this run started with ({'; '.join(changed.values())}); its trials' weights do not fit "
            "them. Pass --overwrite to start over, or --name NEW to keep both"
        )
    if changed:
        print(
            f"warning: the data are not those this run started with ({'; '.join(changed.values())}): trials from before and after this "
            "point trained on different images (noted in run.json, data_changes); pass --overwrite (or a new --name) to compare like with like",
            file=sys.stderr,
        )
        previous = {**previous, "best": None}  # its test metrics were measured on the old test images: evaluate the best again
    _warn_of_another_backend(previous)
    elapsed_before = float(previous.get("elapsed_s", 0.0))
    manifest = _manifest(spec, run_dir.name, the_plan, dataset, accelerator.describe(), previous)
    if changed or previous.get("data_changes"):
        manifest["data_changes"] = [*previous.get("data_changes", []), *([{"at": utc_now(), "changes": list(changed.values())}] if changed else [])]
    manifest["iterations"] = iterations
    manifest["extended_trials"] = extended_trials
    manifest["precision"] = precision_policy(spec.training.mixed_precision, accelerator)
    manifest.update(options)
    manifest["compile_cache"] = accelerator.compile_cache
    store.write_manifest(manifest)
    if not (run_dir / "spec.yaml").exists():
        write_atomic(run_dir / "spec.yaml", spec.text)

    model_shape = network_shape(spec.data.image_size, dataset.input_shape)
    hypermodel = SpecHyperModel(spec, dataset.input_shape, dataset.num_classes, dataset.value_max)
    hypermodel.compile_options = options
    oracle = make_oracle(spec, list(the_plan.params))
    from .hparams import HParamsLog

    brackets = brackets_of(spec, the_plan)
    board_log = HParamsLog(run_dir / "logs", list(the_plan.params), spec.search.objective.metric, max_epochs=spec.search.max_epochs, brackets=brackets)
    board_log.write_experiment()
    budget = spec.search.time_budget_seconds
    # Trials the time budget cut short continue from where it stopped them once it has time left (raised, or removed).
    cut = cut_by_the_budget(store) if budget is None or elapsed_before < budget else []
    view = _progress(spec, the_plan, store, progress, quiet, dataset.summary(), retry_failed, cut)
    started = time.time()
    clock = _ElapsedTime(store, elapsed_before, started)
    events = Events(view, board_log, clock)
    tuner = SpecTuner(spec=spec, oracle=oracle, hypermodel=hypermodel, directory=str(run_dir), events=events, store=store)
    oracle.verbose = oracle._display.verbose = 0  # KerasTuner's printing is replaced by ours (and its display
    # state is saved before it learns of a new trial, so a restarted chief would fail to print that trial's end)
    if spec.search.algorithm == "hyperband":
        oracle.hyperband_iterations = iterations  # reloaded from oracle.json; --extend raises it
    oracle.run_again(cut)
    if cut and not quiet:
        print(f"resuming: the trials search.time_budget cut short continue from their last epoch: {', '.join(cut)}", flush=True)
    if retry_failed:
        again = [r.trial_id for r in store.read_trials() if r.status in ("failed", "out_of_memory") and r.trial_id in oracle.trials]
        oracle._retry_queue.extend(t for t in again if t not in oracle._retry_queue)  # KerasTuner runs these first
    oracle.is_feasible = lambda values: feasibility.check(resolve(spec, values), model_shape, dataset.num_classes, spec.search.max_params)
    recorded = {_values_key(r.values) for r in store.read_trials() if r.status in ("infeasible", "oversized")}
    oracle.on_infeasible = lambda values, reason: _record_infeasible(store, board_log, values, reason, recorded)
    if budget is not None and elapsed_before >= budget:
        print(
            f"warning: search.time_budget ({spec.search.time_budget}) is used up: this run has searched for {elapsed_before:.0f} s, so nothing more "
            "is trained; raise search.time_budget in the spec (the run resumes with it) to go on",
            file=sys.stderr,
        )
    if budget is not None:
        tuner.deadline = oracle.deadline = started + max(0.0, budget - elapsed_before)
        store.update_manifest(deadline=tuner.deadline)  # for worker processes

    one_hot = np.eye(dataset.num_classes, dtype="float32")
    status, stop_reason, error = "finished", None, None
    try:
        with _graceful_stop(tuner.stop, quiet), long_lived_objects_frozen():
            weights = dataset.class_weights() if spec.data.class_weight == "balanced" else None
            if parallel["workers"] and budget is not None and elapsed_before >= budget:
                oracle.stop_reason = "time budget reached"  # as the oracle would tell each worker, without starting them
            elif parallel["workers"]:
                _serve_workers(tuner, store, Events(view, clock), parallel, quiet)
            else:
                tuner.search(train=(dataset.x_train, one_hot[dataset.y_train]), validation=(dataset.x_val, one_hot[dataset.y_val]), class_weight=weights)
        stop_reason = oracle.stop_reason or _stop_reason(spec, the_plan, store)
        # Once the search is over no trial will be promoted, so their weights can go, unless a failed trial may be
        # run again (`--retry-failed`): its round then fills, and promotes from the trials beside it.
        retryable = any(r.status in ("failed", "out_of_memory") for r in store.read_trials())
        # Nor when time_budget or max_trials stopped it: raised, the run goes on, and Hyperband promotes from its rounds.
        limited = oracle.stop_reason is not None or stop_reason.startswith("max_trials")
        tuner.prune_checkpoints(final=not retryable and not limited)
    except SearchAborted as exc:
        status, stop_reason, error = "aborted", str(exc), exc
    except KeyboardInterrupt:
        status, stop_reason = "interrupted", "interrupted by the user"
        raise
    finally:
        events.close()
        elapsed = elapsed_before + time.time() - started
        # The status goes in last: a process killed while it writes the results (kill -9, a power cut) leaves
        # a run that still says "running", which the same command resumes and finishes, never a "finished" run
        # without its tables, best model or reports.
        store.update_manifest(stop_reason=stop_reason, elapsed_s=round(elapsed, 3))
        # A Ctrl-C already pressed (to stop after the epoch, or twice) made the next one "stop now": it stays so.
        writing = types.SimpleNamespace(requested=status == "interrupted" or bool(tuner.stop.requested))
        try:
            with _graceful_stop(writing, quiet, "writing the results first (Ctrl-C again to stop now; the same command writes them later)"):
                _finish(store, spec, tuner, dataset, status)
        except KeyboardInterrupt:
            unwritten = "interrupted while writing the results: run the same command again to write them"
            if status == "finished":  # a finished search without its results would say the opposite of what is on disk
                store.update_manifest(status="interrupted", stop_reason=unwritten)
            else:
                store.update_manifest(status=status, stop_reason=f"{stop_reason}; then {unwritten}")
            raise
        except Exception as exc:  # a full disk, say: the run must not go on saying "running"
            unwritten = f"the results could not be written ({type(exc).__name__}: {exc}): run the same command again to write them"
            store.update_manifest(
                status="interrupted" if status == "finished" else status, stop_reason=f"{stop_reason or 'the search ended'}; then {unwritten}"
            )
            raise
        store.update_manifest(status=status)
    if error is not None:
        raise error
    return Run(run_dir)


def _record_infeasible(store: RunStore, board_log: Any, values: dict[str, Any], reason: str, recorded: set[str]) -> None:
    """One record per configuration that cannot be built, however often it is drawn again (a space of mostly
    unbuildable configurations redraws them hundreds of times once its buildable ones are used up)."""
    key = _values_key(values)
    if key in recorded:
        return
    recorded.add(key)
    record = store.infeasible_record(values, reason)
    board_log.infeasible(record)  # its TensorBoard session first, as for trials: no record without one after a kill
    store.write_trial(record)


def _values_key(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, default=str)


def brackets_of(spec: SearchSpec, the_plan: Plan | None = None) -> int | None:
    """Hyperband's bracket count (an HParams field), None for other algorithms; from `the_plan` when it is made."""
    if spec.search.algorithm != "hyperband":
        return None
    return 1 + max((r.bracket for r in (the_plan or make_plan(spec)).rounds), default=0)


def _serve_workers(tuner: Any, store: RunStore, view: Any, parallel: dict[str, Any], quiet: bool) -> None:
    """Trials run in worker processes; this process serves the oracle, shows progress and prunes checkpoints."""
    from .workers import Chief

    def on_record(record: Any) -> None:
        tuner.prune_checkpoints()
        hb = record.hyperband
        view.trial_started(record, int(hb.get("epochs", record.epochs_trained)) - int(hb.get("initial_epoch", 0)))
        view.trial_finished(record)

    chief = Chief(
        tuner.oracle,
        store.dir,
        count=parallel["workers"],
        gpus=parallel["gpus"],
        host=parallel["host"],
        port=parallel["port"],
        on_record=on_record,
        stop=tuner.stop,
        trials_per_process=parallel["trials_per_process"],
        resume_every=tuner.spec.search.resume_every,
    )
    store.update_manifest(workers=parallel["workers"], chief=chief.address)
    if not quiet:
        placement = f"GPUs {','.join(chief.gpus)}" if chief.gpus else "the CPU"
        print(f"{parallel['workers']} workers on {placement}; oracle at {chief.address} (join: tuning worker {store.dir} --chief {chief.address})", flush=True)
    chief.run()


@contextlib.contextmanager
def _graceful_stop(stop: Any, quiet: bool, notice: str = "stopping after the current epoch (Ctrl-C again to stop now)") -> Iterator[None]:
    """First Ctrl-C or SIGTERM: finish the current epoch (or the results being written), then stop; a second
    Ctrl-C stops at once.

    Either way every finished trial is already on disk; the interrupted one runs again on resume.
    """
    from .runtime import signals_handled

    def request(signum: int, frame: Any) -> None:
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.requested = True
        if not quiet:
            print(f"\n{notice}", file=sys.stderr, flush=True)

    with signals_handled(request, signal.SIGINT, signal.SIGTERM):
        yield


def train(
    spec: str | Path | Mapping[str, Any] | SearchSpec,
    *,
    name: str | None = None,
    out: str | Path | None = None,
    data: Sequence[np.ndarray] | None = None,
    class_names: Sequence[str] | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> Any:
    """Train one fixed configuration (such as an exported `best_config.yaml`): a one-trial run, same outputs.

    `data` and `class_names` replace the spec's data, as for `search`.

    Example:
        >>> run = tuning.train("reports/digits/export/3/best_config.yaml")
    """
    spec = load_spec(spec)
    tunable = [p.name for p in the_params(spec)]
    if tunable:
        raise SpecError(
            [
                Problem(
                    "",
                    f"`tuning train` needs every value fixed, but these are tuned: {', '.join(tunable)}. Use `tuning search`, or the best_config.yaml that `tuning export` writes",
                    spec.file,
                )
            ]
        )
    one_trial = spec.to_dict()
    one_trial["search"] = {**one_trial["search"], "algorithm": "random", "max_trials": 1}
    fixed = load_spec(one_trial)
    fixed._file, fixed._text = spec.file, spec.text  # unnamed, the run is named after the file, as a search is
    return search(fixed, name=name, out=out, data=data, class_names=class_names, overwrite=overwrite, quiet=quiet)


class Events:
    """Hands each event of the tuner to every listener: the progress view and the TensorBoard log."""

    def __init__(self, *listeners: Any):
        self.listeners = listeners

    def trial_started(self, record: Any, epochs: int) -> None:
        for listener in self.listeners:
            listener.trial_started(record, epochs)

    def epoch_done(self, epoch: int, row: dict[str, float]) -> None:
        for listener in self.listeners:
            listener.epoch_done(epoch, row)

    def trial_finished(self, record: Any) -> None:
        for listener in self.listeners:
            listener.trial_finished(record)

    def close(self) -> None:
        for listener in self.listeners:
            listener.close()


class _ElapsedTime:
    """Keeps `elapsed_s` in run.json current as each trial ends: a search killed outright (`kill -9`, a power cut)
    never reaches the end that writes it, and its resumed run would count a `time_budget` from zero again."""

    def __init__(self, store: RunStore, before: float, started: float):
        self.store, self.before, self.started = store, before, started

    def trial_started(self, record: Any, epochs: int) -> None:
        pass

    def epoch_done(self, epoch: int, row: dict[str, float]) -> None:
        pass

    def trial_finished(self, record: Any) -> None:
        self.store.update_manifest(elapsed_s=round(self.before + time.time() - self.started, 3))

    def close(self) -> None:
        pass


def _prepare_directory(store: RunStore, spec: SearchSpec, overwrite: bool) -> bool:
    """Returns True when resuming; refuses a changed spec and folders that are not runs."""
    if overwrite and store.dir.exists():
        if store.dir.is_dir() and not store.exists() and any(p.name != ".lock" for p in store.dir.iterdir()):
            raise RunError(f"{store.dir} exists and is not a tuning run; refusing to delete it. Pick another --name or --out")
        shutil.rmtree(store.dir)
    if store.exists():
        manifest = store.read_manifest()
        stored = {"hash": manifest.get("spec_hash"), "spec": manifest.get("spec", {})}
        if stored["hash"] != spec.spec_hash():
            stored = _revalidated(stored["spec"]) or stored
        if stored["hash"] != spec.spec_hash() and _fixed_for_the_run(stored["spec"]) != _fixed_for_the_run(spec.to_dict()):
            changes = _spec_changes(stored["spec"], spec.to_dict())
            # The first changes in full; any others by their field, so that every changed field is named.
            more = [change.split(":", 1)[0] for change in changes[6:]]
            listed = "; ".join(changes[:6]) + (f"; and {len(more)} more: {', '.join(more)}" if more else "")
            objective = ((stored["spec"].get("search") or {}).get("objective")) or {}
            wrong = (
                f" (this run ranked {objective.get('metric')} by direction {objective.get('direction')!r}, the default before the direction "
                "followed the metric: its best trial and promotions were its worst)"
                if isinstance(objective, dict) and wrong_direction(objective)
                else ""
            )
            raise RunError(
                f"{store.dir} was started with a different spec ({listed or 'content differs'}){wrong}. "
                "Resuming would mix two searches: pass --overwrite to start over, or --name NEW to keep both"
            )
        return True
    if store.dir.exists() and any(p.name != ".lock" for p in store.dir.iterdir()):
        raise RunError(f"{store.dir} exists and is not a tuning run (no run.json). Pick another --name or --out")
    return False


def _fixed_for_the_run(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec less what may change between the sessions of one run: its `description` (editing that text changes
    no trial), `search.time_budget` and `search.max_trials` (limits on the whole run: raised, a run stopped by
    one goes on)."""
    rest = {key: value for key, value in spec.items() if key != "description"}
    if isinstance(rest.get("search"), dict):
        rest["search"] = {key: value for key, value in rest["search"].items() if key not in ("time_budget", "max_trials")}
    return rest


def _revalidated(stored: Any) -> dict[str, Any]:
    """A run's stored spec validated again by this version: a setting added since the run began takes its
    default, so it does not count as a change (and an unchanged old run resumes). Empty if it no longer loads."""
    try:
        spec = load_spec(stored)
    except (TuningError, TypeError, ValueError):
        return {}
    return {"spec": spec.to_dict(), "hash": spec.spec_hash()}


def _spec_changes(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += _spec_changes(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


def _manifest(spec: SearchSpec, name: str, the_plan: Plan, dataset: Any, device: str, previous: dict[str, Any]) -> dict[str, Any]:
    from .runtime import backend

    return {
        "name": name,
        "status": "running",
        "created_at": previous.get("created_at", utc_now()),
        "updated_at": utc_now(),
        "spec_file": spec.file,
        "spec_dir": str(spec.base_dir),
        "spec_hash": spec.spec_hash(),
        "spec": spec.to_dict(),
        "objective": {"metric": spec.search.objective.metric, "direction": spec.search.objective.direction},
        "seeds": {
            "run": spec.search.seed,
            "oracle": spec.search.seed,
            "data_split": spec.search.seed,
            "trial_rule": "(run * 1000003 + int(trial_id) * 7919 + 17) mod (2^31 - 1)"
            if spec.search.trial_seed is None
            else f"search.trial_seed: {spec.search.trial_seed}",
        },
        "versions": versions(),
        "backend": backend(),
        "device": device,
        "data": dataset.summary(),
        "plan": the_plan.to_dict(),
        "parameters": [p.name for p in the_plan.params],
        "space": [
            {
                "name": p.name,
                "kind": p.domain.kind,
                "domain": p.domain.describe(),
                "condition": p.condition.describe() if p.condition else None,
                "description": p.description,
            }
            for p in the_plan.params
        ],
        "sessions": int(previous.get("sessions", 0)) + 1,
        # When each session began, with the run's search time before it (the report's time axis leaves out the
        # hours between sessions) and what it trained on (a run may be continued on another backend or machine).
        "session_log": [
            *previous.get("session_log", []),
            {"started_at": utc_now(), "elapsed_before_s": float(previous.get("elapsed_s", 0.0)), "backend": backend(), "device": device},
        ],
        "elapsed_s": float(previous.get("elapsed_s", 0.0)),
        "best": previous.get("best"),
    }


def _progress(
    spec: SearchSpec, the_plan: Plan, store: RunStore, live: bool | None, quiet: bool, data: dict[str, Any], retry_failed: bool = False, cut: Sequence[str] = ()
) -> Any:
    from .progress import SearchProgress
    from .results import rank

    again = ("failed", "out_of_memory") if retry_failed else ()  # they run again, and are counted when they do
    done = [r for r in store.read_trials() if not r.trial_id.startswith("infeasible-") and r.status not in again and r.trial_id not in cut]
    ranked = rank(done, spec.search.objective.direction)
    best = ranked[0].score if ranked and ranked[0].status == "completed" else None
    planned, epochs, _ = the_plan.up_to(spec.search.max_trials)  # the ETA prices what runs, not what max_trials cuts
    return SearchProgress(
        planned_trials=planned,
        planned_epochs=epochs,
        metric=spec.search.objective.metric,
        direction=spec.search.objective.direction,
        done_trials=len(done),
        done_epochs=sum(_planned_epochs(r, spec.search.max_epochs) for r in done),
        best=best,
        live=live,
        quiet=quiet,
        data=data,
    )


def _planned_epochs(record: Any, max_epochs: int) -> int:
    """The epochs the plan gave a trial (its Hyperband round's, less those its parent trained; early stopping aside)."""
    return int(record.hyperband.get("epochs", max_epochs)) - int(record.hyperband.get("initial_epoch", 0))


def _stop_reason(spec: SearchSpec, the_plan: Plan, store: RunStore) -> str:
    trials = [r for r in store.read_trials() if not r.trial_id.startswith("infeasible-")]
    if spec.search.max_trials and len(trials) >= spec.search.max_trials:
        return f"max_trials = {spec.search.max_trials} reached"
    planned = the_plan.up_to(spec.search.max_trials)[0]
    if len(trials) < planned:
        failed = sum(r.status in ("failed", "out_of_memory") for r in trials)
        diverged = sum(r.status == "diverged" for r in trials)
        if (failed or diverged) and spec.search.algorithm == "hyperband":
            what = " and ".join(f"{n} {word}" for n, word in ((failed, "failed"), (diverged, "diverged")) if n)
            advice = [
                "`--retry-failed` runs the failed ones again" if failed else "",
                "a diverged trial's loss became NaN or infinite: a narrower learning_rate range keeps them from it" if diverged else "",
            ]
            return (
                f"{len(trials)} of {planned} planned trials: Hyperband promotes only completed trials, and "
                f"{what}, so later rounds had too few to choose from ({'; '.join(a for a in advice if a)})"
            )
        return f"the space ran out of new configurations after {len(trials)} of {planned} planned trials"
    return "plan complete"


REPORT_FILES = ("report.html", "report.md", "report_files", "results.json", "leaderboard.md", "trials.csv")


def directory_size(folder: Path, leave_out: tuple[str, ...] = ()) -> int:
    """Bytes of every file under `folder`, less those under the top-level entries named in `leave_out`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).parts[0] not in leave_out)


def _finish(store: RunStore, spec: SearchSpec, tuner: Any, dataset: Any, status: str) -> None:
    """Tables, best model and its test metrics: written whenever the search ends, however it ends (`status`:
    how, which run.json says only once they are written)."""
    from .results import columns, leaderboard_markdown, rank, trial_rows, write_trials_csv

    records = store.read_trials()
    names = [p for p in store.read_manifest().get("parameters", [])]
    direction = spec.search.objective.direction
    ranked = rank(records, direction)
    best = ranked[0] if ranked and ranked[0].status == "completed" else None
    manifest = store.read_manifest()
    before = manifest.get("best") or {}
    # A trial the time budget cut short and that continued since is the same trial with another score and weights.
    if best is not None and (before.get("trial_id"), before.get("best_epoch"), before.get("score")) != (best.trial_id, best.best_epoch, best.score):
        from .evaluation import analyze_best

        model = tuner.load_trained(best.trial_id)
        analysis = analyze_best(model, dataset.x_test, dataset.y_test, dataset.class_names, store.dir / "best", seed=spec.search.seed)
        test = {"accuracy": analysis["test_accuracy"], "loss": analysis["test_loss"]}
        tmp = store.dir / "best_model.tmp.keras"
        with saving_without_tensorflow():
            model.save(tmp)
        tmp.replace(store.dir / "best_model.keras")
        manifest = store.update_manifest(
            best={
                "trial_id": best.trial_id,
                "score": best.score,
                "metric": spec.search.objective.metric,
                "best_epoch": best.best_epoch,
                "values": best.values,
                "test": test,
                "model": "best_model.keras",
            }
        )
    # The reports are left out: they are written after this figure (and rebuilt by `tuning report`), so counting
    # whatever an earlier run left of them made the same search report different sizes.
    manifest = store.update_manifest(disk_mb=round(directory_size(store.dir, REPORT_FILES) / 2**20, 2))
    rows = trial_rows(records, names, direction)
    write_trials_csv(store.dir / "trials.csv", rows, columns(names))
    write_atomic(store.dir / "leaderboard.md", leaderboard_markdown(rows, names, {**manifest, "status": status}))
    try:
        from .report import build_report

        build_report(store.dir, status=status)
    except Exception as exc:  # noqa: BLE001 - a report problem must never cost the search's results
        print(f"warning: the report could not be written ({type(exc).__name__}: {exc}); `tuning report {store.dir}` retries", file=sys.stderr)
