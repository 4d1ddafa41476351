"""`spec_json_schema()` under a standard validator (`jsonschema`, draft 2020-12): every library
spec passes, every structural error of the bad-spec corpus fails, and the errors a JSON Schema
cannot judge are listed with the reason.

Files are read with the project's safe YAML reader (`load_yaml`), not `yaml.safe_load`: PyYAML's
YAML 1.1 reads `1.7e6` as a string, where rescompile and editors (YAML 1.2) read a number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from rescompile.errors import SpecError
from rescompile.spec.json_schema import spec_json_schema
from rescompile.spec.loader import load_spec
from rescompile.spec.yamlsrc import load_yaml

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = sorted((ROOT / "specs").rglob("*.yaml"))
BAD = ROOT / "tests" / "bad_specs"
CORPUS = sorted(path.name for path in BAD.glob("*.yaml"))

_READER = "the YAML reader refuses the file before any schema sees a value"
UNREADABLE = {
    "alias_nesting.yaml": f"{_READER}: nesting through aliases",
    "anchor_bomb.yaml": f"{_READER}: alias expansion over the size limit",
    "comment_only.yaml": f"{_READER}: no document",
    "control_character.yaml": f"{_READER}: a control character",
    "duplicate_key.yaml": f"{_READER}: a key given twice (a JSON object cannot hold that)",
    "empty.yaml": f"{_READER}: no document",
    "name_5000_chars.yaml": f"{_READER}: a string over the length limit",
    "nesting_5000_brackets.yaml": f"{_READER}: nesting over the depth limit",
    "not_utf8.yaml": f"{_READER}: not UTF-8",
    "nul_byte.yaml": f"{_READER}: a NUL byte",
    "python_object_tag.yaml": f"{_READER}: a YAML tag",
    "python_tag_in_field.yaml": f"{_READER}: a YAML tag",
    "yaml_syntax.yaml": f"{_READER}: a syntax error",
    "yaml_tab_indent.yaml": f"{_READER}: a syntax error",
}
"""Bad specs that never become a value: rejected by the reader, so no schema judges them."""

_SHAPES = "sizes that do not follow along the network (lowering computes them)"
_LAYER_NAMES = "layer names against those the blocks and head generate (known only in the IR)"
_EXTENDS = "the files that `extends` names (the schema sees one file)"
SEMANTIC = {
    "bad_feature_output.yaml": "outputs against the number of stages (a rule across fields)",
    "class_names_wrong_count.yaml": "class names from the base against head.classes (across files)",
    "groups_not_dividing_filters.yaml": "groups must divide the row's filters (arithmetic across two items)",
    "groups_not_dividing_inputs.yaml": "groups against the channels the row receives (checked when lowering)",
    "se_ratio_too_large.yaml": "the SE ratio against each block's channels (checked when lowering)",
    "stochastic_depth_plain.yaml": "stochastic depth against shortcut: none (a rule across fields)",
    "classifier_without_pool.yaml": "head.pool against head.classes (checked when lowering)",
    "cycle_a.yaml": _EXTENDS,
    "cycle_b.yaml": _EXTENDS,
    "duplicate_stage.yaml": "stage names unique across the list (after merging with the base)",
    "expect_both_tolerances.yaml": "rel against sig (a model validator across two fields)",
    "extends_missing.yaml": _EXTENDS,
    "extends_name_too_long.yaml": _EXTENDS,
    "extends_self.yaml": _EXTENDS,
    "head_two_flatten.yaml": "one flatten among head.layers (a count across items)",
    "options_width_overflow.yaml": "filters times options.width (arithmetic across fields)",
    "mean_nan.yaml": "not finite: JSON has no NaN or Infinity, so a schema has no word for them",
    "missing_name.yaml": "a shared base (specs/**/_*.yaml) leaves out `name` too: nothing tells them apart",
    "output_larger.yaml": _SHAPES,
    "output_not_following.yaml": _SHAPES,
    "output_wrong_twice.yaml": _SHAPES,
    "preprocess_mean_length.yaml": "one mean per input channel (lengths across fields)",
    "scale_inf.yaml": "not finite: JSON has no NaN or Infinity, so a schema has no word for them",
    "stage_named_head.yaml": "a name the loader reserves for the parts of every network (after merging)",
    "stem_helper_names_twice.yaml": _LAYER_NAMES,
    "stem_name_avg_pool.yaml": _LAYER_NAMES,
    "stem_name_block_clash.yaml": _LAYER_NAMES,
    "stem_name_input.yaml": _LAYER_NAMES,
    "stem_name_predictions.yaml": _LAYER_NAMES,
    "stem_names_twice.yaml": _LAYER_NAMES,
    "stride_collapses.yaml": _SHAPES,
    "test_error_without_dataset.yaml": "test_error against test_dataset, which a base may give",
}
"""Bad specs that are valid JSON data of the right shape: only rescompile's later checks see them.
Every other bad spec is a structural error (wrong type, unknown key, number out of range, missing
field in a file without `extends`) and the schema must reject it."""

TINY = {
    "name": "tiny",
    "source": "test",
    "input": {"size": 32},
    "stem": [{"conv": [3, 16]}],
    "stages": [{"name": "conv2", "output": 32, "block": [[3, 16], [3, 16]], "repeat": 1}],
}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(spec_json_schema())


def _errors(validator: jsonschema.Draft202012Validator, tree: Any) -> list[str]:
    return [error.message for error in validator.iter_errors(tree)]


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = spec_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert json.loads(json.dumps(schema, allow_nan=False)) == schema  # plain JSON, as `schema` prints it
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] and schema["description"]
    assert {"extends", "name", "source", "input", "stem", "stages", "expect"} <= set(schema["properties"])


def _keywords(schema: Any) -> Iterator[str]:
    """Every keyword used anywhere in `schema` (property names and data such as defaults skipped)."""
    if isinstance(schema, list):
        for item in schema:
            yield from _keywords(item)
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        yield key
        if key in ("properties", "patternProperties", "dependentSchemas", "$defs"):
            yield from _keywords(list(value.values()))
        elif key not in ("default", "const", "enum", "examples"):
            yield from _keywords(value)


def test_schema_uses_only_standard_keywords() -> None:
    used = set(_keywords(spec_json_schema()))
    assert not used & {"ge", "gt", "le", "lt"}
    annotations = {"$schema", "$defs", "$id", "$comment", "title", "description", "default", "examples"}
    with_if = {"then", "else"}  # jsonschema checks these under `if`
    assert used <= set(jsonschema.Draft202012Validator.VALIDATORS) | annotations | with_if


def test_field_descriptions_are_kept() -> None:
    defs = spec_json_schema()["$defs"]
    assert defs["Stage"]["description"].startswith("One row group of the paper's table")
    assert defs["StageOverride"]["description"] == defs["Stage"]["description"]
    assert "[kernel, filters]" in defs["Stage"]["properties"]["block"]["items"]["description"]


def test_family_constructs_carry_valid_examples() -> None:
    defs = spec_json_schema()["$defs"]
    options = defs["Options"]["properties"]
    fields = ("downsample", "dropout", "width", "se", "stochastic_depth", "avg_down")
    schemas = [
        *(options[field] for field in fields),
        defs["SqueezeExcitation"],
        defs["StochasticDepth"],
        defs["Stage"]["properties"]["block"]["items"],
    ]
    assert all(schema["description"] for schema in schemas)
    assert [3, 128, 32] in schemas[-1]["examples"]  # a grouped row
    for schema in schemas:
        assert schema["examples"], schema["description"]
        checker = jsonschema.Draft202012Validator({**schema, "$defs": defs})
        assert all(checker.is_valid(example) for example in schema["examples"]), schema["examples"]


@pytest.mark.parametrize("path", LIBRARY, ids=[str(p.relative_to(ROOT / "specs")) for p in LIBRARY])
def test_library_spec_validates(validator: jsonschema.Draft202012Validator, path: Path) -> None:
    assert _errors(validator, load_yaml(path, str(path))) == []


def test_library_is_all_there() -> None:
    assert len(LIBRARY) >= 32 and {"_base.yaml", "_preact_base.yaml"} <= {path.name for path in LIBRARY}


@pytest.mark.parametrize("name", CORPUS)
def test_bad_spec_is_rejected_or_listed(validator: jsonschema.Draft202012Validator, name: str) -> None:
    if name in UNREADABLE:
        with pytest.raises(SpecError):
            load_yaml(BAD / name, name)
        return
    tree = load_yaml(BAD / name, name)
    if name in SEMANTIC:
        assert _errors(validator, tree) == [], f"the schema catches {name}: drop it from SEMANTIC"
    else:
        assert _errors(validator, tree), f"{name} passes the schema: fix the schema or list it with a reason"


def test_lists_name_only_corpus_files() -> None:
    assert not set(UNREADABLE) & set(SEMANTIC)
    assert set(UNREADABLE) | set(SEMANTIC) <= set(CORPUS)
    assert all(UNREADABLE.values()) and all(SEMANTIC.values())
    assert len(set(CORPUS) - set(UNREADABLE) - set(SEMANTIC)) >= 15  # the structural ones


def test_typo_in_a_key_is_rejected(validator: jsonschema.Draft202012Validator) -> None:
    tree = {**TINY, "stagse": TINY["stages"]}
    assert any("stagse" in message for message in _errors(validator, tree))
    stages = [{**TINY["stages"][0], "repaet": 2}]
    assert any("repaet" in message for message in _errors(validator, {**TINY, "stages": stages}))


def test_extends_with_a_partial_stage_passes_and_loads(
    validator: jsonschema.Draft202012Validator, tmp_path: Path
) -> None:
    child = tmp_path / "resnet110.yaml"
    child.write_text(
        f"extends: {ROOT / 'specs/cifar/_base.yaml'}\n"
        "name: deeper\n"
        "stages:\n  - {name: conv2, repeat: 18}\n"
        "head: {classes: 100}\n"
        "options: {shortcut: B}\n"
        "expect: {depth: 40, macs: {value: 1.0e8, rel: 0.5}}\n"
    )
    assert _errors(validator, load_yaml(child, child.name)) == []
    assert load_spec(child).stages[0].repeat == 18  # and rescompile agrees


def test_partial_parts_need_extends(validator: jsonschema.Draft202012Validator) -> None:
    assert _errors(validator, {**TINY, "stages": [{"name": "conv2", "repeat": 18}]})
    assert _errors(validator, {**TINY, "input": {"channels": 1}})
    for field in ("source", "input", "stem", "stages"):
        assert _errors(validator, {key: value for key, value in TINY.items() if key != field})
    assert _errors(validator, {key: value for key, value in TINY.items() if key != "name"}) == []  # a base


def test_lists_that_replace_the_base_must_be_whole(validator: jsonschema.Draft202012Validator) -> None:
    child = {"extends": "_base.yaml", "name": "child"}
    assert _errors(validator, {**child, "stages": [{"repeat": 18}]})  # no name: replaces all stages
    assert _errors(validator, {**child, "head": {"layers": [{"activation": "relu"}]}})
    assert _errors(validator, {**child, "expect": {"params": [{"sig": 2}]}})
    assert _errors(validator, {**child, "stem": [{"name": "conv1", "stride": 2}]}) == []  # by name


@pytest.mark.parametrize(
    "value",
    [25557032, {"value": 25557032, "rel": 0.01}, [{"value": 25.6e6, "sig": 3}, {"value": 25557032}]],
    ids=["number", "object", "list"],
)
def test_expect_forms(validator: jsonschema.Draft202012Validator, value: Any) -> None:
    assert _errors(validator, {**TINY, "expect": {"params": value}}) == []


@pytest.mark.parametrize(
    "expect",
    [{"params": []}, {"params": -1}, {"params": True}, {"params": {"rel": 0.1}}, {"test_error": 101}],
)
def test_bad_expect_is_rejected(validator: jsonschema.Draft202012Validator, expect: dict) -> None:
    assert _errors(validator, {**TINY, "expect": expect})
