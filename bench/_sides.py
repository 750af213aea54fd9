"""What the comparison benchmarks share: each side runs in its own process (its memory and start-up are its
own) and hands its raw figures back as JSON; the parent adds the process's wall time."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def add_child_arguments(parser: argparse.ArgumentParser, sides: Sequence[str]) -> None:
    parser.add_argument("--child", choices=list(sides), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)


def flags(args: argparse.Namespace, names: Sequence[str]) -> list[str]:
    """`--name value` for each argument a child needs again."""
    return [part for name in names for part in (f"--{name.replace('_', '-')}", str(getattr(args, name)))]


def finish_child(args: argparse.Namespace, result: dict[str, Any]) -> None:
    Path(args.workdir, f"{args.child}.json").write_text(json.dumps(result))


def run_sides(script: str, sides: Sequence[str], forwarded: list[str]) -> dict[str, dict[str, Any]]:
    """Each side's raw figures, plus `process_wall_s`: from launch to exit. JAX's compile cache starts cold."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as work:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TUNING_COMPILE_CACHE": str(Path(work, "compiled"))}
        for side in sides:
            launched = time.perf_counter()
            subprocess.run([sys.executable, script, "--child", side, "--workdir", work, *forwarded], check=True, env=env, stdout=subprocess.DEVNULL)
            results[side] = {**json.loads(Path(work, f"{side}.json").read_text()), "process_wall_s": time.perf_counter() - launched}
    return results


def write_report(report: dict[str, Any], out: str) -> None:
    print(json.dumps(report, indent=2))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2) + "\n")
