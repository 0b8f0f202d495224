"""YAML loading that remembers where every value came from.

`lumbar-cds rules check` must point a rules author at the file and line of a
mistake. PyYAML knows the line of each node while composing, so we keep it on
the mappings and lists we build and look it up when validation fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError


class LineDict(dict):
    """A dict that knows the line of itself and of each of its keys."""

    line: int = 0
    key_lines: dict[str, int]


class LineList(list):
    """A list that knows the line of itself and of each item."""

    line: int = 0
    item_lines: list[int]


# libyaml's parser when PyYAML was built with it (about ten times faster), else the pure-Python one.
_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_BASE):  # type: ignore[misc, valid-type]
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[str(key)] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(path: Path) -> Any:
    """Parse one YAML file, keeping line numbers. Raises yaml.YAMLError."""
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_LineLoader)


def line_of(document: Any, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest node on `loc` (a pydantic error location)."""
    line: int | None = getattr(document, "line", None)
    node = document
    for part in loc:
        if isinstance(node, LineDict) and part in node:
            line = node.key_lines.get(str(part), line)
            node = node[part]
        elif isinstance(node, LineList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
    return line


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> LineDict:
    """Deep merge that keeps each value's source line, for error messages."""
    merged = LineDict(base)
    merged.line = getattr(override, "line", 0) or getattr(base, "line", 0)
    merged.key_lines = {**getattr(base, "key_lines", {}), **getattr(override, "key_lines", {})}
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class Loader:
    """Collects every problem instead of stopping at the first one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[str] = []

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root.parent))
        except ValueError:
            return str(path)

    def read(self, path: Path) -> Any:
        if not path.is_file():
            self.problems.append(f"{self.rel(path)}: file is missing")
            return None
        try:
            return load_yaml(path)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            self.problems.append(f"{self.rel(path)}{where}: YAML error: {problem}")
            return None

    def parse(self, model: type[BaseModel], path: Path, data: Any) -> Any:
        if data is None:
            return None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                line = line_of(data, tuple(err["loc"]))
                where = f":{line}" if line else ""
                loc = ".".join(str(p) for p in err["loc"])
                self.problems.append(f"{self.rel(path)}{where}: {loc}: {err['msg']}")
            return None

    def problem(self, path: Path, data: Any, loc: tuple[Any, ...], message: str) -> None:
        line = line_of(data, loc)
        where = f":{line}" if line else ""
        self.problems.append(f"{self.rel(path)}{where}: {message}")
