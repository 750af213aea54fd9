"""Which configurations can be built at all, decided from the input shape alone, before any training.

Feature maps shrink with `valid` padding and with pooling; on small images (8x8 digits) a deep model
shrinks them below one pixel, and Keras fails only once the trial has started. `check()` finds that, and
a parameter count identical to `model.count_params()`, so a cap can be enforced without building.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .space import Param, TrialConfig, base_name, enumerate_values, parameters, resolve

ENUMERATION_LIMIT = 20_000


def feature_maps(
    config: TrialConfig, input_hw: tuple[int, int], convolutions: list[tuple[int, int, int]] | None = None
) -> tuple[list[tuple[int, int]], str | None]:
    """Spatial size after each block, and why the configuration is infeasible (None if it is fine). Each
    convolution's kernel side and output size are appended to `convolutions` when given."""
    h, w = input_hw
    sizes: list[tuple[int, int]] = []
    for block in range(config.blocks):
        for conv in range(config.convs_per_block[block]):
            kernel, strides = config.convolution(block, conv)
            if config.padding == "valid":
                if h < kernel or w < kernel:
                    return sizes, f"feature maps shrink below 1 pixel in block {block + 1} ({kernel}x{kernel} 'valid' convolution on {h}x{w})"
                h, w = (h - kernel) // strides + 1, (w - kernel) // strides + 1
            else:
                h, w = -(-h // strides), -(-w // strides)  # 'same' with a stride: ceil(size / stride), as Keras does
            if convolutions is not None:
                convolutions.append((kernel, h, w))
        if config.pooling != "none":
            if h < 2 or w < 2:
                return sizes, f"feature maps shrink below 1 pixel in block {block + 1} (2x2 pooling of {h}x{w})"
            h, w = h // 2, w // 2
        sizes.append((h, w))
    return sizes, None


def count_params(config: TrialConfig, input_shape: tuple[int, int, int], num_classes: int) -> int:
    """Parameters of the model `hypermodel.build_model` makes, trainable and not (as `count_params`)."""
    channels = input_shape[2]
    sizes, _ = feature_maps(config, input_shape[:2])
    total = 0
    for block in range(config.blocks):
        filters = config.filters[block]
        for conv in range(config.convs_per_block[block]):
            kernel, _ = config.convolution(block, conv)
            total += kernel**2 * channels * filters
            total += 4 * filters if config.batch_norm else filters
            channels = filters
    h, w = sizes[-1] if sizes else input_shape[:2]
    features = channels if config.head == "global_average" else h * w * channels
    for _ in range(config.dense_layers):
        total += features * config.dense_units + config.dense_units
        features = config.dense_units
    return total + features * num_classes + num_classes


def multiply_adds(config: TrialConfig, input_shape: tuple[int, int, int], num_classes: int) -> int:
    """Multiply-adds of one image's forward pass through the convolutions and dense layers: what sets the
    time of a step, where the parameter count does not (a wide early convolution has few weights)."""
    convolutions: list[tuple[int, int, int]] = []
    sizes, _ = feature_maps(config, input_shape[:2], convolutions)
    channels, total = input_shape[2], 0
    blocks = [block for block in range(config.blocks) for _ in range(config.convs_per_block[block])]
    for block, (kernel, h, w) in zip(blocks, convolutions):
        filters = config.filters[block]
        total += kernel * kernel * channels * filters * h * w
        channels = filters
    h, w = sizes[-1] if sizes else input_shape[:2]
    features = channels if config.head == "global_average" else h * w * channels
    for _ in range(config.dense_layers):
        total += features * config.dense_units
        features = config.dense_units
    return total + features * num_classes


def check(config: TrialConfig, input_shape: tuple[int, int, int], num_classes: int, max_params: int | None) -> str | None:
    """Why `config` cannot be trained on `input_shape`, or None if it can."""
    _, reason = feature_maps(config, input_shape[:2])
    if reason:
        return reason
    if max_params is not None:
        params = count_params(config, input_shape, num_classes)
        if params > max_params:
            return f"{params:,} parameters exceed search.max_params = {max_params:,}"
    return None


SHAPE_KEYS = ("blocks", "convs_per_block", "kernel_size", "first_kernel_size", "first_strides", "padding", "pooling")
SIZE_KEYS = SHAPE_KEYS + ("filters", "filters_growth", "batch_norm", "head", "dense_layers", "dense_units")


@dataclass
class FeasibilityReport:
    """How much of the space can be trained, and the groups of settings that cannot."""

    input_shape: tuple[int, int, int]
    checked: int
    infeasible: int
    exhaustive: bool
    groups: list[tuple[str, str, int]] = field(default_factory=list)  # (settings, reason, count)

    @property
    def all_infeasible(self) -> bool:
        return self.checked > 0 and self.infeasible == self.checked

    @property
    def fraction_feasible(self) -> float:
        return 1.0 if not self.checked else (self.checked - self.infeasible) / self.checked


def scan(spec: Any, input_shape: tuple[int, int, int], num_classes: int, seed: int = 0) -> FeasibilityReport:
    """Check every combination of the values that decide shape (and size, with a cap) over the space.

    Values that cannot change feasibility (learning rate, dropout...) are held at their first value, so the
    scan stays small; past `ENUMERATION_LIMIT` combinations it checks a seeded random sample instead.
    """
    params = parameters(spec)
    keys = SIZE_KEYS if spec.search.max_params else SHAPE_KEYS
    relevant = [p for p in params if base_name(p.name) in keys]
    fixed = {p.name: _first(p) for p in params if p not in relevant}
    finite = all(p.count() is not None for p in relevant)
    combos = enumerate_values(relevant, ENUMERATION_LIMIT) if finite else None
    exhaustive = combos is not None
    if combos is None:
        rng = random.Random(seed)
        combos = [random_values(relevant, rng) for _ in range(ENUMERATION_LIMIT // 4)]
    groups: Counter[tuple[str, bool]] = Counter()
    examples: dict[tuple[str, bool], str] = {}
    infeasible = 0
    for combo in combos:
        values = {**fixed, **combo}
        values = {k: v for k, v in values.items() if _active_in(params, k, values)}
        reason = check(resolve(spec, values), input_shape, num_classes, spec.search.max_params)
        if reason:
            infeasible += 1
            too_big = "max_params" in reason
            settings = ", ".join(f"{k}={v}" for k, v in combo.items() if base_name(k) in SHAPE_KEYS and not too_big)
            if not relevant:
                settings = "the model as the spec fixes it"  # nothing tuned decides its shape or size
            key = (settings or "some values of " + ", ".join(p.name for p in relevant), too_big)
            groups[key] += 1
            examples.setdefault(key, reason)
    ordered = [(settings, examples[(settings, big)], n) for (settings, big), n in groups.most_common()]
    return FeasibilityReport(input_shape, len(combos), infeasible, exhaustive, ordered)


def _first(param: Param) -> Any:
    values = param.domain.values()
    return values[0] if values else param.domain.low


def random_values(params: list[Param], rng: random.Random) -> dict[str, Any]:
    """One random point of the space: a value for each parameter active under the values drawn before it."""
    out: dict[str, Any] = {}
    for param in params:
        if param.condition and out.get(param.condition.parent) not in param.condition.values:
            continue
        values = param.domain.values()
        out[param.name] = rng.choice(values) if values else rng.uniform(param.domain.low, param.domain.high)
    return out


def _active_in(params: list[Param], name: str, values: dict[str, Any]) -> bool:
    for param in params:
        if param.name == name and param.condition:
            return values.get(param.condition.parent) in param.condition.values
    return True
