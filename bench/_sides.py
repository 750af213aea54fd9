"""What the comparison benchmarks share: each side runs in its own process (its memory and start-up are its
own) and hands its raw figures back as JSON; the parent adds the process's wall time. And, for benchmarks
that alternate two ways of training one model in one process, that model and its data."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

FASHION = "/usr/share/datasets/fashion-mnist"


def add_one_model_arguments(parser: argparse.ArgumentParser, fits: int, out: str) -> None:
    parser.add_argument("--subset", type=int, default=5000, help="training images from Fashion-MNIST")
    parser.add_argument("--fits", type=int, default=fits, help="fits per side")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fit")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data", default=FASHION, help="folder of the four Fashion-MNIST IDX files")
    parser.add_argument("--out", default=out)


def one_model(args: argparse.Namespace, blocks: int) -> tuple[Any, Any, Any, Any]:
    """`tuning`'s model of `blocks` conv blocks (32 filters, dense 64, 32 steps per call), compiled, with the
    training images, one-hot labels and held-out batches of Fashion-MNIST's first `args.subset` images."""
    import numpy as np

    from tuning import load_spec
    from tuning._tensorflow import held_out_batches
    from tuning.data import load_data
    from tuning.hypermodel import build_model, compile_model
    from tuning.space import resolve

    spec = load_spec(
        {
            "version": 1,
            "data": {"source": "fashion_mnist", "path": args.data, "max_train_samples": args.subset},
            "model": {"blocks": blocks, "filters": 32, "dense_units": 64, "padding": "same"},
            "training": {"batch_size": args.batch_size},
        }
    )
    data = load_data(spec.data, Path("."), seed=0)
    one_hot = np.eye(data.num_classes, dtype="float32")
    validation = held_out_batches(data.x_val, one_hot[data.y_val], 256)
    config = resolve(spec, {})
    model = compile_model(build_model(config, data.input_shape, data.num_classes, value_max=data.value_max), config, steps_per_execution=32)
    return data.x_train, one_hot[data.y_train], validation, model


def report_config(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("subset", "fits", "epochs", "batch_size", "data")}


def add_child_arguments(parser: argparse.ArgumentParser, sides: Sequence[str]) -> None:
    parser.add_argument("--child", choices=list(sides), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)


def flags(args: argparse.Namespace, names: Sequence[str]) -> list[str]:
    """`--name value` for each argument a child needs again."""
    return [part for name in names for part in (f"--{name.replace('_', '-')}", str(getattr(args, name)))]


def finish_child(args: argparse.Namespace, result: dict[str, Any]) -> None:
    Path(args.workdir, f"{args.child}.json").write_text(json.dumps(result))


class OwnCommand(NamedTuple):
    """A side run as its own command line (e.g. `python -m tuning search ...`) rather than as a child of the
    benchmark script: `argv(work)` writes the command's input files into `work` and returns the command;
    `figures(work)` reads its raw figures afterwards, outside the timing."""

    argv: Callable[[Path], list[str]]
    figures: Callable[[Path], dict[str, Any]]


def run_sides(script: str, sides: Sequence[str], forwarded: list[str], commands: Mapping[str, OwnCommand] | None = None) -> dict[str, dict[str, Any]]:
    """Each side's raw figures, plus `process_wall_s` (from launch to exit) and `process_peak_rss_mb`. A side
    is `script --child side` unless `commands` names its own command. JAX's compile cache starts cold."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as work:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TUNING_COMPILE_CACHE": str(Path(work, "compiled"))}
        for side in sides:
            own = (commands or {}).get(side)
            argv = own.argv(Path(work)) if own else [sys.executable, script, "--child", side, "--workdir", work, *forwarded]
            launched = time.perf_counter()
            process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - launched
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                raise subprocess.CalledProcessError(process.returncode, argv)
            figures = own.figures(Path(work)) if own else json.loads(Path(work, f"{side}.json").read_text())
            results[side] = {**figures, "process_wall_s": wall, "process_peak_rss_mb": usage.ru_maxrss / 1024}
    return results


def write_report(report: dict[str, Any], out: str) -> None:
    print(json.dumps(report, indent=2))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2) + "\n")
