"""Loading specs: every shipped space loads, and every kind of mistake is reported with file and line."""

from __future__ import annotations

import pytest

from tuning import SpecError, load_spec
from tuning.domains import Choice, FloatRange, IntRange

from .conftest import SPACES, tiny


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_space_loads(path):
    spec = load_spec(path)
    assert spec.version == 1
    assert spec.file == str(path)


def test_domains_and_scientific_notation(spec_file):
    path = spec_file(
        text="""version: 1
model:
  blocks: {int: [1, 3]}
  padding: {choice: [same, valid]}
  block_dropout: {float: [0, 0.5], step: 0.1}
training:
  learning_rate: {float: [1e-4, 1e-2], log: true}
  momentum: 0.9
  optimizer: {choice: [adam, sgd]}
"""
    )
    spec = load_spec(path)
    assert isinstance(spec.model.blocks, IntRange) and spec.model.blocks.values() == [1, 2, 3]
    assert isinstance(spec.model.padding, Choice) and spec.model.padding.values() == ["same", "valid"]
    assert isinstance(spec.training.learning_rate, FloatRange)
    assert spec.training.learning_rate.low == 1e-4 and spec.training.learning_rate.log
    assert spec.model.block_dropout.values() == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]


def test_spec_is_immutable():
    spec = load_spec({"version": 1})
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        spec.search.seed = 3  # type: ignore[misc]


def problems_of(path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return [str(p) for p in info.value.problems]


def test_every_problem_reported_at_once_with_lines_and_suggestions(spec_file):
    path = spec_file(
        text="""version: 1
data:
  source: digits
model:
  blokcs: 2
  padding: vaild
  filters: {choice: [16, 0]}
  dropout: 0.2
training:
  learning_rate: {float: [1e-2, 1e-4], log: true}
search:
  objective: {metric: val_accuracy, direction: up}
  seed: -1
"""
    )
    problems = problems_of(path)
    text = "\n".join(problems)
    assert f"{path}:5: model.blokcs: unknown key 'blokcs'" in text and "Did you mean 'blocks'?" in text
    assert f"{path}:6: model.padding: expected 'same' or 'valid'. Received: 'vaild'. Did you mean 'valid'?" in text
    assert f"{path}:7: model.filters.choice[1]: expected greater than or equal to 1. Received: 0" in text
    assert f"{path}:8: model.dropout: unknown key 'dropout'" in text and "block_dropout" in text
    assert f"{path}:10: training.learning_rate: low must not exceed high" in text
    assert f"{path}:12: search.objective.direction: expected 'max' or 'min'. Received: 'up'" in text
    assert f"{path}:13: search.seed: expected greater than or equal to 0" in text
    assert len(problems) == 7


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ":1: the file is empty"),
        ("version: 1\nmodel: [1, 2\n", "invalid YAML"),
        ("version: 1\nversion: 1\n", ":2: version: duplicate key (first given on line 1)"),
        ("model: {}\n", "version: missing required key (write `version: 1` first)"),
        ("version: 2\n", "version: expected 1. Received: 2"),
        ("- a\n- b\n", "expected a mapping of sections"),
        ("version: 1\nmodel:\n  blocks: '3'\n", ":3: model.blocks: expected a valid integer. Received: '3' (str)"),
        ("version: 1\nmodel:\n  blocks: {range: [1, 3]}\n", ":3: model.blocks: expected a constant, {choice: [...]} or {int: [low, high]}"),
        ("version: 1\nmodel:\n  padding: {int: [1, 3]}\n", ":3: model.padding: expected a constant or {choice: [...]}"),
        ("version: 1\nmodel:\n  blocks: {int: [1, 2, 3]}\n", ":3: model.blocks: expected [low, high]. Received: [1, 2, 3]"),
        ("version: 1\nmodel:\n  block_dropout: {float: [0, 0.5], log: true}\n", "log sampling needs low > 0"),
        ("version: 1\nmodel:\n  kernel_size: {choice: [3, 3]}\n", "choice lists 3 twice"),
        ("version: 1\ntraining:\n  learning_rate: {float: [1e-4, 1e-2], step: 0.5}\n", "step 0.5 goes past the range [0.0001, 0.01] in one step"),
        ("version: 1\ntraining:\n  learning_rate: {float: [1e-4, 1e-2], step: 1000, log: true}\n", "use a smaller step factor"),
        ("version: 1\ndata:\n  source: digits\n  classes: [3, 8, 3]\n", ":4: data.classes: lists '3' twice; name each class once"),
        (
            "version: 1\ndata:\n  manifest: m.csv\n  image_size: [8, 8]\n  label_columns: [Cats, Dogs, Cats]\n",
            ":5: data.label_columns: lists 'Cats' twice; name each class once",
        ),
        ("version: 1\ndata:\n  source: digits\n  image_size: [100000, 100000]\n", ":4: data.image_size: at most 4096 pixels a side: every image is decoded"),
        ("version: 1\ndata:\n  source: digits\n  image_size: [4097, 8]\n", "(224-600 pixels a side for ImageNet models). Received: [4097, 8]"),
        ("version: 1\ndata:\n  source: digits\n  image_size: [32, 32, 3]\n", ":4: data.image_size: expected [height, width], e.g. [180, 180]"),
        ("version: 1\ndata:\n  source: digits\n  image_size: 180\n", "data.image_size: expected [height, width], e.g. [180, 180] (the channels"),
        ("version: 1\ndata:\n  source: digits\n  classes: [3]\n", ":4: data.classes: expected at least 2 items. Received: ['3']"),
        (
            "version: 1\ndata:\n  source: arrays\n  path: digits.npz\n",
            ":4: data.path: the arrays source reads no file: its images are the numpy arrays passed from Python as data=; remove path",
        ),
        (
            "version: 1\ntraining:\n  optimizer: SGD\n",
            ":3: training.optimizer: expected 'adam', 'sgd', 'rmsprop' or 'adamw'. Received: 'SGD'. Did you mean 'sgd'?",
        ),
        ("version: 1\nmodel:\n  activation: ReLU\n", "Received: 'ReLU'. Did you mean 'relu'?"),
        ("version: 1\nsearch:\n  objective: {metric: val_loss, direction: minimize}\n", "Received: 'minimize'. Did you mean 'min'?"),
        (
            "version: 1\ndata:\n  source: digits\n  in_memory: Auto\n",
            ":4: data.in_memory: expected 'auto', true or false. Received: 'Auto'. Did you mean 'auto'?",
        ),
        ("version: 1\nsearch:\n  time_budget: soon\n", "expected a duration such as 90s, 30m, 2h or 1d"),
        (
            "version: 1\nsearch:\n  algorithm: random\n  trial_seed: 7\n",
            ":4: search.trial_seed: seeds the one trial of a run of `max_trials: 1` (as in the best_config.yaml that `tuning export` writes), "
            "but this search runs every trial of its plan (no max_trials)",
        ),
        ("version: 1\nsearch:\n  max_trials: 3\n  trial_seed: 7\n", "but this search runs up to 3 trials, each seeded from search.seed and its id; set"),
        ("version: 1\nsearch:\n  max_trials: 1\n  trial_seed: -1\n", ":4: search.trial_seed: expected greater than or equal to 0. Received: -1"),
        ("version: 1\nname: ../evil\n", "name: expected letters, digits"),
        (
            "version: 1\nsearch:\n  objective: {metric: val_loss, direction: max}\n",
            ":3: search.objective: direction 'max' would rank the worst model first: val_loss is minimised (direction: min, or leave direction out)",
        ),
        ("version: 1\nmodel:\n  blocks: {int: [1, 3]}\n  filters: [16, 32]\n", "model.filters: lists 2 per-block values but blocks can be 3"),
        (
            "version: 1\nmodel:\n  blocks: 2\n  kernel_size: [5, 3, 3]\n",
            "model.kernel_size: lists 3 per-block values but blocks can be 2; give exactly 2 (one per block), or one value for every block",
        ),
        ("version: 1\nmodel:\n  blocks: 2\n  block_dropout: [0.2, 1.5]\n", ":4: model.block_dropout[1]: expected less than 1. Received: 1.5"),
        ("version: 1\ntraining:\n  momentum: {float: [0.5, 0.9]}\n", "training.momentum: is tuned but only used by sgd and rmsprop"),
        ("version: 1\ntraining:\n  learning_rate: .inf\n", ":3: training.learning_rate: expected a finite number. Received: inf"),
        ("version: 1\ntraining:\n  learning_rate: {float: [1e-4, 1e400]}\n", "training.learning_rate.float[1]: expected a finite number. Received: inf"),
        ("version: 1\nmodel:\n  dense_units: {int: [1, 100000000000000000000000]}\n", "this range holds 1e+23 integers; at most 1,000,000"),
        (
            "version: 1\nsearch:\n  algorithm: grid\ntraining:\n  learning_rate: {float: [1e-3, 1e-2]}\n",
            "grid search needs every range discrete; give a step to: learning_rate",
        ),
    ],
)
def test_error_kinds(spec_file, text, expected):
    path = spec_file(text=text)
    assert any(expected in p for p in problems_of(path)), problems_of(path)


@pytest.mark.parametrize(("metric", "direction"), [("val_loss", "min"), ("loss", "min"), ("val_accuracy", "max"), ("accuracy", "max")])
def test_the_objective_direction_follows_its_metric(metric, direction):
    """`metric: val_loss` alone kept the default `max`, and the search ranked its worst model first."""
    from tuning import load_spec

    spec = {"version": 1, "search": {"objective": {"metric": metric}}, "training": {"early_stopping": False}}
    assert load_spec(spec).search.objective.direction == direction


def test_a_run_stored_with_val_loss_maximised_stays_exportable():
    """An earlier version stored `direction: max` for `metric: val_loss` (its default); this one refuses that in a
    spec, but a stored one is mended so the run's models still export (run.json's objective keeps how it ranked)."""
    from tuning.spec import load_stored_spec

    stored = load_spec({"version": 1}).to_dict()
    stored["search"]["objective"] = {"metric": "val_loss", "direction": "max"}
    assert load_stored_spec(stored).search.objective.direction == "min"


def test_a_setting_written_in_none_of_its_forms_is_one_problem_at_its_yaml_path(spec_file):
    path = spec_file(
        text="""version: 1
data:
  source: digits
  in_memory: maybe
training:
  early_stopping: true
  reduce_lr_on_plateau: on
  steps_per_execution: 0
"""
    )
    assert problems_of(path) == [
        f"{path}:4: data.in_memory: expected 'auto', true or false. Received: 'maybe'",
        f"{path}:6: training.early_stopping: expected a mapping (keys monitor, patience, min_delta) or false. Received: True",
        f"{path}:7: training.reduce_lr_on_plateau: expected a mapping (keys monitor, factor, patience, min_lr). Received: True",
        f"{path}:8: training.steps_per_execution: expected 'auto' or greater than or equal to 1. Received: 0",
    ]


def test_a_mistake_inside_a_settings_mapping_is_named_by_its_yaml_path(spec_file):
    path = spec_file(text="version: 1\ntraining:\n  early_stopping: {monitor: val_acc, patiense: 2}\n")
    assert problems_of(path) == [
        f"{path}:3: training.early_stopping.monitor: expected 'val_accuracy', 'val_loss', 'accuracy' or 'loss'. Received: 'val_acc'. "
        "Did you mean 'val_accuracy'?",
        f"{path}:3: training.early_stopping.patiense: unknown key 'patiense'. Allowed: monitor, patience, min_delta. Did you mean 'patience'?",
    ]


def test_missing_file_names_it(tmp_path):
    problems = problems_of(tmp_path / "nope.yaml")
    assert problems == [f"{tmp_path / 'nope.yaml'}: file not found; pass the path of a YAML search space"]


def test_mapping_problems_name_their_field_path():
    with pytest.raises(SpecError) as info:
        load_spec({"version": 1, "model": {"pooling": "maxx"}, "search": {"factor": 1}})
    messages = [str(p) for p in info.value.problems]
    assert "model.pooling: expected 'max', 'average' or 'none'. Received: 'maxx'. Did you mean 'max'?" in messages
    assert any(m.startswith("search.factor: expected greater than or equal to 2") for m in messages)


def test_seed_zero_is_kept_and_objective_shorthand():
    spec = load_spec({"version": 1, "search": {"seed": 0, "objective": "val_loss"}})
    assert spec.search.seed == 0
    assert (spec.search.objective.metric, spec.search.objective.direction) == ("val_loss", "min")


def test_time_budget_parsing():
    assert load_spec({"version": 1, "search": {"time_budget": "30m"}}).search.time_budget_seconds == 1800
    assert load_spec({"version": 1, "search": {"time_budget": 90}}).search.time_budget_seconds == 90


def test_hash_ignores_formatting_but_not_content(spec_file):
    a = load_spec(spec_file(text="version: 1\n# comment\nsearch: {seed: 1}\n", name="a.yaml"))
    b = load_spec(spec_file(text="version: 1\nsearch:\n  seed: 1\n", name="b.yaml"))
    c = load_spec(spec_file(text="version: 1\nsearch:\n  seed: 2\n", name="c.yaml"))
    assert a.spec_hash() == b.spec_hash() != c.spec_hash()


def test_the_largest_image_size_is_accepted():
    assert load_spec({"version": 1, "data": {"source": "digits", "image_size": [4096, 4096]}}).data.image_size == [4096, 4096]


def test_every_data_source_has_a_loader():
    """A source the spec accepts and `load_data` cannot find would fail with a KeyError after the spec was called valid."""
    from typing import get_args

    from tuning.sources import LOADERS
    from tuning.spec import DataSpec

    assert sorted(get_args(DataSpec.model_fields["source"].annotation)) == sorted(LOADERS)


def test_tiny_fixture_is_valid():
    assert load_spec(tiny()).search.max_epochs == 3
