"""A spec's validation errors as a user reads them: pydantic's errors turned into one `Problem` each, at the
YAML path and line of the mistake, saying what is allowed there and which value was probably meant."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from . import _yaml
from .domains import DOMAIN_TAGS
from .errors import Problem
from .spec import SHORTHANDS, SearchSpec
from .wording import closest


def dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for problem in problems:
        if str(problem) not in seen:
            seen.add(str(problem))
            out.append(problem)
    return out


def problem_from(error: Any, lines: dict[Any, int], filename: str | None, spec: Mapping[str, Any] | None = None) -> Problem:
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
    return Problem(format_path(loc), message, filename, _yaml.line_of(lines, loc))


def union_members_merged(errors: list[Any]) -> list[Any]:
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


def format_path(path: tuple[Any, ...]) -> str:
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
