"""Would tracing the next trial's network in a background thread pay? Measured before building it.

A search traces (on JAX: compiles) each new network before its first step: ~0.9 s per network on 2 CPU cores
with TensorFlow, ~3 s with JAX on an H100, where the epochs of small CNNs take 0.1-0.2 s. Hyperband's next
random trial is known before it starts, so its model could be built in the main thread and traced in
another thread while the current trial trains. This script measures that on the machine it runs on: a model
A (the comparison space's largest network, already traced) trains `--epochs` epochs, then a new model B of
another network trains its first epoch. `sequential` does just that; `overlapped` also runs a short `fit`
of B in a thread while A trains (a full and a last-sized batch each of training and validation data: the
steps a trial runs, with the same input signatures, so TensorFlow traces and JAX compiles them there). The
two sides alternate, on each of the comparison space's four networks in turn. Reported per side: A's
training time, the wait for the thread, B's first epoch and the whole round; the gain per network is the
difference of the rounds' means.

    python bench/trace_ahead.py --subset 5000 --rounds 8 --out bench/results/trace_ahead.json
    KERAS_BACKEND=jax python bench/trace_ahead.py --subset 8000 --batch-size 128 --out bench/results/trace_ahead_jax.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from _sides import FASHION, write_report

NETWORKS = ((1, 16), (2, 16), (1, 32), (2, 32))  # (blocks, filters) of bench/compare_kerastuner.py's space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=5000, help="training images from Fashion-MNIST")
    parser.add_argument("--rounds", type=int, default=8, help="new networks per side")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the model trained meanwhile")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data", default=FASHION, help="folder of the four Fashion-MNIST IDX files")
    parser.add_argument("--out", default="bench/results/trace_ahead.json")
    args = parser.parse_args()

    # Compiled steps are not kept across runs here (`runtime.reuse_compiled_programs`): this run's networks
    # would otherwise be compiled already when it is repeated, while a search meets networks new to it.
    os.environ.setdefault("TUNING_COMPILE_CACHE", "off")
    from tuning.runtime import quiet_logs

    quiet_logs()
    import keras
    import numpy as np

    from tuning import batches, load_spec
    from tuning.data import load_data
    from tuning.engine import SpecHyperModel
    from tuning.hypermodel import compile_model, prepare_for_training
    from tuning.runtime import compile_options, precision_policy, prepare_devices
    from tuning.space import resolve

    spec = load_spec(
        {
            "version": 1,
            "data": {"source": "fashion_mnist", "path": args.data, "max_train_samples": args.subset},
            "model": {"blocks": {"int": [1, 2]}, "filters": {"choice": [16, 32]}, "dense_units": 64, "padding": "same"},
            "training": {"batch_size": args.batch_size},
        }
    )
    accelerator = prepare_devices()
    precision = precision_policy(spec.training.mixed_precision, accelerator)  # as a search on this machine
    keras.config.set_dtype_policy(precision)
    data = load_data(spec.data, Path("."), seed=0)
    hypermodel = SpecHyperModel(spec, data.input_shape, data.num_classes, data.value_max)
    options = compile_options(spec, accelerator)
    one_hot = np.eye(data.num_classes, dtype="float32")
    train = batches.training_arrays(data.x_train, one_hot[data.y_train])
    validation = batches.validation_data(data.x_val, one_hot[data.y_val])
    # One full batch and one of the last batch's size: JAX compiles a step for each batch shape it meets.
    train_rows = args.batch_size + len(data.x_train) % args.batch_size
    warm_train = batches.training_arrays(data.x_train[:train_rows], one_hot[data.y_train[:train_rows]])
    validation_rows = 256 + len(data.x_val) % 256
    warm_validation = batches.validation_data(data.x_val[:validation_rows], one_hot[data.y_val[:validation_rows]])

    def model(blocks: int, filters: int, dense_units: int = 64) -> Any:
        """A new model, as a search builds one; `dense_units` makes each round's network one not met before."""
        config = dataclasses.replace(resolve(spec, {"blocks": blocks, "filters": filters}), dense_units=dense_units)
        built = compile_model(hypermodel.network(config), config, **options)
        prepare_for_training(built, data.input_shape, data.num_classes)
        return built

    def fit(built: Any, epochs: int) -> float:
        start = time.perf_counter()
        built.fit(**batches.fit_data(*train, args.batch_size, seed=1), **validation, epochs=epochs, verbose=0)
        return time.perf_counter() - start

    def warm(built: Any) -> None:
        built.fit(**batches.fit_data(*warm_train, args.batch_size, seed=1), **warm_validation, epochs=1, verbose=0)

    trained = model(2, 32)
    fit(trained, 1)  # its trace, outside the figures
    sides: dict[str, list[dict[str, float]]] = {"sequential": [], "overlapped": []}
    for round_number in range(args.rounds):
        order = list(sides) if round_number % 2 == 0 else list(sides)[::-1]
        for side in order:
            new = model(*NETWORKS[round_number % len(NETWORKS)], dense_units=64 + 2 * round_number + (side == "overlapped"))
            start = time.perf_counter()
            thread = threading.Thread(target=warm, args=(new,)) if side == "overlapped" else None
            if thread is not None:
                thread.start()
            meanwhile = fit(trained, args.epochs)
            joined = time.perf_counter()
            if thread is not None:
                thread.join()
            waited = time.perf_counter() - joined
            first = fit(new, 1)
            sides[side].append({"meanwhile_s": meanwhile, "wait_s": waited, "first_epoch_s": first, "round_s": time.perf_counter() - start})

    report: dict[str, Any] = {
        "config": {
            **{k: getattr(args, k) for k in ("subset", "rounds", "epochs", "batch_size")},
            "backend": keras.backend.backend(),
            "device": accelerator.kind,
            "precision": precision,
        },
    }
    for side, rows in sides.items():
        report[side] = {key: round(statistics.mean(row[key] for row in rows), 3) for key in rows[0]}
        report[side]["rounds_s"] = [round(row["round_s"], 3) for row in rows]
    report["gain_per_network_s"] = round(report["sequential"]["round_s"] - report["overlapped"]["round_s"], 3)
    report["overlapped_over_sequential"] = round(report["overlapped"]["round_s"] / report["sequential"]["round_s"], 3)
    write_report(report, args.out)


if __name__ == "__main__":
    main()
