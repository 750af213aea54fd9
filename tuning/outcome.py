"""How a search ended and what it leaves: the stop reason, the best model with its test metrics, the tables and reports.

Written whenever the search ends, however it ends (finished, stopped by its budget, interrupted, aborted), and
again by the same command if a kill interrupted the writing: run.json says how it ended only once they are there.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .planner import Plan
from .records import RunStore, write_atomic
from .runtime import saving_without_tensorflow
from .spec import SearchSpec


def max_trials_reached(spec: SearchSpec, store: RunStore) -> bool:
    """Whether the run has as many trials as `search.max_trials` allows: raised, the run goes on."""
    return bool(spec.search.max_trials) and len(_trials(store)) >= int(spec.search.max_trials or 0)


def _trials(store: RunStore) -> list[Any]:
    return [r for r in store.read_trials() if not r.trial_id.startswith("infeasible-")]


def stop_reason(spec: SearchSpec, the_plan: Plan, store: RunStore) -> str:
    trials = _trials(store)
    if max_trials_reached(spec, store):
        return f"max_trials = {spec.search.max_trials} reached"
    planned = the_plan.up_to(spec.search.max_trials)[0]
    if len(trials) < planned:
        failed = sum(r.status in ("failed", "out_of_memory") for r in trials)
        diverged = sum(r.status == "diverged" for r in trials)
        if (failed or diverged) and spec.search.algorithm == "hyperband":
            what = " and ".join(f"{n} {word}" for n, word in ((failed, "failed"), (diverged, "diverged")) if n)
            advice = [
                "`--retry-failed` runs the failed ones again" if failed else "",
                "a diverged trial's loss became NaN or infinite: a narrower learning_rate range keeps them from it" if diverged else "",
            ]
            return (
                f"{len(trials)} of {planned} planned trials: Hyperband promotes only completed trials, and "
                f"{what}, so later rounds had too few to choose from ({'; '.join(a for a in advice if a)})"
            )
        return f"the space ran out of new configurations after {len(trials)} of {planned} planned trials"
    return "plan complete"


REPORT_FILES = ("report.html", "report.md", "report_files", "results.json", "leaderboard.md", "trials.csv")


def directory_size(folder: Path, leave_out: tuple[str, ...] = ()) -> int:
    """Bytes of every file under `folder`, less those under the top-level entries named in `leave_out`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).parts[0] not in leave_out)


def finish(store: RunStore, spec: SearchSpec, tuner: Any, dataset: Any, status: str) -> None:
    """Tables, best model and its test metrics: written whenever the search ends, however it ends (`status`:
    how, which run.json says only once they are written)."""
    from .results import columns, leaderboard_markdown, rank, trial_rows, write_trials_csv

    records = store.read_trials()
    names = [p for p in store.read_manifest().get("parameters", [])]
    direction = spec.search.objective.direction
    ranked = rank(records, direction)
    best = ranked[0] if ranked and ranked[0].status == "completed" else None
    manifest = store.read_manifest()
    before = manifest.get("best") or {}
    # A trial the time budget cut short and that continued since is the same trial with another score and weights.
    if best is not None and (before.get("trial_id"), before.get("best_epoch"), before.get("score")) != (best.trial_id, best.best_epoch, best.score):
        from .evaluation import analyze_best

        model = tuner.load_trained(best.trial_id)
        analysis = analyze_best(model, dataset.x_test, dataset.y_test, dataset.class_names, store.dir / "best", seed=spec.search.seed)
        test = {"accuracy": analysis["test_accuracy"], "loss": analysis["test_loss"]}
        tmp = store.dir / "best_model.tmp.keras"
        with saving_without_tensorflow():
            model.save(tmp)
        tmp.replace(store.dir / "best_model.keras")
        manifest = store.update_manifest(
            best={
                "trial_id": best.trial_id,
                "score": best.score,
                "metric": spec.search.objective.metric,
                "best_epoch": best.best_epoch,
                "values": best.values,
                "test": test,
                "model": "best_model.keras",
            }
        )
    # The reports are left out: they are written after this figure (and rebuilt by `tuning report`), so counting
    # whatever an earlier run left of them made the same search report different sizes.
    manifest = store.update_manifest(disk_mb=round(directory_size(store.dir, REPORT_FILES) / 2**20, 2))
    rows = trial_rows(records, names, direction)
    write_trials_csv(store.dir / "trials.csv", rows, columns(names))
    write_atomic(store.dir / "leaderboard.md", leaderboard_markdown(rows, names, {**manifest, "status": status}))
    try:
        from .report import build_report

        build_report(store.dir, status=status)
    except Exception as exc:  # noqa: BLE001 - a report problem must never cost the search's results
        print(f"warning: the report could not be written ({type(exc).__name__}: {exc}); `tuning report {store.dir}` retries", file=sys.stderr)
