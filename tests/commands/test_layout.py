"""The package layout is the pipeline: every import inside rescompile flows one way, from the spec
towards the commands (spec -> IR -> analysis -> backends -> inputs -> serving · training ->
experiments); serving and training, side by side, import nothing from each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "rescompile"

LAYERS = [
    {"errors", "fileio", "quiet", "resources", "progress", "options", "cpu", "figures"},
    {"spec"},
    {"ir"},
    {"analysis"},
    {"checkpoints"},
    {"keras_backend", "onnx_backend"},
    {"inputs"},
    {"serve", "train"},
    {"experiments"},
    {"commands", "generate", "doctor", "cli", "__main__", "__init__"},
]
LAYER_OF = {part: index for index, layer in enumerate(LAYERS) for part in layer}


def _part(module: str) -> str:
    """The top-level part of a rescompile module name (`rescompile.ir.lower` -> `ir`)."""
    return module.split(".")[1] if "." in module else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every rescompile module `path` imports, lazily or not, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rescompile"):
            names = (
                [f"{node.module}.{alias.name}" for alias in node.names]
                if node.module == "rescompile"
                else [node.module]
            )
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("rescompile")]
    return found


def test_every_module_belongs_to_a_layer() -> None:
    parts = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in PACKAGE.glob("*")}
    parts -= {"__pycache__", "templates", "specs", "recipes"}
    assert parts <= set(LAYER_OF), f"not placed in a layer: {sorted(parts - set(LAYER_OF))}"


def test_imports_flow_one_way() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = "rescompile." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        here = LAYER_OF[_part(module)]
        for line, imported in _imports(path):
            if imported != "rescompile.__version__" and LAYER_OF[_part(imported)] > here:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}")
    assert not upward, "imports against the pipeline:\n" + "\n".join(upward)


SIDE_BY_SIDE = [("keras_backend", "onnx_backend"), ("serve", "train")]
"""Packages of one layer that meet only through what lies below them (weights keyed by IR node;
the inputs stage)."""


@pytest.mark.parametrize("pair", SIDE_BY_SIDE, ids="-".join)
def test_side_by_side_packages_import_nothing_from_each_other(pair: tuple[str, str]) -> None:
    crossing = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}"
        for side, other in (pair, pair[::-1])
        for path in sorted((PACKAGE / side).rglob("*.py"))
        for line, imported in _imports(path)
        if _part(imported) == other
    ]
    assert not crossing, f"{' and '.join(pair)} side by side:\n" + "\n".join(crossing)


def test_the_layering_test_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from rescompile.train.trainer import train\n")
    assert _imports(module) == [(2, "rescompile.train.trainer")]
    assert LAYER_OF[_part("rescompile.train.trainer")] > LAYER_OF[_part("rescompile.ir.lower")]
