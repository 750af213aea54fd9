"""Shapes and sizes decided before training, checked against the models Keras really builds."""

from __future__ import annotations

import pytest

from tuning import load_spec
from tuning.feasibility import check, count_params, feature_maps, multiply_adds
from tuning.space import TrialConfig, resolve

BASE = dict(blocks=2, convs_per_block=1, filters=(8, 16), kernel_size=3, padding="same", activation="relu", augmentation="none", batch_norm=False, pooling="max",
            block_dropout=0.0, head="flatten", dense_layers=1, dense_units=32, head_dropout=0.0, optimizer="adam", learning_rate=1e-3,
            momentum=None, weight_decay=None, batch_size=32, label_smoothing=0.0)  # fmt: skip


def config(**changes) -> TrialConfig:
    settings = {**BASE, **changes}
    for name in ("convs_per_block", "kernel_size", "block_dropout"):  # one value for every block, as the spec allows
        if not isinstance(settings[name], tuple):
            settings[name] = (settings[name],) * settings["blocks"]
    return TrialConfig(**settings)


def test_valid_padding_and_pooling_shrink_small_images():
    assert feature_maps(config(), (8, 8))[0] == [(4, 4), (2, 2)]
    assert feature_maps(config(padding="valid"), (8, 8)) == ([(3, 3)], "feature maps shrink below 1 pixel in block 2 (2x2 pooling of 1x1)")
    reason = check(config(blocks=1, filters=(8,), kernel_size=9, padding="valid"), (8, 8, 1), 10, None)
    assert reason == "feature maps shrink below 1 pixel in block 1 (9x9 'valid' convolution on 8x8)"
    assert check(config(blocks=3, filters=(8, 8, 8), pooling="none", padding="valid"), (8, 8, 1), 10, None) is None


def test_parameter_cap():
    big = config(filters=(64, 128), dense_units=512)
    assert check(big, (28, 28, 1), 10, max_params=10_000).endswith("parameters exceed search.max_params = 10,000")
    assert check(big, (28, 28, 1), 10, max_params=10_000_000) is None


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"batch_norm": True, "convs_per_block": 2},
        {"padding": "valid", "head": "global_average", "dense_layers": 0, "dense_units": 0},
        {"blocks": 3, "filters": (4, 8, 16), "pooling": "average", "dense_layers": 2, "block_dropout": 0.2, "head_dropout": 0.3},
        {"kernel_size": 5, "pooling": "none", "blocks": 1, "filters": (6,)},
        {"blocks": 0, "filters": (), "activation": "sigmoid", "dense_units": 64},  # tutorial 001's dense-only baseline
        {"blocks": 0, "filters": (), "head": "global_average"},
        {"first_kernel_size": 7, "first_strides": 2, "padding": "valid", "batch_norm": True},  # tutorial 000's stem
        {"first_kernel_size": 5, "first_strides": 3, "convs_per_block": 2},
    ],
)
def test_parameter_count_equals_keras(changes):
    from tuning.hypermodel import build_model

    cfg = config(**changes)
    model = build_model(cfg, (28, 28, 3), 7)
    assert count_params(cfg, (28, 28, 3), 7) == model.count_params()


def test_model_takes_raw_images_and_resizes_inside():
    from tuning.hypermodel import build_model

    model = build_model(config(), (8, 8, 1), 10, value_max=16.0, image_size=(16, 16))
    assert model.input_shape == (None, 8, 8, 1)
    assert [layer.name for layer in model.layers[:3]] == ["image", "rescale", "resize"]
    assert model.get_layer("block1_conv1").output.shape[1:3] == (16, 16)
    assert model.output_shape == (None, 10)


def test_validate_fails_when_nothing_is_feasible(tmp_path, capsys):
    import yaml

    from tuning import plan
    from tuning.cli import main

    spec = load_spec({"version": 1, "model": {"blocks": 4, "filters": {"choice": [8, 16]}, "padding": "valid"}})
    assert plan(spec).feasibility.all_infeasible
    # A fixed model over the parameter cap is named as such, and no schedule is shown for a space that cannot train.
    fixed = {"version": 1, "model": {"blocks": 2, "filters": 64}, "training": {"learning_rate": {"float": [1e-3, 1e-2]}}, "search": {"max_params": 1000}}
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(fixed))
    assert main(["validate", str(tmp_path / "big.yaml")]) == 2
    printed = capsys.readouterr()
    assert "Search space: 1 hyperparameter\n" in printed.out and "Hyperband plan" not in printed.out
    assert "  the model as the spec fixes it: " in printed.out and "parameters exceed search.max_params = 1,000 (1 combination)" in printed.out
    assert "no configuration of the space can be built" in printed.err


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("stem", [(None, 1), (7, 2), (5, 3), (3, 4)])
@pytest.mark.parametrize("size", [(28, 28), (33, 17), (150, 150)])
def test_feature_map_sizes_with_a_strided_first_convolution_equal_keras(padding, stem, size):
    """The sizes `validate` predicts (and refuses on) are those of the model Keras builds, stride and all."""
    from tuning.hypermodel import build_model

    cfg = config(first_kernel_size=stem[0], first_strides=stem[1], padding=padding, convs_per_block=2)
    sizes, reason = feature_maps(cfg, size)
    if reason:
        with pytest.raises(ValueError):
            build_model(cfg, (*size, 1), 3)
        return
    model = build_model(cfg, (*size, 1), 3)
    assert [tuple(model.get_layer(f"block{b + 1}_maxpool").output.shape[1:3]) for b in range(cfg.blocks)] == sizes
    assert count_params(cfg, (*size, 1), 3) == model.count_params()
    assert model.get_layer("block1_conv1").kernel.shape[:2] == (cfg.convolution(0, 0)[0],) * 2
    assert model.get_layer("block1_conv2").kernel.shape[:2] == (3, 3) and model.get_layer("block1_conv2").strides == (1, 1)


def test_multiply_adds_count_each_convolution_at_its_output_size():
    spec = load_spec({"version": 1, "model": {"blocks": 2, "filters": 8, "dense_layers": 1, "dense_units": 16, "first_strides": 2}})
    config = resolve(spec, {})
    # 8x8x1 digits: a 3x3/2 'same' convolution to 4x4x8, pooled to 2x2; a 3x3 convolution to 2x2x16, pooled to
    # 1x1; flatten (16) -> dense 16 -> 10 classes.
    expected = 9 * 1 * 8 * 4 * 4 + 9 * 8 * 16 * 2 * 2 + 16 * 16 + 16 * 10
    assert multiply_adds(config, (8, 8, 1), 10) == expected


def test_multiply_adds_follow_each_blocks_own_convolutions():
    # 8x8x1: block 1 one 3x3 convolution to 8x8x4, pooled to 4x4; block 2 two 3x3 convolutions, 4x4x4 -> 4x4x8
    # -> 4x4x8, pooled to 2x2; flatten (32) -> 10 classes.
    config_ = config(convs_per_block=(1, 2), filters=(4, 8), dense_layers=0)
    expected = 9 * 1 * 4 * 8 * 8 + 9 * 4 * 8 * 4 * 4 + 9 * 8 * 8 * 4 * 4 + 32 * 10
    assert multiply_adds(config_, (8, 8, 1), 10) == expected
