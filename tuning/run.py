"""A run directory as an object: the same view of a finished, interrupted or running search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import RunError
from .records import RunStore, TrialRecord
from .results import columns, rank, trial_rows, trials_frame


class Run:
    """A search's results, read from its directory (`reports/<name>/`).

    Example:
        >>> run = open_run("reports/digits")
        >>> run.trials[["rank", "trial_id", "score"]].head()
    """

    def __init__(self, path: str | Path):
        self.store = RunStore(path)
        self._board: Any = None  # the TensorBoard `board()` started
        if not self.store.exists():
            raise RunError(f"{path} is not a tuning run (no run.json); pass the folder `tuning search` wrote, e.g. reports/<name>")

    @property
    def path(self) -> Path:
        return self.store.dir

    @property
    def manifest(self) -> dict[str, Any]:
        return self.store.read_manifest()

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def status(self) -> str:
        return str(self.manifest.get("status", "unknown"))

    @property
    def plan(self) -> dict[str, Any]:
        return dict(self.manifest.get("plan", {}))

    @property
    def parameters(self) -> list[str]:
        return list(self.manifest.get("parameters", []))

    @property
    def direction(self) -> str:
        return str(self.manifest.get("objective", {}).get("direction", "max"))

    def records(self) -> list[TrialRecord]:
        """Trial records in rank order."""
        return rank(self.store.read_trials(), self.direction)

    def rows(self) -> list[dict[str, Any]]:
        return trial_rows(self.store.read_trials(), self.parameters, self.direction)

    @property
    def trials(self) -> Any:
        """One row per trial, in rank order: the same rows and columns as `trials.csv` (a pandas DataFrame)."""
        return trials_frame(self.rows(), columns(self.parameters))

    @property
    def best(self) -> dict[str, Any] | None:
        """The winning trial: its id, score and values, and its test-set metrics once the search has evaluated it.

        The leader of the ranking as it stands: a search killed before its end (which evaluates the winner and
        saves `best_model.keras`) still has one, without `test`.
        """
        manifest = self.manifest
        evaluated = manifest.get("best")
        leader = next((r for r in self.records() if r.status == "completed" and r.score is not None), None)
        if leader is None or (evaluated and evaluated.get("trial_id") == leader.trial_id):
            return evaluated
        metric = manifest.get("objective", {}).get("metric")
        return {"trial_id": leader.trial_id, "score": leader.score, "metric": metric, "best_epoch": leader.best_epoch, "values": leader.values}

    def history(self, trial_id: str) -> Any:
        """Per-epoch DataFrame of a trial, with its Hyperband ancestors' epochs first (a promotion's curve)."""
        import pandas as pd

        by_id = {r.trial_id: r for r in self.store.read_trials()}
        if trial_id not in by_id:
            raise RunError(f"no trial {trial_id!r} in {self.path}; known: {', '.join(sorted(by_id)) or 'none'}")
        chain, current = [], by_id.get(trial_id)
        while current is not None:
            chain.append(current)
            current = by_id.get(current.parent) if current.parent else None
        rows: list[dict[str, Any]] = []
        for record in reversed(chain):
            start = int(record.hyperband.get("initial_epoch", 0))
            for row in record.history:
                if row["epoch"] > start:
                    rows = [r for r in rows if r["epoch"] < row["epoch"]]
                    rows.append({"trial_id": record.trial_id, **row})
        return pd.DataFrame(rows)

    def best_model(self) -> Any:
        """The best model (`best`'s trial at its best epoch), loaded in Keras' safe mode.

        `best_model.keras` once the search has evaluated it; before (a search killed mid-way), the leader's
        checkpoint.
        """
        from .runtime import quiet_logs

        quiet_logs()  # no TensorFlow start-up chatter in a notebook
        import keras

        best = self.best
        if best and not best.get("test"):
            from .export import TrialModel

            return TrialModel(self, best["trial_id"]).from_checkpoint()
        path = self.path / "best_model.keras"
        if not path.exists():
            raise RunError(f"{self.path} has no best_model.keras yet (no trial has completed)")
        return keras.saving.load_model(path, safe_mode=True)

    def report(self, *, top: int = 10) -> dict[str, Path]:
        """Rebuild `report.html`, `report.md` and `results.json` from this folder; returns their paths."""
        from .report import build_report

        return build_report(self.path, top=top)

    def export(self, **options: Any) -> dict[str, Path]:
        """Export a trial's model (see `tuning.export.export` for the options); returns the paths written."""
        from .export import export

        return export(self.path, **options)

    def board(self, *, port: int | None = None, host: str = "127.0.0.1") -> str:
        """Start TensorBoard on this run and return the URL of its HParams dashboard; it stops with Python, or
        with `close_board()`."""
        from .board import start_board

        self.close_board()
        self._board = start_board([self.path], host=host, port=port)
        return self._board.url + "#hparams"

    def close_board(self) -> None:
        """Stop the TensorBoard that `board()` started, if any."""
        if self._board is not None:
            self._board.stop()
            self._board = None

    def _repr_html_(self) -> str:
        """Notebook view: status, plan and the top 5 trials."""
        import html

        from .planner import run_budget
        from .results import _fmt

        manifest, plan = self.manifest, self.plan
        objective = manifest.get("objective", {})
        rows = [r for r in self.rows() if r["rank"] is not None][:5]
        columns = [("rank", "rank"), ("trial", "trial_id"), ("score", "score"), *((p, p) for p in self.parameters)]
        header = [label for label, _ in columns]
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(key)))}</td>" for _, key in columns) + "</tr>" for r in rows)
        best = self.best or {}
        test = (best.get("test") or {}).get("accuracy")
        budget = run_budget(manifest)  # what runs: max_trials may stop the plan early
        return (
            f"<div><strong>tuning run {html.escape(self.name)}</strong>: {html.escape(self.status)}"
            f" ({html.escape(str(manifest.get('stop_reason') or ''))})<br>"
            f"plan: {plan.get('algorithm')} with {budget.trials} trials{budget.cut}, {budget.epochs} epochs before early stopping; "
            f"objective {html.escape(str(objective.get('metric')))} ({objective.get('direction')})"
            + (f"; best trial {best.get('trial_id')}, test accuracy {test:.4f}" if test is not None else "")
            + "<table><thead><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in header)
            + f"</tr></thead><tbody>{body}</tbody></table></div>"
        )

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.status!r}, trials={len(self.store.read_trials())})"


def open_run(path: str | Path) -> Run:
    """Open a finished, interrupted or still-running search's directory."""
    return Run(path)
