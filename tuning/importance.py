"""Which hyperparameters mattered: a random forest fitted to the scores, with a fixed seed, and the
spread of its importances over bootstrap resamples of the trials, so two calls give the same numbers and the
reader sees how far to trust them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TREES = 50
RESAMPLES = 10


def encode(rows: list[dict[str, Any]], params: Sequence[str]) -> np.ndarray:
    """Numbers as they are, categories as codes, inactive (conditional) values as -1: trees need no scaling."""
    columns = []
    for name in params:
        values = [r.get(name) for r in rows]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None):
            columns.append([-1.0 if v is None else float(v) for v in values])
        else:
            labels = sorted({str(v) for v in values if v is not None})
            columns.append([-1.0 if v is None else float(labels.index(str(v))) for v in values])
    return np.array(columns, dtype=float).T


def best_per_configuration(rows: list[dict[str, Any]], params: Sequence[str]) -> list[dict[str, Any]]:
    """One row per configuration: its largest-budget result (a Hyperband promotion supersedes its parent)."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        if row["status"] != "completed" or row["score"] is None:
            continue
        key = tuple(str(row.get(p)) for p in params)
        budget = row.get("epochs") or row.get("epochs_trained") or 0
        if key not in best or budget > (best[key].get("epochs") or best[key].get("epochs_trained") or 0):
            best[key] = row
    return list(best.values())


def hyperparameter_importance(rows: list[dict[str, Any]], params: Sequence[str], seed: int = 0) -> dict[str, Any]:
    from sklearn.ensemble import RandomForestRegressor

    method = (
        f"random-forest impurity importance (scikit-learn, {TREES} trees, random_state={seed}) of each hyperparameter "
        f"for the score, one row per configuration at its largest budget; spread = standard deviation over "
        f"{RESAMPLES} bootstrap resamples of those rows (seeded)"
    )
    data = best_per_configuration(rows, params)
    result: dict[str, Any] = {"method": method, "seed": seed, "configurations": len(data), "values": {}}
    if len(data) < 4 or not params:
        result["note"] = f"too few completed configurations ({len(data)}) to estimate importance; at least 4 are needed"
        return result
    x, y = encode(data, params), np.array([r["score"] for r in data], dtype=float)
    if np.ptp(y) == 0:
        result["note"] = "every configuration has the same score"
        return result

    def fit(xs: np.ndarray, ys: np.ndarray, state: int) -> np.ndarray:
        forest = RandomForestRegressor(n_estimators=TREES, random_state=state, n_jobs=1).fit(xs, ys)
        return np.asarray(forest.feature_importances_)

    full = fit(x, y, seed)
    rng = np.random.default_rng(seed)
    samples = []
    for b in range(RESAMPLES):
        index = rng.integers(0, len(y), len(y))
        if np.ptp(y[index]) > 0:
            samples.append(fit(x[index], y[index], seed + b + 1))
    spread = np.array(samples) if samples else full[None, :]
    for i, name in enumerate(params):
        result["values"][name] = {"importance": float(full[i]), "mean": float(spread[:, i].mean()), "std": float(spread[:, i].std())}
    return result
