"""Every invalid spec gives its exact one-line errors (every one it has), exit status 2, and no
traceback."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rescompile.analysis.analyze import analyze
from rescompile.cli import app
from rescompile.errors import RescompileError, SpecError

CORPUS = Path("tests/bad_specs")


def _expected() -> dict[str, list[str]]:
    """Each file's errors in order: EXPECTED.tsv has a line per error, naming its file first."""
    found: dict[str, list[str]] = {}
    for line in (Path(__file__).parents[1] / "bad_specs/EXPECTED.tsv").read_text().splitlines():
        name, message = line.split("\t", 1)
        found.setdefault(name, []).append(message)
    return found


EXPECTED = _expected()


def test_corpus_is_large_and_fully_described() -> None:
    files = {p.name for p in (Path(__file__).parents[1] / "bad_specs").glob("*.yaml")}
    assert len(files) >= 25
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exact_errors(name: str) -> None:
    with pytest.raises(RescompileError) as caught:
        analyze(CORPUS / name)
    assert [str(error) for error in (caught.value, *getattr(caught.value, "more", []))] == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cli_exit_2_one_line_per_error_no_traceback(name: str) -> None:
    result = CliRunner().invoke(app, ["check", str(CORPUS / name)])
    assert result.exit_code == 2, result.exception
    assert result.stderr.splitlines() == [f"error: {message}" for message in EXPECTED[name]]
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_python_tags_are_never_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "hacked"
    spec = tmp_path / "evil.yaml"
    spec.write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(SpecError):
        analyze(spec)
    assert not marker.exists()


LIBRARY = [
    p for p in Path(__file__).parents[2].joinpath("specs").rglob("*.yaml") if not p.name.startswith("_")
]
JUNK = st.one_of(
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
    st.lists(st.integers(-5, 70), max_size=4),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=3),
)


def _paths(tree: object, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += _paths(value, (*prefix, index))
    return found


def _mutate(tree: dict, path: tuple, action: str, junk: object) -> object:
    if not path:
        return junk
    parent = tree
    for part in path[:-1]:
        parent = parent[part]
    if action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "rename" and isinstance(parent, dict):
        parent[f"{path[-1]}_x"] = parent.pop(path[-1])
    else:
        parent[path[-1]] = junk
    return tree


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), action=st.sampled_from(["replace", "delete", "rename"]), junk=JUNK)
def test_mutated_specs_raise_only_our_error(tmp_path: Path, seed: int, action: str, junk: object) -> None:
    source = random.Random(seed).choice(LIBRARY)
    tree = yaml.safe_load(source.read_text())
    tree.pop("extends", None)
    paths = _paths(tree)
    path = paths[random.Random(seed + 1).randrange(len(paths))]
    mutated = _mutate(tree, path, action, junk)
    spec = tmp_path / "mutated.yaml"
    spec.write_text(yaml.safe_dump(mutated))
    try:
        analyze(spec)
    except SpecError as error:
        assert "\n" not in str(error)
        assert error.file.endswith("mutated.yaml")


def test_check_reports_every_error_of_every_file(tmp_path: Path) -> None:
    many = tmp_path / "many.yaml"
    many.write_text(
        "name: many\nsource: test\ninput: {size: 32, channels: 3}\nstem: [{conv: [3, 0]}]\n"
        "stages:\n  - {name: conv2, output: 32, block: [[3, 16]], repeat: -1}\n"
        "  - {name: conv3, output: 16, block: [[3, 32]], repeat: 1, bogus: 1}\n"
    )
    files = [str(many), str(CORPUS / "kernel_even.yaml"), "specs/cifar/resnet20.yaml"]
    done = subprocess.run(
        [sys.executable, "-m", "rescompile", "check", *files], capture_output=True, text=True
    )
    assert done.returncode == 2
    many = os.path.relpath(many)  # as the user would type it
    assert done.stderr.splitlines() == [
        f"error: {many}:4: stem[0].conv: filters must be between 1 and 65536, got 0",
        f"error: {many}:6: stages[0].repeat: must be at least 1, got -1",
        f"error: {many}:7: stages[1].bogus: unknown field; expected one of: block, name, output, repeat",
        f"error: {EXPECTED['kernel_even.yaml'][0]}",
        "2 of 3 spec arguments are invalid or missing",
    ]
    assert done.stdout.startswith("ok    specs/cifar/resnet20.yaml"), "the good file is still checked"
