"""tuning: declarative hyperparameter search for Keras image-classification CNNs.

Light on import: TensorFlow, Keras and KerasTuner load only when a search or a model needs them.

Example:
    >>> import tuning
    >>> spec = tuning.load_spec("search_spaces/digits.yaml")
    >>> tuning.plan(spec).total_trials
    >>> run = tuning.search(spec, name="digits")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import DataError, Problem, RunError, SearchAborted, SpecError, TuningError
from .spec import SearchSpec, load_spec

if TYPE_CHECKING:
    from .planner import Plan
    from .run import Run

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "Problem",
    "Run",
    "RunError",
    "SearchAborted",
    "SearchSpec",
    "SpecError",
    "TuningError",
    "load_spec",
    "open_run",
    "plan",
    "search",
]


def plan(spec: Any) -> Plan:
    """The Hyperband plan and feasibility of a spec (path, mapping or loaded spec); trains nothing."""
    from .planner import plan as _plan

    return _plan(spec)


def search(
    spec: Any,
    *,
    name: str | None = None,
    out: str | None = None,
    data: Sequence[Any] | None = None,
    class_names: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    quiet: bool = False,
) -> Run:
    """Run (or resume) a search and return its `Run`.

    Args:
        spec: a YAML path, a mapping, or a spec from `load_spec`.
        name: the run's name (default: the spec's `name`, else the file's stem); results go to `out/name`.
        out: the output root (default `reports/`).
        data: `(x_train, y_train)` or `(x_train, y_train, x_test, y_test)` numpy arrays replacing the spec's data.
        class_names: names of the classes of `data`, in label order (default "0", "1", ...).
        overwrite: start over, deleting an existing run of that name.
        progress: force the live progress view on or off (default: on in a terminal or notebook).
        quiet: print nothing while searching.

    Example:
        >>> run = tuning.search("search_spaces/digits.yaml", name="digits")
        >>> run.trials[["rank", "trial_id", "score"]].head()
    """
    from .runner import search as _search

    return _search(spec, name=name, out=out, data=data, class_names=class_names, overwrite=overwrite, progress=progress, quiet=quiet)


def open_run(path: Any) -> Run:
    """A `Run` for a finished, interrupted or still-running search directory."""
    from .run import open_run as _open

    return _open(path)


def __getattr__(name: str) -> Any:
    if name == "Run":
        from .run import Run

        return Run
    raise AttributeError(f"module 'tuning' has no attribute {name!r}")
