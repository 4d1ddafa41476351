"""Helpers for ONNX tests: a spec exported through the IR with random weights, without Keras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from rescompile import ir
from rescompile.analysis.analyze import Analysis, analyze
from rescompile.ir.target import Target
from rescompile.ir.weights import WeightStore
from rescompile.keras_backend.model_file import model_record
from rescompile.onnx_backend.emit import ExportOptions, export_onnx


def random_weights(graph: ir.Graph, seed: int = 0) -> WeightStore:
    """Weights for every weighted node of `graph`, keyed by node in the store's layouts: kernels
    scaled by their fan-in (activations stay of order one), BatchNorm near the identity."""
    rng = np.random.default_rng(seed)
    store: WeightStore = {}
    for node in graph.nodes:
        for part, shape in graph.weight_shapes(node).items():
            if part in ("gamma", "var"):
                array = rng.uniform(0.5, 1.5, shape)
            elif len(shape) == 1:  # biases, offsets and means
                array = rng.normal(0, 0.1, shape)
            else:
                array = rng.normal(0, float(np.prod(shape[:-1])) ** -0.5, shape)
            store.setdefault(node.name, {})[part] = array.astype(np.float32)
    return store


def export_spec(
    spec: str | Path,
    path: Path,
    input_size: int | None = None,
    record: bool = True,
    **options: object,
) -> Analysis:
    """Export `spec` (at `input_size`) with random weights to `path`, carrying its rescompile
    record unless `record` is False; `options`: ExportOptions fields (fold_bn, fp16...)."""
    analysis = analyze(spec, Target(input_size=input_size))
    carried = model_record(analysis) if record else None
    exported = export_onnx(
        analysis.network,
        random_weights(analysis.graph),
        ExportOptions(record=carried, **options),
    )
    onnx.save(exported, path)
    return analysis
