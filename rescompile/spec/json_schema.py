"""The JSON Schema of spec files as users write them, for editors and standard validators.

`Spec.model_json_schema()` describes a *resolved* spec in pydantic's dialect. A spec file differs:
it may name a base with `extends` and then give only what it changes, `expect:` numbers may be
written as one object or a bare number, and a validator such as `jsonschema` knows only the
standard keywords. `spec_json_schema()` derives the file schema from the pydantic models by a
transform, so a new field of the models appears here without an edit.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from rescompile.spec.schema import Expect, Expectation, Spec

DRAFT = "https://json-schema.org/draft/2020-12/schema"
OVERRIDE = "Override"
"""Suffix of the relaxed twin of each model's schema, used in a file that has `extends`."""
BASE_OMITS = ("name",)
"""Required fields that a shared base (`specs/**/_*.yaml`) leaves to the networks extending it.
Nothing in a file tells a base from a network, so a file without `extends` may omit these."""

_BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
"""pydantic's bound keywords (left on unions of int and float) and their JSON Schema names."""
_SCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas", "$defs")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_VALUES = (
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
)

Schema = dict[str, Any]
Rewrite = Callable[[Schema, Schema], Schema]


def spec_json_schema() -> Schema:
    """The JSON Schema (draft 2020-12) of a spec file, `extends` and all.

    A file without `extends` must be a whole spec (a shared base may leave out `name`). A file
    with `extends` may leave out any field its base gives: mappings merge key by key, and a list
    whose items all have a `name` (stages, named stem layers) merges item by item, so such an
    item may give only what it changes. Other lists replace the base's and must be whole.
    """
    defs = _standard_defs()
    _add_expect_shorthands(defs)
    spec = defs[Spec.__name__]
    spec["properties"] = {"extends": _extends_schema(), **spec["properties"]}
    spec["required"] = [name for name in spec["required"] if name not in BASE_OMITS]
    defs.update({name + OVERRIDE: _as_override(schema) for name, schema in list(defs.items())})
    root = defs.pop(Spec.__name__ + OVERRIDE)
    return {
        "$schema": DRAFT,
        "title": "rescompile spec",
        "description": (
            f"{Spec.__doc__} A file with `extends` gives only what differs from its base; "
            "one without it gives the whole table."
        ),
        **{key: value for key, value in root.items() if key not in ("title", "description")},
        "if": {"required": ["extends"]},
        "else": {"$ref": _ref(Spec.__name__)},
        "$defs": dict(sorted(defs.items())),
    }


def _standard_defs() -> dict[str, Schema]:
    """pydantic's schemas of Spec and the models it uses, in standard keywords, by model name."""
    raw = _map_schema(Spec.model_json_schema(), lambda node, _original: _standardize(node))
    defs = raw.pop("$defs")
    defs[Spec.__name__] = raw
    return defs


def _map_schema(schema: Any, rewrite: Rewrite) -> Any:
    """Apply `rewrite(node, original)` to every subschema, innermost first; data (defaults,
    enums, constants) and property names are left alone. Returns a new schema."""
    if not isinstance(schema, dict):
        return schema  # a boolean schema
    node = dict(schema)
    for key in _SCHEMA_MAPS:
        if key in node:
            node[key] = {name: _map_schema(sub, rewrite) for name, sub in node[key].items()}
    for key in _SCHEMA_LISTS:
        if key in node:
            node[key] = [_map_schema(sub, rewrite) for sub in node[key]]
    for key in _SCHEMA_VALUES:
        if key in node:
            node[key] = _map_schema(node[key], rewrite)
    return rewrite(node, schema)


def _standardize(node: Schema) -> Schema:
    """One subschema in standard keywords: bounds renamed, `int | float` as `number`, and
    `oneOf` as `anyOf` (members differ by their keys; relaxed twins may match several)."""
    node = {_BOUNDS.get(key, key): value for key, value in node.items()}
    members = node.get("anyOf", [])
    if members and all(set(member) == {"type"} for member in members):
        types = [member["type"] for member in node.pop("anyOf")]
        node["type"] = "number" if "number" in types else types
    if "oneOf" in node:
        node["anyOf"] = node.pop("oneOf")
    return node


def _add_expect_shorthands(defs: dict[str, Schema]) -> None:
    """Let each list of expectations also be one expectation or a bare number, as `Expect`
    reads them (`macs: 4.1e9` is `macs: [{value: 4.1e9}]`)."""
    item = _ref(Expectation.__name__)
    value = {key: v for key, v in defs[Expectation.__name__]["properties"]["value"].items() if key != "title"}
    value["description"] = "a bare number: short for {value: N}"
    for prop in defs[Expect.__name__]["properties"].values():
        members = prop.get("anyOf", [])
        for index, member in enumerate(members):
            if member.get("type") == "array" and member.get("items") == {"$ref": item}:
                members[index + 1 : index + 1] = [{"$ref": item}, dict(value)]
                break


def _extends_schema() -> Schema:
    """The `extends` field, as the loader accepts it."""
    return {
        "type": "string",
        "pattern": r"\.ya?ml$",
        "description": (
            "A base spec file, relative to this one: its fields are merged under this file's "
            "(mappings key by key, lists of named items by name)."
        ),
    }


def _as_override(schema: Schema) -> Schema:
    """The relaxed twin of a model's schema, for a file with `extends`: nothing is required,
    references go to relaxed twins, and a list's items may be relaxed only when all have a name
    (otherwise the list replaces the base's whole)."""
    return _map_schema(copy.deepcopy(schema), _relax)


def _relax(node: Schema, original: Schema) -> Schema:
    """One subschema of a relaxed twin (see `_as_override`)."""
    if "properties" in node:  # a model's fields (a `required` inside `not` would mean the opposite)
        node.pop("required", None)
    if "$ref" in node:
        node["$ref"] += OVERRIDE
    if node.get("type") == "array" and _refers(original.get("items")):
        node["if"] = {"items": _named_item()}
        node["then"] = {"items": node.pop("items")}
        node["else"] = {"items": original["items"]}
    return node


def _named_item() -> Schema:
    """An item of a list that `extends` merges item by item, by name, rather than replacing."""
    return {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}


def _refers(schema: Any) -> bool:
    """Whether `schema` refers to a model's schema anywhere inside."""
    if isinstance(schema, dict):
        return "$ref" in schema or any(_refers(value) for value in schema.values())
    if isinstance(schema, list):
        return any(_refers(value) for value in schema)
    return False


def _ref(name: str) -> str:
    return f"#/$defs/{name}"
