"""Generated modules run on JAX: every block kind of the library gives the TensorFlow backend's
outputs on the same weights (the JAX side runs in a subprocess, as a backend is chosen per process)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rescompile.analysis.analyze import analyze
from tests.keras_helpers import generated_model, randomize_batchnorm
from tests.library_cover import covering

pytest.importorskip("jax")

FIRST = Path("specs/cifar/resnet20.yaml")
SMALL_INPUT = 64  # ImageNet specs at 64 px; CIFAR ones at their own 32
JAX_SIDE = """
import json, os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
from pathlib import Path
from rescompile.keras_backend.model import load_module
assert keras.backend.backend() == "jax"
cases = json.loads(sys.argv[1])
for case in cases:
    model = load_module(Path(case["module"])).build(input_shape=tuple(case["shape"]))
    model.load_weights(case["weights"])
    x = np.load(case["input"])
    np.save(case["output"], np.asarray(model.predict(x, verbose=0)))
    print(case["module"], [layer.name for layer in model.layers] == case["layers"], flush=True)
"""


def _block_kinds(module: Path) -> set[str]:
    return set(re.findall(r"^def (\w+)\(x, filters, stride, name\):", module.read_text(), re.MULTILINE))


def test_every_block_kind_of_the_library_is_covered() -> None:
    every = set().union(*(_block_kinds(path) for path in Path("generated").glob("*.py")))
    covered = set()
    for spec in covering():
        covered |= _block_kinds(Path("generated") / f"{analyze(spec).spec.name}.py")
    assert every <= covered, f"block kinds without a JAX check: {sorted(every - covered)}"


GROUPS = [
    pytest.param([FIRST], id="resnet20"),
    pytest.param(sorted(covering() - {FIRST}), id="every-kind", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("specs", GROUPS)
def test_generated_modules_give_the_same_outputs_on_jax_and_tensorflow(
    specs: list[Path], tmp_path: Path
) -> None:
    cases, expected = [], {}
    for index, spec in enumerate(specs):
        size = min(analyze(spec).graph.input.shape[0], SMALL_INPUT)
        analysis, model = generated_model(str(spec), size, seed=index)
        x = np.random.default_rng(index).normal(size=(2, *analysis.graph.input.shape)).astype("float32")
        randomize_batchnorm(model, seed=index, graph=analysis.graph, x=x)
        files = {kind: str(tmp_path / f"{index}.{kind}") for kind in ("weights.h5", "npy", "out.npy")}
        model.save_weights(files["weights.h5"])
        np.save(files["npy"], x)
        expected[files["out.npy"]] = (spec, model.predict(x, verbose=0))
        cases.append(
            {
                "module": str(Path("generated") / f"{analysis.spec.name}.py"),
                "shape": list(analysis.graph.input.shape),
                "weights": files["weights.h5"],
                "input": files["npy"],
                "output": files["out.npy"],
                "layers": [layer.name for layer in model.layers],
            }
        )
    done = subprocess.run(
        [sys.executable, "-c", JAX_SIDE, json.dumps(cases)], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count(" True") == len(cases), done.stdout  # same layer names on both backends
    for path, (spec, tensorflow) in expected.items():
        jax = np.load(path)
        assert jax.shape == tensorflow.shape, spec
        assert np.abs(jax - tensorflow).max() < 1e-4, f"{spec}: {np.abs(jax - tensorflow).max()}"
