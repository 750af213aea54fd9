"""Reports rebuilt from a run folder alone: `report.html` (one self-contained file), `report.md` with its
images beside it, and `results.json` for programs. Works on finished, interrupted and running searches."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from . import plots
from .data import data_text, skipped_text
from .importance import hyperparameter_importance
from .planner import RunBudget, run_budget
from .records import STATUSES, utc_now, write_atomic, write_json
from .results import RANKING_RULE, _fmt, leaderboard_table, markdown_table
from .run import Run
from .wording import counted

SCHEMA_VERSION = 1


def build_report(run_dir: str | Path, *, top: int = 10, status: str | None = None) -> dict[str, Path]:
    """Write `results.json`, `report.md` (+ `report_files/`) and `report.html`; return their paths. `status`:
    the search's, when run.json does not say it yet (it is written once the results are)."""
    run = Run(run_dir)
    results = collect(run, top, status)
    figures = _figures(run, results, top)
    write_json(run.path / "results.json", results)
    files = run.path / "report_files"
    files.mkdir(exist_ok=True)
    for name, png in figures.items():
        (files / f"{name}.png").write_bytes(png)
    write_atomic(run.path / "report.md", _markdown(results, figures, top))
    write_atomic(run.path / "report.html", _html(results, figures, top))
    return {"html": run.path / "report.html", "markdown": run.path / "report.md", "json": run.path / "results.json"}


def collect(run: Run, top: int = 10, status: str | None = None) -> dict[str, Any]:
    """Everything the reports show, as plain data (this is `results.json`)."""
    manifest = {**run.manifest, "status": status or run.manifest.get("status")}
    rows = run.rows()
    records = run.records()
    trials = [r for r in rows if not str(r["trial_id"]).startswith("infeasible-")]
    plan = manifest.get("plan", {})
    planned = run_budget(manifest)
    analysis_path = run.path / "best" / "analysis.json"
    best = dict(run.best or {})
    if best.get("test") and analysis_path.exists():  # evaluated: the analysis is this trial's
        best["analysis"] = json.loads(analysis_path.read_text())
    return {
        "schema_version": SCHEMA_VERSION,
        "name": manifest.get("name"),
        "status": manifest.get("status"),
        "partial": manifest.get("status") != "finished",
        "generated_at": utc_now(),
        "objective": manifest.get("objective"),
        "ranking_rule": RANKING_RULE,
        "data": manifest.get("data"),
        "space": manifest.get("space", []),
        "plan": plan,
        "budget": {
            "planned_trials": planned.trials,  # what the search runs: `max_trials` may cut the plan's ("plan" has it whole)
            "trials": len(trials),
            "planned_epochs": planned.epochs,
            "max_trials": planned.max_trials,
            "epochs_trained": int(sum(r["epochs_trained"] or 0 for r in trials)),
            "wall_time_s": manifest.get("elapsed_s"),
            "stop_reason": manifest.get("stop_reason"),
            "disk_mb": manifest.get("disk_mb"),
            "workers": manifest.get("workers", 0),
        },
        "counts": {status: sum(1 for r in rows if r["status"] == status) for status in STATUSES},
        "best": best or None,
        "importance": hyperparameter_importance(rows, run.parameters, seed=int(manifest.get("seeds", {}).get("run", 0))),
        "trials": rows,
        "history": {r.trial_id: r.history for r in records if r.history},
        "versions": manifest.get("versions"),
        "device": manifest.get("device"),
        "backend": manifest.get("backend"),
        "precision": manifest.get("precision", "float32"),
    }


def _curves(results: dict[str, Any], metric: str, top: int) -> dict[str, list[tuple[int, float, str]]]:
    rows = {r["trial_id"]: r for r in results["trials"]}
    curves = {}
    for row in [r for r in results["trials"] if r["rank"] is not None][: min(top, 5)]:
        chain, current = [], row["trial_id"]
        while current:
            chain.append(current)
            current = rows.get(current, {}).get("parent_trial")
        points: dict[int, tuple[int, float, str]] = {}
        for trial_id in reversed(chain):
            for epoch in results["history"].get(trial_id, []):
                if metric in epoch and epoch[metric] is not None:
                    points[int(epoch["epoch"])] = (int(epoch["epoch"]), float(epoch[metric]), trial_id)
        curves[row["trial_id"]] = [points[e] for e in sorted(points)]
    return curves


def _figures(run: Run, results: dict[str, Any], top: int) -> dict[str, bytes]:
    metric = results["objective"]["metric"]
    completed = [r for r in results["trials"] if r["status"] == "completed" and r["score"] is not None]
    params = [p for p in run.parameters if any(r.get(p) is not None for r in completed)]
    figures: dict[str, bytes] = {}
    if completed and params:
        figures["score_vs_hyperparameters"] = plots.score_vs_params(completed, params, metric)
        figures["parallel_coordinates"] = plots.parallel_coordinates(completed, params, metric)
    if completed:
        figures["learning_curves"] = plots.learning_curves(_curves(results, metric, top), metric)
        records = sorted((r for r in run.records() if r.status == "completed" and r.score is not None), key=lambda r: r.finished_at)
        start = min((r.started_at for r in run.records() if r.started_at), default="")
        sessions = run.manifest.get("session_log") or []
        if int(run.manifest.get("sessions", 0)) > len(sessions):
            sessions = []  # begun before the log: its earlier sessions' moments are unknown, so all by the wall clock
        points = [(_search_seconds(r.finished_at, sessions, start), float(r.score)) for r in records]  # type: ignore[arg-type]
        sign = 1.0 if results["objective"]["direction"] == "max" else -1.0
        figures["score_over_time"] = plots.score_over_time(points, metric, sign)
    if results["importance"]["values"]:
        figures["importance"] = plots.importance_bars(results["importance"]["values"])
    analysis = (results.get("best") or {}).get("analysis")
    npz_path = run.path / "best" / "analysis.npz"
    if analysis and npz_path.exists():
        names = analysis["class_names"]
        figures["confusion_matrix"] = plots.confusion_matrix(np.array(analysis["confusion"]), names)

        def titled(prefix: str, arrays: Any) -> list[str]:
            triples = zip(arrays[f"{prefix}_true"], arrays[f"{prefix}_pred"], arrays[f"{prefix}_confidence"])
            return [f"true {names[t]}\npred {names[p]} ({c:.0%})" for t, p, c in triples]

        with np.load(npz_path) as arrays:
            if "sample_true" in arrays.files:  # runs analysed before 2026-11-27 have none
                right = arrays["sample_true"] == arrays["sample_pred"]
                figures["test_samples"] = plots.image_grid(arrays["sample_images"], titled("sample", arrays), correct=right)
            if len(arrays["misclassified_true"]):
                wrong = [False] * len(arrays["misclassified_true"])
                figures["misclassified"] = plots.image_grid(arrays["misclassified_images"], titled("misclassified", arrays), correct=wrong)
            if "augmented_images" in arrays.files:
                figures["augmentation"] = plots.image_grid(
                    arrays["augmented_images"], [f"draw {i + 1}" for i in range(len(arrays["augmented_images"]))], columns=4
                )
            maps = [arrays[k] for k in sorted(arrays.files) if k.startswith("feature_maps_")]
            if maps:
                figures["feature_maps"] = plots.feature_maps(arrays["feature_image"], maps, analysis["feature_map_layers"])
            figures["pca"] = plots.feature_scatter(arrays["pca_coords"], arrays["pca_labels"], names, analysis["pca_explained_variance"])
    return figures


def _search_seconds(moment: str, sessions: list[dict[str, Any]], start: str) -> float:
    """The run's search time at `moment`: the session it fell in, from its start plus the time searched before it,
    so the hours between a stopped run and its resumption are not counted (run.json `elapsed_s` counts likewise).
    Without a log of every session (a run begun before `session_log`), from its first trial's start."""
    began = [s for s in sessions if s["started_at"] <= moment]
    if not began:
        return _seconds(start, moment)
    return float(began[-1]["elapsed_before_s"]) + _seconds(began[-1]["started_at"], moment)


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


CAPTIONS = {
    "score_vs_hyperparameters": "Score against each hyperparameter",
    "parallel_coordinates": "Parallel coordinates of the completed trials",
    "learning_curves": "Learning curves of the top trials",
    "score_over_time": "Score against wall time (best so far)",
    "importance": "Hyperparameter importance",
    "confusion_matrix": "Test-set confusion matrix of the best model",
    "test_samples": "Random test images with the best model's prediction",
    "misclassified": "Misclassified test images (most confident mistakes first)",
    "augmentation": "One test image through the best model's augmentation layers, as in training",
    "feature_maps": "Feature maps of the first convolution layers for one test image",
    "pca": "PCA of the penultimate-layer features on the test set",
}


def _summary_lines(results: dict[str, Any]) -> list[tuple[str, str]]:
    data, budget, best = results.get("data") or {}, results["budget"], results.get("best") or {}
    metric = results["objective"]["metric"]
    lines = [
        ("status", f"{results['status']}{' (partial report)' if results['partial'] else ''}; {budget['stop_reason'] or ''}"),
        ("data", data_text(data)),
        ("space", ", ".join(f"{s['name']} {s['domain']}" for s in results["space"]) or "-"),
        (
            "budget",
            f"{budget['trials']} of {counted(budget['planned_trials'], 'planned trial')}{RunBudget(budget['planned_trials'], budget['planned_epochs'], budget.get('max_trials'), results['plan'].get('trials')).cut}; {counted(budget['epochs_trained'], 'epoch')} trained of {budget['planned_epochs']} planned before early stopping; {(budget['wall_time_s'] or 0) / 60:.1f} min",
        ),
        ("trials", ", ".join(f"{n} {k}" for k, n in results["counts"].items())),
    ]
    skipped = skipped_text(data, examples=10)
    if skipped:
        lines.insert(2, ("skipped", skipped))
    if best:
        test = best.get("test") or {}
        lines.append(
            (
                "best",
                f"trial {best.get('trial_id')}: {metric} {best.get('score', float('nan')):.4f}; "
                + (
                    f"test accuracy {test['accuracy']:.4f}, test loss {test['loss']:.4f}"
                    if test
                    else "not evaluated on the test set yet (the search does it when it ends; `tuning export` on its own)"
                ),
            )
        )
    budget = results["budget"]
    workers = f", {budget['workers']} worker processes" if budget.get("workers") else ""
    lines.append(
        (
            "run on",
            f"{results.get('backend')} on {results.get('device')} ({results.get('precision')}{workers}); "
            + ", ".join(f"{k} {v}" for k, v in (results.get("versions") or {}).items()),
        )
    )
    if budget.get("disk_mb") is not None:
        lines.append(("run folder", f"{budget['disk_mb']:.1f} MB on disk besides its reports (weights kept for the best search.keep_checkpoints trials)"))
    return lines


def _leaderboard(results: dict[str, Any], top: int) -> tuple[list[str], list[list[str]], list[list[str]]]:
    params = [s["name"] for s in results["space"]] or [k for k in results["trials"][0] if k not in ("rank",)] if results["trials"] else []
    return leaderboard_table(results["trials"], params, top)


def _per_class(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    analysis = (results.get("best") or {}).get("analysis")
    if not analysis:
        return [], []
    pc = analysis["per_class"]
    rows = [
        [name, f"{pc['precision'][i]:.3f}", f"{pc['recall'][i]:.3f}", f"{pc['f1'][i]:.3f}", str(pc["support"][i])]
        for i, name in enumerate(analysis["class_names"])
    ]
    return ["class", "precision", "recall", "F1", "support"], rows


def _importance_rows(results: dict[str, Any]) -> list[list[str]]:
    values = results["importance"]["values"]
    return [[name, f"{v['importance']:.3f}", f"{v['mean']:.3f} ± {v['std']:.3f}"] for name, v in sorted(values.items(), key=lambda kv: -kv[1]["importance"])]


def _markdown(results: dict[str, Any], figures: dict[str, bytes], top: int) -> str:
    lines = [f"# Search report: {results['name']}", ""]
    if results["partial"]:
        lines += [f"> **Partial report**: the search is {results['status']}; figures cover the trials finished so far.", ""]
    lines += [f"- **{k}**: {v}" for k, v in _summary_lines(results)]
    header, body, others = _leaderboard(results, top)
    lines += ["", "## Leaderboard", "", RANKING_RULE, "", *markdown_table(header, body)]
    if others:
        lines += ["", "## Trials without a score", "", *markdown_table(["trial", "status", "reason"], others)]
    if results["importance"]["values"] or results["importance"].get("note"):
        lines += ["", "## Hyperparameter importance", "", f"Method: {results['importance']['method']}.", ""]
        lines += (
            [results["importance"].get("note", "")]
            if results["importance"].get("note")
            else markdown_table(["hyperparameter", "importance", "bootstrap mean ± sd"], _importance_rows(results))
        )
    best = (results.get("best") or {}).get("analysis")
    if best:
        lines += [
            "",
            "## Best model",
            "",
            f"{best['params']:,} parameters; test accuracy {best['test_accuracy']:.4f} on {best['test_count']} images.",
            "",
            "```text",
            *best["summary"],
            "```",
            "",
        ]
        lines += markdown_table(*_per_class(results))
    lines += ["", "## Figures", ""]
    for name in figures:
        lines += [f"### {CAPTIONS[name]}", "", f"![{CAPTIONS[name]}](report_files/{name}.png)", ""]
    return "\n".join(lines) + "\n"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}img{max-width:100%}.partial{background:#fff3cd;padding:0.6em;border:1px solid #e0c36c}
pre{background:#f7f7f7;padding:0.6em;overflow-x:auto;font-size:0.8em}figure{margin:1.5em 0}figcaption{font-weight:600}"""


def _html_table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    if not header:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _html(results: dict[str, Any], figures: dict[str, bytes], top: int) -> str:
    e = html.escape
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Search report: {e(str(results['name']))}</title><style>{STYLE}</style></head><body>"
    ]
    parts.append(f"<h1>Search report: {e(str(results['name']))}</h1>")
    if results["partial"]:
        parts.append(
            f"<p class='partial'><strong>Partial report</strong>: the search is {e(str(results['status']))}; figures cover the trials finished so far.</p>"
        )
    parts.append("<h2>Summary</h2><dl>" + "".join(f"<dt><strong>{e(k)}</strong></dt><dd>{e(v)}</dd>" for k, v in _summary_lines(results)) + "</dl>")
    header, body, others = _leaderboard(results, top)
    parts.append(f"<h2>Leaderboard</h2><p>{e(RANKING_RULE)}</p>{_html_table(header, body, 'leaderboard')}")
    if others:
        parts.append("<h2>Trials without a score</h2>" + _html_table(["trial", "status", "reason"], others, "unscored"))
    importance = results["importance"]
    parts.append(f"<h2>Hyperparameter importance</h2><p>Method: {e(importance['method'])}.</p>")
    parts.append(
        f"<p>{e(importance['note'])}</p>"
        if importance.get("note")
        else _html_table(["hyperparameter", "importance", "bootstrap mean ± sd"], _importance_rows(results), "importance")
    )
    best = (results.get("best") or {}).get("analysis")
    if best:
        parts.append(f"<h2>Best model</h2><p>{best['params']:,} parameters; test accuracy {best['test_accuracy']:.4f} on {best['test_count']} images.</p>")
        parts.append("<pre>" + e("\n".join(best["summary"])) + "</pre>" + _html_table(*_per_class(results), "per-class"))
    parts.append("<h2>Figures</h2>")
    for name, png in figures.items():
        data = base64.b64encode(png).decode()
        parts.append(
            f"<figure id='{name}'><figcaption>{e(CAPTIONS[name])}</figcaption><img alt='{e(CAPTIONS[name])}' src='data:image/png;base64,{data}'></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def compare_runs(run_dirs: list[str | Path]) -> str:
    """One Markdown table of several runs: best trial, score, budget and test accuracy."""
    header = ["run", "status", "objective", "best trial", "score", "test accuracy", "trials (planned)", "epochs trained", "minutes"]
    rows = []
    for path in run_dirs:
        run = Run(path)
        manifest, best = run.manifest, run.best or {}
        trials = [r for r in run.rows() if not str(r["trial_id"]).startswith("infeasible-")]
        objective = manifest.get("objective", {})
        rows.append([
            run.name, str(manifest.get("status")), f"{objective.get('metric')} ({objective.get('direction')})", str(best.get("trial_id", "-")),
            _fmt(best.get("score")), _fmt((best.get("test") or {}).get("accuracy")), f"{len(trials)} ({run_budget(manifest).trials})",
            str(sum(r["epochs_trained"] or 0 for r in trials)), f"{(manifest.get('elapsed_s') or 0) / 60:.1f}",
        ])  # fmt: skip
    return "\n".join(markdown_table(header, rows)) + "\n"
