"""The search-space file: YAML text becomes a validated, immutable `SearchSpec` in one place.

Every check happens here, in one pass, so that everything downstream receives a spec that cannot be
invalid. Problems are reported as `FILE:LINE: field.path: message` with what would be valid (worded by
`spec_errors`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import Discriminator, Field, PrivateAttr, Tag, ValidationError, field_validator, model_validator

from . import _yaml
from .domains import Frozen, Tunable, is_domain, repeated, steps_past
from .errors import Problem, SpecError

PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Rate = Annotated[float, Field(ge=0, lt=1)]
Growth = Annotated[float, Field(ge=1)]


def PerBlock(value_type: Any) -> Any:
    """One value for every block, or a list of one value per block: `kernel_size: 3` or `[5, 3, {choice: [3, 5]}]`."""
    return Annotated[
        Union[Annotated[value_type, Tag("<one value>")], Annotated[list[value_type], Tag("<per block>")]],
        Discriminator(lambda v: "<per block>" if isinstance(v, list) else "<one value>"),
    ]


MAX_NAME = 64
# A run's name is a folder name under the output root: no separators, no `..`.
RUN_NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_NAME - 1}}}$")
# The largest image side `data.image_size` takes (see `DataSpec._not_huge` for why); larger ones once got the process
# killed for memory while it wrote a multi-terabyte cache file.
MAX_IMAGE_SIDE = 4096
# Data keys that stand for a source and its path.
SHORTHANDS = {"directory": "folder", "manifest": "manifest"}


class DataSpec(Frozen):
    """Where the images come from and how they are split (see README, "data")."""

    # `arrays`: numpy arrays passed from Python (`data=`), which no file holds; the best_config.yaml of a run searched on
    # arrays says so, so that `tuning train` cannot train it on another source's images by mistake.
    source: Literal["digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "npz", "folder", "manifest", "arrays"] = "digits"
    path: str | None = None
    test_path: str | None = None
    validation_split: Annotated[float, Field(gt=0, lt=1)] = 0.2
    test_split: Annotated[float, Field(gt=0, lt=1)] = 0.2
    image_size: Annotated[list[PosInt], Field(min_length=2, max_length=2)] | None = None  # at most MAX_IMAGE_SIDE a side
    color_mode: Literal["rgb", "grayscale", "rgba"] = "rgb"
    path_column: str = "path"
    label_column: str | None = None
    label_columns: Annotated[list[str], Field(min_length=2)] | None = None
    split_column: str | None = None
    sheet: str | None = None  # manifest: the Excel sheet to read (in `path` and `test_path`); the first sheet when not given
    classes: Annotated[list[str], Field(min_length=2)] | None = None
    class_weight: Literal["balanced"] | None = None
    max_train_samples: PosInt | None = None
    max_test_samples: PosInt | None = None
    in_memory: Literal["auto"] | bool = "auto"

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, value: Any) -> Any:
        # `directory: PATH` is short for {source: folder, path: PATH}; `manifest: FILE` for {source: manifest, path: FILE}.
        # One that conflicts with the keys it stands for stays, as an unknown key that `spec_errors` explains.
        if isinstance(value, dict):
            for key, source in SHORTHANDS.items():
                if key in value and "path" not in value and value.get("source", source) == source:
                    value = {**{k: v for k, v in value.items() if k != key}, "source": source, "path": value[key]}
            # A sheet named `2024` is a sheet name, written as a number in YAML.
            if isinstance(value.get("sheet"), int) and not isinstance(value.get("sheet"), bool):
                value = {**value, "sheet": str(value["sheet"])}
            # `classes: [3, 8]` names digits' (and MNIST's) classes "3" and "8": class names are text.
            if isinstance(value.get("classes"), list):
                value = {**value, "classes": [str(c) if isinstance(c, int) and not isinstance(c, bool) else c for c in value["classes"]]}
        return value

    @field_validator("classes", "label_columns")
    @classmethod
    def _once_each(cls, value: list[str] | None) -> list[str] | None:
        # A class named twice would get two label indices and no images for one of them.
        twice = repeated(value or [])
        if twice:
            raise ValueError(f"lists {twice[0]!r} twice; name each class once")
        return value

    @field_validator("image_size")
    @classmethod
    def _not_huge(cls, value: list[int] | None) -> list[int] | None:
        if value and max(value) > MAX_IMAGE_SIDE:
            raise ValueError(
                f"at most {MAX_IMAGE_SIDE} pixels a side: every image is decoded to this size and kept in the image cache (one "
                f"{MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} RGB image is 48 MiB there, and a first convolution of 32 filters at that size makes 2 GiB "
                f"of activations per image), while CNNs train on far smaller inputs (224-600 pixels a side for ImageNet models). Received: {value}"
            )
        return value


class AugmentSpec(Frozen):
    """Per-operation augmentation, each value tunable; amounts are fractions, as Keras' layers take them."""

    flip: Tunable(Literal["none", "horizontal", "vertical", "horizontal_and_vertical"]) = "none"
    rotation: Tunable(Annotated[float, Field(ge=0, le=0.5)], ranges="float") = 0.0
    zoom: Tunable(Annotated[float, Field(ge=0, lt=1)], ranges="float") = 0.0
    translation: Tunable(Annotated[float, Field(ge=0, lt=1)], ranges="float") = 0.0
    contrast: Tunable(Annotated[float, Field(ge=0, le=1)], ranges="float") = 0.0


class ModelSpec(Frozen):
    """The CNN family: conv blocks, then a head of optional dense layers and a softmax."""

    blocks: Tunable(Annotated[int, Field(ge=0, le=8)], ranges="int") = 2  # 0: a dense-only baseline
    convs_per_block: PerBlock(Tunable(Annotated[int, Field(ge=1, le=4)], ranges="int")) = 1
    filters: PerBlock(Tunable(PosInt, ranges="int")) = 32  # one base value (times filters_growth per block) or a list
    filters_growth: Tunable(Growth, ranges="float") = 2.0
    kernel_size: PerBlock(Tunable(Annotated[int, Field(ge=1, le=11)], ranges="int")) = 3
    # The first convolution of the first block (the stem): a larger kernel and a stride shrink large images early.
    first_kernel_size: Tunable(Annotated[int, Field(ge=1, le=11)], ranges="int") | None = None  # None: kernel_size
    first_strides: Tunable(Annotated[int, Field(ge=1, le=4)], ranges="int") = 1
    padding: Tunable(Literal["same", "valid"]) = "same"
    activation: Tunable(Literal["relu", "elu", "gelu", "selu", "swish", "leaky_relu", "tanh", "sigmoid"]) = "relu"
    augmentation: Tunable(Literal["none", "light", "strong"]) = "none"
    augment: AugmentSpec | None = None
    batch_norm: Tunable(bool) = False
    pooling: Tunable(Literal["max", "average", "none"]) = "max"
    block_dropout: PerBlock(Tunable(Rate, ranges="float")) = 0.0
    head: Tunable(Literal["flatten", "global_average"]) = "flatten"
    dense_layers: Tunable(Annotated[int, Field(ge=0, le=4)], ranges="int") = 1
    dense_units: Tunable(PosInt, ranges="int") = 128
    head_dropout: Tunable(Rate, ranges="float") = 0.0


class EarlyStoppingSpec(Frozen):
    monitor: Literal["val_accuracy", "val_loss", "accuracy", "loss"] = "val_loss"
    patience: NonNegInt = 3
    min_delta: NonNegFloat = 0.0


class PlateauSpec(Frozen):
    """ReduceLROnPlateau, as the seed tutorial uses it."""

    monitor: Literal["val_accuracy", "val_loss", "accuracy", "loss"] = "val_loss"
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.5
    patience: NonNegInt = 2
    min_lr: NonNegFloat = 1e-7


class TrainingSpec(Frozen):
    optimizer: Tunable(Literal["adam", "sgd", "rmsprop", "adamw"]) = "adam"
    learning_rate: Tunable(PosFloat, ranges="float") = 1e-3
    momentum: Tunable(Rate, ranges="float") = 0.9
    weight_decay: Tunable(NonNegFloat, ranges="float") = 1e-4
    batch_size: Tunable(PosInt, ranges="int") = 64
    label_smoothing: Tunable(Rate, ranges="float") = 0.0
    early_stopping: EarlyStoppingSpec | Literal[False] = EarlyStoppingSpec()
    reduce_lr_on_plateau: PlateauSpec | None = None
    mixed_precision: Literal["auto"] | bool = "auto"
    jit_compile: Literal["auto"] | bool = "auto"
    steps_per_execution: Literal["auto"] | PosInt = "auto"
    reuse_models: bool = True


class ObjectiveSpec(Frozen):
    metric: Literal["val_accuracy", "val_loss", "accuracy", "loss"] = "val_accuracy"
    direction: Literal["max", "min"] = "max"

    @model_validator(mode="before")
    @classmethod
    def _direction_of_the_metric(cls, data: Any) -> Any:
        """A loss is minimised and an accuracy maximised: left out, the direction follows the metric (`metric:
        val_loss` alone once kept the default `max` and ranked the worst model first); given against it, refused."""
        if not isinstance(data, dict) or data.get("metric", "val_accuracy") not in get_args(cls.model_fields["metric"].annotation):
            return data
        right = direction_of(str(data.get("metric", "val_accuracy")))
        if data.get("direction") is None:
            return {**data, "direction": right}
        if wrong_direction(data):
            raise ValueError(
                f"direction {data['direction']!r} would rank the worst model first: {data.get('metric', 'val_accuracy')} is "
                f"{'minimised' if right == 'min' else 'maximised'} (direction: {right}, or leave direction out)"
            )
        return data


def direction_of(metric: str) -> str:
    """The direction an objective metric is optimised in: a loss down, an accuracy up."""
    return "min" if metric.endswith("loss") else "max"


def wrong_direction(objective: Mapping[str, Any]) -> bool:
    """An objective written (or stored by an earlier version) with the direction against its metric."""
    return objective.get("direction") in ("max", "min") and objective["direction"] != direction_of(str(objective.get("metric", "val_accuracy")))


class SearchSection(Frozen):
    algorithm: Literal["hyperband", "random", "bayesian", "grid"] = "hyperband"
    objective: ObjectiveSpec = ObjectiveSpec()
    max_epochs: Annotated[int, Field(ge=1, le=10_000)] = 9
    factor: Annotated[int, Field(ge=2, le=100)] = 3
    iterations: Annotated[int, Field(ge=1, le=1000)] = 1
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    # The one trial's seed in a one-trial run, in place of the one derived from `seed` and its id: best_config.yaml
    # records the exported trial's, so that `tuning train` trains it as the search did (`seed` still splits the data).
    trial_seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    max_trials: PosInt | None = None
    time_budget: str | int | None = None
    max_consecutive_failures: PosInt = 3
    max_params: PosInt | None = None
    keep_checkpoints: PosInt = 5
    resume_every: Annotated[float, Field(ge=0, le=86_400)] = 30
    halve_batch_on_oom: bool = True

    @field_validator("objective", mode="before")
    @classmethod
    def _objective_shorthand(cls, value: Any) -> Any:
        # `objective: val_loss` is short for {metric: val_loss}, whose direction follows the metric.
        return {"metric": value} if isinstance(value, str) else value

    @field_validator("time_budget")
    @classmethod
    def _budget(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def time_budget_seconds(self) -> float | None:
        return None if self.time_budget is None else parse_duration(self.time_budget)


class SearchSpec(Frozen):
    """A whole search: data, model space, training and search settings (`version: 1`)."""

    version: Literal[1]
    name: Annotated[str, Field(pattern=RUN_NAME.pattern)] | None = None
    description: str | None = None
    data: DataSpec = DataSpec()
    model: ModelSpec = ModelSpec()
    training: TrainingSpec = TrainingSpec()
    search: SearchSection = SearchSection()

    _file: str | None = PrivateAttr(default=None)
    _text: str | None = PrivateAttr(default=None)

    @property
    def file(self) -> str | None:
        """The YAML file this spec was read from (None for a mapping)."""
        return self._file

    @property
    def text(self) -> str:
        """The spec as given: the file's text, or the mapping dumped as YAML."""
        if self._text is not None:
            return self._text
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def base_dir(self) -> Path:
        """Folder that relative data paths are resolved against: the spec file's, else the working one."""
        return Path(self._file).resolve().parent if self._file else Path.cwd()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def spec_hash(self) -> str:
        """Hash of the validated content: comments, key order and defaults written out do not change it."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")


def parse_duration(value: str | int | float) -> float:
    """`90`, `90s`, `30m`, `1.5h`, `2d` -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"expected a positive duration such as 30m or 2h. Received: {value!r}")
        return float(value)
    match = _DURATION.match(str(value))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"expected a duration such as 90s, 30m, 2h or 1d. Received: {value!r}")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2) or "s"]


def load_spec(source: str | Path | Mapping[str, Any] | SearchSpec) -> SearchSpec:
    """Read and validate a search space from a YAML file, a mapping, or pass a loaded spec through.

    Raises `SpecError` listing every problem at once, each with its file, line and field path.

    Example:
        >>> spec = load_spec({"version": 1, "model": {"blocks": {"int": [1, 3]}}})
        >>> spec.model.blocks.values()
        [1, 2, 3]
    """
    if isinstance(source, SearchSpec):
        return source
    if isinstance(source, Mapping):
        return _validate(dict(source), lines={}, filename=None, text=None)
    path = Path(source)
    filename = str(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Problem("", "file not found; pass the path of a YAML search space", filename)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Problem("", f"cannot read the file: {exc}", filename)]) from None
    data, lines = _yaml.load_yaml(text, filename)
    if data is None:
        raise SpecError([Problem("", "the file is empty; a spec needs at least `version: 1`", filename, 1)])
    if not isinstance(data, dict):
        raise SpecError([Problem("", f"expected a mapping of sections (version, data, model, training, search). Received: {type(data).__name__}", filename, 1)])
    return _validate(data, lines, filename, text)


def load_stored_spec(stored: Mapping[str, Any]) -> SearchSpec:
    """A run's spec as `run.json` keeps it, validated by this version. A spec that an earlier version accepted
    and this one refuses is mended where the refusal changes no trial (so the run's models stay exportable):
    with `blocks: 0`, a tuned block setting (used by no layer) is fixed to its first value, a range whose
    step goes past its high end (only its low value was ever drawn) is fixed to that value, and an objective
    direction against its metric (`val_loss` kept the old default `max`) follows the metric (run.json's
    `objective` still says how the run ranked)."""
    try:
        return load_spec(stored)
    except SpecError:
        from .space import BLOCK_SETTINGS

        mended = _single_step_ranges_fixed(stored)
        search = dict(mended.get("search") or {})
        if isinstance(search.get("objective"), Mapping) and wrong_direction(search["objective"]):
            mended = {**mended, "search": {**search, "objective": {"metric": search["objective"].get("metric")}}}
        model = dict(mended.get("model") or {})
        if model.get("blocks") == 0:
            for name in BLOCK_SETTINGS:
                domain = model.get(name)
                if isinstance(domain, Mapping):  # {choice: [...]}, {int: [low, high]} or {float: [low, high]}
                    model[name] = next(domain[kind][0] for kind in ("choice", "int", "float") if kind in domain)
        return load_spec({**mended, "model": model})


def _single_step_ranges_fixed(value: Any) -> Any:
    """A range whose step goes past its high end, now refused, drew only its low value: that value, fixed."""
    if isinstance(value, Mapping):
        kind = next((k for k in ("int", "float") if k in value), None)
        if kind and value.get("step") and isinstance(value[kind], list) and len(value[kind]) == 2:
            low, high, step = value[kind][0], value[kind][1], value["step"]
            if all(isinstance(v, (int, float)) for v in (low, high, step)) and steps_past(low, high, step, bool(value.get("log"))):
                return low
        return {key: _single_step_ranges_fixed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_single_step_ranges_fixed(item) for item in value]
    return value


def _validate(data: dict[str, Any], lines: dict[Any, int], filename: str | None, text: str | None) -> SearchSpec:
    from .spec_errors import dedupe, format_path, problem_from, union_members_merged

    problems: list[Problem] = []
    spec: SearchSpec | None = None
    try:
        spec = SearchSpec.model_validate(data)
    except ValidationError as exc:
        for error in union_members_merged(exc.errors(include_url=False)):
            problems.append(problem_from(error, lines, filename, data))
    if spec is not None:
        from .space import cross_check

        for path, message in cross_check(spec):
            problems.append(Problem(format_path(path), message, filename, _yaml.line_of(lines, path)))
    if problems:
        raise SpecError(dedupe(problems))
    assert spec is not None
    spec._file = filename
    spec._text = text
    return spec


__all__ = ["SearchSpec", "load_spec", "parse_duration", "is_domain"]
