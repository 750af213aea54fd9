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
from .runner import search, train
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
    "estimate",
    "load_spec",
    "open_run",
    "plan",
    "search",
    "train",
]


def plan(spec: Any, *, data: Any = None, class_names: Any = None) -> Plan:
    """The Hyperband plan and feasibility of a spec (path, mapping or loaded spec); trains nothing. `data` and
    `class_names` as for `search`: the plan is made for those images."""
    from .planner import plan as _plan

    return _plan(spec, data=data, class_names=class_names)


def estimate(spec: Any, *, samples: int = 4, data: Any = None, class_names: Any = None, workers: int = 0, gpus: Sequence[str] | None = None) -> dict[str, Any]:
    """How long the spec's search will take, from `samples` configurations timed on this machine (see
    `tuning.timing.estimate`); `data`, `class_names`, `workers` and `gpus` as for `search`."""
    from .timing import estimate as _estimate

    return _estimate(spec, samples=samples, data=data, class_names=class_names, workers=workers, gpus=gpus)


def open_run(path: Any) -> Run:
    """A `Run` for a finished, interrupted or still-running search directory."""
    from .run import open_run as _open

    return _open(path)


def __getattr__(name: str) -> Any:
    if name == "Run":
        from .run import Run

        return Run
    raise AttributeError(f"module 'tuning' has no attribute {name!r}")
