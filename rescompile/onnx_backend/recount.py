"""An independent recount of parameters and MACs from an ONNX graph (its nodes and initializers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rescompile.analysis.cost import Cost
from rescompile.errors import RescompileError

# Nodes that only move a tensor between layouts or precisions: weights are followed through
# them back to their initializer, and their outputs are no activations of the network.
PLUMBING = {"Identity", "Cast", "Transpose", "QuantizeLinear", "DequantizeLinear", "Dropout"}
# A node whose only consumer is the second node of a pair computes half of one IR node (the
# exporter writes a global pool as pool + Flatten, a dense layer with an activation as Gemm +
# activation, a zero-padded subsampling shortcut as MaxPool + Pad, a zero-padded max pool as
# Pad + MaxPool): the pair's activations are counted once, at its second node.
FIRST_OF_PAIR = {
    "GlobalAveragePool": {"Flatten"},
    "GlobalMaxPool": {"Flatten"},
    "Gemm": {"Relu", "Softmax", "Sigmoid", "Tanh"},
    "MaxPool": {"Pad"},
    "Pad": {"MaxPool"},
}


@dataclass(frozen=True)
class OnnxSpec:
    """Stands in for an Analysis' Spec in the table records: the network's name."""

    name: str


@dataclass
class OnnxCount:
    """Counts read off an ONNX file, shaped like an Analysis for the table templates.

    With `bn_folded`, the BatchNorm layers live in the convolutions' kernels and biases: the
    file has no BN parameters or statistics, a bias per folded convolution, and no activations
    of the BN outputs, so those columns differ from the spec's while weights, MACs and depth agree.
    """

    name: str
    path: str
    cost: Cost
    bn_folded: bool = False
    checks: list = field(default_factory=list)
    ok: bool = True

    @property
    def spec(self) -> OnnxSpec:
        """What `spec.name` gives for an Analysis."""
        return OnnxSpec(self.name)


def _shapes(model, path: Path) -> dict[str, list[int]]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:
        raise RescompileError(f"{path}: cannot infer the ONNX graph's shapes ({exc})") from None
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    return shapes


def _per_sample(shape: list[int] | None) -> int | None:
    """Elements of one sample of a tensor (its first axis is the batch), None when not static."""
    if not shape or any(d <= 0 for d in shape[1:]):
        return None
    return int(np.prod(shape[1:]))


class _Graph:
    """Initializer sizes, producers and consumers of one ONNX graph."""

    def __init__(self, model, path: Path) -> None:
        graph = model.graph
        self.path = path
        self.sizes = {init.name: int(np.prod(init.dims)) for init in graph.initializer}
        self.producer = {}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for output in node.output:
                self.producer[output] = node
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self.sizes[node.output[0]] = int(np.prod(attr.t.dims))

    def size(self, node, index: int) -> int:
        """Elements of a weight input: its initializer, followed back through DequantizeLinear
        (INT8 QDQ files), Cast, Transpose and the like."""
        if len(node.input) <= index or not node.input[index]:
            return 0
        name = node.input[index]
        seen = set()
        while name not in self.sizes:
            producer = self.producer.get(name)
            if producer is None or producer.op_type not in PLUMBING or name in seen:
                raise RescompileError(
                    f"{self.path}: {node.op_type} {node.name or node.output[0]}: input {index} "
                    f"({node.input[index]}) is not a weight stored in the file"
                )
            seen.add(name)
            name = producer.input[0]
        return self.sizes[name]

    def users(self, tensor: str) -> list:
        """The nodes that consume `tensor`, looking through PLUMBING nodes."""
        found = []
        for user in self.consumers.get(tensor, []):
            if user.op_type in PLUMBING:
                for output in user.output:
                    found.extend(self.users(output))
            else:
                found.append(user)
        return found

    def first_of_pair(self, node) -> bool:
        """True when `node` computes the first half of one IR node (see FIRST_OF_PAIR)."""
        seconds = FIRST_OF_PAIR.get(node.op_type)
        if not seconds or len(node.output) != 1:
            return False
        users = self.users(node.output[0])
        return len(users) == 1 and users[0].op_type in seconds


def _load(path: Path):
    import onnx

    if not path.is_file():
        raise RescompileError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise RescompileError(f"{path}: empty file, not an ONNX model")
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise RescompileError(f"{path}: not a loadable ONNX model ({exc})") from None
    if not model.graph.node:
        raise RescompileError(f"{path}: not an ONNX model with a graph (no nodes)")
    if not any(node.op_type in ("Conv", "Gemm") for node in model.graph.node):
        raise RescompileError(f"{path}: no Conv or Gemm node: nothing to count")
    return model


def recount(path: Path) -> OnnxCount:
    """Walk the ONNX graph: Conv, Gemm and BatchNormalization weights, Conv/Gemm MACs, depth
    (Conv and Gemm nodes except projection shortcuts, `<block>_0_conv`) and activations (the
    input and every node's output per sample, as rescompile.analysis.cost counts them per IR node).

    INT8 (QDQ) files count their int8 weights like float ones, followed back through
    DequantizeLinear; their Relu nodes are merged into the quantization, so fewer activations.
    """
    path = Path(path)
    model = _load(path)
    graph = _Graph(model, path)
    shapes = _shapes(model, path)
    initializers = set(graph.sizes)
    totals = dict(weights=0, bn_params=0, conv_bias=0, bn_stats=0, macs=0, activations=0, depth=0)
    for value in model.graph.input:
        if value.name not in initializers:
            totals["activations"] += _per_sample(shapes.get(value.name)) or 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            kernel = graph.size(node, 1)
            output = shapes.get(node.output[0])
            if not output or len(output) < 3 or any(d <= 0 for d in output[2:]):
                raise RescompileError(f"{path}: Conv {node.name or node.output[0]}: output shape unknown")
            totals["weights"] += kernel
            totals["conv_bias"] += graph.size(node, 2)
            totals["macs"] += int(np.prod(output[2:])) * kernel
        elif node.op_type == "Gemm":
            totals["weights"] += graph.size(node, 1) + graph.size(node, 2)
            totals["macs"] += graph.size(node, 1)
        elif node.op_type == "BatchNormalization":
            totals["bn_params"] += graph.size(node, 1) + graph.size(node, 2)
            totals["bn_stats"] += graph.size(node, 3) + graph.size(node, 4)
        if node.op_type in ("Conv", "Gemm") and "_0_conv" not in node.name:
            totals["depth"] += 1
        if node.op_type not in PLUMBING and node.op_type != "Constant" and not graph.first_of_pair(node):
            totals["activations"] += sum(_per_sample(shapes.get(output)) or 0 for output in node.output)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    if "bn_folded" in metadata:
        folded = metadata["bn_folded"].strip().lower() == "true"
    else:
        folded = not any(node.op_type == "BatchNormalization" for node in model.graph.node)
    name = model.graph.name or metadata.get("spec_name") or path.stem
    return OnnxCount(name, str(path), Cost(**totals), bn_folded=folded)
