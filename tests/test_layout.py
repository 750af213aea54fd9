"""Rules of the codebase that keep it backend-agnostic and light."""

from __future__ import annotations

import re

from .conftest import ROOT


def test_only_named_modules_import_tensorflow():
    importers = sorted(path.name for path in (ROOT / "tuning").glob("*.py") if re.search(r"^\s*(import tensorflow|from tensorflow)", path.read_text(), re.M))
    assert importers == ["_tensorflow.py", "export_tf.py"]  # GPU set-up; SavedModel and TFLite export


def test_reporting_never_imports_kerastuner():
    for name in (
        "records.py",
        "results.py",
        "run.py",
        "spec.py",
        "space.py",
        "planner.py",
        "feasibility.py",
        "hparams.py",
        "board.py",
        "data.py",
        "sources.py",
        "splits.py",
        "lazy_images.py",
        "events.py",
        "resume.py",
        "outcome.py",
        "cli.py",
    ):
        text = (ROOT / "tuning" / name).read_text()
        assert not re.search(r"^\s*(import keras_tuner|from keras_tuner)", text, re.M), name


def _tool(name: str) -> list[str]:
    import shutil
    import sys
    from pathlib import Path

    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        import pytest

        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return [found]


def test_lint_and_format():
    import subprocess

    for args in (["check", "tuning", "tests"], ["format", "--check", "tuning", "tests"]):
        result = subprocess.run(_tool("ruff") + args, cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_types():
    import subprocess

    result = subprocess.run(_tool("mypy") + ["tuning"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
