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


def test_a_spec_of_arrays_is_refused_without_them_in_the_same_words_everywhere(tmp_path, capsys):
    """`data.source: arrays` (as in the best_config.yaml of a run searched on arrays) stands for the arrays Python passes
    as `data=`: `validate`, `plan`, `estimate`, `search` and `train` refuse it without them, and plan it with them."""
    import numpy as np
    import pytest

    from tuning.cli import main

    path = tmp_path / "best_config.yaml"
    path.write_text("version: 1\ndata:\n  source: arrays\n  image_size: [16, 16]\nsearch:\n  algorithm: random\n  max_trials: 1\n")
    messages = []
    for call in (tuning.plan, tuning.estimate, tuning.search, tuning.train):
        with pytest.raises(tuning.DataError) as refused:
            call(path) if call in (tuning.plan, tuning.estimate) else call(path, out=tmp_path)
        messages.append(str(refused.value))
    assert main(["validate", str(path)]) == 2
    messages.append(capsys.readouterr().err.removeprefix("error: ").removesuffix("\n"))
    assert len(set(messages)) == 1, messages
    assert messages[0].startswith(f"{path}: data.source is `arrays`: this spec trains on numpy arrays passed from Python, which no file holds")
    assert f"From Python, pass the same arrays: tuning.train({str(path)!r}, data=(x_train, y_train, ...))" in messages[0]
    assert [p.name for p in tmp_path.iterdir()] == ["best_config.yaml"]  # refused before any work

    x, y = np.zeros((40, 12, 12, 3), "uint8"), np.arange(40) % 4
    the_plan = tuning.plan(path, data=(x, y))
    assert (the_plan.input_shape, the_plan.num_classes, the_plan.total_trials) == ((16, 16, 3), 4, 1)  # image_size: resized in the model
