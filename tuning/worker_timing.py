"""Configurations timed as `tuning search --workers N` trains them, for `validate --time --workers N`.

A worker is a process of its own with its share of the machine (`workers.worker_environments`: its GPU, or
cores/N threads), started while the others start, training while they train. So the configurations are
timed in fresh processes with a worker's environment, as many at once as workers share a device: their
epochs then see the same share and the same contention, and their start (imports, data) is a worker's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .timing import time_one


def time_in_workers(spec: Any, chosen: list[dict[str, Any]], workers: int, gpus: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Time `chosen` as `tuning search --workers` trains them: in fresh processes with a worker's environment (its
    GPU, or its share of the CPU cores in threads), as many at once as workers share a device, so the timing
    sees them share it. Each configuration's times are averaged over the processes; a process's start (imports,
    data) until it could take a trial is a worker's start."""
    from .workers import worker_environments

    environments = worker_environments(workers, gpus)
    sharing = [env for index, env in enumerate(environments) if not gpus or index % len(gpus) == 0]
    request = json.dumps({"spec": spec.to_dict(), "base_dir": str(spec.base_dir), "chosen": chosen}) + "\n"
    with tempfile.TemporaryDirectory() as folder:
        logs = [open(Path(folder) / f"timing{index}.log", "w+b") for index in range(len(sharing))]  # noqa: SIM115 - closed below
        launched = time.time()
        children = [
            subprocess.Popen(
                [sys.executable, "-m", "tuning.worker_timing"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            )
            for env, log in zip(sharing, logs)
        ]
        try:
            for child in children:
                _say(child, request)
            ready = [float(_hear(child, log).split()[1]) for child, log in zip(children, logs)]
            for child in children:  # every process times at once
                _say(child, "go\n")
            results = [json.loads(_hear(child, log)) for child, log in zip(children, logs)]
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                child.wait()
            for log in logs:
                log.close()
    keys = ("epoch_s", "first_epoch_excess_s", "build_s", "fit_overhead_s", "checkpoint_s")
    timed = [{**first, **{key: float(np.mean([r["timed"][i][key] for r in results])) for key in keys}} for i, first in enumerate(results[0]["timed"])]
    cpus = os.cpu_count() or 1
    placement = {
        "workers": workers,
        "gpus": list(gpus),
        "threads": None if gpus else max(1, cpus // workers),
        "cpus": cpus,
        "timed_at_once": len(sharing),
        "worker_start_s": float(np.mean(ready)) - launched,
        "device": results[0]["device"],
    }
    return timed, placement


def _say(child: Any, line: str) -> None:
    child.stdin.write(line.encode())
    child.stdin.flush()


PREFIX = "tuning-timing "  # marks the protocol's lines: a library may print to stdout in the timing process too


def _hear(child: Any, log: Any) -> str:
    """The next protocol line a timing process writes (others skipped); if it ended instead, the end of what it
    wrote on stderr."""
    from .errors import RunError

    while line := child.stdout.readline().decode():
        if line.startswith(PREFIX):
            return line[len(PREFIX) :]
    child.wait()
    log.seek(0)
    tail = log.read().decode(errors="replace").strip().splitlines()[-3:]
    raise RunError(f"timing in a worker's environment failed (exit code {child.returncode}): {' / '.join(tail) or 'no output'}")


def timing_process() -> None:
    """`python -m tuning.worker_timing`: one of `time_in_workers`' processes. Starts as a worker starts (Keras and
    KerasTuner imported, devices set up, the data loaded), says `ready` and when, then times the configurations
    it is sent once it hears `go`, and writes their times as one JSON line."""
    from .data import load_data
    from .runtime import compile_options, dtype_policy, precision_policy, prepare_devices, quiet_logs, skip_keras_extras
    from .space import resolve
    from .spec import load_spec

    request = json.loads(sys.stdin.readline())
    skip_keras_extras()  # as the `tuning worker` command does
    quiet_logs()
    accelerator = prepare_devices()
    from . import engine  # noqa: F401 - a worker imports KerasTuner before its first trial

    spec = load_spec(request["spec"])
    dataset = load_data(spec.data, Path(request["base_dir"]), seed=spec.search.seed)
    print(f"{PREFIX}ready", time.time(), flush=True)
    sys.stdin.readline()
    with dtype_policy(precision_policy(spec.training.mixed_precision, accelerator)):
        options = compile_options(spec, accelerator)
        timed = [{"values": values, **time_one(spec, resolve(spec, values), dataset, options)} for values in request["chosen"]]
    print(PREFIX + json.dumps({"timed": timed, "device": accelerator.describe()}), flush=True)


if __name__ == "__main__":
    timing_process()
