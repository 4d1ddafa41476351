"""Safe YAML loading that remembers where every value came from (file and line)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from rescompile.errors import SpecError

MAX_NODES = 100_000
MAX_DEPTH = 64  # mappings and lists inside each other; specs use fewer than 10
MAX_BYTES = 1 << 20  # 1 MiB: the largest spec of the library is under 2 KiB
MAX_STRING = 1000  # characters in one string value
MAX_KEY = 100  # characters in one key
Where = tuple[str, int]


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as `3.8e9` (PyYAML wants `3.8e+9`)."""


class _FastLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same on libyaml, where PyYAML has it: ten times faster on the files it accepts."""


_YAML12_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+0123456789"))
_FastLoader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+0123456789"))

_UNPRINTABLE = yaml.reader.Reader.NON_PRINTABLE
"""Characters that PyYAML's Python reader refuses (libyaml's accepts some of them)."""


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


def _error(file: str, mark: Any, message: str, field: str = "") -> SpecError:
    line = mark.line + 1 if mark is not None else None
    return SpecError(file, line, field, message)


def short_repr(value: Any, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters with '...', so that a message stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _field(path: tuple) -> str:
    """("stages", 0, "name") -> "stages[0].name", as error messages name fields."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class _Builder:
    """Turns a composed YAML node tree into LocDict/LocList/scalars."""

    def __init__(self, loader: _Loader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.count = 0

    def build(self, node: yaml.Node, path: tuple = ()) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _error(self.file, node.start_mark, f"document too large (over {MAX_NODES} values)")
        if len(path) > MAX_DEPTH:  # the text was checked (_check_depth); aliases can nest deeper
            raise _error(
                self.file, node.start_mark, f"nesting deeper than {MAX_DEPTH} levels through aliases"
            )
        where = (self.file, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                raise _error(self.file, node.start_mark, f"tag {node.tag!r} is not allowed")
            result = LocDict(where)
            for key_node, value_node in node.value:
                key = self.build(key_node, path)
                if not isinstance(key, str):
                    raise _error(
                        self.file, key_node.start_mark, f"keys must be strings, got {short_repr(key)}"
                    )
                if len(key) > MAX_KEY:
                    raise _error(
                        self.file,
                        key_node.start_mark,
                        f"key of {len(key)} characters is too long (at most {MAX_KEY}): {short_repr(key)}",
                        _field(path),
                    )
                if key in result:
                    raise _error(self.file, key_node.start_mark, f"duplicate key {short_repr(key)}")
                result[key] = self.build(value_node, (*path, key))
                result.key_where[key] = (self.file, key_node.start_mark.line + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise _error(self.file, node.start_mark, f"tag {node.tag!r} is not allowed")
            result = LocList(where)
            for index, item in enumerate(node.value):
                result.append(self.build(item, (*path, index)))
                result.item_where.append((self.file, item.start_mark.line + 1))
            return result
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise _error(self.file, node.start_mark, f"tag {node.tag!r} is not allowed") from exc
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise _error(
                self.file,
                node.start_mark,
                f"string of {len(value)} characters is too long (at most {MAX_STRING}): {short_repr(value)}",
                _field(path),
            )
        return value


def read_text(path: Path, display: str) -> str:
    """The file as text, refusing before reading what is not a regular file of at most MAX_BYTES
    (a FIFO or /dev/zero would never end), and what is not UTF-8 or holds NUL bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise SpecError(display, None, "", "file not found") from None
    except OSError as exc:
        raise SpecError(display, None, "", f"cannot read file ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(display, None, "", "not a regular file")
        check_size(info.st_size, display)
        try:
            data = handle.read(MAX_BYTES + 1)
        except OSError as exc:
            raise SpecError(display, None, "", f"cannot read file ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise SpecError(display, None, "", f"file too large (over {MAX_BYTES} bytes)")
    return decode_text(data, display)


def check_size(size: int, display: str) -> None:
    """Refuse a spec file of more than MAX_BYTES before reading it."""
    if size > MAX_BYTES:
        raise SpecError(display, None, "", f"file too large ({size} bytes, at most {MAX_BYTES})")


def decode_text(data: bytes, display: str) -> str:
    """The bytes of a spec file as text: UTF-8 without NUL bytes, else one error naming the line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(display, line, "", f"not UTF-8 text (byte 0x{data[exc.start]:02x})") from None
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise SpecError(display, line, "", "NUL byte in the text (is this a binary file?)")
    return text


def _check_depth(text: str, display: str, loader_class: type = _Loader) -> None:
    """Refuse nesting deeper than MAX_DEPTH from the event stream, before composing: PyYAML's
    composer recurses once per level and 5,000 brackets would exhaust Python's stack."""
    loader = loader_class(text)  # reads the text at once: a ReaderError here is the caller's to report
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _error(display, event.start_mark, f"nesting deeper than {MAX_DEPTH} levels")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    finally:
        loader.dispose()


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def load_yaml(path: Path, display: str) -> Any:
    """Load one YAML file safely; errors name `display` and the line."""
    return parse_yaml(read_text(path, display), display)


def parse_yaml(text: str, display: str) -> Any:
    """Parse one YAML document safely; errors name `display` and the line. A file is read with
    libyaml where PyYAML has it, and read again in Python when that fails, so that every error
    is worded the one way."""
    if "\t" not in text and not _UNPRINTABLE.search(text):  # libyaml accepts some tabs Python refuses
        try:
            return _parse(text, display, _FastLoader)
        except (SpecError, yaml.YAMLError, RecursionError, ValueError, TypeError):
            pass
    return _parse(text, display, _Loader)


def _parse(text: str, display: str, loader_class: type) -> Any:
    loader = None
    try:
        _check_depth(text, display, loader_class)
        loader = loader_class(text)
        node = loader.get_single_node()
        if node is None:
            raise SpecError(display, None, "", "file is empty, expected a spec mapping")
        return _Builder(loader, display).build(node)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1 if isinstance(exc.position, int) else None
        raise SpecError(
            display, line, "", f"YAML syntax error: unacceptable character #x{exc.character:04x}"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise _error(display, mark, f"YAML syntax error: {_one_line(problem)}") from None
    except yaml.YAMLError as exc:
        raise SpecError(display, None, "", f"YAML error: {_one_line(str(exc))}") from None
    except RecursionError:
        raise SpecError(display, None, "", f"nesting too deep (over {MAX_DEPTH} levels)") from None
    finally:
        if loader is not None:
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
