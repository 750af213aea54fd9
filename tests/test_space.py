"""The space declared from the YAML: names, domains, conditions, and what KerasTuner records."""

from __future__ import annotations

import pytest

from tuning import load_spec
from tuning.space import count_configurations, parameters, resolve

SPEC = {
    "version": 1,
    "model": {
        "blocks": {"int": [2, 4]},
        "filters": [{"choice": [16, 32]}, {"choice": [32, 64]}, 64, {"choice": [64, 128]}],
        "dense_layers": {"int": [0, 1]},
        "dense_units": {"choice": [64, 128]},
    },
    "training": {"optimizer": {"choice": ["adam", "sgd"]}, "momentum": {"float": [0.5, 0.9], "step": 0.2}, "learning_rate": 1e-3},
}


def test_depth_dependent_values_are_conditional():
    params = {p.name: p for p in parameters(load_spec(SPEC))}
    assert list(params) == ["blocks", "filters_1", "filters_2", "filters_4", "dense_layers", "dense_units", "optimizer", "momentum"]
    assert params["filters_1"].condition is None  # every model has two blocks
    assert params["filters_4"].condition.describe() == "blocks in {4}"
    assert params["dense_units"].condition.describe() == "dense_layers in {1}"
    assert params["momentum"].condition.describe() == "optimizer in {sgd}"


def test_a_dense_only_baseline_draws_no_convolution_settings(tmp_path):
    """blocks: 0 builds Flatten -> Dense -> softmax; the block settings are conditional on blocks > 0, so the
    baseline is one configuration per head, not one per filter count and kernel size."""
    from tuning.hypermodel import build_model

    spec = load_spec(
        {
            "version": 1,
            "model": {"blocks": {"int": [0, 2]}, "filters": {"choice": [8, 16]}, "kernel_size": {"choice": [3, 5]}, "batch_norm": {"choice": [True, False]}},
            "training": {"learning_rate": 1e-3},
        }
    )
    params = {p.name: p for p in parameters(spec)}
    assert all(params[name].condition.describe() == "blocks in {1, 2}" for name in ("filters", "kernel_size", "batch_norm"))
    assert count_configurations(list(params.values())) == 1 + 2 * (2 * 2 * 2)
    baseline = build_model(resolve(spec, {"blocks": 0}), (8, 8, 1), 10)
    assert [type(layer).__name__ for layer in baseline.layers] == ["InputLayer", "Rescaling", "Flatten", "Dense", "Dense"]


def test_count_configurations_respects_conditions():
    # blocks 2: 2*2; blocks 3: 2*2 (filters_3 is constant); blocks 4: 2*2*2 -> 16 model shapes,
    # times head (1 + 2) and optimizer (adam + 3 momentum values) = 16 * 3 * 4.
    assert count_configurations(parameters(load_spec(SPEC))) == 16 * 3 * 4


def test_resolve_gives_a_complete_config():
    config = resolve(load_spec(SPEC), {"blocks": 3, "filters_1": 32, "filters_2": 64, "dense_layers": 0, "optimizer": "adam"})
    assert config.filters == (32, 64, 64)
    assert config.dense_units == 0 and config.momentum is None


def test_resolve_refuses_a_missing_active_value():
    from tuning import TuningError

    with pytest.raises(TuningError, match="'filters_4' is active but the trial has no value"):
        resolve(load_spec(SPEC), {"blocks": 4, "filters_1": 32, "filters_2": 64, "dense_layers": 0, "optimizer": "adam"})


def test_a_tuned_stem_builds_its_first_convolution_only():
    """Tutorial 000's 7x7, stride-2 first convolution on large images, as a choice beside the plain 3x3."""
    from tuning.hypermodel import build_model

    spec = load_spec({"version": 1, "model": {"blocks": {"int": [0, 2]}, "first_kernel_size": {"choice": [3, 7]}, "first_strides": {"int": [1, 2]}}})
    params = {p.name: p for p in parameters(spec)}
    assert params["first_kernel_size"].condition.describe() == params["first_strides"].condition.describe() == "blocks in {1, 2}"
    config = resolve(spec, {"blocks": 2, "first_kernel_size": 7, "first_strides": 2})
    assert (config.first_kernel_size, config.first_strides, config.kernel_size) == (7, 2, (3, 3))
    model = build_model(config, (150, 150, 3), 2)
    assert model.get_layer("block1_conv1").output.shape[1:3] == (75, 75) and model.get_layer("block2_conv1").kernel.shape[:2] == (3, 3)
    plain = resolve(load_spec({"version": 1}), {})
    assert (plain.first_kernel_size, plain.first_strides, plain.convolution(0, 0), config.convolution(0, 0), config.convolution(1, 0)) == (
        None,
        1,
        (3, 1),
        (7, 2),
        (3, 1),
    )


def test_kernel_size_and_block_dropout_take_one_value_per_block():
    """A dropout that rises with depth (a common CIFAR-10 recipe) and a wider first kernel, each block's value tunable."""
    from tuning.export import fixed_spec
    from tuning.feasibility import count_params
    from tuning.hypermodel import build_model

    spec = load_spec(
        {
            "version": 1,
            "model": {
                "blocks": {"int": [1, 3]},
                "convs_per_block": [1, 2, {"int": [2, 3]}],  # VGG's rising depth
                "kernel_size": [{"choice": [3, 5]}, 3, {"choice": [1, 3]}],
                "block_dropout": [0.2, {"float": [0.2, 0.4], "step": 0.1}, 0.4],
            },
        }
    )
    params = {p.name: p for p in parameters(spec)}
    assert [name for name in params if name != "blocks"] == ["convs_per_block_3", "kernel_size_1", "kernel_size_3", "block_dropout_2"]
    assert params["convs_per_block_3"].description == "Convolution layers of block 3."
    assert params["kernel_size_1"].condition is None and params["kernel_size_3"].condition.describe() == "blocks in {3}"
    assert params["block_dropout_2"].condition.describe() == "blocks in {2, 3}"
    assert (params["kernel_size_3"].description, params["block_dropout_2"].description) == ("Kernel side of block 3.", "Dropout rate at the end of block 2.")
    assert count_configurations(list(params.values())) == 2 + 2 * 3 + 2 * 3 * 2 * 2

    values = {"blocks": 3, "convs_per_block_3": 3, "kernel_size_1": 5, "kernel_size_3": 1, "block_dropout_2": 0.3}
    config = resolve(spec, values)
    assert (config.convs_per_block, config.kernel_size, config.block_dropout) == ((1, 2, 3), (5, 3, 1), (0.2, 0.3, 0.4))
    model = build_model(config, (16, 16, 1), 10)
    convolutions = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [(layer.name, layer.kernel.shape[0]) for layer in convolutions] == [
        ("block1_conv1", 5),
        ("block2_conv1", 3),
        ("block2_conv2", 3),
        ("block3_conv1", 1),
        ("block3_conv2", 1),
        ("block3_conv3", 1),
    ]
    assert [model.get_layer(f"block{b}_dropout").rate for b in (1, 2, 3)] == [0.2, 0.3, 0.4]
    assert count_params(config, (16, 16, 1), 10) == model.count_params()

    two_blocks = fixed_spec(spec, {"blocks": 2, "kernel_size_1": 3, "block_dropout_2": 0.2}, epochs=3)["model"]
    assert (two_blocks["blocks"], two_blocks["convs_per_block"], two_blocks["kernel_size"], two_blocks["block_dropout"]) == (2, [1, 2], [3, 3], [0.2, 0.2])
    assert resolve(load_spec({"version": 1, "model": two_blocks}), {}).convs_per_block == (1, 2)
    baseline = load_spec({"version": 1, "model": {"blocks": {"int": [0, 2]}, "kernel_size": [{"choice": [3, 5]}, 3], "block_dropout": [0.1, 0.2]}})
    dense_only = fixed_spec(baseline, {"blocks": 0}, epochs=3)["model"]  # no blocks: one value each, as a fixed spec must give
    assert (dense_only["blocks"], dense_only["kernel_size"], dense_only["block_dropout"]) == (0, 3, 0.1)
    assert resolve(load_spec({"version": 1, "model": dense_only}), {}).kernel_size == ()


def test_growth_factor_filters():
    spec = load_spec({"version": 1, "model": {"blocks": 3, "filters": 16, "filters_growth": 1.5}})
    assert resolve(spec, {}).filters == (16, 24, 36)


def test_kerastuner_space_and_trial_values_hold_only_active_entries(tmp_path):
    """Declared up front, with conditions: a 2-block trial never records filters_3 or filters_4."""
    import json

    from tuning.oracles import make_oracle

    spec = load_spec({**SPEC, "search": {"algorithm": "random", "max_trials": 12, "seed": 3}})
    oracle = make_oracle(spec, parameters(spec))
    oracle._set_project_dir(str(tmp_path), "o")
    oracle.verbose = 0
    declared = {hp.name for hp in oracle.get_space().space}
    assert declared == {p.name for p in parameters(spec)}
    seen_two_blocks = 0
    for _ in range(12):
        trial = oracle.create_trial("tuner0")
        values = trial.hyperparameters.values
        if values["blocks"] == 2:
            seen_two_blocks += 1
            assert "filters_4" not in values
            saved = json.loads((tmp_path / "o" / f"trial_{trial.trial_id}" / "trial.json").read_text())
            assert "filters_4" not in saved["hyperparameters"]["values"]
        assert ("momentum" in values) == (values["optimizer"] == "sgd")
        assert ("dense_units" in values) == (values["dense_layers"] == 1)
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert seen_two_blocks > 0


def test_seed_zero_is_honoured():
    from tuning.oracles import make_oracle

    def draws(seed):
        spec = load_spec({**SPEC, "search": {"algorithm": "random", "seed": seed}})
        oracle = make_oracle(spec, parameters(spec))
        assert oracle.seed == seed
        return [oracle._random_values() for _ in range(5)]

    assert draws(0) == draws(0)
    assert draws(0) != draws(1)


def test_block_settings_tuned_for_a_dense_only_model_are_refused():
    """With blocks: 0 nothing uses them: tuning them would train the same model under several names."""
    from tuning import SpecError

    with pytest.raises(SpecError) as caught:
        load_spec({"version": 1, "model": {"blocks": 0, "first_kernel_size": {"choice": [5, 7]}, "kernel_size": 3, "padding": {"choice": ["same", "valid"]}}})
    assert [(p.path, p.message.split(";")[0]) for p in caught.value.problems] == [
        ("model.first_kernel_size", "is tuned but blocks is 0 (a dense-only model), so no convolution uses it"),
        ("model.padding", "is tuned but blocks is 0 (a dense-only model), so no convolution uses it"),
    ]


@pytest.mark.parametrize("name", ["filters", "convs_per_block", "kernel_size", "block_dropout"])
def test_a_per_block_list_for_a_dense_only_model_says_there_are_no_blocks(name):
    from tuning import SpecError

    values = {"filters": [16, 32], "convs_per_block": [1, 2], "kernel_size": [3, {"choice": [3, 5]}], "block_dropout": [0.1, 0.2]}[name]
    with pytest.raises(SpecError) as caught:
        load_spec({"version": 1, "model": {"blocks": 0, name: values}, "training": {"learning_rate": {"float": [1e-3, 1e-2]}}})
    assert [str(p) for p in caught.value.problems] == [
        f"model.{name}: lists 2 per-block values but with blocks 0 (a dense-only model) there are no blocks; give one value, or remove it"
    ]
    assert load_spec({"version": 1, "model": {"blocks": {"int": [0, 2]}, name: values}}).model.blocks.values() == [0, 1, 2]


def test_a_stepped_float_is_recorded_as_written_not_as_its_binary_sum():
    """KerasTuner draws {float: [0.1, 0.5], step: 0.1} as 0.1 + 2 * 0.1 = 0.30000000000000004."""
    import keras_tuner as kt

    from tuning.engine import active_values
    from tuning.oracles import declare

    spec = load_spec({"version": 1, "model": {"block_dropout": {"float": [0.1, 0.5], "step": 0.1}}})
    hp = declare(kt.HyperParameters(), parameters(spec))
    hp.values["block_dropout"] = 0.1 + 2 * 0.1
    assert hp.values["block_dropout"] != 0.3 and active_values(hp) == {"block_dropout": 0.3}
