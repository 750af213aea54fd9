"""Epoch stalls on TensorFlow: Keras' own pipeline for arrays against `tuning`'s training pipeline.

Given arrays, Keras builds a `tf.data` pipeline with autotuning on; ending an autotuned iterator (every new
epoch does) sometimes holds the next epoch's first step for about a second on 2 cores. `tuning` feeds its
own pipeline (`tuning._tensorflow.training_batches`, autotuning off). Both sides train the same compiled
model in one process, alternating fits of `--epochs` epochs, `--fits` each, so the machine's load is shared;
reported per side: each epoch's training time, its wait before the first step, and how many waited > 0.5 s.

    python bench/epoch_stalls.py --subset 5000 --fits 4 --epochs 3 --out bench/results/epoch_stalls.json
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from pathlib import Path

from _sides import write_report

FASHION = "/usr/share/datasets/fashion-mnist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=5000, help="training images from Fashion-MNIST")
    parser.add_argument("--fits", type=int, default=4, help="fits per side")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fit")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data", default=FASHION, help="folder of the four Fashion-MNIST IDX files")
    parser.add_argument("--out", default="bench/results/epoch_stalls.json")
    args = parser.parse_args()

    import keras
    import numpy as np

    from tuning import load_spec
    from tuning._tensorflow import held_out_batches, training_batches
    from tuning.data import load_data
    from tuning.hypermodel import build_model, compile_model
    from tuning.space import resolve

    spec = load_spec(
        {
            "version": 1,
            "data": {"source": "fashion_mnist", "path": args.data, "max_train_samples": args.subset},
            "model": {"blocks": 1, "filters": 32, "dense_units": 64, "padding": "same"},
            "training": {"batch_size": args.batch_size},
        }
    )
    data = load_data(spec.data, Path("."), seed=0)
    one_hot = np.eye(data.num_classes, dtype="float32")
    x, y = data.x_train, one_hot[data.y_train]
    validation = held_out_batches(data.x_val, one_hot[data.y_val], 256)
    config = resolve(spec, {})
    model = compile_model(build_model(config, data.input_shape, data.num_classes, value_max=data.value_max), config, steps_per_execution=32)
    gc.collect()
    gc.freeze()  # as `tuning` does during its trials: no collection of the libraries' objects inside an epoch

    class Timer(keras.callbacks.Callback):
        def __init__(self, rows: list) -> None:
            super().__init__()
            self.rows = rows

        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.wait = time.perf_counter(), None

        def on_train_batch_begin(self, batch, logs=None):
            if self.wait is None:
                self.wait = time.perf_counter() - self.start

        def on_test_begin(self, logs=None):
            self.rows.append({"train_s": time.perf_counter() - self.start, "wait_s": self.wait})

    sides: dict[str, list] = {"keras_arrays": [], "tuning_pipeline": []}
    model.fit(training_batches(x, y, args.batch_size, 0), epochs=1, verbose=0)  # the trace, outside the figures
    for fit in range(args.fits):
        for side, rows in sides.items():
            feed = (
                {"x": x, "y": y, "batch_size": args.batch_size}
                if side == "keras_arrays"
                else {"x": training_batches(x, y, args.batch_size, fit), "shuffle": False}
            )
            model.fit(**feed, validation_data=validation, epochs=args.epochs, callbacks=[Timer(rows)], verbose=0)

    report: dict = {"config": {k: getattr(args, k) for k in ("subset", "fits", "epochs", "batch_size", "data")}}
    for side, rows in sides.items():
        report[side] = {
            "epochs": len(rows),
            "stalled_epochs": sum(row["wait_s"] > 0.5 for row in rows),
            "median_train_s": round(statistics.median(row["train_s"] for row in rows), 3),
            "mean_train_s": round(statistics.mean(row["train_s"] for row in rows), 3),
            "mean_wait_s": round(statistics.mean(row["wait_s"] for row in rows), 3),
            "wait_s": [round(row["wait_s"], 3) for row in rows],
        }
    report["mean_train_tuning_over_keras"] = round(report["tuning_pipeline"]["mean_train_s"] / report["keras_arrays"]["mean_train_s"], 3)
    write_report(report, args.out)


if __name__ == "__main__":
    main()
