"""The CPU defaults, measured: thread pools, input pipeline, batch size, XLA and steps per call for one `tuning` CNN.

Each setting trains the same model (`tuning`'s builder: 2 conv blocks of 32/64 filters, dense 64, the
benchmark's largest configuration) on the same Fashion-MNIST subset for a few epochs, in its own process
(TensorFlow fixes its thread pools at start), each setting three times in alternating order. This machine's
speed varies by up to 2x from minute to minute (a shared host), so a setting's figure is its fastest steady
epoch (any epoch after the first) over its runs, as `timeit` does; medians are kept beside them.

    python bench/cpu_defaults.py --subset 5000 --epochs 4 --out bench/results/cpu_defaults.json
    python bench/cpu_defaults.py --only steps_per_execution     # the baseline and the settings named so
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

FASHION = "/usr/share/datasets/fashion-mnist"

# name -> (what changes, overrides of the baseline: threads, pipeline, batch size, XLA)
SETTINGS: dict[str, dict] = {
    "baseline: TensorFlow's thread defaults, uint8 arrays, batch 64, no XLA, one step per call": {"steps": 1},
    "threads: intra-op 2, inter-op 1": {"intra": 2, "inter": 1},
    "threads: intra-op 1, inter-op 1": {"intra": 1, "inter": 1},
    "threads: intra-op 2, inter-op 2": {"intra": 2, "inter": 2},
    "pipeline: float32 arrays scaled beforehand": {"pipeline": "float32"},
    "pipeline: tf.data, shuffled, batched, prefetched": {"pipeline": "tf.data"},
    "batch 32": {"batch": 32},
    "batch 128": {"batch": 128},
    "batch 256": {"batch": 256},
    "XLA (jit_compile: true)": {"jit": True},
    "steps_per_execution 8": {"steps": 8},
    "steps_per_execution 32": {"steps": 32},
    "steps_per_execution 64": {"steps": 64},
}


def child(args: argparse.Namespace, setting: dict) -> dict:
    import tensorflow as tf

    if "intra" in setting:
        tf.config.threading.set_intra_op_parallelism_threads(setting["intra"])
        tf.config.threading.set_inter_op_parallelism_threads(setting["inter"])
    import keras
    import numpy as np

    from tuning import load_spec
    from tuning.data import load_data
    from tuning.hypermodel import build_model, compile_model, prepare_for_training
    from tuning.space import resolve

    spec = load_spec(
        {
            "version": 1,
            "data": {"source": "fashion_mnist", "path": args.data, "max_train_samples": args.subset},
            "model": {"blocks": 2, "filters": 32, "dense_units": 64, "padding": "same", "pooling": "max"},
            "training": {"batch_size": setting.get("batch", 64)},
        }
    )
    data = load_data(spec.data, Path("."), seed=0)
    one_hot = np.eye(data.num_classes, dtype="float32")
    y, y_val = one_hot[data.y_train], one_hot[data.y_val]
    keras.utils.set_random_seed(0)
    config = resolve(spec, {})
    pipeline = setting.get("pipeline", "uint8")
    value_max = 1.0 if pipeline == "float32" else data.value_max
    model = compile_model(
        build_model(config, data.input_shape, data.num_classes, value_max=value_max), config, setting.get("jit", False), setting.get("steps", 1)
    )
    prepare_for_training(model, data.input_shape, data.num_classes)
    x, x_val = data.x_train, data.x_val
    if pipeline == "float32":
        x, x_val = (a.astype("float32") / data.value_max for a in (x, x_val))
    fit: dict = {"x": x, "y": y, "batch_size": config.batch_size}
    if pipeline == "tf.data":
        train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(config.batch_size).prefetch(tf.data.AUTOTUNE)
        fit = {"x": train}
    seconds: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    history = model.fit(**fit, epochs=args.epochs, validation_data=(x_val, y_val), callbacks=[Timer()], verbose=0)
    return {
        "first": seconds[0],
        "steady": min(seconds[1:]),
        "steady_median": statistics.median(seconds[1:]),
        "val_accuracy": float(history.history["val_accuracy"][-1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=FASHION)
    parser.add_argument("--out", default="bench/results/cpu_defaults.json")
    parser.add_argument("--only", help="run the baseline and the settings whose name contains this text")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args, json.loads(args.child))))
        return
    order = [name for i, name in enumerate(SETTINGS) if i == 0 or not args.only or args.only in name]
    runs: dict[str, list[dict]] = {name: [] for name in order}
    for repeat in range(args.repeats):
        for name in order if repeat % 2 == 0 else reversed(order):
            command = [
                sys.executable,
                __file__,
                "--child",
                json.dumps(SETTINGS[name]),
                "--subset",
                str(args.subset),
                "--epochs",
                str(args.epochs),
                "--data",
                args.data,
            ]
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
            output = subprocess.run(command, check=True, env=env, capture_output=True, text=True).stdout
            runs[name].append(json.loads(output.strip().splitlines()[-1]))
            print(f"{name}: {runs[name][-1]}", flush=True)
    baseline = min(r["steady"] for r in runs[order[0]])
    table = {}
    for name, results in runs.items():
        steady = min(r["steady"] for r in results)
        table[name] = {
            "steady_epoch_s": round(steady, 3),
            "vs_baseline": round(steady / baseline, 3),
            "steady_epoch_median_s": round(statistics.median(r["steady_median"] for r in results), 3),
            "first_epoch_s": round(statistics.median(r["first"] for r in results), 3),
            "val_accuracy": round(statistics.median(r["val_accuracy"] for r in results), 4),
        }
    report = {"config": {"subset": args.subset, "epochs": args.epochs, "repeats": args.repeats, "cpus": os.cpu_count()}, "settings": table}
    print(json.dumps(report, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
