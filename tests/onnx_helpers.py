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
    """Weights for every weighted node of `graph`, keyed by node (ir/weights.py's layouts): kernels
    scaled by their fan-in (activations stay of order one), BatchNorm near the identity."""
    rng = np.random.default_rng(seed)
    store: WeightStore = {}
    for node in graph.nodes:
        channels = node.shape[2]
        if isinstance(node, ir.Conv):
            fan_in = node.kernel * node.kernel * graph.node(node.inputs[0]).shape[2] // node.groups
            kernel = rng.normal(
                0, fan_in**-0.5, (node.kernel, node.kernel, fan_in // node.kernel**2, channels)
            )
            store[node.name] = {
                "kernel": kernel,
                **({"bias": rng.normal(0, 0.1, channels)} if node.bias else {}),
            }
        elif isinstance(node, ir.SqueezeExcite):
            store[node.name] = {
                "reduce_kernel": rng.normal(0, channels**-0.5, (1, 1, channels, node.reduced)),
                "reduce_bias": np.zeros(node.reduced),
                "expand_kernel": rng.normal(0, node.reduced**-0.5, (1, 1, node.reduced, channels)),
                "expand_bias": np.zeros(channels),
            }
        elif isinstance(node, ir.ChannelAttention):
            store[node.name] = {"kernel": rng.normal(0, 1, (node.kernel, 1, 1))}
        elif isinstance(node, ir.BatchNorm):
            gamma, variance = rng.uniform(0.5, 1.5, (2, channels))
            beta, mean = rng.normal(0, 0.1, (2, channels))
            store[node.name] = {"gamma": gamma, "beta": beta, "mean": mean, "var": variance}
        elif isinstance(node, ir.Dense):
            fan_in = graph.node(node.inputs[0]).shape[2]
            store[node.name] = {
                "kernel": rng.normal(0, fan_in**-0.5, (fan_in, channels)),
                "bias": np.zeros(channels),
            }
    return {name: {part: a.astype(np.float32) for part, a in parts.items()} for name, parts in store.items()}


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
