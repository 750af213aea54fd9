from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

try:  # the same generated inputs on every run, so CI cannot fail by luck; `--hypothesis-profile=explore` searches afresh
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("repeatable", derandomize=True, database=None)
    _hypothesis_settings.register_profile("explore", derandomize=False)
    _hypothesis_settings.load_profile("repeatable")
except ImportError:
    pass

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"

TINY: dict[str, Any] = {
    "version": 1,
    "data": {"source": "digits", "max_train_samples": 480, "max_test_samples": 200},
    "model": {
        "blocks": {"int": [1, 2]},
        "filters": {"choice": [8, 16]},
        "dense_layers": 1,
        "dense_units": 32,
        "learning_rate": None,
    },
    "training": {"learning_rate": {"float": [1e-3, 1e-2], "log": True}, "batch_size": 64, "early_stopping": {"patience": 2}},
    "search": {"max_epochs": 3, "factor": 3, "seed": 0},
}
del TINY["model"]["learning_rate"]


def tiny(**sections: Any) -> dict[str, Any]:
    """The tiny digits spec used by the training tests, with some sections' keys replaced."""
    spec = copy.deepcopy(TINY)
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(spec.get(section), dict):
            spec[section].update(values)
        else:
            spec[section] = values
    return spec


def write_spec(directory: Path, mapping: dict[str, Any], name: str = "spec.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return path


@pytest.fixture
def spec_file(tmp_path: Path):
    def make(mapping: dict[str, Any] | None = None, text: str | None = None, name: str = "spec.yaml") -> Path:
        if text is not None:
            path = tmp_path / name
            path.write_text(text)
            return path
        return write_spec(tmp_path, mapping or tiny(), name)

    return make


def interactive_ctrl_c() -> None:
    """`preexec_fn` for a child that should take Ctrl-C as in a terminal, even when the test runner's own
    process ignores SIGINT (pytest-xdist's workers do, and children inherit that)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
