"""The hyperparameter space a spec declares, and the concrete configuration of one trial.

The YAML is the single definition of the space: `parameters(spec)` lists every tunable value with its
domain and its condition (a 2-block model has no `filters_3`), and `resolve()` turns one trial's active
values back into a complete `TrialConfig` for the model builder. No TensorFlow, no KerasTuner here.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from .domains import Choice, IntRange, format_value, is_domain
from .errors import TuningError

MOMENTUM_OPTIMIZERS = ("sgd", "rmsprop")
DECAY_OPTIMIZERS = ("adamw",)

DESCRIPTIONS = {
    "blocks": "Number of convolution blocks (each: convolutions, optional pooling and dropout).",
    "convs_per_block": "Convolution layers in each block.",
    "filters": "Filters of the first block; each later block multiplies them by filters_growth.",
    "filters_growth": "Factor between the filters of consecutive blocks.",
    "kernel_size": "Side of the square convolution kernels.",
    "padding": "Convolution padding: 'same' keeps the size, 'valid' shrinks it by kernel_size - 1.",
    "first_kernel_size": "Kernel side of the first convolution (the stem), e.g. 7 for large images.",
    "first_strides": "Stride of the first convolution: 2 halves large images before the first block's pooling.",
    "activation": "Activation after each convolution and dense layer.",
    "augmentation": "Random flips, rotations, zooms, shifts (and contrast, when strong) applied in training only.",
    "augment_flip": "Random flips in training: none, horizontal, vertical or both.",
    "augment_rotation": "Largest random rotation in training, as a fraction of a full turn.",
    "augment_zoom": "Largest random zoom in or out in training, as a fraction of the image size.",
    "augment_translation": "Largest random shift in training, as a fraction of the image size.",
    "augment_contrast": "Largest random contrast change in training (a factor of 1 +/- this).",
    "batch_norm": "Batch normalization after each convolution.",
    "pooling": "2x2 pooling at the end of each block.",
    "block_dropout": "Dropout rate at the end of each block.",
    "head": "How the feature maps become a vector: flatten or global average pooling.",
    "dense_layers": "Dense layers between the features and the classifier.",
    "dense_units": "Units of each dense layer.",
    "head_dropout": "Dropout rate before the classifier and after each dense layer.",
    "optimizer": "Optimizer.",
    "learning_rate": "Initial learning rate.",
    "momentum": "Momentum (sgd and rmsprop only).",
    "weight_decay": "Decoupled weight decay (adamw only).",
    "batch_size": "Training batch size.",
    "label_smoothing": "Label smoothing of the cross-entropy loss.",
}


@dataclass(frozen=True)
class Condition:
    """Active only when `parent` takes one of `values` (KerasTuner's `conditional_scope`)."""

    parent: str
    values: tuple[Any, ...]

    def describe(self) -> str:
        return f"{self.parent} in {{{', '.join(format_value(v) for v in self.values)}}}"


@dataclass(frozen=True)
class Param:
    """One tunable hyperparameter: its flat name, where it is in the spec, its domain and condition."""

    name: str
    path: tuple[str | int, ...]
    domain: Any
    condition: Condition | None = None

    @property
    def description(self) -> str:
        base = base_name(self.name)
        if base != self.name:
            return f"{PER_BLOCK[base]} of block {self.name[len(base) + 1 :]}."
        return DESCRIPTIONS.get(base, self.name)

    def count(self) -> int | None:
        values = self.domain.values()
        return None if values is None else len(values)


# Settings that take one value per block as a list, drawn as `NAME_1`, `NAME_2`...: what each value is.
PER_BLOCK = {"convs_per_block": "Convolution layers", "filters": "Filters", "kernel_size": "Kernel side", "block_dropout": "Dropout rate at the end"}


def base_name(name: str) -> str:
    """The setting a hyperparameter comes from: `kernel_size_2` -> `kernel_size`; others are their own."""
    base, _, index = name.rpartition("_")
    return base if base in PER_BLOCK and index.isdigit() else name


AUGMENT_OPERATIONS = ("flip", "rotation", "zoom", "translation", "contrast")


@dataclass(frozen=True)
class Augmentation:
    """The random image changes applied in training (none by default); see `PRESETS`."""

    flip: str = "none"
    rotation: float = 0.0
    zoom: float = 0.0
    translation: float = 0.0
    contrast: float = 0.0

    @property
    def active(self) -> bool:
        return self != Augmentation()


PRESETS = {
    "none": Augmentation(),
    "light": Augmentation("horizontal", rotation=0.05, zoom=0.1, translation=0.05),
    "strong": Augmentation("horizontal", rotation=0.15, zoom=0.2, translation=0.1, contrast=0.2),
}


@dataclass(frozen=True)
class TrialConfig:
    """Every value needed to build and train one model, constants and tuned values alike."""

    blocks: int
    convs_per_block: tuple[int, ...]  # per block, like filters, kernel_size and block_dropout
    filters: tuple[int, ...]
    kernel_size: tuple[int, ...]
    padding: str
    activation: str
    augmentation: str
    batch_norm: bool
    pooling: str
    block_dropout: tuple[float, ...]
    head: str
    dense_layers: int
    dense_units: int
    head_dropout: float
    optimizer: str
    learning_rate: float
    momentum: float | None
    weight_decay: float | None
    batch_size: int
    label_smoothing: float
    augment: Augmentation = Augmentation()
    first_kernel_size: int | None = None  # the first convolution's kernel side; None: kernel_size
    first_strides: int = 1

    def convolution(self, block: int, conv: int) -> tuple[int, int]:
        """Kernel side and stride of a block's convolution: the first of the first block (the stem) has its own."""
        if block == 0 and conv == 0:
            return self.first_kernel_size or self.kernel_size[0], self.first_strides
        return self.kernel_size[block], 1


# What only convolution blocks use: with blocks 0 (a dense-only baseline) these settings do nothing.
BLOCK_SETTINGS = (
    "convs_per_block",
    "filters",
    "filters_growth",
    "kernel_size",
    "first_kernel_size",
    "first_strides",
    "padding",
    "batch_norm",
    "pooling",
    "block_dropout",
)


def parameters(spec: Any) -> list[Param]:
    """The tunable hyperparameters of `spec`, parents before the values they condition."""
    model, training = spec.model, spec.training
    out: list[Param] = []

    def add(name: str, path: tuple[str | int, ...], value: Any, condition: Condition | None = None) -> None:
        if is_domain(value):
            out.append(Param(name, path, value, condition))

    add("blocks", ("model", "blocks"), model.blocks)
    convolving = _when(model.blocks, "blocks", lambda b: b > 0)  # with 0 blocks (a dense-only baseline) these do nothing

    def add_per_block(name: str) -> None:
        value = getattr(model, name)
        if not isinstance(value, list):
            add(name, ("model", name), value, convolving)
            return
        block_values = _values(model.blocks)
        for index, item in enumerate(value[: max(block_values)]):
            needed = tuple(b for b in block_values if b > index)
            condition = Condition("blocks", needed) if is_domain(model.blocks) and len(needed) < len(block_values) else None
            add(f"{name}_{index + 1}", ("model", name, index), item, condition)

    add_per_block("convs_per_block")
    add_per_block("filters")
    if not isinstance(model.filters, list):
        add("filters_growth", ("model", "filters_growth"), model.filters_growth, convolving)
    add_per_block("kernel_size")
    for name in ("first_kernel_size", "first_strides", "padding"):
        add(name, ("model", name), getattr(model, name), convolving)
    for name in ("activation", "augmentation"):
        add(name, ("model", name), getattr(model, name))
    if model.augment is not None:
        for operation in AUGMENT_OPERATIONS:
            add(f"augment_{operation}", ("model", "augment", operation), getattr(model.augment, operation))
    for name in ("batch_norm", "pooling"):
        add(name, ("model", name), getattr(model, name), convolving)
    add_per_block("block_dropout")
    for name in ("head", "dense_layers"):
        add(name, ("model", name), getattr(model, name))
    add("dense_units", ("model", "dense_units"), model.dense_units, _when(model.dense_layers, "dense_layers", lambda n: n > 0))
    add("head_dropout", ("model", "head_dropout"), model.head_dropout)
    add("optimizer", ("training", "optimizer"), training.optimizer)
    add("learning_rate", ("training", "learning_rate"), training.learning_rate)
    add("momentum", ("training", "momentum"), training.momentum, _when(training.optimizer, "optimizer", lambda o: o in MOMENTUM_OPTIMIZERS))
    add("weight_decay", ("training", "weight_decay"), training.weight_decay, _when(training.optimizer, "optimizer", lambda o: o in DECAY_OPTIMIZERS))
    for name in ("batch_size", "label_smoothing"):
        add(name, ("training", name), getattr(training, name))
    return out


def _values(value: Any) -> list[Any]:
    return value.values() if is_domain(value) else [value]


def _when(parent_value: Any, parent: str, active: Any) -> Condition | None:
    """A condition on `parent` if it is tunable and only some of its values make the child active."""
    if not is_domain(parent_value):
        return None
    values = [v for v in parent_value.values() if active(v)]
    return None if len(values) == len(parent_value.values()) else Condition(parent, tuple(values))


def is_active(param: Param, values: dict[str, Any]) -> bool:
    return param.condition is None or values.get(param.condition.parent) in param.condition.values


def cross_check(spec: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems that involve more than one field; run by `load_spec` after the schema passes."""
    model, training = spec.model, spec.training
    problems: list[tuple[tuple[str | int, ...], str]] = []
    max_blocks = max(_values(model.blocks))
    for name in PER_BLOCK:
        value = getattr(model, name)
        if isinstance(value, list) and value and max_blocks == 0:
            problems.append(
                (
                    ("model", name),
                    f"lists {len(value)} per-block values but with blocks 0 (a dense-only model) there are no blocks; give one value, or remove it",
                )
            )
        elif isinstance(value, list) and len(value) != max_blocks:
            one_value = "one base value with filters_growth" if name == "filters" else "one value for every block"
            problems.append(
                (
                    ("model", name),
                    f"lists {len(value)} per-block values but blocks can be {max_blocks}; give exactly {max_blocks} (one per block), or {one_value}",
                )
            )
    if isinstance(model.filters, list):
        if is_domain(model.filters_growth) or model.filters_growth != 2.0:
            problems.append((("model", "filters_growth"), "only applies when filters is one base value; with per-block filters, remove filters_growth"))
    for field, users in (("momentum", MOMENTUM_OPTIMIZERS), ("weight_decay", DECAY_OPTIMIZERS)):
        if is_domain(getattr(training, field)) and not any(o in users for o in _values(training.optimizer)):
            problems.append(
                (
                    ("training", field),
                    f"is tuned but only used by {' and '.join(users)}, and optimizer can only be {', '.join(map(str, _values(training.optimizer)))}; make it a constant or add {users[0]} to the optimizers",
                )
            )
    if model.augment is not None and _values(model.augmentation) != ["none"]:
        problems.append((("model", "augment"), "per-operation augment ranges replace the augmentation presets; remove `augmentation` or `augment`, not both"))
    if max_blocks == 0:
        for name in BLOCK_SETTINGS:
            value = getattr(model, name)
            if is_domain(value):  # a per-block list got its own message above
                problems.append(
                    (("model", name), "is tuned but blocks is 0 (a dense-only model), so no convolution uses it; make it a constant or allow blocks > 0")
                )
    if is_domain(model.dense_units) and max(_values(model.dense_layers)) == 0:
        problems.append((("model", "dense_units"), "is tuned but dense_layers is 0, so no dense layer uses it"))
    if spec.search.trial_seed is not None and spec.search.max_trials != 1:
        runs = f"up to {spec.search.max_trials} trials" if spec.search.max_trials else "every trial of its plan (no max_trials)"
        problems.append(
            (
                ("search", "trial_seed"),
                f"seeds the one trial of a run of `max_trials: 1` (as in the best_config.yaml that `tuning export` writes), but this "
                f"search runs {runs}, each seeded from search.seed and its id; set search.max_trials: 1, or remove trial_seed",
            )
        )
    data = spec.data
    if data.in_memory is False and data.source not in ("folder", "manifest"):
        problems.append((("data", "in_memory"), f"only folder and manifest sources stream from the decoded-image cache; {data.source} is loaded into memory"))
    if data.source in ("folder", "manifest"):
        if not data.path:
            problems.append(
                (("data", "path"), f"the {data.source} source needs a path (or write `{'directory' if data.source == 'folder' else 'manifest'}: PATH`)")
            )
        if not data.image_size:
            problems.append((("data", "image_size"), "image files need [height, width]: every image is decoded and resized to it once"))
    if data.source == "arrays" and data.path:
        problems.append(
            (
                ("data", "path"),
                "the arrays source reads no file: its images are the numpy arrays passed from Python as data=; remove path, or name the source that reads it (npz, folder, ...)",
            )
        )
    if data.source == "manifest" and not data.label_column and not data.label_columns:
        problems.append(
            (("data", "label_column"), "a manifest needs label_column (one column of class names) or label_columns (one-hot columns); neither is given")
        )
    if data.source == "manifest" and data.label_column and data.label_columns:
        problems.append(
            (("data", "label_column"), "a manifest needs either label_column (one column of class names) or label_columns (one-hot columns), not both")
        )
    if data.source != "manifest" and (data.label_column or data.label_columns or data.split_column):
        problems.append((("data", "label_column"), "label_column, label_columns and split_column only apply to `source: manifest`"))
    if data.sheet is not None and not any(str(p or "").lower().endswith((".xlsx", ".xls")) for p in (data.path, data.test_path)):
        problems.append((("data", "sheet"), "sheet names the sheet of an Excel manifest (.xlsx, .xls) to read; the data names none: remove it"))
    if data.test_path and data.source != "manifest":
        problems.append(
            (("data", "test_path"), "test_path is a second manifest of test images; a folder takes train/ and test/ sub-folders, an .npz x_test and y_test")
        )
    search = spec.search
    if search.algorithm == "grid" and any(p.count() is None for p in parameters(spec)):
        infinite = [p.name for p in parameters(spec) if p.count() is None]
        problems.append((("search", "algorithm"), f"grid search needs every range discrete; give a step to: {', '.join(infinite)}"))
    monitor = training.early_stopping.monitor if training.early_stopping else None
    if monitor and search.objective.metric.startswith("val_") != monitor.startswith("val_"):
        problems.append(
            (
                ("training", "early_stopping", "monitor"),
                f"monitors {monitor!r} while the objective is {search.objective.metric!r}; early stopping should watch validation data when the objective does",
            )
        )
    return problems


def resolve(spec: Any, values: dict[str, Any]) -> TrialConfig:
    """The complete configuration for one trial's active hyperparameter `values` (tuner/* keys ignored)."""
    declared = {p.name: p for p in parameters(spec)}
    for param in declared.values():
        if is_active(param, values) and param.name not in values:
            raise TuningError(
                f"hyperparameter {param.name!r} is active but the trial has no value for it; the space and the trial disagree (was the spec changed?)"
            )

    def get(name: str, constant: Any) -> Any:
        if name not in declared:
            return constant
        if name in values:
            return values[name]
        options = declared[name].domain.values()  # tuned but inactive here (a block setting with 0 blocks): any value does
        return options[0] if options else declared[name].domain.low

    model, training = spec.model, spec.training
    blocks = int(get("blocks", model.blocks))

    def per_block(name: str, cast: type) -> tuple[Any, ...]:
        value = getattr(model, name)
        if isinstance(value, list):
            return tuple(cast(get(f"{name}_{i + 1}", value[i])) for i in range(blocks))
        return (cast(get(name, value)),) * blocks

    if isinstance(model.filters, list):
        filters = per_block("filters", int)
    else:
        base, growth = int(get("filters", model.filters)), float(get("filters_growth", model.filters_growth))
        filters = tuple(max(1, int(round(base * growth**i))) for i in range(blocks))
    optimizer = str(get("optimizer", training.optimizer))
    dense_layers = int(get("dense_layers", model.dense_layers))
    preset = str(get("augmentation", model.augmentation))
    augment = PRESETS[preset]
    if model.augment is not None:
        ops = {op: get(f"augment_{op}", getattr(model.augment, op)) for op in AUGMENT_OPERATIONS}
        augment = Augmentation(str(ops.pop("flip")), **{op: float(v) for op, v in ops.items()})
    return TrialConfig(
        blocks=blocks,
        convs_per_block=per_block("convs_per_block", int),
        filters=filters,
        kernel_size=per_block("kernel_size", int),
        padding=str(get("padding", model.padding)),
        activation=str(get("activation", model.activation)),
        augmentation=preset if model.augment is None else "custom",
        batch_norm=bool(get("batch_norm", model.batch_norm)),
        pooling=str(get("pooling", model.pooling)),
        block_dropout=per_block("block_dropout", float),
        head=str(get("head", model.head)),
        dense_layers=dense_layers,
        dense_units=int(get("dense_units", model.dense_units)) if dense_layers else 0,
        head_dropout=float(get("head_dropout", model.head_dropout)),
        optimizer=optimizer,
        learning_rate=float(get("learning_rate", training.learning_rate)),
        momentum=float(get("momentum", training.momentum)) if optimizer in MOMENTUM_OPTIMIZERS else None,
        weight_decay=float(get("weight_decay", training.weight_decay)) if optimizer in DECAY_OPTIMIZERS else None,
        batch_size=int(get("batch_size", training.batch_size)),
        label_smoothing=float(get("label_smoothing", training.label_smoothing)),
        augment=augment,
        first_kernel_size=None if model.first_kernel_size is None else int(get("first_kernel_size", model.first_kernel_size)),
        first_strides=int(get("first_strides", model.first_strides)),
    )


def count_configurations(params: list[Param]) -> int | None:
    """Distinct active-value combinations (what KerasTuner can draw), or None if a range is continuous."""
    parents = [p for p in params if any(q.condition and q.condition.parent == p.name for q in params)]
    others = [p for p in params if p not in parents]
    total = 0
    for combo in itertools.product(*(p.domain.values() for p in parents)):
        assignment = {p.name: v for p, v in zip(parents, combo)}
        if not all(is_active(p, assignment) for p in parents):
            continue
        counts = [p.count() for p in others if is_active(p, assignment)]
        if any(c is None for c in counts):
            return None
        total += math.prod(c for c in counts if c is not None)
    return total


def listable(params: list[Param]) -> bool:
    """Whether KerasTuner draws every value of these from a list (choices and linear integer ranges), so that
    enumerating them lists exactly what it can draw; floats with a step and log ranges it samples otherwise."""
    return all(isinstance(p.domain, Choice) or (isinstance(p.domain, IntRange) and not p.domain.log) for p in params)


def enumerate_values(params: list[Param], limit: int, options: dict[str, list[Any]] | None = None) -> list[dict[str, Any]] | None:
    """Every active-value combination of finite `params` (each one's values from `options` when given there,
    else its domain's), or None if there are more than `limit`."""
    out: list[dict[str, Any]] = [{}]
    for param in params:
        choices = options[param.name] if options and param.name in options else param.domain.values()
        grown: list[dict[str, Any]] = []
        for values in out:
            if is_active(param, values):
                grown.extend({**values, param.name: v} for v in choices)
            else:
                grown.append(values)
        out = grown
        if len(out) > limit:
            return None
    return out


__all__ = ["Param", "Condition", "TrialConfig", "Augmentation", "PRESETS", "parameters", "resolve", "count_configurations", "Choice", "IntRange"]
