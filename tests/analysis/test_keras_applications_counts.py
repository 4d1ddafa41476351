"""The keras.applications-faithful specs count exactly what keras.applications builds."""

from __future__ import annotations

import pytest

from rescompile.analysis.analyze import analyze
from tests.reference import KERAS_APPS


@pytest.mark.parametrize("spec", sorted(KERAS_APPS))
def test_counts_equal_keras_applications(spec: str) -> None:
    keras = pytest.importorskip("keras")
    model = getattr(keras.applications, KERAS_APPS[spec])(weights=None)
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    cost = analyze(f"specs/keras/{spec}.yaml").cost
    assert cost.params_total == model.count_params()
    assert cost.params == trainable
    weighted = {layer.name for layer in model.layers if layer.weights}
    graph = analyze(f"specs/keras/{spec}.yaml").graph
    ours = {node.name for node in graph.nodes if type(node).__name__ in ("Conv", "BatchNorm", "Dense")}
    assert ours == weighted
