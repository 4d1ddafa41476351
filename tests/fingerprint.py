"""Prove a refactor changed no model: fingerprint every library spec and its variants, then compare.

    python -m tests.fingerprint write OUT.npz     # layer names and types, weight shapes, outputs
    python -m tests.fingerprint compare A.npz B.npz

Each spec is built in five variants (its own, 64 px, no top, 7 classes, C3+C4 outputs; the
thousand-layer ones as they are), every layer filled with the same weights drawn from its name, and
run on one fixed batch through Keras and through its ONNX export (onnxruntime). Run `write` on the
tree before and after the change (e.g. a git worktree on PYTHONPATH), then `compare`: it prints
every difference and the worst relative difference of the outputs.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

VARIANTS = {
    "own": {},
    "size": {"input_size": 64},
    "notop": {"include_top": False},
    "classes": {"classes": 7},
    "features": {"outputs": ["C3", "C4"]},
}
THOUSAND_LAYERS = ("resnet1202", "resnet1001")
TOLERANCE = 1e-6


def _fill(model) -> None:
    """Weights drawn from each layer's name: the same network before and after."""
    for layer in model.layers:
        arrays = []
        for index, weight in enumerate(layer.get_weights()):
            rng = np.random.default_rng(zlib.crc32(f"{layer.name}/{index}".encode()))
            if type(layer).__name__ == "BatchNormalization" and index == 3:  # variances
                arrays.append(rng.uniform(0.5, 1.5, weight.shape).astype(weight.dtype))
            else:
                fan_in = max(1, int(np.prod(weight.shape[:-1])))
                arrays.append(rng.normal(0, (2 / fan_in) ** 0.5, weight.shape).astype(weight.dtype))
        if arrays:
            layer.set_weights(arrays)


def _onnx_outputs(result, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    from rescompile.keras_backend.weights import weight_store
    from rescompile.onnx_backend.export import export_with_record

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.onnx"
        weights = weight_store(result.model, result.analysis.graph)
        export_with_record(weights, result.analysis, path, record=result.record)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return [np.asarray(out) for out in session.run(None, {session.get_inputs()[0].name: x})]


def write(out: Path) -> None:
    """Fingerprint every library spec and variant into `out` (arrays) and `out`.json (names)."""
    import keras

    from rescompile.errors import RescompileError
    from rescompile.keras_backend.build import build_spec

    sys.setrecursionlimit(100_000)
    arrays, described = {}, {}
    for spec in sorted(p for p in Path("specs").rglob("*.yaml") if not p.name.startswith("_")):
        for variant, options in VARIANTS.items():
            if any(name in spec.stem for name in THOUSAND_LAYERS) and options:
                continue
            key = f"{spec}|{variant}"
            try:
                with tempfile.TemporaryDirectory() as scratch:
                    result = build_spec(spec, Path(scratch), save=False, check_memory=False, **options)
            except RescompileError as exc:
                described[key] = {"error": str(exc)}
                continue
            model = result.model
            _fill(model)
            x = np.random.default_rng(1).uniform(-1, 1, (2, *model.inputs[0].shape[1:])).astype("float32")
            outputs = model.predict(x, verbose=0)
            for index, value in enumerate(outputs if isinstance(outputs, list) else [outputs]):
                arrays[f"{key}|keras{index}"] = np.asarray(value)
            if not any(name in spec.stem for name in THOUSAND_LAYERS):
                for index, value in enumerate(_onnx_outputs(result, x)):
                    arrays[f"{key}|onnx{index}"] = value
            described[key] = {
                "layers": [[layer.name, type(layer).__name__] for layer in model.layers],
                "weights": [[layer.name, [list(w.shape) for w in layer.weights]] for layer in model.layers],
            }
            keras.backend.clear_session()
            print(key, len(model.layers), flush=True)
    np.savez_compressed(out, **arrays)
    Path(f"{out}.json").write_text(json.dumps(described))


def compare(before: Path, after: Path) -> int:
    """Print every difference between two fingerprints; the number of differences."""
    names = [json.loads(Path(f"{path}.json").read_text()) for path in (before, after)]
    arrays = [np.load(path) for path in (before, after)]
    differences, worst = 0, 0.0
    for key in sorted(set(names[0]) & set(names[1])):
        for part in ("layers", "weights", "error"):
            if names[0][key].get(part) != names[1][key].get(part):
                differences += 1
                print(f"{part} differ: {key}")
    for key in sorted(set(arrays[0].files) | set(arrays[1].files)):
        if key not in arrays[0].files or key not in arrays[1].files:
            differences += 1
            print(f"only one side: {key}")
            continue
        old, new = arrays[0][key], arrays[1][key]
        relative = (
            float(np.abs(old - new).max() / (np.abs(old).max() + 1e-12)) if old.shape == new.shape else 1.0
        )
        worst = max(worst, relative)
        if relative > TOLERANCE:
            differences += 1
            print(f"outputs differ: {key} ({relative:.2e})")
    builds = len(set(names[0]) & set(names[1]))
    print(f"{builds} builds, {len(arrays[0].files)} outputs: {differences} differences, worst {worst:.2e}")
    return differences


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if sys.argv[1:2] == ["write"] and len(sys.argv) == 3:
        write(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["compare"] and len(sys.argv) == 4:
        sys.exit(1 if compare(Path(sys.argv[2]), Path(sys.argv[3])) else 0)
    else:
        sys.exit(__doc__)
