"""Helpers for Keras tests: build library specs through the generated code."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rescompile import ir
from rescompile.analysis.analyze import Analysis, analyze
from rescompile.ir.target import Target
from rescompile.keras_backend.model import load_module, recursion_limit
from rescompile.keras_backend.printer import needed_recursion_limit


def generated_model(spec: str, input_size: int | None = None, seed: int = 0, **kwargs):
    """(analysis, model) built by the committed generated module of a library spec, its initial
    weights drawn from `seed` so that every run of a test checks the same network."""
    import keras

    keras.utils.set_random_seed(seed)
    analysis: Analysis = analyze(spec, Target(input_size=input_size))
    module = load_module(Path("generated") / f"{analysis.spec.name}.py")
    with recursion_limit(needed_recursion_limit(analysis.graph) or 0):
        return analysis, module.build(input_shape=analysis.graph.input.shape, **kwargs)


BRANCH_END_SCALE = 0.1  # how much smaller a pre-activation branch's last convolution is made


def randomize_batchnorm(
    model, seed: int = 0, graph: ir.Graph | None = None, x: np.ndarray | None = None
) -> None:
    """Give every BatchNormalization layer non-trivial parameters and moving statistics.

    Scale and offset are drawn at random; the moving statistics become those of a batch as it
    flows through the network (variances floored at a tenth of their median, then perturbed by a
    tenth of a standard deviation), so activations stay of order one through hundreds of layers
    and outputs are far from saturated. With the IR `graph`, the layers that end a residual branch
    (a BN in v1 units, a convolution in pre-activation units) get small scales, as in trained
    ResNets, so that even 600 blocks (ResNet-1202, ResNet-1001) keep the residual stream of order
    one instead of chaotic. `x`: the batch whose statistics to use.
    """
    rng = np.random.default_rng(seed)
    branch_ends = set()
    if graph is not None:
        branch_ends = {name for node in graph.nodes if isinstance(node, ir.Add) for name in node.inputs}
        for node in reversed(graph.nodes):  # drop-path after a gate after BN: walk back from the sum
            if node.passes_through and node.name in branch_ends:  # the branch ends before it
                branch_ends.add(node.inputs[0])
    for layer in model.layers:
        if layer.name in branch_ends and type(layer).__name__ == "Conv2D":
            layer.set_weights([weight * BRANCH_END_SCALE for weight in layer.get_weights()])
    batch_norms = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    for layer in batch_norms:
        channels = layer.gamma.shape[0]
        low, high = (0.05, 0.2) if layer.name in branch_ends else (0.5, 1.5)
        gamma = rng.uniform(low, high, channels).astype("float32")
        beta = rng.normal(0, 0.2, channels).astype("float32")
        layer.set_weights([gamma, beta, *layer.get_weights()[2:]])
        layer.momentum = 0.0
    if x is None:
        x = rng.normal(0, 1, (8, *model.input.shape[1:])).astype("float32")
    model(x, training=True)
    for layer in batch_norms:
        layer.momentum = 0.99
        gamma, beta, mean, var = layer.get_weights()
        var = np.maximum(var, 0.1 * np.median(var))  # no near-constant feature blown up by 1/sqrt(eps)
        shift = rng.normal(0, 0.1, mean.shape[0]).astype("float32") * np.sqrt(var)
        stretch = rng.uniform(0.9, 1.1, var.shape[0]).astype("float32")
        layer.set_weights([gamma, beta, mean + shift, var * stretch])
