"""An independent recount of parameters and MACs from an ONNX graph (its nodes and initializers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rescompile.cost import Cost
from rescompile.errors import RescompileError


@dataclass
class OnnxCount:
    """Counts read off an ONNX file, shaped like an Analysis for the table templates."""

    name: str
    cost: Cost
    checks: list = field(default_factory=list)
    ok: bool = True


def _shapes(model) -> dict[str, list[int]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    return shapes


def recount(path: Path) -> OnnxCount:
    """Walk the ONNX graph: Conv, Gemm and BatchNormalization weights, and Conv/Gemm MACs."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise RescompileError(f"{path}: not a loadable ONNX model ({exc})") from None
    sizes = {init.name: int(np.prod(init.dims)) for init in model.graph.initializer}
    shapes = _shapes(model)
    totals = dict(weights=0, bn_params=0, conv_bias=0, bn_stats=0, macs=0)
    for node in model.graph.node:
        if node.op_type == "Conv":
            kernel = sizes[node.input[1]]
            _, _, height, width = shapes[node.output[0]]
            totals["weights"] += kernel
            totals["conv_bias"] += sizes[node.input[2]] if len(node.input) > 2 else 0
            totals["macs"] += height * width * kernel
        elif node.op_type == "Gemm":
            totals["weights"] += sizes[node.input[1]] + (sizes[node.input[2]] if len(node.input) > 2 else 0)
            totals["macs"] += sizes[node.input[1]]
        elif node.op_type == "BatchNormalization":
            totals["bn_params"] += sizes[node.input[1]] + sizes[node.input[2]]
            totals["bn_stats"] += sizes[node.input[3]] + sizes[node.input[4]]
    return OnnxCount(model.graph.name or path.stem, Cost(**totals))
