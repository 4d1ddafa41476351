"""Every library spec: the generated Keras model agrees with the IR, parameter for parameter."""

from __future__ import annotations

from pathlib import Path

import pytest

from rescompile import ir
from rescompile.spec.library import find_specs
from tests.keras_helpers import generated_model

pytest.importorskip("keras")
# Thousands of layers, or 68-127M parameters whose block kinds smaller specs cover: CI runs them with -m slow.
SLOW = ("resnet1202", "preact_resnet1001", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet101_2")
SLOW += ("resnext29_16x64d", "wide_resnet50_2", "wrn28_10", "resnet101", "resnet152", "resnet152v2")
SLOW += ("resnet50d_cifar10",)  # resnet50d under resnet50_cifar10's head: both run by default
SLOW += ("resnet101_v1.5", "resnet152_v1.5")  # resnet50_v1.5's blocks, deeper
SPECS = [
    pytest.param(path, marks=pytest.mark.slow) if path.stem in SLOW else path
    for path in find_specs([Path("specs")])
]


def _expected_shape(node: ir.Node, graph: ir.Graph) -> tuple:
    if graph.is_vector(node.name):
        return (None, node.shape[2])
    return (None, *node.shape)


@pytest.mark.parametrize("path", SPECS, ids=str)
def test_counts_and_shapes_agree_with_the_ir(path: Path) -> None:
    analysis, model = generated_model(str(path))
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    assert model.count_params() == analysis.cost.params_total
    assert trainable == analysis.cost.params
    layers = {layer.name: layer for layer in model.layers}
    for node in analysis.graph.nodes:
        assert node.name in layers, f"IR node {node.name} has no Keras layer"
        assert tuple(layers[node.name].output.shape) == _expected_shape(node, analysis.graph), node.name
    ir_names = {name for node in analysis.graph.nodes for name in node.layer_names()}
    assert set(layers) <= ir_names, f"Keras layers the IR does not name: {sorted(set(layers) - ir_names)}"
    weighted = {name for name, layer in layers.items() if layer.weights}
    se = {
        f"{n.name}_{part}"
        for n in analysis.graph.nodes
        if isinstance(n, ir.SqueezeExcite)
        for part in ("reduce", "expand")
    }
    assert weighted == se | {
        n.name for n in analysis.graph.nodes if isinstance(n, (ir.Conv, ir.BatchNorm, ir.Dense))
    }
