"""The search-space file: YAML text becomes a validated, immutable `SearchSpec` in one place.

Every check happens here, in one pass, so that everything downstream receives a spec that cannot be
invalid. Problems are reported as `FILE:LINE: field.path: message` with what would be valid.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Discriminator, Field, PrivateAttr, Tag, ValidationError, field_validator, model_validator

from . import _yaml
from .domains import DOMAIN_TAGS, Frozen, Tunable, is_domain, repeated, steps_past
from .errors import Problem, SpecError
from .wording import closest

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

    source: Literal["digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "npz", "folder", "manifest"] = "digits"
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
    classes: Annotated[list[str], Field(min_length=2)] | None = None
    class_weight: Literal["balanced"] | None = None
    max_train_samples: PosInt | None = None
    max_test_samples: PosInt | None = None
    in_memory: Literal["auto"] | bool = "auto"

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, value: Any) -> Any:
        # `directory: PATH` is short for {source: folder, path: PATH}; `manifest: FILE` for {source: manifest, path: FILE}.
        # One that conflicts with the keys it stands for stays, as an unknown key that `_shorthand_conflict` explains.
        if isinstance(value, dict):
            for key, source in SHORTHANDS.items():
                if key in value and "path" not in value and value.get("source", source) == source:
                    value = {**{k: v for k, v in value.items() if k != key}, "source": source, "path": value[key]}
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


class SearchSection(Frozen):
    algorithm: Literal["hyperband", "random", "bayesian", "grid"] = "hyperband"
    objective: ObjectiveSpec = ObjectiveSpec()
    max_epochs: Annotated[int, Field(ge=1, le=10_000)] = 9
    factor: Annotated[int, Field(ge=2, le=100)] = 3
    iterations: Annotated[int, Field(ge=1, le=1000)] = 1
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
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
        # `objective: val_loss` is short for {metric: val_loss, direction: min}.
        if isinstance(value, str):
            return {"metric": value, "direction": "min" if value.endswith("loss") else "max"}
        return value

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
    with `blocks: 0`, a tuned block setting (used by no layer) is fixed to its first value, and a range whose
    step goes past its high end (only its low value was ever drawn) is fixed to that value."""
    try:
        return load_spec(stored)
    except SpecError:
        from .space import BLOCK_SETTINGS

        mended = _single_step_ranges_fixed(stored)
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
    problems: list[Problem] = []
    spec: SearchSpec | None = None
    try:
        spec = SearchSpec.model_validate(data)
    except ValidationError as exc:
        for error in _union_members_merged(exc.errors(include_url=False)):
            problems.append(_problem_from(error, lines, filename, data))
    if spec is not None:
        from .space import cross_check

        for path, message in cross_check(spec):
            problems.append(Problem(_format_path(path), message, filename, _yaml.line_of(lines, path)))
    if problems:
        raise SpecError(_dedupe(problems))
    assert spec is not None
    spec._file = filename
    spec._text = text
    return spec


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for problem in problems:
        if str(problem) not in seen:
            seen.add(str(problem))
            out.append(problem)
    return out


def _problem_from(error: Any, lines: dict[Any, int], filename: str | None, spec: Mapping[str, Any] | None = None) -> Problem:
    raw_loc = tuple(error["loc"])
    loc = tuple(part for part in raw_loc if not (isinstance(part, str) and part.startswith("<")))
    kind, received = error["type"], error.get("input")
    message = error["msg"]
    section = (spec or {}).get("data")
    if kind == "extra_forbidden" and raw_loc[:-1] == ("data",) and raw_loc[-1] in SHORTHANDS and isinstance(section, Mapping):
        message = _shorthand_conflict(str(raw_loc[-1]), section)
    elif kind == "extra_forbidden":
        allowed = _allowed_keys(raw_loc[:-1]) + (list(SHORTHANDS) if raw_loc[:-1] == ("data",) else [])
        key = str(raw_loc[-1])
        message = f"unknown key {key!r}. Allowed: {', '.join(allowed)}." + _did_you_mean(key, allowed)
    elif kind == "union":
        hint = _did_you_mean(received, error["ctx"]["words"]) if isinstance(received, str) else ""
        message = f"{message}. Received: {received!r}" + (f".{hint}" if hint else "")
    elif kind == "model_type":
        message = f"expected {_mapping_of(error['ctx']['class_name'])}. Received: {received!r}"
    elif kind == "missing":
        message = "missing required key" + (" (write `version: 1` first)" if loc == ("version",) else "")
    elif kind == "literal_error":
        options = re.findall(r"'([^']*)'|(\d+)", error["ctx"]["expected"])
        choices = [a or b for a, b in options]
        message = f"expected {error['ctx']['expected']}. Received: {received!r}."
        if isinstance(received, str):
            message += _did_you_mean(received, choices)
    elif kind == "value_error":
        message = str(error["ctx"]["error"])
    elif kind == "domain":
        message = f"{message}. Received: {received!r}"
    elif kind in {"too_short", "too_long"} and loc and loc[-1] in ("int", "float"):
        message = f"expected [low, high]. Received: {received!r}"
    elif kind in {"too_short", "too_long", "list_type"} and loc == ("data", "image_size"):
        message = f"expected [height, width], e.g. [180, 180] (the channels come from data.color_mode). Received: {received!r}"
    elif kind in {"too_short", "too_long"}:
        bound = f"at least {error['ctx']['min_length']}" if kind == "too_short" else f"at most {error['ctx']['max_length']}"
        message = f"expected {bound} items. Received: {received!r}"
    elif kind == "string_pattern_mismatch":
        message = f"expected letters, digits, '_', '.' or '-' (at most 64, no '/'). Received: {received!r}"
    else:
        message = _plain(message) + (f". Received: {received!r}" if not isinstance(received, (dict, list)) else "")
        if kind.endswith("_type") and not isinstance(received, (dict, list)):
            message += f" ({type(received).__name__})"
    return Problem(_format_path(loc), message, filename, _yaml.line_of(lines, loc))


def _union_members_merged(errors: list[Any]) -> list[Any]:
    """pydantic reports a value that fits no member of a union (`in_memory: 'auto' | bool`) once per member, each
    under the member's type name ("literal['auto']", "EarlyStoppingSpec"), which is no YAML path: one problem per
    setting instead, naming every form it takes; a mapping's own mistakes, at their paths inside it."""
    merged: dict[tuple[Any, ...], list[Any]] = {}
    out: list[Any] = []
    for error in errors:
        at = _member_at(tuple(error["loc"]))
        if at is None:
            out.append(error)
            continue
        field = tuple(error["loc"][:at])
        if field not in merged:
            merged[field] = []
            out.append(field)  # the setting's problems go where its first one was
        merged[field].append({**error, "loc": field + tuple(error["loc"][at + 1 :])})
    result: list[Any] = []
    for item in out:
        if not isinstance(item, tuple):
            result.append(item)
            continue
        group = merged[item]
        inside = [e for e in group if len(e["loc"]) > len(item)]  # a mapping written for a member: its mistakes
        if inside:
            result.extend(inside)
            continue
        forms = [form for e in group for form in _forms(e)]
        expected = ", ".join(forms[:-1]) + " or " + forms[-1] if len(forms) > 1 else forms[0]
        words = [word for e in group if e["type"] == "literal_error" for word in re.findall(r"'([^']*)'", e["ctx"]["expected"])]
        result.append({"type": "union", "loc": item, "msg": f"expected {expected}", "input": group[0].get("input"), "ctx": {"words": words}})
    return result


def _member_at(loc: tuple[Any, ...]) -> int | None:
    """Where an error's location names a member of a union setting (not a YAML key), if it does."""
    model: type[BaseModel] = SearchSpec
    for i, part in enumerate(loc):
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        if field is None:
            return None
        members = [m for m in get_args(field.annotation) if m is not type(None)] if get_origin(field.annotation) in (Union, UnionType) else []
        if len(members) > 1:  # the next part names the member; a tagged union's "<tag>" is left out of paths anyway
            return i + 1 if i + 1 < len(loc) and not str(loc[i + 1]).startswith("<") else None
        models = _models_in(field.annotation)
        if not models:
            return None
        model = models[0]
    return None


def _forms(error: Any) -> list[str]:
    """What one member of a union takes, as the YAML is written."""
    kind = error["type"]
    if kind == "literal_error":
        return [error["ctx"]["expected"].replace("False", "false").replace("True", "true")]
    if kind == "model_type":
        return [_mapping_of(error["ctx"]["class_name"])]
    if kind == "bool_type":
        return ["true", "false"]
    return [_plain(error["msg"]).removeprefix("expected ")]


def _mapping_of(class_name: str) -> str:
    """A spec section's form, by its class's name (as pydantic names it in errors), with the keys it takes."""
    model = next((m for m in _spec_models(SearchSpec) if m.__name__ == class_name), None)
    return f"a mapping (keys {', '.join(f.alias or name for name, f in model.model_fields.items())})" if model else "a mapping"


def _spec_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    found = [model]
    for field in model.model_fields.values():
        for inner in _models_in(field.annotation):
            found.extend(_spec_models(inner))
    return found


def _shorthand_conflict(key: str, section: Mapping[str, Any]) -> str:
    """Why a `directory:` or `manifest:` shorthand was not taken: it names a source and a path that other keys name too."""
    source = SHORTHANDS[key]
    value = section[key]
    clashes = [
        f"`{other}: {section[other]}` (short for {{source: {SHORTHANDS[other]}, path: {section[other]}}})"
        for other in SHORTHANDS
        if other != key and other in section
    ]
    clashes += [f"`source: {section['source']}`"] if section.get("source", source) != source else []
    clashes += [f"`path: {section['path']}`"] if "path" in section else []
    return f"`{key}: {value}` is short for {{source: {source}, path: {value}}}, so it conflicts with {' and '.join(clashes) or 'the other data keys'}; keep one of them"


def _plain(message: str) -> str:
    return message.replace("Input should be", "expected").replace("Value error, ", "")


def _did_you_mean(word: str, options: list[str]) -> str:
    match = closest(word, options)
    return f" Did you mean {match!r}?" if match else ""


def _format_path(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Keys allowed at `loc`, found by walking the spec's model classes along the error's location."""
    candidates: list[type[BaseModel]] = [SearchSpec]
    for part in loc:
        if isinstance(part, int):
            continue
        if isinstance(part, str) and part.startswith("<"):
            tag_cls = DOMAIN_TAGS.get(part)
            if tag_cls is not None:
                candidates = [c for c in candidates if issubclass(c, tag_cls)]
            continue
        nxt: list[type[BaseModel]] = []
        for cls in candidates:
            for name, field in cls.model_fields.items():
                if part in (name, field.alias):
                    nxt.extend(_models_in(field.annotation))
        candidates = nxt
    if not candidates:
        return []
    return [field.alias or name for name, field in candidates[0].model_fields.items()]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        found.extend(_models_in(arg))
    return found


__all__ = ["SearchSpec", "load_spec", "parse_duration", "is_domain"]
