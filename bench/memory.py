"""Memory over a long search: 60 trials in one process, resident memory recorded after each trial.

Every trial record carries `rss_mb` (the search process's resident memory when the trial ended); this
benchmark runs a 60-trial random search on digits and reports how that memory moves from trial to trial:
the growth over the first 10 trials (warm-up: imports, graph caches), and the slope over the last 50.

    python bench/memory.py --trials 60
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory.json")
    args = parser.parse_args()

    import tuning

    spec = {
        "version": 1,
        "data": {"source": "digits"},
        "model": {"blocks": {"int": [1, 2]}, "filters": {"choice": [8, 16, 32]}, "batch_norm": {"choice": [True, False]}, "dense_units": {"choice": [32, 64]}},
        "training": {"learning_rate": {"float": [1e-3, 1e-2], "log": True}},
        "search": {"algorithm": "random", "max_trials": args.trials, "max_epochs": args.epochs, "seed": 0},
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        run = tuning.search(spec, name="memory", out=out, quiet=True)
        records = sorted((r for r in run.records() if r.rss_mb is not None), key=lambda r: r.trial_id)
    rss = np.array([r.rss_mb for r in records])
    tail = rss[10:] if len(rss) > 20 else rss
    slope = float(np.polyfit(np.arange(len(tail)), tail, 1)[0]) if len(tail) > 1 else 0.0
    result = {
        "trials": len(rss),
        "wall_s": round(time.perf_counter() - start, 1),
        "rss_first_mb": float(rss[0]),
        "rss_after_10_mb": float(rss[min(9, len(rss) - 1)]),
        "rss_last_mb": float(rss[-1]),
        "rss_max_mb": float(rss.max()),
        "slope_after_10_mb_per_trial": round(slope, 3),
        "rss_mb": rss.tolist(),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "rss_mb"}, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
