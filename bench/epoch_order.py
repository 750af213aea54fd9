"""Steady epoch time on TensorFlow: the training pipeline reshuffled by tf.data against the per-epoch order.

Before, `tuning` shuffled row indices with `Dataset.shuffle(reshuffle_each_iteration=True)` from a seed, so
epoch k's order depended on how many epochs the pipeline had served (a resumed trial saw other batches);
now each epoch's order is drawn from (seed, epoch) (`tuning.batches.epoch_order`) and held in a variable
that each batch gathers its rows' positions from. Both sides train the same compiled model in one process,
fits alternating (before, after, after, before, ...), `--fits` each of `--epochs` epochs; reported per side:
each epoch's training time (its start to the start of validation), mean and median, the first fit aside.

    python bench/epoch_order.py --subset 5000 --fits 4 --epochs 3 --out bench/results/epoch_order.json
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from _sides import add_one_model_arguments, one_model, report_config, write_report


def reshuffled_batches(x, y, batch_size: int, seed: int):  # noqa: ANN001, ANN201 - the pipeline as it was
    import tensorflow as tf

    from tuning._tensorflow import _without_autotuning

    images, labels = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
    rows = tf.data.Dataset.range(len(y)).shuffle(len(y), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    return rows.map(lambda index: (tf.gather(images, index), tf.gather(labels, index))).prefetch(1).with_options(_without_autotuning())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_one_model_arguments(parser, fits=4, out="bench/results/epoch_order.json")
    args = parser.parse_args()

    import keras

    from tuning.batches import fit_data

    x, y, validation, model = one_model(args, blocks=1)
    images, labels = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)  # converted once, as a search does
    gc.collect()
    gc.freeze()

    class Timer(keras.callbacks.Callback):
        def __init__(self, rows: list) -> None:
            super().__init__()
            self.rows = rows

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_test_begin(self, logs=None):
            self.rows.append(time.perf_counter() - self.start)

    def feed(side: str, fit: int, rows: list) -> dict:
        if side == "reshuffled":
            return {"x": reshuffled_batches(images, labels, args.batch_size, fit), "shuffle": False, "callbacks": [Timer(rows)]}
        return fit_data(images, labels, args.batch_size, seed=fit, callbacks=[Timer(rows)])

    for side in ("reshuffled", "epoch_order"):  # both traced, outside the figures
        model.fit(**feed(side, 0, []), validation_data=validation, epochs=1, verbose=0)
    sides: dict[str, list] = {"reshuffled": [], "epoch_order": []}
    order = [side for pair in range(args.fits) for side in (list(sides) if pair % 2 == 0 else list(sides)[::-1])]
    for fit, side in enumerate(order, start=1):
        model.fit(**feed(side, fit, sides[side]), validation_data=validation, epochs=args.epochs, verbose=0)

    report: dict = {"config": report_config(args)}
    for side, rows in sides.items():
        report[side] = {
            "epochs": len(rows),
            "mean_train_s": round(statistics.mean(rows), 3),
            "median_train_s": round(statistics.median(rows), 3),
            "train_s": [round(row, 3) for row in rows],
        }
    report["mean_epoch_order_over_reshuffled"] = round(report["epoch_order"]["mean_train_s"] / report["reshuffled"]["mean_train_s"], 3)
    write_report(report, args.out)


if __name__ == "__main__":
    main()
