"""A run's directory across sessions: where it is, whether this spec may resume it, and what carries over.

Running a search again resumes it, so each session checks what it would continue: a changed spec is refused
(what may change between sessions, such as `time_budget` or `max_trials`, is left out of the comparison), changed
data and another Keras backend are told apart, and class names an older version wrote are kept. What `--extend`
added (Hyperband iterations, trials) carries over in run.json, which each session writes anew with its own entry.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from .errors import RunError, TuningError
from .planner import Plan
from .records import RunStore, utc_now
from .runtime import versions
from .spec import MAX_NAME, RUN_NAME, SearchSpec, load_spec, wrong_direction

DEFAULT_OUT = "reports"


def run_directory(spec: SearchSpec, name: str | None, out: str | Path | None) -> Path:
    """`out/name`, refusing names that could write outside `out` (no separators, no `..`)."""
    from_file = not name and not spec.name and spec.file
    name = name or spec.name or (Path(spec.file).stem if spec.file else "search")
    if not RUN_NAME.match(name) or name in (".", ".."):
        rule = "use letters, digits, '_', '.' or '-' (no '/' or '..'), at most 64 characters"
        if from_file:
            suggestion = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-")[:MAX_NAME] or "search"
            raise RunError(
                f"run name {name!r} (from the file name {Path(str(spec.file)).name!r}) is not allowed: {rule}; pass --name {suggestion} or set name: in the spec"
            )
        raise RunError(f"run name {name!r} is not allowed: {rule}")
    return Path(out or DEFAULT_OUT) / name


def warn_of_another_backend(previous: dict[str, Any]) -> None:
    """A run continued on another Keras backend: its checkpoints load there, but the same trial scores differently on
    each (other kernels, other random streams), so trials from before and after are not strictly comparable."""
    from .runtime import backend

    earlier = previous.get("backend")
    if earlier and earlier != backend():
        print(
            f"warning: this run trained on {earlier} before and goes on with {backend()} (KERAS_BACKEND): the same trial scores "
            f"differently on each, so trials from before and after are not strictly comparable (each session's backend is in "
            f"run.json, session_log); set KERAS_BACKEND={earlier} to continue as it began",
            file=sys.stderr,
        )


def data_changes(before: dict[str, Any], now: dict[str, Any]) -> dict[str, str]:
    """What differs between the data a resumed run started with and what loads now (images added to a folder,
    a different subset), key -> "old -> new": the spec is the same, so nothing else would tell."""
    keys = ("classes", "image_shape", "train", "validation", "test")
    return {key: f"{key} {before[key]} -> {now.get(key)}" for key in keys if key in before and before[key] != now.get(key)}


def with_earlier_class_names(dataset: Any, earlier: list[str] | None) -> Any:
    """A run begun before whole-number labels were named as integers keeps its class names (`2.0`), which its
    trials' models and the reports use; they name the same classes."""
    from .manifests import whole_number_name

    if not earlier or list(dataset.class_names) == earlier or [whole_number_name(name) for name in earlier] != list(dataset.class_names):
        return dataset
    return dataclasses.replace(dataset, class_names=tuple(earlier))


def run_max_trials(spec: SearchSpec, extended: int) -> int | None:
    """A run's trial limit: the spec's `search.max_trials` (random and Bayesian default to 10 trials, a grid to
    all of it), plus the trials `--extend` added to it in earlier sessions and this one. Like `time_budget`, it
    limits the whole run and may be changed in the spec when the run resumes."""
    limit = spec.search.max_trials
    if not extended:
        return limit  # the spec's own (None: the algorithm's default), as written
    if limit is None and spec.search.algorithm in ("random", "bayesian"):
        limit = 10
    return limit + extended if limit is not None else None


def with_max_trials(spec: SearchSpec, max_trials: int | None) -> SearchSpec:
    """The spec with the run's trial limit (`run_max_trials`); its file and text are kept."""
    if max_trials == spec.search.max_trials:
        return spec
    return spec.model_copy(update={"search": spec.search.model_copy(update={"max_trials": max_trials})})


def with_iterations(spec: SearchSpec, iterations: int) -> SearchSpec:
    """The spec with another Hyperband iteration count (for `--extend`); its file and text are kept."""
    if iterations == spec.search.iterations:
        return spec
    return spec.model_copy(update={"search": spec.search.model_copy(update={"iterations": iterations})})


def prepare_directory(store: RunStore, spec: SearchSpec, overwrite: bool) -> bool:
    """Returns True when resuming; refuses a changed spec and folders that are not runs."""
    if overwrite and store.dir.exists():
        if store.dir.is_dir() and not store.exists() and any(p.name != ".lock" for p in store.dir.iterdir()):
            raise RunError(f"{store.dir} exists and is not a tuning run; refusing to delete it. Pick another --name or --out")
        shutil.rmtree(store.dir)
    if store.exists():
        manifest = store.read_manifest()
        stored = {"hash": manifest.get("spec_hash"), "spec": manifest.get("spec", {})}
        if stored["hash"] != spec.spec_hash():
            stored = _revalidated(stored["spec"]) or stored
        if stored["hash"] != spec.spec_hash() and _fixed_for_the_run(stored["spec"]) != _fixed_for_the_run(spec.to_dict()):
            changes = _spec_changes(stored["spec"], spec.to_dict())
            # The first changes in full; any others by their field, so that every changed field is named.
            more = [change.split(":", 1)[0] for change in changes[6:]]
            listed = "; ".join(changes[:6]) + (f"; and {len(more)} more: {', '.join(more)}" if more else "")
            objective = ((stored["spec"].get("search") or {}).get("objective")) or {}
            wrong = (
                f" (this run ranked {objective.get('metric')} by direction {objective.get('direction')!r}, the default before the direction "
                "followed the metric: its best trial and promotions were its worst)"
                if isinstance(objective, dict) and wrong_direction(objective)
                else ""
            )
            raise RunError(
                f"{store.dir} was started with a different spec ({listed or 'content differs'}){wrong}. "
                "Resuming would mix two searches: pass --overwrite to start over, or --name NEW to keep both"
            )
        return True
    if store.dir.exists() and any(p.name != ".lock" for p in store.dir.iterdir()):
        raise RunError(f"{store.dir} exists and is not a tuning run (no run.json). Pick another --name or --out")
    return False


def _fixed_for_the_run(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec less what may change between the sessions of one run: its `description` (editing that text changes
    no trial), `search.time_budget` and `search.max_trials` (limits on the whole run: raised, a run stopped by
    one goes on)."""
    rest = {key: value for key, value in spec.items() if key != "description"}
    if isinstance(rest.get("search"), dict):
        rest["search"] = {key: value for key, value in rest["search"].items() if key not in ("time_budget", "max_trials")}
    return rest


def _revalidated(stored: Any) -> dict[str, Any]:
    """A run's stored spec validated again by this version: a setting added since the run began takes its
    default, so it does not count as a change (and an unchanged old run resumes). Empty if it no longer loads."""
    try:
        spec = load_spec(stored)
    except (TuningError, TypeError, ValueError):
        return {}
    return {"spec": spec.to_dict(), "hash": spec.spec_hash()}


def _spec_changes(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += _spec_changes(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


def run_manifest(spec: SearchSpec, name: str, the_plan: Plan, dataset: Any, device: str, previous: dict[str, Any]) -> dict[str, Any]:
    from .runtime import backend

    return {
        "name": name,
        "status": "running",
        "created_at": previous.get("created_at", utc_now()),
        "updated_at": utc_now(),
        "spec_file": spec.file,
        "spec_dir": str(spec.base_dir),
        "spec_hash": spec.spec_hash(),
        "spec": spec.to_dict(),
        "objective": {"metric": spec.search.objective.metric, "direction": spec.search.objective.direction},
        "seeds": {
            "run": spec.search.seed,
            "oracle": spec.search.seed,
            "data_split": spec.search.seed,
            "trial_rule": "(run * 1000003 + int(trial_id) * 7919 + 17) mod (2^31 - 1)"
            if spec.search.trial_seed is None
            else f"search.trial_seed: {spec.search.trial_seed}",
        },
        "versions": versions(),
        "backend": backend(),
        "device": device,
        "data": dataset.summary(),
        "plan": the_plan.to_dict(),
        "parameters": [p.name for p in the_plan.params],
        "space": [
            {
                "name": p.name,
                "kind": p.domain.kind,
                "domain": p.domain.describe(),
                "condition": p.condition.describe() if p.condition else None,
                "description": p.description,
            }
            for p in the_plan.params
        ],
        "sessions": int(previous.get("sessions", 0)) + 1,
        # When each session began, with the run's search time before it (the report's time axis leaves out the
        # hours between sessions) and what it trained on (a run may be continued on another backend or machine).
        "session_log": [
            *previous.get("session_log", []),
            {"started_at": utc_now(), "elapsed_before_s": float(previous.get("elapsed_s", 0.0)), "backend": backend(), "device": device},
        ],
        "elapsed_s": float(previous.get("elapsed_s", 0.0)),
        "best": previous.get("best"),
    }
