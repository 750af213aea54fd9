"""Rules of the codebase that keep it backend-agnostic and light."""

from __future__ import annotations

import re

from .conftest import ROOT


def test_only_named_modules_import_tensorflow():
    importers = sorted(
        path.name for path in (ROOT / "tuning").glob("*.py") if re.search(r"^\s*(import tensorflow|from tensorflow)", path.read_text(), re.M)
    )
    assert importers == ["_tensorflow.py"]


def test_reporting_never_imports_kerastuner():
    for name in ("records.py", "results.py", "run.py", "spec.py", "space.py", "plan.py", "feasibility.py", "data.py", "cli.py"):
        text = (ROOT / "tuning" / name).read_text()
        assert not re.search(r"^\s*(import keras_tuner|from keras_tuner)", text, re.M), name
