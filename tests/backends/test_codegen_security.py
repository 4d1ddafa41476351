"""Nothing from a spec or a file name reaches generated code except identifiers, numbers and
escaped literals: hostile text in every free-text field and in the path parses, never runs, and
round-trips."""

from __future__ import annotations

import ast
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from rescompile.analysis.analyze import analyze
from rescompile.errors import RescompileError
from rescompile.keras_backend.literals import py_literal
from rescompile.keras_backend.printer import render_keras
from rescompile.spec.library import spec_label
from rescompile.spec.schema import Spec

BASE = yaml.safe_load(Path("specs/cifar/_base.yaml").read_text()) | {"name": "hostile"}


def payloads(marker: Path) -> list[str]:
    """Texts that would run code, break the module, or be read as template syntax if unescaped."""
    touch = f'__import__("os").system("touch {marker}")'
    return [
        f'x"""; {touch}; """',
        f"x'''; {touch}; '''",
        f'line one\n"""\n{touch}\n"""',
        'ends in a quote"',
        "ends in a backslash\\",
        "\\N{bogus} \\x \\u12 \\",
        "a NUL \x00 and a bell \x07 and a line separator \u2028",
        "{{ 7 * 7 }} {% if true %}jinja{% endif %} {# comment #}",
        "[/bogus] [red]rich markup[/red] :smile:",
    ]


def _types_in(annotation: object) -> list[object]:
    if typing.get_origin(annotation) is typing.Annotated and typing.get_args(annotation)[0] is str:
        return []  # a constrained string: an identifier or a pattern
    return [annotation, *(t for arg in typing.get_args(annotation) for t in _types_in(arg))]


def free_text_fields(model: type[BaseModel] = Spec, prefix: tuple = ()) -> list[tuple]:
    """Paths of every plain-`str` field of the schema (identifiers and choices excluded)."""
    found = []
    for name, field in model.model_fields.items():
        for kind in _types_in(field.annotation):
            if kind is str and not field.metadata:
                found.append((*prefix, name))
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found += free_text_fields(kind, (*prefix, name))
    return sorted(set(found))


def test_the_schema_free_text_fields_are_known() -> None:
    metrics = ("depth", "macs", "params", "params_conv_fc", "params_total")
    expected = [("description",), *(("expect", m, "source") for m in metrics), ("source",)]
    assert free_text_fields() == expected


def _with_text(text: str) -> dict:
    spec = dict(BASE, source=text, description=text)
    spec["expect"] = {"params": {"value": 270000, "rel": 0.01, "source": text}}
    return spec


def test_hostile_text_parses_never_runs_and_round_trips(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    for index, text in enumerate(payloads(marker)):
        spec_file = tmp_path / f"spec{index}.yaml"
        spec_file.write_text(yaml.safe_dump(_with_text(text)))
        analysis = analyze(spec_file)
        assert analysis.spec.source == text
        module_text = render_keras(analysis.network.whole, spec_label(text))  # the path slot, too
        tree = ast.parse(module_text)
        docstring = ast.get_docstring(tree, clean=False)
        label = spec_label(text)  # the path slot prints as the spec's name (its file name here)
        assert text in docstring and f"from the spec {label} (`rescompile build {label}`" in docstring, (
            "the source and the spec's name round-trip exactly"
        )
        exec(compile(tree, "generated", "exec"), {"__name__": "generated"})
        assert not marker.exists()


@pytest.mark.parametrize("field", ["name", "stages"])
def test_identifier_fields_refuse_hostile_text(tmp_path: Path, field: str) -> None:
    spec = dict(BASE)
    text = 'x"; __import__("os").system("touch p"); "'
    if field == "name":
        spec["name"] = text
    else:
        spec["stages"] = [dict(BASE["stages"][0], name=text)]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(RescompileError, match="expected an identifier"):
        analyze(path)


def test_literals_refuse_what_is_not_plain_data() -> None:
    assert py_literal(['a"b', (1, 2.5), None, True]) == '["a\\"b", (1, 2.5), None, True]'
    with pytest.raises(RescompileError):
        py_literal(float("inf"))
    with pytest.raises(TypeError):
        py_literal(object())


def test_build_of_a_hostile_file_name_and_source_runs_nothing(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    marker = tmp_path / "p"
    name = 'p"""+__import__("os").system("touch p")+"""[bold].yaml'
    source = payloads(marker)[0] + " [/bogus]"
    (tmp_path / name).write_text(yaml.safe_dump(_with_text(source)))
    done = subprocess.run(
        [sys.executable, "-m", "rescompile", "build", name, "--out", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    printed = done.stdout.replace("\n", "")
    assert name in printed and "[/bogus]" in printed, "rich markup is printed literally"
    module = (tmp_path / "out/hostile.py").read_text()
    assert name in ast.get_docstring(ast.parse(module), clean=False)
