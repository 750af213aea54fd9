"""Trials per hour with 1 and 2 worker processes against one process, on the same search.

python bench/workers.py --subset 3000 --trials 12
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", type=int, default=3000, help="Fashion-MNIST training images (Debian's files); 0 = digits")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "workers.json")
    args = parser.parse_args()

    import tuning

    fashion = Path("/usr/share/datasets/fashion-mnist")
    data = {"source": "fashion_mnist", "path": str(fashion), "max_train_samples": args.subset, "max_test_samples": 1000}
    if not args.subset or not fashion.exists():
        data = {"source": "digits"}
    spec = {
        "version": 1,
        "data": data,
        "model": {"blocks": {"int": [1, 2]}, "filters": {"choice": [16, 32]}, "dense_units": 64},
        "training": {"learning_rate": {"float": [1e-3, 1e-2], "log": True}},
        "search": {"algorithm": "random", "max_trials": args.trials, "max_epochs": args.epochs, "seed": 0},
    }
    result: dict[str, object] = {"data": data["source"], "trials": args.trials, "epochs": args.epochs, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as out:
        for label, workers in (("in_process", 0), ("workers_1", 1), ("workers_2", 2)):
            start = time.perf_counter()
            run = tuning.search(spec, name=label, out=out, workers=workers, quiet=True)
            wall = time.perf_counter() - start
            result[label] = {"wall_s": round(wall, 1), "trials_per_hour": round(len(run.trials) * 3600 / wall, 1), "best": run.best["score"]}
            print(label, result[label], flush=True)
    base = result["in_process"]["wall_s"]  # type: ignore[index]
    result["speedup_2_workers"] = round(base / result["workers_2"]["wall_s"], 3)  # type: ignore[index]
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
