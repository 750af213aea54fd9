"""Epoch stalls on TensorFlow: Keras' own pipeline for arrays against `tuning`'s training pipeline.

Given arrays, Keras builds a `tf.data` pipeline with autotuning on; ending an autotuned iterator (every new
epoch does) sometimes holds the next epoch's first step for about a second on 2 cores. `tuning` feeds its
own pipeline (`tuning.batches.fit_data`, autotuning off). Both sides train the same compiled
model in one process, alternating fits of `--epochs` epochs, `--fits` each, so the machine's load is shared;
reported per side: each epoch's training time, its wait before the first step, and how many waited > 0.5 s.

    python bench/epoch_stalls.py --subset 5000 --fits 4 --epochs 3 --out bench/results/epoch_stalls.json
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from _sides import add_one_model_arguments, one_model, report_config, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_one_model_arguments(parser, fits=4, out="bench/results/epoch_stalls.json")
    args = parser.parse_args()

    import keras

    from tuning.batches import fit_data

    x, y, validation, model = one_model(args, blocks=1)
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
    model.fit(**fit_data(x, y, args.batch_size), epochs=1, verbose=0)  # the trace, outside the figures
    for fit in range(args.fits):
        for side, rows in sides.items():
            feed = (
                {"x": x, "y": y, "batch_size": args.batch_size, "callbacks": [Timer(rows)]}
                if side == "keras_arrays"
                else fit_data(x, y, args.batch_size, seed=fit, callbacks=[Timer(rows)])
            )
            model.fit(**feed, validation_data=validation, epochs=args.epochs, verbose=0)

    report: dict = {"config": report_config(args)}
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
