"""Images per second of one `tuning` trial against a bare `model.fit` of the same model, batch size and data.

What a trial adds to `fit` (its callbacks: early stopping, the epoch log, the best-epoch and resume
checkpoints; the NaN guard) must not slow the accelerator down. Each side runs in its own process: the
bare side builds the trial's model with `tuning`'s own builder, compiles it the same way (same precision
policy and XLA setting) and calls `model.fit(x, y, batch_size, epochs, validation_data, verbose=0)`; the
`tuning` side runs a one-trial search of the same fixed configuration. Both are timed per epoch
(validation included); the steady epoch is the median of every epoch after the first (which compiles).
With `--repeats N` the pair runs N times, the order swapped each time (a host-bound GPU run varies with
the host's load): the ratio reported is the median of the per-pair ratios, each pair's kept beside it.

    python bench/trial_throughput.py --subset 0 --epochs 5 --batch-size 128 --repeats 2 --out bench/results/throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from _sides import add_child_arguments, finish_child, flags, run_sides, write_report

FASHION = "/usr/share/datasets/fashion-mnist"


def spec(args: argparse.Namespace) -> dict:
    """One fixed configuration (nothing tuned): 3 conv blocks with batch norm, the shape of a good Fashion-MNIST CNN."""
    data = {"source": "fashion_mnist", "path": args.data, "validation_split": 0.2}
    if args.subset:
        data["max_train_samples"] = args.subset
    return {
        "version": 1,
        "data": data,
        "model": {"blocks": 3, "filters": 32, "filters_growth": 2.0, "batch_norm": True, "padding": "same", "dense_units": 128, "head_dropout": 0.25},
        "training": {
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "batch_size": args.batch_size,
            "early_stopping": False,
            "steps_per_execution": args.steps_per_execution,
        },
        "search": {"algorithm": "random", "max_trials": 1, "max_epochs": args.epochs, "seed": args.seed},
    }


def run_bare(args: argparse.Namespace) -> dict:
    import keras
    import numpy as np

    from tuning import load_spec
    from tuning.data import load_data
    from tuning.hypermodel import build_model, compile_model
    from tuning.runtime import compile_options, precision_policy, prepare_devices
    from tuning.space import resolve

    loaded = load_spec(spec(args))
    accelerator = prepare_devices()
    keras.config.set_dtype_policy(precision_policy(loaded.training.mixed_precision, accelerator))
    data = load_data(loaded.data, Path("."), seed=args.seed)
    one_hot = np.eye(data.num_classes, dtype="float32")
    keras.utils.set_random_seed(args.seed)
    config = resolve(loaded, {})
    model = compile_model(build_model(config, data.input_shape, data.num_classes, value_max=data.value_max), config, **compile_options(loaded, accelerator))
    seconds: list[float] = []

    class Timer(keras.callbacks.Callback):  # epoch-level only: keeps Keras' asynchronous dispatch on
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    start = time.perf_counter()
    history = model.fit(
        data.x_train, one_hot[data.y_train], batch_size=args.batch_size, epochs=args.epochs,
        validation_data=(data.x_val, one_hot[data.y_val]), callbacks=[Timer()], verbose=0,
    )  # fmt: skip
    return {
        "wall_s": time.perf_counter() - start,
        "epoch_seconds": seconds,
        "train_images": int(len(data.y_train)),
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "accelerator": accelerator.describe(),
        "policy": keras.config.dtype_policy().name,
        "steps_per_execution": model.steps_per_execution,
    }


def run_tuning(args: argparse.Namespace, out: Path) -> dict:
    import tuning

    start = time.perf_counter()
    run = tuning.search(spec(args), name="throughput", out=str(out), overwrite=True, quiet=True)
    wall = time.perf_counter() - start
    (record,) = run.records()
    manifest = json.loads(Path(run.path, "run.json").read_text())
    return {
        "wall_s": wall,
        "trial_wall_s": record.wall_time,
        "epoch_seconds": [row["seconds"] for row in record.history],
        "train_images": int(manifest["data"]["train"]),
        "val_accuracy": float(record.history[-1]["val_accuracy"]),
        "accelerator": manifest.get("device", ""),
        "policy": manifest.get("precision", ""),
        "steps_per_execution": manifest.get("steps_per_execution"),
    }


def summarize(raw: dict) -> dict:
    steady = statistics.median(raw["epoch_seconds"][1:] or raw["epoch_seconds"])
    return {
        "steady_epoch_s": round(steady, 4),
        "first_epoch_s": round(raw["epoch_seconds"][0], 3),
        "images_per_s": round(raw["train_images"] / steady, 1),
        "epochs": len(raw["epoch_seconds"]),
        "epoch_seconds": [round(seconds, 4) for seconds in raw["epoch_seconds"]],
        "val_accuracy": round(raw["val_accuracy"], 4),
        **{k: raw[k] for k in ("wall_s", "trial_wall_s", "accelerator", "policy", "steps_per_execution") if k in raw},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=0, help="training images (default 0: all 60,000, less the validation fifth)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=FASHION, help="folder of the four Fashion-MNIST IDX files")
    parser.add_argument(
        "--steps-per-execution",
        default="auto",
        type=lambda value: value if value == "auto" else int(value),
        help="training steps per call into the backend (default auto)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="run the pair this many times, alternating which side goes first")
    parser.add_argument("--out", default="bench/results/throughput.json")
    add_child_arguments(parser, ["bare", "tuning"])
    args = parser.parse_args()
    if args.child:
        finish_child(args, run_bare(args) if args.child == "bare" else run_tuning(args, Path(args.workdir)))
        return
    forwarded = flags(args, ["subset", "epochs", "batch_size", "seed", "data", "steps_per_execution"])
    pairs = []
    for repeat in range(args.repeats):
        order = ["bare", "tuning"] if repeat % 2 == 0 else ["tuning", "bare"]
        raw = run_sides(__file__, order, forwarded)
        pair: dict[str, Any] = {side: summarize(raw[side]) for side in ("bare", "tuning")}
        pair["tuning_over_bare_images_per_s"] = round(pair["tuning"]["images_per_s"] / pair["bare"]["images_per_s"], 3)
        pair["first"] = order[0]
        pairs.append(pair)
    report = {
        "config": {
            **{k: getattr(args, k) for k in ("subset", "epochs", "batch_size", "seed", "data", "repeats", "steps_per_execution")},
            "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        },
        **{side: pairs[0][side] for side in ("bare", "tuning")},
        "tuning_over_bare_images_per_s": statistics.median(pair["tuning_over_bare_images_per_s"] for pair in pairs),
        "pairs": pairs,
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
