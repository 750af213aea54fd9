"""The public Python API: pinned names, and functions that stay functions."""

from __future__ import annotations

import tuning


def test_exported_names_are_pinned():
    assert sorted(tuning.__all__) == sorted(
        [
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
    )
    for name in tuning.__all__:
        assert getattr(tuning, name) is not None


def test_api_functions_survive_importing_every_module():
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(tuning.__path__):
        if module.name != "__main__":
            importlib.import_module(f"tuning.{module.name}")
    assert callable(tuning.plan) and callable(tuning.search) and callable(tuning.open_run) and callable(tuning.estimate) and callable(tuning.train)
    assert tuning.plan({"version": 1, "training": {"learning_rate": {"float": [1e-4, 1e-2], "log": True}}}).total_trials == 23


def test_search_refuses_arguments_it_cannot_use_before_any_work(tmp_path):
    import numpy as np
    import pytest

    x, y = np.zeros((20, 8, 8), "uint8"), np.arange(20) % 2
    with pytest.raises(tuning.DataError, match=r"data: expected a tuple of numpy arrays, \(x_train, y_train\) .* received a dict"):
        tuning.search({"version": 1}, out=tmp_path, data={"x": x, "y": y})
    with pytest.raises(tuning.RunError, match="which --overwrite would delete first; use one of them"):
        tuning.search({"version": 1}, out=tmp_path, extend=1, overwrite=True)
    with pytest.raises(tuning.RunError, match="has none; run the search first"):
        tuning.search({"version": 1}, out=tmp_path, extend=1)
    assert not any(tmp_path.iterdir())
