"""The spec library ships in the package: specs by name, `rescompile list`, and the wheel."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rescompile.cli import app
from rescompile.errors import RescompileError
from rescompile.spec.library import library_dir, library_specs, resolve_spec

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

LIBRARY_SIZE = 47
"""Specs in specs/ (their `_*.yaml` bases aside): every count below is of this library."""


def run(*args: str):
    return runner.invoke(app, list(args))


def test_the_library_is_the_repository_specs_in_a_checkout() -> None:
    assert library_dir().resolve() == (ROOT / "specs").resolve()
    specs = library_specs()
    assert len(specs) == LIBRARY_SIZE and not any(path.name.startswith("_") for path in specs)


def test_resolve_by_name_by_relative_name_and_by_network_name() -> None:
    library = library_dir()
    assert resolve_spec("resnet50") == library / "resnet50.yaml"
    assert resolve_spec("resnet50.yaml") == library / "resnet50.yaml"
    assert resolve_spec("resnet50_v1.5") == library / "resnet50_v1.5.yaml"
    assert resolve_spec("cifar/resnet56") == library / "cifar/resnet56.yaml"
    assert resolve_spec("cifar/resnet56.yaml") == library / "cifar/resnet56.yaml"
    assert resolve_spec("cifar_resnet56") == library / "cifar/resnet56.yaml"
    assert resolve_spec("keras_resnet50") == library / "keras/resnet50.yaml"
    assert resolve_spec("resnet50_v1_5") == library / "resnet50_v1.5.yaml"


def test_an_existing_path_is_used_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_spec("specs/resnet50.yaml") == Path("specs/resnet50.yaml")
    assert resolve_spec(Path("specs/cifar/resnet20.yaml")) == Path("specs/cifar/resnet20.yaml")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resnet50").write_text("mine")
    assert resolve_spec("resnet50") == Path("resnet50")  # a file here wins over the library
    (tmp_path / "cifar_resnet56").mkdir()  # a folder (e.g. a build output) does not shadow a name
    assert resolve_spec("cifar_resnet56") == library_dir() / "cifar/resnet56.yaml"
    # a repository path typed outside the repository still finds the library's spec
    assert resolve_spec("specs/cifar/resnet20.yaml") == library_dir() / "cifar/resnet20.yaml"


def test_bases_and_paths_outside_the_library_are_not_names() -> None:
    for text in ("cifar/_base", "_base", "../pyproject.toml", "../pyproject"):
        with pytest.raises(RescompileError):
            resolve_spec(text)


def test_an_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(
        RescompileError, match=r"did you mean 'resnet50'.*`rescompile list` shows the library"
    ):
        resolve_spec("resnet5")
    with pytest.raises(RescompileError, match=r"did you mean 'cifar/resnet56'"):
        resolve_spec("cifar/resnet65")
    with pytest.raises(RescompileError, match=r"did you mean 'cifar_resnet56'"):
        resolve_spec("cifar_resnet65")
    with pytest.raises(RescompileError, match="no such file, and no library spec") as caught:
        resolve_spec("zzzz\nqqqq" * 40)
    assert "\n" not in str(caught.value) and "did you mean" not in str(caught.value)


def test_cli_takes_names_and_reports_unknown_ones_in_one_line() -> None:
    result = run("table", "resnet50", "cifar/resnet56", "cifar_resnet20", "--format", "json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert [r["spec"] for r in records] == ["resnet50", "cifar_resnet56", "cifar_resnet20"]
    assert records[0]["params"] == 25_557_032
    assert run("check", "cifar/resnet56").exit_code == 0
    diff = run("diff", "resnet18", "resnet34")
    assert diff.exit_code == 0 and "resnet18 -> resnet34" in diff.output
    result = run("table", "resnet5")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith("error: 'resnet5': no such file")


def test_check_and_table_outside_the_repository_use_the_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    everything = json.loads(run("table", "--format", "json").output)
    assert len(everything) == LIBRARY_SIZE
    cifar = json.loads(run("table", "cifar", "--format", "json").output)  # a library folder
    assert len(cifar) == 17 and all(r["spec"].startswith(("cifar_", "keras_example")) for r in cifar)
    assert len(json.loads(run("table", "specs", "--format", "json").output)) == LIBRARY_SIZE


def test_list_json_has_every_library_spec_with_its_counts() -> None:
    result = run("list", "--format", "json")
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    assert len(entries) == LIBRARY_SIZE
    by_path = {entry["path"]: entry for entry in entries}
    resnet50 = by_path["resnet50.yaml"]
    assert resnet50["name"] == "resnet50" and resnet50["family"] == "imagenet"
    assert resnet50["params"] == 25_557_032 and resnet50["macs"] == 3_857_973_248
    assert "He et al. 2015" in resnet50["source"]
    assert by_path["cifar/resnet56.yaml"]["name"] == "cifar_resnet56"
    assert by_path["cifar/keras_example/resnet20.yaml"]["family"] == "cifar"
    assert {entry["family"] for entry in entries} == {"imagenet", "cifar", "keras", "plain", "transfer"}
    assert set(entries[0]) == {"path", "name", "family", "params", "macs", "source"}


def test_list_markdown_and_a_bad_format() -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert (
        lines[0] == "| spec | network | family | params | MACs | source |" and len(lines) == LIBRARY_SIZE + 2
    )
    assert any(
        line.startswith("| resnet50.yaml | resnet50 | imagenet | 25,557,032 | 3.858 G |") for line in lines
    )
    bad = subprocess.run(
        [sys.executable, "-m", "rescompile", "list", "--format", "csv"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr == (
        "error: Invalid value for '--format': 'csv' is not one of 'md', 'json'."
        " (see `rescompile list --help`)\n"
    )


def test_list_imports_no_framework() -> None:
    code = (
        "import sys; from rescompile.cli import app\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(app, ['list']); assert r.exit_code == 0, r.output\n"
        "frameworks = ('tensorflow', 'keras', 'onnx', 'onnxruntime', 'jax', 'torch')\n"
        "bad = [m for m in frameworks if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# The wheel: built once, then installed into a folder and run from an empty one.

OFFLINE = ("NewConnectionError", "Could not find a version that satisfies", "Temporary failure in name")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # hatchling in this environment builds offline; without it pip fetches it (CI has the registry)
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("hatchling") else []
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(out), str(ROOT)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode and any(marker in done.stdout + done.stderr for marker in OFFLINE):
        pytest.skip("building the wheel needs hatchling from the package index, which is unreachable")
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = out.glob("rescompile-*.whl")
    return path


def test_the_wheel_holds_the_whole_library(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {name for name in names if name.startswith("rescompile/specs/")}
    expected = {
        f"rescompile/specs/{p.relative_to(ROOT / 'specs').as_posix()}" for p in ROOT.glob("specs/**/*.yaml")
    }
    assert shipped == expected and len(expected) == LIBRARY_SIZE + 3  # and the three _*.yaml bases
    assert "rescompile/spec/library.py" in names
    assert any(name.startswith("rescompile/templates/") for name in names)
    assert any(name.startswith("rescompile/recipes/") for name in names)


@pytest.mark.slow  # 53-58 s on 2 busy cores: five processes that import TensorFlow
def test_the_installed_wheel_builds_exports_and_predicts_by_name(wheel: Path, tmp_path: Path) -> None:
    target, work = tmp_path / "target", tmp_path / "work"
    work.mkdir()
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target), "TF_CPP_MIN_LOG_LEVEL": "3"}

    def python(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    where = python("-c", "import rescompile.spec.library as l; print(l.__file__); print(l.library_dir())")
    module, library = map(Path, where.stdout.split())
    assert module.is_relative_to(target) and library == target / "rescompile" / "specs"

    table = python("-m", "rescompile", "table", "cifar/resnet56").stdout
    assert "| cifar_resnet56 | 56 | 853,018 |" in table
    assert len(json.loads(python("-m", "rescompile", "list", "--format", "json").stdout)) == LIBRARY_SIZE

    python("-m", "rescompile", "build", "resnet50", "--out", "out")
    assert (work / "out" / "resnet50.keras").is_file()
    python("-m", "rescompile", "export", "out/resnet50.keras", "-o", "m.onnx")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(work / "image.png")
    predicted = json.loads(python("-m", "rescompile", "predict", "m.onnx", "image.png", "--json").stdout)
    assert len(predicted) == 1 and len(predicted[0]["top"]) == 5
    assert sorted(path.name for path in work.iterdir()) == ["image.png", "m.onnx", "out"]


def test_library_specs_cite_papers_or_files_of_the_repository() -> None:
    import re

    for path in library_specs():
        text = path.read_text(encoding="utf-8")
        for cited in re.findall(r"[\w./-]+\.(?:md|txt|pdf|csv)\b", text):
            assert (ROOT / cited).exists(), f"{path} cites {cited}, which users do not have"
        assert "REFERENCE" not in text, path
