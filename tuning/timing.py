"""How long a search will take, before it runs: a few configurations of the space, chosen across its range
of compute, are each trained for three short epochs on the real data, on this machine, as a trial trains;
their steady epoch times, scaled to the full data, price the plan's epochs, and the first epoch's excess
prices the set-up of each network a process builds. The plan's trials are then laid out as the search hands
them out (`schedule`): one after another, or over `--workers N` processes, timed as those run them
(`worker_timing`).

What it leaves out, and says so: early stopping (it only shortens a search), the search process's start-up,
data loading and the report at the end. Keras 3 only (every backend).
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import schedule
from .wording import counted

CANDIDATES = 200  # random points drawn to choose the timed ones from ...
MAX_DRAWS = 20_000  # ... or more, until one can be built (a space that is mostly infeasible)
STEP_WORK = 4e7  # a training step's fixed cost (Python, dispatch), in forward multiply-adds: only to rank candidates
TIMED_EPOCHS = 3  # the first traces (or compiles) the steps; the others are steady
MIN_STEPS = 24  # steps per timed epoch, at least: enough to time one step against Python's overhead
VALIDATION_IMAGES = 512
SAMPLES = 4  # configurations timed unless asked for more
REPLAYS = 8  # the plan's trials laid out this many times, with other draws and promotions (`schedule.replay`)


def estimate(
    spec: str | Path | Mapping[str, Any] | Any,
    *,
    samples: int = SAMPLES,
    data: Sequence[np.ndarray] | None = None,
    class_names: Sequence[str] | None = None,
    the_plan: Any = None,
    workers: int = 0,
    gpus: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The search's duration, from `samples` configurations timed on this machine (`the_plan`: the spec's, when
    the caller has made it already), for a search in this process (`workers=0`) or in `workers` worker processes
    on `gpus` (default: every GPU `nvidia-smi` lists, else the CPU), as `tuning search --workers` runs it.

    Returns the timed configurations (their values, steady epoch time on the full data and first-epoch
    excess), the plan's epochs and trials, and `minutes` (low, expected, high): low prices every epoch at the
    fastest timed configuration, high at the slowest, expected at their mean, as Hyperband draws
    configurations at random. The trials are laid out as the search hands them out (`schedule.replay`, averaged
    over `REPLAYS` draws): one after another in one process; over the workers with Hyperband's waits for its
    rounds, each worker timed as it runs (its share of the CPU cores or of its GPU, the workers that share it
    timed at once) and started as it starts (imports and data, counted in). Each network a process builds
    adds one first-epoch excess: every trial's without `reuse_models`; with it, each network new to its
    process or evicted from its pool (the learning rate and batch size change none).

    Example:
        >>> tuning.estimate("search_spaces/fashion_mnist.yaml", workers=2)["minutes"]
    """
    from . import feasibility
    from .data import load_data, network_shape
    from .errors import RunError
    from .planner import plan as make_plan
    from .planner import require_feasible
    from .runtime import compile_options, dtype_policy, precision_policy, prepare_devices, quiet_logs
    from .space import parameters, resolve
    from .spec import load_spec

    if samples < 1:
        raise RunError(f"samples: expected a positive number of configurations to time, not {samples}")
    if workers < 0:
        raise RunError(f"workers: expected a number of worker processes (0: the search's own process), not {workers}")
    if workers and data is not None:
        raise RunError("worker processes load the data from the spec; arrays passed as `data=` need workers=0")
    spec = load_spec(spec)
    the_plan = the_plan or make_plan(spec, data=data, class_names=class_names)
    require_feasible(spec, the_plan)
    trials, total_epochs, configurations = the_plan.up_to(spec.search.max_trials)
    quiet_logs()
    from .model_pool import MAX_MODELS, MAX_PARAMS, network_key  # imports Keras: after `quiet_logs`

    accelerator = None if workers else prepare_devices()  # workers: only the processes that time use a device
    dataset = load_data(spec.data, spec.base_dir, seed=spec.search.seed, arrays=data, class_names=class_names)
    shape = network_shape(spec.data.image_size, dataset.input_shape)
    params = parameters(spec)
    rng = random.Random(spec.search.seed)
    # One candidate per network and batch size (what sets an epoch's time; the learning rate does not), with
    # its epoch's compute: multiply-adds over the images plus a fixed share per step.
    candidates: dict[tuple[str, int], tuple[float, dict[str, Any]]] = {}
    for draw in range(MAX_DRAWS if params else 1):
        if draw >= CANDIDATES and candidates:
            break
        values = feasibility.random_values(params, rng)
        config = resolve(spec, values)
        if feasibility.check(config, shape, dataset.num_classes, spec.search.max_params) is None:
            network = network_key(config)
            work = feasibility.multiply_adds(config, shape, dataset.num_classes) * len(dataset.y_train)
            steps = math.ceil(len(dataset.y_train) / config.batch_size)
            candidates.setdefault((network, config.batch_size), (work + steps * STEP_WORK, values))
    if not candidates:
        raise RunError(
            f"{spec.file or 'spec'}: none of {MAX_DRAWS:,} random configurations of the space can be built, so none can be timed; "
            "`tuning validate` shows which settings are infeasible"
        )
    chosen = _spread(sorted(candidates.values(), key=lambda item: item[0]), samples)
    placement: dict[str, Any] = {"workers": workers, "worker_start_s": 0.0}
    if workers:
        from .worker_timing import time_in_workers
        from .workers import visible_gpus

        timed, placement = time_in_workers(spec, chosen, workers, list(gpus) if gpus is not None else visible_gpus())
        device = placement.pop("device")
    else:
        assert accelerator is not None
        timed = []
        with dtype_policy(precision_policy(spec.training.mixed_precision, accelerator)):
            options = compile_options(spec, accelerator)
            for values in chosen:
                timed.append({"values": values, **time_one(spec, resolve(spec, values), dataset, options)})
        device = accelerator.describe()
    epochs = np.array([t["epoch_s"] for t in timed])
    # A new network's build and first epoch's excess (the first timed one also carries the process's warm-up, as
    # the search's first trial does; measured apart it was within this machine's noise, so it is not).
    excess = float(np.mean([t["first_epoch_excess_s"] + t["build_s"] for t in timed]))
    per_trial = float(np.mean([t["fit_overhead_s"] + t["checkpoint_s"] for t in timed]))
    # The plan's trials as the search hands them out, on as many processes as it trains in, each process
    # building the networks its pool does not hold: a few replays, as the draws and promotions are random.
    count = the_plan.distinct_configurations
    replays: dict[str, list[schedule.Replay]] = {level: [] for level in ("low", "expected", "high")}
    for number in range(REPLAYS):
        draws = _draws(spec, params, shape, dataset.num_classes, count, random.Random(f"{spec.search.seed}-{number}"), network_key)
        for level, epoch_s in zip(replays, (epochs.min(), epochs.mean(), epochs.max())):
            costs = schedule.Costs(epoch_s=float(epoch_s), per_trial_s=per_trial, new_network_s=excess)
            replays[level].append(
                schedule.replay(
                    the_plan.rounds,
                    draws,
                    costs,
                    workers=max(1, workers),
                    max_trials=spec.search.max_trials,
                    reuse_models=spec.training.reuse_models,
                    max_models=MAX_MODELS,
                    max_params=MAX_PARAMS,
                    seed=number,
                )
            )
    minutes = {level: (placement["worker_start_s"] + float(np.mean([r.seconds for r in runs]))) / 60 for level, runs in replays.items()}
    expected = replays["expected"]
    return {
        "timed": timed,
        "epochs": round(float(np.mean([r.epochs for r in expected]))) if workers else total_epochs,
        "trials": trials,
        "planned_trials": the_plan.total_trials,
        "configurations": configurations,
        "new_networks": float(np.mean([r.builds for r in expected])),
        "epoch_s": {"min": float(epochs.min()), "mean": float(epochs.mean()), "max": float(epochs.max())},
        "first_epoch_excess_s": excess,
        "per_trial_s": per_trial,
        "minutes": minutes,
        "idle_fraction": float(np.mean([r.idle_fraction for r in expected])),
        **placement,
        "time_budget_s": spec.search.time_budget_seconds,
        "device": device,
        "train_images": int(len(dataset.y_train)),
        "validation_images": int(len(dataset.y_val)),
    }


def _draws(spec: Any, params: Any, shape: Any, num_classes: int, count: int, rng: random.Random, network_key: Any) -> list[tuple[str, int]]:
    """`count` distinct buildable configurations drawn at random, as the oracle draws a plan's first rounds:
    each as its network and its weights (what the model pool keys and weighs)."""
    from . import feasibility
    from .space import resolve

    draws: list[tuple[str, int]] = []
    seen: set[str] = set()
    for _ in range(MAX_DRAWS):
        if len(draws) == count:
            break
        values = feasibility.random_values(params, rng)
        key = repr(sorted(values.items()))
        config = resolve(spec, values)
        if key in seen or feasibility.check(config, shape, num_classes, spec.search.max_params) is not None:
            continue
        seen.add(key)
        draws.append((network_key(config), feasibility.count_params(config, shape, num_classes)))
    while draws and len(draws) < count:  # a space used up (the plan is cut to what it holds): repeat the drawn
        draws.append(draws[len(draws) % len(seen)])
    return draws


def _spread(candidates: list[tuple[float, dict[str, Any]]], samples: int) -> list[dict[str, Any]]:
    """`samples` points evenly spaced over the candidates sorted by compute, the cheapest and the dearest
    included: their mean epoch time stands for the space's, their extremes bound it."""
    count = min(samples, len(candidates))
    if count == 1:
        return [candidates[len(candidates) // 2][1]]  # one point: the median stands for the space best
    positions = sorted({round(i * (len(candidates) - 1) / (count - 1)) for i in range(count)})
    return [candidates[p][1] for p in positions]


def time_one(spec: Any, config: Any, dataset: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Three short epochs of one configuration, as a trial trains it (same builder, compile options, input
    pipelines and precision): its steady epoch time scaled to the full data, the first epoch's excess, the
    build, and the time `fit` spends outside its epochs (pipelines, callbacks)."""
    from . import batches
    from .hypermodel import build_model, compile_model, prepare_for_training
    from .runtime import clear_session

    clear_session(keep_instantiated=spec.training.reuse_models)  # as the search does before a new network
    started = time.perf_counter()
    image_size = tuple(spec.data.image_size) if spec.data.image_size else None
    model = build_model(config, dataset.input_shape, dataset.num_classes, value_max=dataset.value_max, image_size=image_size)  # type: ignore[arg-type]
    model = compile_model(model, config, **options)
    prepare_for_training(model, dataset.input_shape, dataset.num_classes)
    build = time.perf_counter() - started
    steps_per_call = int(options.get("steps_per_execution", 1))
    train_count = min(len(dataset.y_train), config.batch_size * max(steps_per_call, MIN_STEPS))
    val_count = min(len(dataset.y_val), VALIDATION_IMAGES)
    one_hot = np.eye(dataset.num_classes, dtype="float32")
    clock = _epoch_clock()
    started = time.perf_counter()
    model.fit(
        **batches.fit_data(dataset.x_train[:train_count], one_hot[dataset.y_train[:train_count]], config.batch_size, seed=0, callbacks=[clock]),
        **batches.validation_data(dataset.x_val[:val_count], one_hot[dataset.y_val[:val_count]]),
        epochs=TIMED_EPOCHS,
        verbose=0,
    )
    fitting = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:  # every trial writes its weights at least once, when it ends
        started = time.perf_counter()
        model.save_weights(Path(folder) / "trial.weights.h5")
        checkpoint = time.perf_counter() - started
    train, held_out = np.array(clock.train), np.array(clock.validation)
    steady_train, steady_val = float(np.median(train[1:])), float(np.median(held_out[1:]))
    epoch = steady_train / math.ceil(train_count / config.batch_size) * math.ceil(len(dataset.y_train) / config.batch_size)
    epoch += steady_val / val_count * len(dataset.y_val)
    return {
        "params": int(model.count_params()),
        "epoch_s": epoch,
        "first_epoch_excess_s": max(0.0, float(train[0] + held_out[0]) - steady_train - steady_val),
        "build_s": build,
        "fit_overhead_s": max(0.0, fitting - float(train.sum() + held_out.sum())),
        "checkpoint_s": checkpoint,
        "timed_on": {"train_images": train_count, "validation_images": val_count},
    }


def _epoch_clock() -> Any:
    """A callback with the seconds of each epoch's training and of its validation (Keras calls its test
    hooks for the validation inside `fit`)."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.train: list[float] = []
            self.validation: list[float] = []
            self._mark = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._mark = time.perf_counter()

        def on_test_begin(self, logs: Any = None) -> None:
            self.train.append(time.perf_counter() - self._mark)
            self._mark = time.perf_counter()

        def on_test_end(self, logs: Any = None) -> None:
            self.validation.append(time.perf_counter() - self._mark)

    return EpochClock()


TIMING_NEUTRAL = ("learning_rate", "momentum", "weight_decay", "label_smoothing")


def describe_estimate(result: dict[str, Any], took: float) -> str:
    """The text of `validate --time`: where and how it timed, each timed configuration, then the plan priced."""
    from .domains import format_value
    from .results import text_table

    timed, workers = result["timed"], result.get("workers", 0)
    where, how = "one process", ""
    if workers:
        on_cpu = result["threads"] is not None
        share = f"{counted(result['threads'], 'thread')} each, of {counted(result['cpus'], 'core')}" if on_cpu else f"GPUs {','.join(result['gpus'])}"
        where = f"{counted(workers, 'worker process', 'worker processes')}, {share}"
        at_once = result["timed_at_once"]
        how = f" in {at_once} processes at once, as {at_once} workers share {'the CPU' if on_cpu else 'a GPU'}" if at_once > 1 else " in a worker's own process"
    lines = [
        f"Time on this machine ({result['device']}, {where}), from {counted(len(timed), 'configuration')} of the space "
        f"trained for {TIMED_EPOCHS} short epochs each{how} ({took:.0f} s); an epoch is {result['train_images']:,} training and "
        f"{result['validation_images']:,} validation images:"
    ]
    # One column per tuned value that can change an epoch's time (the learning rate and its kin cannot).
    columns = [name for name in dict.fromkeys(k for item in timed for k in item["values"]) if name not in TIMING_NEUTRAL]
    rows = [[*columns, "params", "epoch"]]
    for item in timed:
        values = item["values"]
        rows.append([*(format_value(values[c]) if c in values else "-" for c in columns), f"{item['params']:,}", f"{item['epoch_s']:.2f} s"])
    lines += text_table(rows)
    minutes = result["minutes"]
    lines.append(
        f"a new network's first epoch takes {result['first_epoch_excess_s']:.1f} s more (tracing or compiling its steps); "
        f"about {counted(round(result['new_networks']), 'new network')} in the plan" + (" (each worker builds the networks it trains)" if workers else "")
    )
    lines.append(f"each trial also sets up its training and writes its weights: {result['per_trial_s']:.2f} s, {counted(result['trials'], 'trial')}")
    if workers:
        lines.append(
            f"each worker starts in {result['worker_start_s']:.1f} s (Keras, KerasTuner, the data) before its first trial; Hyperband leaves "
            f"the workers idle {result['idle_fraction']:.0%} of the time (waiting for a round's results to promote, or for the last "
            f"trials), the oracle's hand-out replayed {counted(REPLAYS, 'time')}"
        )
    capped = (
        f" (max_trials stops it after {result['trials']} of the {result['planned_trials']} planned trials)"
        if result["trials"] < result["planned_trials"]
        else ""
    )
    spread = (
        f" ({_minutes(minutes['low'])} to {_minutes(minutes['high'])}, as the drawn configurations are cheap or dear)"
        if _minutes(minutes["low"]) != _minutes(minutes["high"])
        else ""
    )
    with_workers = f" with {counted(workers, 'worker')}, their start included" if workers else ""
    own = "the search process's own " if workers else ""
    lines.append(
        f"the plan's {counted(result['epochs'], 'epoch')}{capped}: about {_minutes(minutes['expected'])}{with_workers}{spread}; "
        f"early stopping only shortens it; {own}start-up, data loading and the report come on top"
    )
    budget = result["time_budget_s"]
    if budget is not None and budget < minutes["expected"] * 60:
        lines.append(f"note: search.time_budget ({_minutes(budget / 60)}) ends the search before the plan's expected end")
    return "\n".join(lines)


def _minutes(minutes: float) -> str:
    if minutes < 1:
        return f"{minutes * 60:.0f} s"
    if minutes < 120:
        return f"{minutes:.1f} min"
    return f"{minutes / 60:.1f} h"
