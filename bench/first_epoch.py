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

from _sides import add_one_model_arguments, one_model, report_config, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_one_model_arguments(parser, fits=6, out="bench/results/first_epoch.json")
    args = parser.parse_args()

    import keras

    from tuning.batches import fit_data
    from tuning.runtime import seed_trial

    x, y, validation, model = one_model(args, blocks=2)
    model.fit(**fit_data(x, y, args.batch_size), validation_data=validation, epochs=1, verbose=0)  # the trace, outside the figures
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
        model.fit(**fit_data(x, y, args.batch_size, seed=fit, callbacks=[timer]), validation_data=validation, epochs=args.epochs, verbose=0)
        later = statistics.mean(timer.epochs[1:])
        sides[side].append({"first_s": timer.epochs[0], "later_s": later, "excess_s": timer.epochs[0] - later, "fit_s": time.perf_counter() - start})

    report: dict = {"config": report_config(args)}
    for side, rows in sides.items():
        report[side] = {key: round(statistics.mean(row[key] for row in rows), 3) for key in ("first_s", "later_s", "excess_s", "fit_s")}
        report[side]["excess_each_s"] = [round(row["excess_s"], 3) for row in rows]
    report["fit_tuning_over_keras"] = round(report["tuning_seed_trial"]["fit_s"] / report["keras_set_random_seed"]["fit_s"], 3)
    write_report(report, args.out)


if __name__ == "__main__":
    main()
