"""Safe YAML loading that remembers the line of every key, so errors can say `FILE:LINE: field.path`."""

from __future__ import annotations

import re
from typing import Any

import yaml

from .errors import Problem, SpecError

Path_ = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading `1e-4` as a number (YAML 1.1 wants `1.0e-4`)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)
        |[-+]?(?:[0-9][0-9_]*)\.[0-9_]*
        |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str, filename: str) -> tuple[Any, dict[Path_, int]]:
    """Parse YAML text safely; return the data and a map from each key's path to its line (1-based)."""
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:  # a character YAML does not allow, found while reading
        raise SpecError([Problem("", f"invalid YAML: {exc}".replace("\n", " "), filename, 1)]) from None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        message = f"invalid YAML: {exc.problem or exc.context}"
        raise SpecError([Problem("", message, filename, line)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem("", f"invalid YAML: {exc}", filename)]) from None
    finally:
        loader.dispose()
    lines: dict[Path_, int] = {}
    duplicates: list[Problem] = []
    if node is not None:
        try:
            _walk(node, (), lines, duplicates, filename, set(), [0])
        except _TooDeep as exc:
            raise SpecError([Problem("", str(exc), filename, exc.line)]) from None
    if duplicates:
        raise SpecError(duplicates)
    return data, lines


MAX_NODES = 100_000


class _TooDeep(Exception):
    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.line = line


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int], dups: list[Problem], filename: str, open_nodes: set[int], count: list[int]) -> None:
    line = node.start_mark.line + 1
    count[0] += 1
    if id(node) in open_nodes:
        raise _TooDeep("a YAML alias refers to itself; a spec cannot be recursive", line)
    if count[0] > MAX_NODES:
        raise _TooDeep(f"the document expands to more than {MAX_NODES:,} values (aliases?); a spec is a few dozen", line)
    lines.setdefault(path, line)
    open_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else f"<{key_node.id} key>"
            line = key_node.start_mark.line + 1
            if key in seen:
                where = ".".join(str(p) for p in path + (key,))
                dups.append(Problem(where, f"duplicate key (first given on line {seen[key]})", filename, line))
            seen[key] = line
            child = path + (key,)
            lines[child] = line
            _walk(value_node, child, lines, dups, filename, open_nodes, count)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), lines, dups, filename, open_nodes, count)
    open_nodes.discard(id(node))


def line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of `path`, or of its nearest ancestor present in the file."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())
