"""How long a search will take, before it runs: a few configurations of the space, chosen across its range
of compute, are each trained for three short epochs on the real data, on this machine, as a trial trains;
their steady epoch times, scaled to the full data, price the plan's epochs, and the first epoch's excess
prices the set-up of each new network.

What it leaves out, and says so: early stopping (it only shortens a search), the process's start-up, data
loading and the report at the end. Keras 3 only (every backend).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

CANDIDATES = 200  # random feasible points drawn to choose the timed ones from
TIMED_EPOCHS = 3  # the first traces (or compiles) the steps; the others are steady
MIN_STEPS = 24  # steps per timed epoch, at least: enough to time one step against Python's overhead
VALIDATION_IMAGES = 512


def estimate(
    spec: str | Path | Mapping[str, Any] | Any,
    *,
    samples: int = 4,
    data: Sequence[np.ndarray] | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The search's duration, from `samples` configurations timed on this machine.

    Returns the timed configurations (their values, steady epoch time on the full data and first-epoch
    excess), the plan's epochs and trials, and `minutes` (low, expected, high): low prices every epoch at the
    fastest timed configuration, high at the slowest, expected at their mean, as Hyperband draws
    configurations at random; each adds one first-epoch excess per new network (each configuration's, or with
    models reused each distinct network's: the learning rate and batch size change none).

    Example:
        >>> tuning.estimate("search_spaces/fashion_mnist.yaml")["minutes"]
    """
    from . import feasibility
    from .data import load_data
    from .planner import plan as make_plan
    from .planner import require_feasible
    from .runtime import compile_options, dtype_policy, precision_policy, prepare_devices, quiet_logs
    from .space import parameters, resolve
    from .spec import load_spec

    spec = load_spec(spec)
    the_plan = make_plan(spec)
    require_feasible(spec, the_plan)
    quiet_logs()
    from .model_pool import network_key  # imports Keras: after `quiet_logs`

    accelerator = prepare_devices()
    dataset = load_data(spec.data, spec.base_dir, seed=spec.search.seed, arrays=data, class_names=class_names)
    shape = (spec.data.image_size[0], spec.data.image_size[1], dataset.input_shape[2]) if spec.data.image_size else dataset.input_shape
    params = parameters(spec)
    rng = random.Random(spec.search.seed)
    candidates: dict[str, tuple[int, dict[str, Any]]] = {}
    networks: set[str] = set()
    for _ in range(CANDIDATES if params else 1):
        values = feasibility.random_values(params, rng)
        config = resolve(spec, values)
        if feasibility.check(config, shape, dataset.num_classes, spec.search.max_params) is None:
            candidates[repr(sorted(values.items()))] = (feasibility.multiply_adds(config, shape, dataset.num_classes), values)
            networks.add(network_key(config))
    chosen = _spread(sorted(candidates.values(), key=lambda item: item[0]), samples)
    timed = []
    with dtype_policy(precision_policy(spec.training.mixed_precision, accelerator)):
        options = compile_options(spec, accelerator)
        for values in chosen:
            timed.append({"values": values, **_time_one(spec, resolve(spec, values), dataset, shape, options)})
    epochs = np.array([t["epoch_s"] for t in timed])
    excess = float(np.mean([t["first_epoch_excess_s"] for t in timed]))
    total_epochs, configurations = the_plan.total_epochs, the_plan.distinct_configurations
    # Each new network traces (compiles) its steps once; with models reused a trial of a network seen before
    # does not, so the distinct networks drawn above (a floor: more when the pool evicts) bound the count.
    new_networks = min(configurations, len(networks)) if spec.training.reuse_models else configurations
    set_up = new_networks * excess
    minutes = [(total_epochs * e + set_up) / 60 for e in (epochs.min(), epochs.mean(), epochs.max())]
    return {
        "timed": timed,
        "epochs": total_epochs,
        "trials": the_plan.total_trials,
        "configurations": configurations,
        "new_networks": new_networks,
        "epoch_s": {"min": float(epochs.min()), "mean": float(epochs.mean()), "max": float(epochs.max())},
        "first_epoch_excess_s": excess,
        "minutes": {"low": minutes[0], "expected": minutes[1], "high": minutes[2]},
        "time_budget_s": spec.search.time_budget_seconds,
        "device": accelerator.describe(),
        "train_images": int(len(dataset.y_train)),
        "validation_images": int(len(dataset.y_val)),
    }


def _spread(candidates: list[tuple[int, dict[str, Any]]], samples: int) -> list[dict[str, Any]]:
    """`samples` points evenly spaced over the candidates sorted by compute, the cheapest and the dearest
    included: their mean epoch time stands for the space's, their extremes bound it."""
    if not candidates:
        return []
    count = min(samples, len(candidates))
    positions = sorted({round(i * (len(candidates) - 1) / max(1, count - 1)) for i in range(count)})
    return [candidates[p][1] for p in positions]


def _time_one(spec: Any, config: Any, dataset: Any, shape: tuple[int, int, int], options: dict[str, Any]) -> dict[str, Any]:
    """Three short epochs of one configuration, as a trial trains it (same builder, compile options, input
    pipelines and precision): its steady epoch time scaled to the full data, and the first epoch's excess."""
    from . import batches
    from .hypermodel import build_model, compile_model, prepare_for_training
    from .runtime import clear_session

    clear_session()
    image_size = tuple(spec.data.image_size) if spec.data.image_size else None
    model = build_model(config, dataset.input_shape, dataset.num_classes, value_max=dataset.value_max, image_size=image_size)  # type: ignore[arg-type]
    model = compile_model(model, config, **options)
    prepare_for_training(model, dataset.input_shape, dataset.num_classes)
    steps_per_call = int(options.get("steps_per_execution", 1))
    train_count = min(len(dataset.y_train), config.batch_size * max(steps_per_call, MIN_STEPS))
    val_count = min(len(dataset.y_val), VALIDATION_IMAGES)
    one_hot = np.eye(dataset.num_classes, dtype="float32")
    clock = _epoch_clock()
    model.fit(
        **batches.fit_data(dataset.x_train[:train_count], one_hot[dataset.y_train[:train_count]], config.batch_size, seed=0),
        **batches.validation_data(dataset.x_val[:val_count], one_hot[dataset.y_val[:val_count]]),
        epochs=TIMED_EPOCHS,
        callbacks=[clock],
        verbose=0,
    )
    train = np.array(clock.train)
    held_out = np.array(clock.validation)
    steady_train, steady_val = float(np.median(train[1:])), float(np.median(held_out[1:]))
    steps = math.ceil(train_count / config.batch_size)
    full_steps = math.ceil(len(dataset.y_train) / config.batch_size)
    epoch = steady_train / steps * full_steps + steady_val / val_count * len(dataset.y_val)
    params = int(model.count_params())
    return {
        "params": params,
        "epoch_s": epoch,
        "first_epoch_excess_s": max(0.0, float(train[0] + held_out[0]) - steady_train - steady_val),
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
