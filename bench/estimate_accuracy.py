"""How close `tuning validate --time` comes to the search it prices: the estimate, then the search itself,
each in its own process, on the comparison's space (Fashion-MNIST, offline). Prints and writes to JSON the
estimate (low, expected, high), what it took to make, and the search's trial loop (run.json's `elapsed_s`,
the span the estimate prices) and whole process, with their ratios.

    python bench/estimate_accuracy.py --subset 5000 --seed 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _sides import FASHION
from compare_kerastuner import space

ESTIMATE = """
import json, sys, time
import tuning
started = time.perf_counter()
result = tuning.estimate(sys.argv[1], samples=int(sys.argv[2]))
result["took_s"] = time.perf_counter() - started
print(json.dumps(result))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--max-epochs", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--data", default=FASHION)
    parser.add_argument("--spec", help="a spec of your own instead of the comparison's space (e.g. search_spaces/digits.yaml)")
    parser.add_argument("--out", default="bench/results/estimate_accuracy.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        spec = Path(work) / "space.yaml"
        spec.write_text(Path(args.spec).read_text() if args.spec else yaml.safe_dump(space(args), sort_keys=False))
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", ESTIMATE, str(spec), str(args.samples)], capture_output=True, text=True, check=True)
        estimate = json.loads(done.stdout.strip().splitlines()[-1])
        estimate_process_s = time.perf_counter() - started
        started = time.perf_counter()
        search = [sys.executable, "-m", "tuning", "search", str(spec), "--name", "run", "--out", work, "--quiet"]
        subprocess.run(search, capture_output=True, text=True, check=True)
        search_process_s = time.perf_counter() - started
        manifest = json.loads((Path(work) / "run" / "run.json").read_text())
    loop_s = float(manifest["elapsed_s"])
    minutes = estimate["minutes"]
    report = {
        "config": vars(args),
        "estimate_minutes": minutes,
        "estimate_epoch_s": estimate["epoch_s"],
        "estimate_first_epoch_excess_s": estimate["first_epoch_excess_s"],
        "estimate_new_networks": estimate["new_networks"],
        "estimate_took_s": estimate["took_s"],
        "estimate_process_s": estimate_process_s,
        "planned_epochs": estimate["epochs"],
        "search_trial_loop_s": loop_s,
        "search_process_s": search_process_s,
        "actual_over_expected": loop_s / (minutes["expected"] * 60),
        "within_low_high": minutes["low"] * 60 <= loop_s <= minutes["high"] * 60,
        "estimate_cost_share_of_search": estimate_process_s / search_process_s,
    }
    print(json.dumps(report, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
