"""A Keras model's weights as a store keyed by IR node (ir/weights.py), and back: each weighted
IR op's Keras layers and the store parts they hold, in Keras' weight order."""

from __future__ import annotations

import numpy as np

from rescompile import ir
from rescompile.ir.weights import WeightStore
from rescompile.keras_backend.printer import KERAS_OPS


def keras_layers(node: ir.Node, graph: ir.Graph) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The Keras layers that hold node `node`'s weights, each with the store parts it holds (in
    Keras' weight order): the sublayers its KERAS_OPS entry names, else the node's own layer."""
    sublayers = KERAS_OPS[type(node)].weight_layers
    if sublayers:
        return tuple((node.name + suffix, parts) for suffix, parts in sublayers)
    parts = tuple(graph.weight_shapes(node))
    return ((node.name, parts),) if parts else ()


def weight_store(model, graph: ir.Graph) -> WeightStore:
    """The weights of a Keras model built from `graph`, keyed by IR node."""
    layers = {layer.name: layer for layer in model.layers}
    store: WeightStore = {}
    for node in graph.nodes:
        for layer, names in keras_layers(node, graph):
            arrays = [np.asarray(weight) for weight in layers[layer].get_weights()]
            store.setdefault(node.name, {}).update(zip(names, arrays, strict=True))
    return store


def layer_weights(store: WeightStore, graph: ir.Graph) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> its weight list, for the nodes of `graph` the store holds whole."""
    weights = {}
    for node in graph.nodes:
        held = store.get(node.name, {})
        for layer, names in keras_layers(node, graph):
            if all(name in held for name in names):
                weights[layer] = [held[name] for name in names]
    return weights
