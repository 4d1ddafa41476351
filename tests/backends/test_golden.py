"""Golden outputs of the two printers for one small in-memory graph: the Keras module text and the
ONNX graph's listing, compared line by line before `generate` or any model build runs, so a
printer change shows as a readable diff. RESCOMPILE_UPDATE_GOLDEN=1 rewrites the files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx

from rescompile import ir
from rescompile.ir.network import Network, compile_network
from rescompile.ir.weights import WeightStore
from rescompile.keras_backend.printer import render_keras
from rescompile.onnx_backend.emit import ExportOptions, export_onnx
from rescompile.spec.schema import Spec

GOLDEN = Path(__file__).parent / "golden"
TINY = {  # a padded strided conv, a projection, SE, ECA, drop-path, dense
    "name": "tiny",
    "source": "a golden test of the printers",
    "input": {"size": 16, "channels": 3},
    "stem": [{"conv": [3, 8], "stride": 1}],
    "stages": [
        {"name": "s1", "output": 16, "block": [[3, 8], [3, 8]], "repeat": 1},
        {"name": "s2", "output": 8, "block": [[3, 16], [3, 16]], "repeat": 2},
    ],
    "head": {"pool": "avg", "classes": 5},
    "options": {
        "residual": "post-activation",
        "shortcut": "B",
        "se": {"ratio": 4},
        "eca": {"kernel": 3},
        "stochastic_depth": {"survival": 0.8},
    },
}


def _network() -> Network:
    return compile_network(Spec.model_validate(TINY))


def _store(graph: ir.Graph) -> WeightStore:
    """Weights of the store's shapes (a listing shows their shapes only)."""
    return {
        node.name: {part: np.ones(shape, np.float32) for part, shape in graph.weight_shapes(node).items()}
        for node in graph.nodes
    }


def _listing(model: onnx.ModelProto) -> str:
    """One line per ONNX node (op, name, inputs, attributes) and per initializer (name, shape)."""
    lines = []
    for node in model.graph.node:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        lines.append(f"{node.op_type} {node.name} <- {', '.join(node.input)} {attributes or ''}".rstrip())
    lines += [f"initializer {init.name} {list(init.dims)}" for init in model.graph.initializer]
    lines += [f"output {out.name}" for out in model.graph.output]
    return "\n".join(lines) + "\n"


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("RESCOMPILE_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{name} changed: RESCOMPILE_UPDATE_GOLDEN=1 rewrites it"


def test_the_keras_printer_writes_the_golden_module() -> None:
    _check("tiny_module.py.txt", render_keras(_network().whole, "tiny"))


def test_the_onnx_emitter_writes_the_golden_graph() -> None:
    network = _network()
    model = export_onnx(network, _store(network.graph), ExportOptions())
    _check("tiny_onnx.txt", _listing(model))
