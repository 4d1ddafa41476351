"""Safe YAML loading that remembers where every value came from (file and line)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from rescompile.errors import SpecError

MAX_NODES = 100_000
Where = tuple[str, int]


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as `3.8e9` (PyYAML wants `3.8e+9`)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class LocDict(dict):
    """A mapping from YAML with the position of its own start and of each key."""

    def __init__(self, where: Where) -> None:
        super().__init__()
        self.where = where
        self.key_where: dict[str, Where] = {}


class LocList(list):
    """A sequence from YAML with the position of its own start and of each item."""

    def __init__(self, where: Where) -> None:
        super().__init__()
        self.where = where
        self.item_where: list[Where] = []


def _error(file: str, mark: Any, message: str) -> SpecError:
    line = mark.line + 1 if mark is not None else None
    return SpecError(file, line, "", message)


class _Builder:
    """Turns a composed YAML node tree into LocDict/LocList/scalars."""

    def __init__(self, loader: _Loader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.count = 0

    def build(self, node: yaml.Node) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _error(self.file, node.start_mark, f"document too large (over {MAX_NODES} values)")
        where = (self.file, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                raise _error(self.file, node.start_mark, f"tag {node.tag!r} is not allowed")
            result = LocDict(where)
            for key_node, value_node in node.value:
                key = self.build(key_node)
                if not isinstance(key, str):
                    raise _error(self.file, key_node.start_mark, f"keys must be strings, got {key!r}")
                if key in result:
                    raise _error(self.file, key_node.start_mark, f"duplicate key {key!r}")
                result[key] = self.build(value_node)
                result.key_where[key] = (self.file, key_node.start_mark.line + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise _error(self.file, node.start_mark, f"tag {node.tag!r} is not allowed")
            result = LocList(where)
            for item in node.value:
                result.append(self.build(item))
                result.item_where.append((self.file, item.start_mark.line + 1))
            return result
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise _error(self.file, node.start_mark, f"tag {node.tag!r} is not allowed") from exc


def load_yaml(path: Path, display: str) -> Any:
    """Load one YAML document safely; errors name `display` and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(display, None, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(display, None, "", f"cannot read file: {exc}") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError(display, None, "", "file is empty, expected a spec mapping")
        return _Builder(loader, display).build(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise _error(display, mark, f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise SpecError(display, None, "", f"YAML error: {exc}") from None
    finally:
        loader.dispose()


def positions(tree: Any, prefix: tuple = ()) -> dict[tuple, Where]:
    """Map every path in a loaded tree, e.g. ("stages", 2, "block"), to where it was written."""
    found: dict[tuple, Where] = {}
    if isinstance(tree, LocDict):
        found[prefix] = tree.where
        for key, value in tree.items():
            found.update(positions(value, (*prefix, key)))
            found[(*prefix, key)] = tree.key_where.get(key, tree.where)
    elif isinstance(tree, LocList):
        found[prefix] = tree.where
        for index, value in enumerate(tree):
            found.update(positions(value, (*prefix, index)))
            found[(*prefix, index)] = tree.item_where[index]
    return found
