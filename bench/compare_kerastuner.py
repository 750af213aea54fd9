"""Plain KerasTuner (written the way the tutorials write it) against `tuning search`, in one run.

Same search space, data, seed and Hyperband budget; each system runs in its own process so that peak
memory is its own: plain KerasTuner as a script, `tuning` as the command a user types (`python -m tuning
search spec.yaml`). Prints the figures and writes them to JSON.

Wall time is each system's whole process, from launch to exit with a tested best model: imports, data
preparation, the search and the best model's test evaluation for both (and `tuning`'s reports, which it
writes as part of its search). `search_s` is the search as each measures it: KerasTuner's `tuner.search`
call, and the `elapsed_s` of `tuning`'s run manifest (its trial loop; imports, data and reports outside).

    python bench/compare_kerastuner.py --subset 5000 --max-epochs 9 --seed 0 --out bench/results/compare.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from _sides import FASHION, OwnCommand, add_child_arguments, finish_child, flags, run_sides, write_report


def space(args: argparse.Namespace) -> dict:
    """The shared space, as a tuning spec (the plain KerasTuner build function mirrors it)."""
    data = {"source": "fashion_mnist", "path": args.data, "max_train_samples": args.subset, "max_test_samples": max(500, args.subset // 5)}
    return {
        "version": 1,
        "data": data,
        "model": {"blocks": {"int": [1, 2]}, "filters": {"choice": [16, 32]}, "dense_units": 64, "padding": "same", "pooling": "max"},
        "training": {
            "learning_rate": {"float": [1e-3, 1e-2], "log": True},
            "batch_size": args.batch_size,
            "early_stopping": {"monitor": "val_loss", "patience": 3},
        },
        "search": {"max_epochs": args.max_epochs, "factor": 3, "seed": args.seed},
    }


def run_plain_kerastuner(args: argparse.Namespace, out: Path) -> dict:
    import keras
    import keras_tuner as kt

    from tuning import load_spec
    from tuning.data import load_data

    spec = load_spec(space(args))
    data = load_data(spec.data, Path("."), seed=args.seed)  # the same split as `tuning`
    x_train, x_val, x_test = (a.astype("float32") / 255.0 for a in (data.x_train, data.x_val, data.x_test))

    def build(hp):  # the tutorials' way: a build function with inline hyperparameters
        model = keras.Sequential([keras.Input(data.input_shape)])
        filters = hp.Choice("filters", [16, 32])
        for block in range(hp.Int("blocks", 1, 2)):
            model.add(keras.layers.Conv2D(filters * 2**block, 3, padding="same", activation="relu"))
            model.add(keras.layers.MaxPooling2D(2))
        model.add(keras.layers.Flatten())
        model.add(keras.layers.Dense(64, activation="relu"))
        model.add(keras.layers.Dense(10, activation="softmax"))
        lr = hp.Float("learning_rate", 1e-3, 1e-2, sampling="log")
        model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    timeline = Timeline()
    tuner = kt.Hyperband(
        build, objective="val_accuracy", max_epochs=args.max_epochs, factor=3, seed=args.seed, directory=str(out / "kt"), project_name="plain", overwrite=True
    )
    start = time.perf_counter()
    type(timeline).start = start
    tuner.search(x_train, data.y_train, validation_data=(x_val, data.y_val), batch_size=args.batch_size,
                 callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=3), timeline], verbose=0)  # fmt: skip
    wall = time.perf_counter() - start
    best = tuner.get_best_models(1)[0]
    test = best.evaluate(x_test, data.y_test, verbose=0, return_dict=True)
    trials = list(tuner.oracle.trials.values())
    return {
        "wall_s": wall,
        "loop_s": wall,  # `tuner.search` is the trial loop: the first trial's build to the last trial's end
        "trials": len(trials),
        "epoch_seconds": timeline.epoch_seconds,
        "first_epochs": timeline.first_epochs,
        "epoch_networks": timeline.epoch_networks,
        "first_networks": timeline.first_networks,
        "curve": timeline.curve,
        "best_val_accuracy": max(t.score for t in trials if t.score is not None),
        "test_accuracy": float(test["accuracy"]),
        "dataset_train": int(len(data.y_train)),
    }


def Timeline():  # noqa: N802 - built lazily so that keras is imported only in the child processes
    import keras

    class _Timeline(keras.callbacks.Callback):
        """Per-epoch durations and the best validation accuracy over time (deep-copied per trial by KT)."""

        epoch_seconds: list = []
        first_epochs: list = []
        epoch_networks: list = []
        first_networks: list = []
        curve: list = []
        start = 0.0
        best = 0.0

        def on_train_begin(self, logs=None):
            self._first = True
            self._network = int(self.model.count_params())  # tells the networks apart

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self._t
            (_Timeline.first_epochs if self._first else _Timeline.epoch_seconds).append(seconds)
            (_Timeline.first_networks if self._first else _Timeline.epoch_networks).append(self._network)
            self._first = False
            value = (logs or {}).get("val_accuracy", 0.0)
            _Timeline.best = max(_Timeline.best, value)
            _Timeline.curve.append((time.perf_counter() - _Timeline.start, _Timeline.best))

        def __deepcopy__(self, memo):  # KerasTuner deep-copies callbacks for each trial; share the records
            return self

    return _Timeline()


def tuning_command(args: argparse.Namespace) -> OwnCommand:
    """`tuning search` as a user runs it: the shared space written as a YAML file, the `tuning` command."""

    def argv(work: Path) -> list[str]:
        spec = work / "tuning.yaml"
        spec.write_text(yaml.safe_dump(space(args), sort_keys=False))
        return [sys.executable, "-m", "tuning", "search", str(spec), "--name", "tuning", "--out", str(work), "--overwrite", "--quiet"]

    return OwnCommand(argv, lambda work: tuning_figures(work / "tuning"))


def tuning_figures(run_dir: Path) -> dict:
    """The raw figures of a finished `tuning` run, read from its folder."""
    import tuning

    run = tuning.open_run(run_dir)
    records = [r for r in run.records() if not r.trial_id.startswith("infeasible")]
    epoch_seconds: list[float] = []
    first_epochs: list[float] = []
    epoch_networks: list[Any] = []
    first_networks: list[Any] = []
    events: list[tuple[float, float]] = []
    for record in records:
        for i, row in enumerate(record.history):
            (first_epochs if i == 0 else epoch_seconds).append(row["seconds"])
            (first_networks if i == 0 else epoch_networks).append(record.params)
    # Best-so-far curve from finish times of trials' epochs (approximate within a trial: spread evenly).
    t0 = min(datetime.fromisoformat(r.started_at) for r in records)
    best = 0.0
    for record in sorted(records, key=lambda r: r.finished_at):
        end = (datetime.fromisoformat(record.finished_at) - t0).total_seconds()
        elapsed = sum(row["seconds"] for row in record.history)
        clock = end - elapsed
        for row in record.history:
            clock += row["seconds"]
            best = max(best, row.get("val_accuracy", 0.0))
            events.append((clock, best))
    return {
        "wall_s": run.manifest["elapsed_s"],  # the trial loop as the run measures it: imports, data and reports outside
        "loop_s": (max(datetime.fromisoformat(r.finished_at) for r in records) - t0).total_seconds(),  # first trial's start to last's end
        "trials": len(records),
        "epoch_seconds": epoch_seconds,
        "first_epochs": first_epochs,
        "epoch_networks": epoch_networks,
        "first_networks": first_networks,
        "curve": sorted(events),
        "best_val_accuracy": max(r.score for r in records if r.score is not None),
        "test_accuracy": float((run.best or {})["test"]["accuracy"]),
    }


def summarize(raw: dict) -> dict:
    """Efficiency is the share of the wall time that training at steady speed would take: every epoch
    trained, at the steady (not first) epoch time of its own network (a 2-block, 32-filter CNN's epoch takes
    longer than a 1-block one's), or of all networks when its network never ran a second epoch.
    `efficiency_one_median` prices every epoch at one median epoch time instead. `trial_loop_efficiency`
    divides by the trial loop alone (the first trial's build to the last trial's end), leaving out what each
    process does once (imports, data, the reports): the per-trial fixed costs' share is 1 minus it.
    `wall_split_s` cuts the wall time into those three parts: training at steady speed, the per-trial fixed
    costs (building, tracing, checkpoints, pipelines, bookkeeping) and what the process does once."""
    epochs = len(raw["epoch_seconds"]) + len(raw["first_epochs"])
    steady = statistics.median(raw["epoch_seconds"]) if raw["epoch_seconds"] else statistics.median(raw["first_epochs"])
    by_network: dict[int, list[float]] = {}
    for network, seconds in zip(raw["epoch_networks"], raw["epoch_seconds"]):
        by_network.setdefault(network, []).append(seconds)
    network_steady = {network: statistics.median(times) for network, times in by_network.items()}
    productive = sum(network_steady.get(n, steady) for n in [*raw["epoch_networks"], *raw["first_networks"]])
    in_fit = sum(raw["epoch_seconds"]) + sum(raw["first_epochs"])
    final = raw["best_val_accuracy"]
    reach = next((t for t, v in raw["curve"] if v >= 0.99 * final), None)
    wall = raw["process_wall_s"]
    return {
        "wall_s": round(wall, 2),
        "search_s": round(raw["wall_s"], 2),
        "trials": raw["trials"],
        "epochs_trained": epochs,
        "outside_fit_per_trial_s": round((wall - in_fit) / max(1, raw["trials"]), 3),
        "steady_epoch_s": round(steady, 4),
        "first_epoch_median_s": round(statistics.median(raw["first_epochs"]), 4) if raw["first_epochs"] else None,
        "efficiency": round(productive / wall, 3),
        "trial_loop_s": round(raw["loop_s"], 2),
        "trial_loop_efficiency": round(productive / raw["loop_s"], 3),
        "efficiency_one_median": round(epochs * steady / wall, 3),
        "wall_split_s": {
            "training_at_steady_speed": round(productive, 2),
            "per_trial_fixed": round(raw["loop_s"] - productive, 2),
            "once_per_process": round(wall - raw["loop_s"], 2),
        },
        "best_val_accuracy": round(final, 4),
        "test_accuracy": round(raw["test_accuracy"], 4),
        "time_to_99pct_of_best_s": round(reach, 2) if reach is not None else None,
        "peak_rss_mb": round(raw["process_peak_rss_mb"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=5000, help="training images from Fashion-MNIST (default 5000)")
    parser.add_argument("--max-epochs", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=FASHION, help="folder of the four Fashion-MNIST IDX files")
    parser.add_argument("--out", default="bench/results/compare_kerastuner.json")
    add_child_arguments(parser, ["kerastuner"])
    args = parser.parse_args()
    if args.child:
        finish_child(args, run_plain_kerastuner(args, Path(args.workdir)))
        return
    # Which system runs first alternates with the seed: this machine's speed drifts over minutes, and a
    # fixed order would hand the same side the same drift in every run.
    order = ["kerastuner", "tuning"] if args.seed % 2 == 0 else ["tuning", "kerastuner"]
    raw = run_sides(__file__, order, flags(args, ["subset", "max_epochs", "batch_size", "seed", "data"]), {"tuning": tuning_command(args)})
    results = {system: summarize(figures) for system, figures in raw.items()}
    kt, ours = results["kerastuner"], results["tuning"]
    report = {
        "config": {
            "subset": args.subset,
            "max_epochs": args.max_epochs,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "data": args.data,
            "cpus": os.cpu_count(),
            "order": order,
        },
        "kerastuner": kt,
        "tuning": ours,
        "ratios": {
            "wall_time_tuning_over_kerastuner": round(ours["wall_s"] / kt["wall_s"], 3),
            "test_accuracy_difference": round(ours["test_accuracy"] - kt["test_accuracy"], 4),
        },
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
