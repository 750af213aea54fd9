"""Tagged domains of a tunable value: `{choice: [...]}`, `{int: [low, high]}`, `{float: [low, high]}`.

A field of the spec is either a constant or one of these. They are plain validated data: how a domain
becomes a KerasTuner hyperparameter lives in `oracles.py`, so this module stays light.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Annotated, Any, Generic, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

T = TypeVar("T")


MAX_INT_VALUES = 1_000_000


class Frozen(BaseModel):
    """Base of every spec model: immutable, strict about types, finite numbers only, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=False, allow_inf_nan=False)


def repeated(values: Iterable[Any]) -> list[Any]:
    """The values given more than once, in the order they repeat; 1, 1.0 and True count as different values."""
    seen: list[Any] = []
    twice: list[Any] = []
    for value in values:
        if any(value == s and type(value) is type(s) for s in seen) and not any(value == t and type(value) is type(t) for t in twice):
            twice.append(value)
        seen.append(value)
    return twice


def steps_past(low: float, high: float, step: float, log: bool) -> bool:
    """Whether one step from `low` (a factor with `log`) goes past `high`: such a range only ever draws `low`."""
    reach = low * step if log else low + step
    return low < high and reach > high * (1 + 1e-9) + (0 if log else 1e-12)


class Choice(Frozen, Generic[T]):
    """One of a list of values, e.g. `{choice: [32, 64, 128]}`."""

    choice: list[T] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> Choice[T]:
        twice = repeated(self.choice)
        if twice:
            raise ValueError(f"choice lists {twice[0]!r} twice; list each value once")
        return self

    @property
    def kind(self) -> str:
        return "choice"

    def values(self) -> list[Any]:
        return list(self.choice)

    def describe(self) -> str:
        return "{" + ", ".join(_fmt(v) for v in self.choice) + "}"


class _Range(Frozen, Generic[T]):
    """Inclusive `[low, high]`; `step` makes it discrete; `log: true` samples on a log scale."""

    bounds: list[T]
    step: T | None = None
    log: bool = False

    @property
    def low(self) -> Any:
        return self.bounds[0]

    @property
    def high(self) -> Any:
        return self.bounds[1]

    @model_validator(mode="after")
    def _check(self) -> _Range[T]:
        if len(self.bounds) != 2:
            raise ValueError(f"expected [low, high]. Received: {self.bounds!r}")
        low, high = self.low, self.high
        if low > high:
            raise ValueError(f"low must not exceed high. Received: [{_fmt(low)}, {_fmt(high)}]; did you mean [{_fmt(high)}, {_fmt(low)}]?")
        if self.log and low <= 0:
            raise ValueError(f"log sampling needs low > 0. Received: low={_fmt(low)}")
        step: Any = self.step
        if step is not None:
            if step <= 0:
                raise ValueError(f"step must be > 0. Received: step={_fmt(self.step)}")
            if self.log and step <= 1:
                raise ValueError(f"with log: true the step is a factor and must be > 1. Received: step={_fmt(self.step)}")
            if steps_past(low, high, step, self.log):
                raise ValueError(
                    f"step {_fmt(self.step)} goes past the range [{_fmt(low)}, {_fmt(high)}] in one step, so only {_fmt(low)} would ever be drawn; "
                    f"use a smaller step{' factor' if self.log else ''}, or a constant"
                )
        return self

    def values(self) -> list[Any] | None:
        """All values when the range is discrete (as KerasTuner enumerates them), else None."""
        return None

    def describe(self) -> str:
        extra = (f", step {_fmt(self.step)}" if self.step is not None else "") + (", log" if self.log else "")
        return f"[{_fmt(self.low)}, {_fmt(self.high)}{extra}]"


class IntRange(_Range[T], Generic[T]):
    """Integers in `[low, high]`, e.g. `{int: [1, 4]}` (step 1 unless given)."""

    bounds: list[T] = Field(alias="int")

    @property
    def kind(self) -> str:
        return "int"

    @model_validator(mode="after")
    def _not_too_many(self) -> IntRange[T]:
        # Counted, listed for feasibility and sampled like a choice: a range of 10**20 integers would not fit.
        if not (self.log and self.step is not None):
            step: Any = self.step or 1
            count = (int(self.high) - int(self.low)) // int(step) + 1
            if count > MAX_INT_VALUES:
                raise ValueError(f"this range holds {count:.3g} integers; at most {MAX_INT_VALUES:,} are supported: narrow it, or give a step")
        return self

    def values(self) -> list[Any]:
        low, high = int(self.low), int(self.high)
        step: Any = self.step or 1
        if self.log and self.step is not None:
            out, v = [], float(low)
            while v <= high + 1e-9:
                out.append(int(round(v)))
                v *= step
            return sorted(set(out))
        if self.log:
            return list(range(low, high + 1))
        return list(range(low, high + 1, int(step)))


class FloatRange(_Range[T], Generic[T]):
    """Real numbers in `[low, high]`, e.g. `{float: [1e-4, 1e-2], log: true}`."""

    bounds: list[T] = Field(alias="float")

    @property
    def kind(self) -> str:
        return "float"

    def values(self) -> list[Any] | None:
        if self.step is None:
            return None
        low, high, step = float(self.low), float(self.high), float(self.step)  # type: ignore[arg-type]
        if self.log:
            n = int(math.floor(math.log(high / low) / math.log(step) + 1e-9)) + 1
            return [low * step**i for i in range(n)]
        n = int(math.floor((high - low) / step + 1e-9)) + 1
        return [round(low + i * step, 12) for i in range(n)]


Domain = Union[Choice[Any], IntRange[Any], FloatRange[Any]]
DOMAIN_TAGS = {"<choice>": Choice, "<int range>": IntRange, "<float range>": FloatRange, "<constant>": None}


def _domain_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        for key, tag in (("choice", "<choice>"), ("int", "<int range>"), ("float", "<float range>")):
            if key in value:
                return tag
        return None
    if isinstance(value, BaseModel):  # already validated (model_copy, re-validation)
        return {"choice": "<choice>", "int": "<int range>", "float": "<float range>"}[value.kind]  # type: ignore[attr-defined]
    return "<constant>"


def Tunable(value_type: Any, *, ranges: Literal["int", "float", None] = None) -> Any:  # noqa: N802 - a type factory
    """The type of a tunable field: a constant of `value_type`, a choice of them, or (if allowed) a range."""
    members: list[Any] = [Annotated[value_type, Tag("<constant>")], Annotated[Choice[value_type], Tag("<choice>")]]
    forms = ["a constant", "{choice: [...]}"]
    if ranges == "int":
        members.append(Annotated[IntRange[value_type], Tag("<int range>")])
        forms.append("{int: [low, high]}")
    elif ranges == "float":
        members.append(Annotated[FloatRange[value_type], Tag("<float range>")])
        forms.append("{float: [low, high]}")
    expected = ", ".join(forms[:-1]) + " or " + forms[-1]
    return Annotated[
        Union[tuple(members)],  # type: ignore[valid-type]
        Discriminator(_domain_tag, custom_error_type="domain", custom_error_message=f"expected {expected}"),
    ]


def is_domain(value: Any) -> bool:
    return isinstance(value, (Choice, IntRange, FloatRange))


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


format_value = _fmt
