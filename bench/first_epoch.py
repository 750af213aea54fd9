"""The first epoch of a trial that reuses a model: seeded with `keras.utils.set_random_seed` against `tuning`'s
`seed_trial`.

`keras.utils.set_random_seed` calls `tf.random.set_seed`, which clears TensorFlow's caches of instantiated
functions, so the next fit optimises its training and evaluation graphs again before its first step.
`tuning.runtime.seed_trial` seeds what a Keras model draws from (Python, NumPy, Keras' seed generators)
without it. One compiled model, fits of `--epochs` epochs on a fresh training pipeline each (as trials
have), the two seedings alternating (keras, tuning, tuning, keras, ...) in one process; reported per side:
the first epoch, the later epochs' mean, the first epoch's excess over them, and the whole fit.

    python bench/first_epoch.py --subset 5000 --fits 6 --epochs 3 --out bench/results/first_epoch.json
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
    parser.add_argument("--fits", type=int, default=6, help="fits per side")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fit (at least 2)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data", default=FASHION, help="folder of the four Fashion-MNIST IDX files")
    parser.add_argument("--out", default="bench/results/first_epoch.json")
    args = parser.parse_args()

    import keras
    import numpy as np

    from tuning import load_spec
    from tuning._tensorflow import held_out_batches, training_batches
    from tuning.data import load_data
    from tuning.hypermodel import build_model, compile_model
    from tuning.runtime import seed_trial
    from tuning.space import resolve

    spec = load_spec(
        {
            "version": 1,
            "data": {"source": "fashion_mnist", "path": args.data, "max_train_samples": args.subset},
            "model": {"blocks": 2, "filters": 32, "dense_units": 64, "padding": "same"},
            "training": {"batch_size": args.batch_size},
        }
    )
    data = load_data(spec.data, Path("."), seed=0)
    one_hot = np.eye(data.num_classes, dtype="float32")
    x, y = data.x_train, one_hot[data.y_train]
    validation = held_out_batches(data.x_val, one_hot[data.y_val], 256)
    config = resolve(spec, {})
    model = compile_model(build_model(config, data.input_shape, data.num_classes, value_max=data.value_max), config, steps_per_execution=32)
    model.fit(training_batches(x, y, args.batch_size, 0), validation_data=validation, epochs=1, verbose=0)  # the trace, outside the figures
    gc.collect()
    gc.freeze()  # as `tuning` does during its trials

    class Timer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epochs: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(time.perf_counter() - self.start)

    seeding = {"keras_set_random_seed": keras.utils.set_random_seed, "tuning_seed_trial": seed_trial}
    sides: dict[str, list] = {side: [] for side in seeding}
    order = [side for pair in range(args.fits) for side in (list(seeding) if pair % 2 == 0 else list(seeding)[::-1])]
    for fit, side in enumerate(order, start=1):
        start = time.perf_counter()
        seeding[side](fit)
        timer = Timer()
        model.fit(training_batches(x, y, args.batch_size, fit), validation_data=validation, epochs=args.epochs, callbacks=[timer], verbose=0, shuffle=False)
        later = statistics.mean(timer.epochs[1:])
        sides[side].append({"first_s": timer.epochs[0], "later_s": later, "excess_s": timer.epochs[0] - later, "fit_s": time.perf_counter() - start})

    report: dict = {"config": {k: getattr(args, k) for k in ("subset", "fits", "epochs", "batch_size", "data")}}
    for side, rows in sides.items():
        report[side] = {key: round(statistics.mean(row[key] for row in rows), 3) for key in ("first_s", "later_s", "excess_s", "fit_s")}
        report[side]["excess_each_s"] = [round(row["excess_s"], 3) for row in rows]
    report["fit_tuning_over_keras"] = round(report["tuning_seed_trial"]["fit_s"] / report["keras_set_random_seed"]["fit_s"], 3)
    write_report(report, args.out)


if __name__ == "__main__":
    main()
