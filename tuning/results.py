"""Ranking and the tables a finished (or running) search leaves behind: `trials.csv`, `leaderboard.md`.

The ranking rule: completed trials by score (the objective at their best epoch); on equal scores, the
trial with the larger epoch budget first (a 1-epoch Hyperband trial never outranks its full-budget
promotion with the same score); then by trial id. A short trial with a higher score does rank first: the
`epochs` column says which budget each score had. Diverged, failed and infeasible trials follow, unranked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .records import TrialRecord, write_atomic

RANKING_RULE = (
    "Ranked by the score (the objective at each trial's best epoch); on equal scores, trials trained to the "
    "larger epoch budget rank first (a promotion that only matches its parent's score ranks above it). "
    "Diverged, failed and infeasible trials are listed unranked."
)
METRIC_COLUMNS = ("loss", "accuracy", "val_loss", "val_accuracy")


def rank(records: Sequence[TrialRecord], direction: str) -> list[TrialRecord]:
    """Completed trials best first (see `RANKING_RULE`), then the others by trial id."""
    sign = -1.0 if direction == "max" else 1.0
    done = [r for r in records if r.status == "completed" and r.score is not None]
    done.sort(key=lambda r: (sign * r.score, -r.budget, r.trial_id))  # type: ignore[operator]
    rest = sorted((r for r in records if r not in done), key=lambda r: (r.status != "running", r.status, r.trial_id))
    return done + rest


def trial_rows(records: Sequence[TrialRecord], param_names: Sequence[str], direction: str) -> list[dict[str, Any]]:
    """One flat row per trial, in rank order: what `trials.csv` and `Run.trials` hold."""
    rows = []
    for position, record in enumerate(rank(records, direction), start=1):
        completed = record.status == "completed"
        row: dict[str, Any] = {
            "rank": position if completed else None,
            "trial_id": record.trial_id,
            "status": record.status,
            "reason": record.reason,
        }
        for name in param_names:
            row[name] = record.values.get(name)
        row.update(
            iteration=record.hyperband.get("iteration"),
            bracket=record.hyperband.get("bracket"),
            round=record.hyperband.get("round"),
            epochs=record.hyperband.get("epochs"),
            initial_epoch=record.hyperband.get("initial_epoch"),
            parent_trial=record.parent,
            best_epoch=record.best_epoch,
            epochs_trained=record.epochs_trained,
            stopped_by_budget=record.stopped_by_budget,  # its score is partial: cut short by search.time_budget
            score=record.score,
        )
        last = record.history[-1] if record.history else {}
        for metric in METRIC_COLUMNS:
            row[metric] = record.metrics.get(metric) if completed else last.get(metric)
        row.update(params=record.params, wall_time_s=round(record.wall_time, 3), seed=record.seed)
        rows.append(row)
    return rows


INTEGER_COLUMNS = ("rank", "iteration", "bracket", "round", "epochs", "initial_epoch", "best_epoch", "epochs_trained", "params", "seed")


def trials_frame(rows: list[dict[str, Any]], columns: Sequence[str]) -> Any:
    """The rows as a typed pandas DataFrame (integer columns stay integers despite missing values).

    A hyperparameter with whole-number values is an integer column too: a conditional one (`dense_units` only
    when `dense_layers >= 1`) is missing in some rows, and pandas would otherwise write `32.0` in trials.csv.
    """
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(columns))
    for column in [*INTEGER_COLUMNS, *(c for c in columns if c not in INTEGER_COLUMNS and _whole_numbers([row.get(c) for row in rows]))]:
        frame[column] = frame[column].astype("Int64")
    return frame


def _whole_numbers(values: list[Any]) -> bool:
    """True when every value given is a Python int (not a bool) that fits pandas' Int64."""
    given = [v for v in values if v is not None]
    return bool(given) and all(isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**63 for v in given)


def write_trials_csv(path: Path, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    write_atomic(path, trials_frame(rows, columns).to_csv(index=False))


def columns(param_names: Sequence[str]) -> list[str]:
    return [
        "rank", "trial_id", "status", "reason", *param_names, "iteration", "bracket", "round", "epochs", "initial_epoch",
        "parent_trial", "best_epoch", "epochs_trained", "stopped_by_budget", "score", *METRIC_COLUMNS, "params", "wall_time_s", "seed",
    ]  # fmt: skip


def leaderboard_markdown(rows: list[dict[str, Any]], param_names: Sequence[str], manifest: dict[str, Any], top: int = 20) -> str:
    objective = manifest.get("objective", {})
    metric = objective.get("metric", "score")
    lines = [f"# Leaderboard: {manifest.get('name', '')}", ""]
    status = manifest.get("status", "")
    if status != "finished":
        lines += [f"**Status: {status}** (partial results).", ""]
    lines += [f"Objective: `{metric}` ({objective.get('direction', '')}). {RANKING_RULE}", ""]
    best = manifest.get("best") or {}
    if best.get("test") and rows and best.get("trial_id") == rows[0]["trial_id"]:
        test = best["test"]
        lines += [
            f"Best trial `{best['trial_id']}`: {metric} {best['score']:.4f}; test accuracy {test.get('accuracy', float('nan')):.4f}, test loss {test.get('loss', float('nan')):.4f}.",
            "",
        ]
    header, body, others = leaderboard_table(rows, param_names, top)
    lines += markdown_table(header, body)
    cut = [f"Trial `{row['trial_id']}` has a partial score: {row['reason']}." for row in rows if row.get("stopped_by_budget")]
    lines += ["", *cut] if cut else []
    if others:
        lines += ["", "## Trials without a score", "", *markdown_table(["trial", "status", "reason"], others)]
    return "\n".join(lines) + "\n"


def leaderboard_table(rows: list[dict[str, Any]], param_names: Sequence[str], top: int) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """The best `top` trials as table cells (header, rows), and the trials without a score (trial, status,
    reason): what `leaderboard.md` and the reports show."""
    header = ["rank", "trial", "score", *param_names, "iteration", "bracket", "round", "epochs", "best epoch", "params", "time (s)"]
    columns = ["rank", "trial_id", "score", *param_names, "iteration", "bracket", "round", "epochs", "best_epoch", "params", "wall_time_s"]
    ranked = [row for row in rows if row["rank"] is not None][:top]
    # Hyperband's iteration, bracket, round and epoch budget are blank in every row of another algorithm's search
    # (and its iteration is 0 in every row until `--extend` adds one).
    blank = {"iteration": (None, 0), "bracket": (None,), "round": (None,), "epochs": (None,)}
    unused = {i for i, column in enumerate(columns) if column in blank and all(row.get(column) in blank[column] for row in ranked)}
    header = [name for i, name in enumerate(header) if i not in unused]
    body = [[_fmt(row.get(column)) for i, column in enumerate(columns) if i not in unused] for row in ranked]
    others = [[row["trial_id"], row["status"], str(row["reason"])] for row in rows if row["rank"] is None]
    return header, body, others


def markdown_table(header: Sequence[str], rows: list[list[str]]) -> list[str]:
    if not header:
        return []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]


def top_text(rows: list[dict[str, Any]], param_names: Sequence[str], k: int = 5) -> str:
    """The top `k` as an aligned plain-text table, for the terminal."""
    ranked = [r for r in rows if r["rank"] is not None][:k]
    if not ranked:
        return "no completed trials"
    header = ["rank", "trial", "score", "epochs", *param_names]  # the model's epochs, a promoted trial's parent's included
    table = [header] + [
        [str(r["rank"]), r["trial_id"], _fmt(r["score"]), _fmt((r["initial_epoch"] or 0) + (r["epochs_trained"] or 0)), *(_fmt(r[n]) for n in param_names)]
        for r in ranked
    ]
    return "\n".join(text_table(table, indent=""))


def text_table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Rows of cells as lines of left-aligned columns, for the terminal."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)
