"""Generated modules on KERAS_BACKEND=torch (Keras 3 makes them torch modules): the reduced
torchvision/timm references, loaded from their checkpoints, give TensorFlow's outputs and torch's
own logits. The torch side runs in a subprocess, as Keras chooses its backend once per process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.checkpoint_helpers import FIXTURES, MODELS
from tests.numerics import assert_close_to_scale

pytest.importorskip("torch")
pytest.importorskip("keras")

TORCH_SIDE = """
import json, os, sys
os.environ["KERAS_BACKEND"] = "torch"
import numpy as np, keras
from pathlib import Path
from rescompile.keras_backend.model import load_module
assert keras.backend.backend() == "torch"
for case in json.loads(sys.argv[1]):
    model = load_module(Path(case["module"])).build(input_shape=tuple(case["shape"]))
    model.load_weights(case["weights"])
    np.save(case["output"], np.asarray(model.predict(np.load(case["input"]), verbose=0)))
"""


def torch_side_cases(folder: Path) -> tuple[list[dict], dict[str, tuple[Path, np.ndarray]]]:
    """Each reference built on TensorFlow from its checkpoint: the cases for TORCH_SIDE (module,
    input shape, weights saved by Keras, input, output file) and TensorFlow's outputs."""
    from rescompile.keras_backend.build import build_spec

    refs = np.load(FIXTURES / "refs.npz")
    np.save(folder / "input.npy", refs["input"])
    cases, expected = [], {}
    for name in MODELS:
        weights = str(FIXTURES / f"{name}.safetensors")
        result = build_spec(FIXTURES / f"{name}.yaml", folder / name, weights=weights, save=False)
        saved, output = folder / f"{name}.weights.h5", folder / f"{name}.out.npy"
        result.model.save_weights(saved)
        expected[name] = (output, result.model.predict(refs["input"], verbose=0))
        cases.append(
            {
                "module": str(result.source_path),
                "shape": list(result.analysis.graph.input.shape),
                "weights": str(saved),
                "input": str(folder / "input.npy"),
                "output": str(output),
            }
        )
    return cases, expected


def test_generated_modules_on_the_torch_backend_give_tensorflows_and_torchs_outputs(tmp_path: Path) -> None:
    cases, expected = torch_side_cases(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", TORCH_SIDE, json.dumps(cases)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    refs = np.load(FIXTURES / "refs.npz")
    for name, (output, tensorflow) in expected.items():
        on_torch = np.load(output)
        assert_close_to_scale(on_torch, tensorflow, relative=1e-5)
        assert_close_to_scale(on_torch, refs[name], relative=1e-5)
