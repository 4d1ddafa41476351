"""An independent recount of parameters and MACs from an ONNX graph (its nodes and initializers)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from rescompile.analysis.analyze import analyze_record
from rescompile.analysis.cost import Cost
from rescompile.errors import RescompileError
from rescompile.fileio import refuse_non_onnx
from rescompile.onnx_backend.emit import ONNX_OPS

# Nodes that only move a tensor between layouts or precisions: weights are followed through
# them back to their initializer, and their outputs are no activations of the network.
PLUMBING = {"Identity", "Cast", "Transpose", "QuantizeLinear", "DequantizeLinear", "Dropout"}


# A node whose only consumer is the second node of a pair computes half of one IR node (the
# emitter's pairs, ONNX_OPS: a global pool as pool + Flatten, a dense layer with an activation as
# Gemm + activation, a zero-padded subsampling shortcut as MaxPool + Pad, a zero-padded max pool as
# Pad + MaxPool; other exporters' dense activations too): the pair's activations are counted once,
# at its second node.
def _pairs() -> dict[str, frozenset[str]]:
    pairs = {"Gemm": frozenset({"Sigmoid", "Tanh"})}
    for op in ONNX_OPS.values():
        for first, seconds in op.pairs.items():
            pairs[first] = pairs.get(first, frozenset()) | seconds
    return pairs


FIRST_OF_PAIR = _pairs()
# The weighted layers: depth counts them on the longest path from the input to an output.
WEIGHTED = {"Conv", "Gemm", "MatMul"}


@dataclass
class OnnxCount:
    """Counts read off an ONNX file, for the cost tables as an Analysis is (name, path, cost, checks).

    With `bn_folded`, the BatchNorm layers live in the convolutions' kernels and biases: the
    file has no BN parameters or statistics, a bias per folded convolution, and no activations
    of the BN outputs, so those columns differ from the spec's while weights, MACs and depth agree.
    `inferred`: the file does not say whether it folded BN (no `bn_folded` metadata), the graph
    suggests it (no BatchNormalization node, a bias on every convolution). `reference`: the IR's
    cost of the spec the file carries in its `rescompile` record (None without one, or, with
    `reference_error` saying why, when that spec cannot be analysed).
    """

    name: str
    path: str
    cost: Cost
    bn_folded: bool = False
    inferred: bool = False
    reference: Cost | None = None
    reference_error: str = ""
    checks: list = field(default_factory=list)
    ok: bool = True

    @property
    def notes(self) -> list[str]:
        """How these counts differ from the spec's, one sentence each (none when they agree)."""
        notes = [_folding_note(self)] if self.bn_folded else []
        if self.reference is not None:
            notes += _difference_notes(self.cost, self.reference)
        return notes


def _folding_note(count: OnnxCount) -> str:
    """BN folded into the convolutions, and what that costs the params columns."""
    if count.inferred:
        return (
            "no BatchNormalization node and a bias on every convolution: BN, if the network had any, "
            "is folded into them, and params counts the folded weights"
        )
    note = "BN folded into the convolutions: params counts the folded weights"
    reference = count.reference
    if reference is None:
        why = count.reference_error or "the file carries no rescompile record"
        return f"{note} (not compared with the Keras model: {why})"
    return (
        f"{note}, {reference.params - count.cost.params:,} fewer than the Keras model's {reference.params:,} "
        f"(params (Keras): {reference.params_total - count.cost.params_total:,} fewer than its "
        f"{reference.params_total:,}, BN statistics included)"
    )


def _difference_notes(cost: Cost, reference: Cost) -> list[str]:
    """Activations, and any of weights, MACs and depth, that differ from the IR's count."""
    notes = []
    fewer = reference.activations - cost.activations
    if fewer > 0:
        notes.append(
            f"activations {fewer:,} fewer than the IR's {reference.activations:,} (layers without an "
            "ONNX node of their own have no outputs to count: folded BN, Dropout, ReLU fused into INT8 "
            "quantization)"
        )
    elif fewer < 0:
        notes.append(f"activations {-fewer:,} more than the IR's {reference.activations:,}")
    for column in ("weights", "macs", "depth"):
        counted, expected = getattr(cost, column), getattr(reference, column)
        if counted != expected:
            notes.append(f"{column}: {counted:,} counted, {expected:,} by the spec the file carries")
    return notes


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
        known = {"", *self.sizes, *(value.name for value in graph.input)}
        for node in graph.node:
            missing = [name for name in node.input if name not in known]
            if missing:
                raise RescompileError(
                    f"{path}: {node.op_type} {node.name or node.output[0]} reads {missing[0]} before any node"
                    " computes it (the graph is not in topological order, or has a cycle)"
                )
            known.update(node.output)
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
        """The nodes that consume `tensor`, looking through PLUMBING nodes (iteratively: a chain
        of thousands of them, or a cycle, is walked once)."""
        found, pending, seen = [], [tensor], {tensor}
        while pending:
            for user in self.consumers.get(pending.pop(), []):
                if user.op_type not in PLUMBING:
                    found.append(user)
                    continue
                fresh = [output for output in user.output if output not in seen]
                seen.update(fresh)
                pending.extend(fresh)
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
    refuse_non_onnx(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise RescompileError(f"{path}: not a loadable ONNX model ({exc})") from None
    if not model.graph.node:
        raise RescompileError(f"{path}: not an ONNX model with a graph (no nodes)")
    if not any(node.op_type in ("Conv", "Gemm") for node in model.graph.node):
        raise RescompileError(f"{path}: no Conv or Gemm node: nothing to count")
    return model


def _layer_cost(node, graph: _Graph, shapes: dict[str, list[int]]) -> Cost:
    """Weights and MACs of a Conv or Gemm node, parameters and statistics of a BatchNormalization."""
    if node.op_type == "Conv":
        kernel = graph.size(node, 1)
        output = shapes.get(node.output[0])
        if not output or len(output) < 3 or any(d <= 0 for d in output[2:]):
            raise RescompileError(f"{graph.path}: Conv {node.name or node.output[0]}: output shape unknown")
        return Cost(weights=kernel, conv_bias=graph.size(node, 2), macs=int(np.prod(output[2:])) * kernel)
    if node.op_type == "Gemm":
        return Cost(weights=graph.size(node, 1) + graph.size(node, 2), macs=graph.size(node, 1))
    if node.op_type == "BatchNormalization":
        return Cost(
            bn_params=graph.size(node, 1) + graph.size(node, 2),
            bn_stats=graph.size(node, 3) + graph.size(node, 4),
        )
    return Cost()


def _activations(model, graph: _Graph, shapes: dict[str, list[int]]) -> int:
    """Values per sample of the image input and of every node's outputs, a pair of nodes that
    computes one IR node (FIRST_OF_PAIR) counted once, layout and precision plumbing not at all."""
    total = sum(
        _per_sample(shapes.get(value.name)) or 0
        for value in model.graph.input
        if value.name not in graph.sizes
    )
    for node in model.graph.node:
        if node.op_type not in PLUMBING and node.op_type != "Constant" and not graph.first_of_pair(node):
            total += sum(_per_sample(shapes.get(output)) or 0 for output in node.output)
    return total


def _depth(model) -> int:
    """Weighted layers (WEIGHTED: Conv, Gemm, MatMul) on the longest path from an input to an
    output: a projection shortcut, parallel to its block's longer branch, adds nothing, as in the IR."""
    depth: dict[str, int] = {}
    gates = {output for node in model.graph.node if node.op_type == "Sigmoid" for output in node.output}
    for node in model.graph.node:  # ONNX stores nodes in topological order
        inputs = [name for name in node.input if name]
        if node.op_type == "Mul" and any(name in gates for name in inputs):
            inputs = [name for name in inputs if name not in gates]  # an SE gate scales, adds no depth
        here = max((depth.get(name, 0) for name in inputs), default=0)
        here += node.op_type in WEIGHTED
        depth.update(dict.fromkeys(node.output, here))
    return max((depth.get(value.name, 0) for value in model.graph.output), default=0)


def _reference(metadata: dict[str, str], path: Path) -> tuple[Cost | None, str]:
    """The IR's cost of the spec in the file's `rescompile` record, at the input, classifier and
    outputs it was exported with; (None, why) when it cannot be analysed, (None, "") without one."""
    if "rescompile" not in metadata:
        return None, ""
    from rescompile.spec.artifact import record_from_text

    try:
        return analyze_record(record_from_text(metadata["rescompile"], str(path)), path).cost, ""
    except RescompileError as exc:
        return None, str(exc)


def _bn_folded(model, metadata: dict[str, str], cost: Cost, reference: Cost | None) -> tuple[bool, bool]:
    """(folded, inferred): whether BatchNorm lives in the convolutions. The record's spec says
    for certain (it has BN parameters the file lacks), else the `bn_folded` metadata; a file with
    neither is taken as folded when it has no BatchNormalization node and a bias on every Conv."""
    if reference is not None:
        return reference.bn_params > cost.bn_params, False
    if "bn_folded" in metadata:
        return metadata["bn_folded"].strip().lower() == "true", False
    nodes = model.graph.node
    convs = [node for node in nodes if node.op_type == "Conv"]
    has_bn = any(node.op_type == "BatchNormalization" for node in nodes)
    folded = bool(convs) and not has_bn and all(len(node.input) > 2 and node.input[2] for node in convs)
    return folded, folded


def recount(path: Path) -> OnnxCount:
    """Walk the ONNX graph: Conv, Gemm and BatchNormalization weights, Conv/Gemm MACs, depth
    (Conv, Gemm and MatMul nodes on the longest input-output path) and activations (the input and
    every node's output per sample, as rescompile.analysis.cost counts them per IR node), and,
    where the file carries its rescompile record, the IR's cost of its spec to compare with.

    Activations differ from the IR's where an IR node has no ONNX node of its own: a BatchNorm
    folded into its convolution, a Dropout (identity at inference), and in INT8 (QDQ) files a
    ReLU merged into the quantization. INT8 files count their int8 weights like float ones,
    followed back through DequantizeLinear.
    """
    path = Path(path)
    model = _load(path)
    graph = _Graph(model, path)
    shapes = _shapes(model, path)
    cost = sum((_layer_cost(node, graph, shapes) for node in model.graph.node), Cost())
    cost = replace(cost, activations=_activations(model, graph, shapes), depth=_depth(model))
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    reference, error = _reference(metadata, path)
    folded, inferred = _bn_folded(model, metadata, cost, reference)
    name = model.graph.name or metadata.get("spec_name") or path.stem
    return OnnxCount(name, str(path), cost, folded, inferred, reference, error)
