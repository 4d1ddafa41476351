"""Load a spec: safe YAML, `extends` resolution, pydantic validation (the rules that tie fields
together are lowering's: ir/lower.py)."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Protocol, get_args

from pydantic import BaseModel, ValidationError

from rescompile.errors import SpecError, gathered, printable
from rescompile.spec.schema import Spec, located_error
from rescompile.spec.yamlsrc import LocDict, LocList, load_yaml, parse_yaml, positions, read_text

MAX_EXTENDS_DEPTH = 16


def _display(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it, with
    control characters and undecodable bytes escaped, so that a message stays one line."""
    try:
        text = os.path.relpath(path)
    except (ValueError, OSError):
        text = str(path)
    return printable(text)


class SpecFiles(Protocol):
    """Where spec files are read from: the file system, or a git revision (spec/gitrev.py)."""

    def display(self, path: Any) -> str:
        """How messages name the file at `path`."""

    def read_text(self, path: Any, display: str) -> str:
        """The file's text, bounded and decoded."""

    def base(self, path: Any, name: str) -> tuple[Any, bool]:
        """The file `extends: name` in `path` names, and whether it exists."""


class LocalFiles:
    """Spec files of the file system."""

    def display(self, path: Path) -> str:
        return _display(path)

    def read_text(self, path: Path, display: str) -> str:
        return read_text(path, display)

    def base(self, path: Path, name: str) -> tuple[Path, bool]:
        base_path = (path.parent / name).resolve()
        return base_path, base_path.exists()


def _merge(base: Any, override: Any) -> Any:
    """Deep-merge `override` onto `base`; lists of named mappings merge item by item by name."""
    if isinstance(base, LocDict) and isinstance(override, LocDict):
        merged = LocDict(override.where)
        merged.key_where = dict(base.key_where)
        for key, value in base.items():
            merged[key] = value
        for key, value in override.items():
            merged[key] = _merge(base[key], value) if key in base else value
            merged.key_where[key] = override.key_where[key]
        return merged
    if _named_list(base) and _named_list(override):
        overrides = {
            item["name"]: (item, where) for item, where in zip(override, override.item_where, strict=True)
        }
        merged_list = LocList(override.where)
        for item, where in zip(base, base.item_where, strict=True):
            if item["name"] in overrides:
                patch, where = overrides.pop(item["name"])
                item = _merge(item, patch)
            merged_list.append(item)
            merged_list.item_where.append(where)
        for item, where in overrides.values():
            merged_list.append(item)
            merged_list.item_where.append(where)
        return merged_list
    return override


def _named_list(value: Any) -> bool:
    return isinstance(value, LocList) and all(
        isinstance(item, LocDict) and isinstance(item.get("name"), str) for item in value
    )


def _load_tree(path: Any, chain: tuple[Any, ...], files: SpecFiles) -> LocDict:
    import errno

    from rescompile.spec.yamlsrc import short_repr

    display = files.display(path)
    tree = parse_yaml(files.read_text(path, display), display)
    if not isinstance(tree, LocDict):
        line = getattr(tree, "where", (display, 1))[1]
        raise SpecError(display, line, "", f"expected a mapping of spec fields, got {_kind(tree)}")
    base_name = tree.pop("extends", None)
    if base_name is None:
        return tree
    line = tree.key_where["extends"][1]
    if not isinstance(base_name, str) or not base_name.endswith((".yaml", ".yml")):
        raise SpecError(display, line, "extends", f"expected a .yaml file name, got {short_repr(base_name)}")
    try:
        base_path, found = files.base(path, base_name)
    except (RuntimeError, OSError, ValueError) as exc:  # a symlink loop, a NUL, a name too long...
        loop = isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP
        detail = "symlink loop" if loop else getattr(exc, "strerror", None) or str(exc)
        raise SpecError(
            display, line, "extends", f"cannot resolve {short_repr(base_name)} ({detail})"
        ) from None
    if base_path in chain or base_path == path:
        cycle = " -> ".join(files.display(p) for p in (*chain, path, base_path))
        raise SpecError(display, line, "extends", f"cycle: {cycle}")
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise SpecError(display, line, "extends", f"extends chain deeper than {MAX_EXTENDS_DEPTH}")
    if not found:
        raise SpecError(display, line, "extends", f"base spec {short_repr(base_name)} not found")
    return _merge(_load_tree(base_path, (*chain, path), files), tree)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    return type(value).__name__ if value is not None else "nothing"


def _message(error: dict, model: type[BaseModel] | None) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        name = str(error["loc"][-1])
        allowed = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown field{hint}; expected one of: {', '.join(allowed)}"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected an integer, got {value!r}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {value!r}"
    if kind in _BOUNDS:
        return f"must be {_BOUNDS[kind]} {next(iter(error['ctx'].values()))}, got {value!r}"
    if kind in ("too_long", "too_short") and _is_row(value):
        return f"expected [kernel, filters] or [kernel, filters, groups], got {value!r}"
    if kind in ("too_long", "too_short"):
        limit = error["ctx"].get("max_length", error["ctx"].get("min_length"))
        return f"expected {'at most' if kind == 'too_long' else 'at least'} {limit} items, got {len(value)}"
    if kind == "literal_error":
        return f"must be one of {error['ctx']['expected']}, got {value!r}"
    if kind == "string_pattern_mismatch":
        return f"expected an identifier (letters, digits, _), got {value!r}"
    return f"{error['msg'][0].lower()}{error['msg'][1:]}, got {value!r}"


_BOUNDS = {
    "less_than_equal": "at most",
    "less_than": "less than",
    "greater_than_equal": "at least",
    "greater_than": "greater than",
}


def _is_row(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, int) for item in value)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _owner(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of `loc` (for 'did you mean' hints)."""
    models: list[type[BaseModel]] = [Spec]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        tagged = [model for model in models if model.__name__ == part]
        if tagged:
            models = tagged
            continue
        fields = [model.model_fields[part] for model in models if part in model.model_fields]
        models = [model for field in fields for model in _models_in(field.annotation)]
    return models[0] if len(models) == 1 else None


def _is_field(part: int | str) -> bool:
    """Whether a part of a pydantic error location is the user's (a key or an index), not the name
    of a union member or wrapper."""
    return isinstance(part, int) or (
        (part[:1].islower() or part[:1] == "_") and part not in _TYPE_TAGS and "[" not in part
    )


def _clean_loc(loc: tuple) -> tuple:
    """Drop pydantic's union-member and wrapper names, keeping the user's field path."""
    return tuple(part for part in loc if _is_field(part))


_TYPE_TAGS = {"int", "float", "str", "bool"}
"""Names pydantic gives the members of a union of plain types (not fields of the spec)."""


def _misfit(errors: list[dict], depth: int) -> bool:
    """Whether a union member refuses the value's shape (its type or, for a row, its length)
    rather than something inside it; `depth` is the length of the member's location."""
    return any(
        len(error["loc"]) == depth
        or (
            error["type"] == "missing"
            and len(error["loc"]) == depth + 1
            and isinstance(error["loc"][-1], int)
        )
        for error in errors
    )


def _closest_members(errors: list[dict], start: int = 0) -> list[dict]:
    """`errors` with those of each union (from location part `start` on) cut to its closest
    member's: one that takes the value's shape, with the fewest errors, the last (the most
    general: 3 values of a row over 2, float over int) on a tie. Every member reports on its own,
    so `[3, 16.5]` would otherwise also lack the third value of `[kernel, filters, groups]`."""
    unions: dict[tuple, dict[str, list[dict]]] = {}
    plain = []
    for error in errors:
        loc = error["loc"]
        cut = next((i for i in range(start, len(loc)) if not _is_field(loc[i])), None)
        if cut is None:
            plain.append(error)
        else:
            unions.setdefault(loc[:cut], {}).setdefault(loc[cut], []).append(error)
    for at, members in unions.items():
        depth = len(at) + 1
        closest = min(reversed(members.values()), key=lambda found: (_misfit(found, depth), len(found)))
        plain += _closest_members(closest, depth)
    kept = {id(error) for error in plain}
    return [error for error in errors if id(error) in kept]


def load_spec(path: str | Path | Any, files: SpecFiles | None = None) -> Spec:
    """Load, merge and validate a spec file (of the file system, or of `files`: a git revision),
    raising SpecError naming file, line and field."""
    if files is None:
        files, path = LocalFiles(), Path(path).resolve()
    tree = _load_tree(path, (), files)
    where = positions(tree)
    display = files.display(path)
    try:
        spec = Spec.model_validate(tree)
    except ValidationError as exc:
        errors = _closest_members(exc.errors(include_url=False))
        raise gathered(
            [
                located_error(display, where, _clean_loc(e["loc"]), _message(e, _owner(e["loc"])))
                for e in errors
            ]
        ) from None
    spec._file = display
    spec._positions = where
    return spec


def load_yaml_mapping(path: Path) -> dict:
    """A YAML file that must hold a mapping, loaded safely as plain data (used for recipes)."""
    tree = load_yaml(path, _display(path.resolve()))
    if not isinstance(tree, dict):
        raise SpecError(_display(path), None, "", "expected a mapping")
    return _plain(tree)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
