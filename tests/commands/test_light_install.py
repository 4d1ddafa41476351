"""The light install `rescompile[cpu]` (no TensorFlow/Keras): the compiler and the ONNX side work,
and a command that needs Keras says which extra to install. Simulated by making tensorflow, keras
and h5py unimportable in a fresh interpreter (tests/commands/test_install_extras.py also hides onnxruntime,
as the bare base install has none); CI also runs the table/diff commands in a venv without them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

WITHOUT_KERAS = """
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"tensorflow", "keras", "h5py", "tf2onnx", "jax"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
sys.argv[0] = "rescompile"
from rescompile.cli import main
try:
    main()
finally:
    loaded = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "h5py"})
    print(f"loaded: {loaded}", file=sys.stderr)
"""


def light(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_KERAS, *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    """A ResNet-20 exported by the full install, to be served by the light one."""
    folder = tmp_path_factory.mktemp("light")
    path = folder / "resnet20.onnx"
    done = subprocess.run(
        [sys.executable, "-m", "rescompile", "export", "specs/cifar/resnet20.yaml", "-o", str(path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return path


@pytest.mark.parametrize(
    "args",
    [
        ("check", "specs/cifar/resnet20.yaml", "specs/resnet50.yaml"),
        ("table", "specs/cifar", "--format", "csv"),
        ("diff", "specs/resnet50.yaml", "specs/resnet101.yaml"),
        ("diff", "--base", "HEAD", "--fail-on", "macs>+2%", "--format", "github"),
        ("list", "--format", "json"),
        ("schema",),
        ("doctor",),
        ("generate", "--check"),
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_compiler_commands_need_no_tensorflow(args: tuple[str, ...]) -> None:
    done = light(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.strip().endswith("loaded: []"), done.stderr[-2000:]


def test_doctor_says_training_needs_the_keras_extra() -> None:
    done = light("doctor")
    assert "keras: not installed" in done.stdout and "rescompile[keras]" in done.stdout


def test_onnx_serving_needs_no_tensorflow(onnx_model: Path, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(image)
    for args in (
        ("predict", str(onnx_model), str(image), "--json", "--provider", "cpu"),
        ("bench", str(onnx_model), "--batch-size", "2", "--seconds", "0.1", "--provider", "cpu"),
        ("table", "--from-onnx", str(onnx_model)),
    ):
        done = light(*args)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stderr.strip().endswith("loaded: []"), done.stderr[-2000:]


@pytest.mark.parametrize(
    "args",
    [
        ("build", "specs/cifar/resnet20.yaml", "--out", "{tmp}"),
        ("export", "specs/cifar/resnet20.yaml", "-o", "{tmp}/m.onnx"),
        ("train", "specs/cifar/resnet20.yaml", "--out", "{tmp}/run", "--epochs", "1"),
    ],
    ids=lambda args: args[0],
)
def test_keras_commands_name_the_extra_in_one_line(args: tuple[str, ...], tmp_path: Path) -> None:
    done = light(*(arg.format(tmp=tmp_path) for arg in args))
    assert done.returncode == 2, done.stderr[-2000:]
    error = done.stderr.strip().splitlines()[0]
    assert error.startswith("error: ") and "pip install 'rescompile[keras]'" in error
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir()), "nothing written"
