"""Run a search: spec -> plan -> data (once) -> KerasTuner -> records -> tables and best model.

Running the same search again resumes it (finished trials are never retrained); a changed spec is
refused unless the caller asks to overwrite or picks a new name (`resume`). The listeners of its events and
the stop it is asked for are in `events`; what it leaves when it ends, in `outcome`.
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import feasibility, outcome
from .data import load_data, network_shape
from .errors import DataError, Problem, RunError, SearchAborted, SpecError
from .events import ElapsedTime, Events, graceful_stop, progress_view, record_infeasible, values_key
from .planner import Plan, require_feasible
from .planner import plan as make_plan
from .records import RunStore, utc_now, write_atomic
from .resume import (
    data_changes,
    prepare_directory,
    run_directory,
    run_manifest,
    run_max_trials,
    warn_of_another_backend,
    with_earlier_class_names,
    with_iterations,
    with_max_trials,
)
from .runtime import (
    Accelerator,
    compile_options,
    dtype_policy,
    long_lived_objects_frozen,
    precision_policy,
    prepare_devices,
    quiet_logs,
)
from .space import parameters as the_params
from .space import resolve
from .spec import SearchSpec, load_spec


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
            make_plan(with_iterations(with_max_trials(spec, run_max_trials(spec, extended_trials)), iterations), data=data, class_names=class_names)
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
    spec = with_max_trials(spec, run_max_trials(spec, extended_trials))
    the_plan = make_plan(with_iterations(spec, iterations), data=data, class_names=class_names)
    if unextended is not None and the_plan.up_to(spec.search.max_trials)[0] == unextended.up_to(spec.search.max_trials)[0]:
        why = (
            f"search.max_trials ({spec.search.max_trials}) stops the run before them: raise it"
            if the_plan.total_trials > unextended.total_trials
            else "the space has no configuration left to draw (see `tuning validate`)"
        )
        print(f"warning: --extend {extend} adds no trials: {why}", file=sys.stderr)
    require_feasible(spec, the_plan)

    resumed = prepare_directory(store, spec, overwrite)
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

    from .engine import SpecHyperModel, SpecTuner
    from .oracles import make_oracle
    from .resume_points import cut_by_the_budget

    previous = store.read_manifest() if resumed else {}
    dataset = with_earlier_class_names(dataset, (previous.get("data") or {}).get("classes"))
    changed = data_changes(previous.get("data") or {}, dataset.summary())
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
    warn_of_another_backend(previous)
    elapsed_before = float(previous.get("elapsed_s", 0.0))
    manifest = run_manifest(spec, run_dir.name, the_plan, dataset, accelerator.describe(), previous)
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
    used_up = budget is not None and elapsed_before >= budget
    # Trials the time budget cut short continue from where it stopped them once it has time left (raised, or removed).
    cut = [] if used_up else cut_by_the_budget(store)
    view = progress_view(spec, the_plan, store, progress, quiet, dataset.summary(), retry_failed, cut)
    started = time.time()
    clock = ElapsedTime(store, elapsed_before, started)
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
    recorded = {values_key(r.values) for r in store.read_trials() if r.status in ("infeasible", "oversized")}
    oracle.on_infeasible = lambda values, reason: record_infeasible(store, board_log, values, reason, recorded)
    if used_up:
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
        with graceful_stop(tuner.stop, quiet), long_lived_objects_frozen():
            weights = dataset.class_weights() if spec.data.class_weight == "balanced" else None
            if parallel["workers"] and used_up:
                oracle.stop_reason = "time budget reached"  # as the oracle would tell each worker, without starting them
            elif parallel["workers"]:
                _serve_workers(tuner, store, Events(view, clock), parallel, quiet)
            else:
                tuner.search(train=(dataset.x_train, one_hot[dataset.y_train]), validation=(dataset.x_val, one_hot[dataset.y_val]), class_weight=weights)
        stop_reason = oracle.stop_reason or outcome.stop_reason(spec, the_plan, store)
        # Once the search is over no trial will be promoted, so their weights can go, unless a failed trial may be
        # run again (`--retry-failed`): its round then fills, and promotes from the trials beside it.
        retryable = any(r.status in ("failed", "out_of_memory") for r in store.read_trials())
        # Nor when time_budget or max_trials stopped it: raised, the run goes on, and Hyperband promotes from its rounds.
        limited = oracle.stop_reason is not None or outcome.max_trials_reached(spec, store)
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
            with graceful_stop(writing, quiet, "writing the results first (Ctrl-C again to stop now; the same command writes them later)"):
                outcome.finish(store, spec, tuner, dataset, status)
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
