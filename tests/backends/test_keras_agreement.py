"""Every library spec: the generated Keras model agrees with the IR, parameter for parameter."""

from __future__ import annotations

from pathlib import Path

import pytest

from rescompile import ir
from rescompile.keras_backend.weights import keras_layers
from tests.keras_helpers import generated_model
from tests.library_cover import library_params

pytest.importorskip("keras")
SPECS = library_params()  # the specs that cover every printed part by default, the rest with -m slow


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
    assert set(layers) == ir_names, f"named by one side only: {sorted(set(layers) ^ ir_names)}"
    weighted = {name for name, layer in layers.items() if layer.weights}
    assert weighted == {
        layer for node in analysis.graph.nodes for layer, _ in keras_layers(node, analysis.graph)
    }
