"""The ONNX emitter: IR + trained Keras weights -> a clean NCHW onnx.ModelProto (no tf2onnx).

Convolutions absorb the BatchNorm that follows them (by default); BatchNorm layers that follow an
add or the stem (pre-activation units) stay BatchNormalization nodes. The NHWC input is
transposed once; a dynamic batch dimension; opset 17.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rescompile import __version__, ir
from rescompile.ir.network import Network
from rescompile.ir.weights import WeightStore
from rescompile.spec.artifact import ModelRecord
from rescompile.spec.preprocessing import Preprocessing
from rescompile.spec.schema import Spec

OPSET = 17
PRODUCER = "rescompile"


@dataclass
class ExportOptions:
    """How to export: BN folding, input layout, precision, and which IR nodes are outputs."""

    fold_bn: bool = True
    layout: str = "nhwc"
    fp16: bool = False
    outputs: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    preprocess: Preprocessing | None = None  # replaces the spec's (e.g. the per-pixel mean a run computed)
    record: ModelRecord | None = None  # what the model file carries, stored in the metadata


def stamp(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Sign `model` as rescompile's (producer name and version) and set `metadata`'s entries,
    keeping the entries it already has under other keys."""
    model.producer_name = PRODUCER
    model.producer_version = __version__
    entries = {prop.key: prop.value for prop in model.metadata_props}
    helper.set_model_props(model, entries | metadata)


def spec_hash(spec: Spec) -> str:
    """A stable hash of the validated spec (what the network is, not how the YAML was written)."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class _Emitter:
    def __init__(self, graph: ir.Graph, weights: WeightStore, options: ExportOptions) -> None:
        self.graph = graph
        self.weights = weights
        self.options = options
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.tensor_of: dict[str, str] = {}
        self.consumers: dict[str, list[ir.Node]] = {}
        for node in graph.nodes:
            for name in node.inputs:
                self.consumers.setdefault(name, []).append(node)
        self.float = np.float16 if options.fp16 else np.float32
        # Vectors flattened from NCHW maps hold Keras' NHWC-ordered features permuted:
        # onnx_vector[i] == keras_vector[order[name][i]]; weights that read them are permuted alike.
        self.order: dict[str, np.ndarray] = {}

    def constant(self, name: str, value: np.ndarray, keep_float32: bool = False) -> str:
        dtype = value.dtype if value.dtype.kind != "f" or keep_float32 else self.float
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value.astype(dtype)), name))
        return name

    def emit(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def source(self, node: ir.Node, index: int = 0) -> str:
        return self.tensor_of[node.inputs[index]]

    def folded_bn(self, conv: ir.Conv) -> ir.BatchNorm | None:
        """The BatchNorm this conv absorbs: its only consumer, when folding is on."""
        users = self.consumers.get(conv.name, [])
        if self.options.fold_bn and len(users) == 1 and isinstance(users[0], ir.BatchNorm):
            return users[0]
        return None

    def conv(self, node: ir.Conv) -> str:
        weights = self.weights[node.name]
        kernel = weights["kernel"].transpose(3, 2, 0, 1).astype(np.float64)  # HWIO -> OIHW
        bias = weights["bias"].astype(np.float64) if node.bias else np.zeros(node.filters)
        bn = self.folded_bn(node)
        if bn is not None:
            gamma, beta, mean, var = (a.astype(np.float64) for a in self.bn_arrays(bn))
            scale = gamma / np.sqrt(var + bn.epsilon)
            kernel = kernel * scale[:, None, None, None]
            bias = (bias - mean) * scale + beta
        inputs = [self.source(node), self.constant(f"{node.name}.weight", kernel)]
        if node.bias or bn is not None:
            inputs.append(self.constant(f"{node.name}.bias", bias))
        out = self.emit(
            "Conv",
            inputs,
            node.name,
            kernel_shape=[node.kernel, node.kernel],
            strides=[node.stride, node.stride],
            pads=[node.pad] * 4,
            group=node.groups,
        )
        if bn is not None:
            self.tensor_of[bn.name] = out
        return out

    def bn_arrays(self, node: ir.BatchNorm) -> list[np.ndarray]:
        weights = self.weights[node.name]
        return [weights[part] for part in ("gamma", "beta", "mean", "var")]

    def batch_norm(self, node: ir.BatchNorm) -> str:
        order = self.order.get(node.inputs[0])
        arrays = self.bn_arrays(node)
        gamma, beta, mean, var = (a[order] for a in arrays) if order is not None else arrays
        if order is not None:  # the output keeps its input's feature order
            self.order[node.name] = order
        names = [
            self.constant(f"{node.name}.{part}", a)
            for part, a in zip(("scale", "bias", "mean", "var"), (gamma, beta, mean, var), strict=True)
        ]
        return self.emit("BatchNormalization", [self.source(node), *names], node.name, epsilon=node.epsilon)

    def max_pool(self, node: ir.MaxPool) -> str:
        x = self.source(node)
        producer = self.graph.node(node.inputs[0])
        pads = [node.pad] * 4
        if node.pad and not isinstance(producer, ir.ReLU):
            # The IR pads with zeros (as Keras' ZeroPadding2D does); ONNX MaxPool pads with -inf.
            pad_values = np.array([0, 0, node.pad, node.pad, 0, 0, node.pad, node.pad], dtype=np.int64)
            x = self.emit("Pad", [x, self.constant(f"{node.name}.pads", pad_values)], f"{node.name}_zero_pad")
            pads = [0] * 4
        return self.emit(
            "MaxPool", [x], node.name, kernel_shape=[node.size] * 2, strides=[node.stride] * 2, pads=pads
        )

    def zero_pad_shortcut(self, node: ir.ZeroPadShortcut) -> str:
        x = self.emit(
            "MaxPool",
            [self.source(node)],
            f"{node.name}_subsample",
            kernel_shape=[1, 1],
            strides=[node.stride] * 2,
        )
        pads = np.array([0, 0, 0, 0, 0, node.extra_channels, 0, 0], dtype=np.int64)
        return self.emit("Pad", [x, self.constant(f"{node.name}.pads", pads)], node.name)

    def dense(self, node: ir.Dense) -> str:
        kernel, bias = self.weights[node.name]["kernel"], self.weights[node.name]["bias"]
        order = self.order.get(node.inputs[0])
        if order is not None:
            kernel = kernel[order]
        inputs = [
            self.source(node),
            self.constant(f"{node.name}.weight", kernel),
            self.constant(f"{node.name}.bias", bias),
        ]
        if node.activation == "linear":
            return self.emit("Gemm", inputs, node.name)
        out = self.emit("Gemm", inputs, f"{node.name}_linear")
        if node.activation == "relu":
            return self.emit("Relu", [out], node.name)
        return self.emit("Softmax", [out], node.name, axis=-1)

    def flatten(self, node: ir.Flatten) -> str:
        height, width, channels = self.graph.node(node.inputs[0]).shape
        # ONNX flattens (C, H, W); Keras flattened (H, W, C): record where each feature came from.
        keras_index = np.arange(height * width * channels).reshape(height, width, channels)
        self.order[node.name] = keras_index.transpose(2, 0, 1).reshape(-1)
        return self.emit("Flatten", [self.source(node)], node.name, axis=1)

    def upsample(self, node: ir.Upsample) -> str:
        scales = np.array([1, 1, node.factor, node.factor], dtype=np.float32)
        return self.emit(
            "Resize",
            [self.source(node), "", self.constant(f"{node.name}.scales", scales, keep_float32=True)],
            node.name,
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )

    def squeeze_excite(self, node: ir.SqueezeExcite) -> str:
        x = self.source(node)
        s = self.emit("GlobalAveragePool", [x], f"{node.name}_squeeze")
        weights = self.weights[node.name]
        for part, activation in (("reduce", "Relu"), ("expand", "Sigmoid")):
            kernel, bias = weights[f"{part}_kernel"], weights[f"{part}_bias"]
            weight = self.constant(f"{node.name}_{part}.weight", kernel.transpose(3, 2, 0, 1))
            s = self.emit(
                "Conv", [s, weight, self.constant(f"{node.name}_{part}.bias", bias)], f"{node.name}_{part}"
            )
            s = self.emit(activation, [s], f"{node.name}_{part}_{activation.lower()}")
        return self.emit("Mul", [x, s], node.name)

    def channel_attention(self, node: ir.ChannelAttention) -> str:
        """Pooled (N, C, 1, 1), turned to (N, 1, 1, C) for a (1, k) convolution across channels,
        turned back and gated."""
        x = self.source(node)
        pooled = self.emit("GlobalAveragePool", [x], f"{node.name}_squeeze")
        row = self.emit("Transpose", [pooled], f"{node.name}_sequence", perm=[0, 2, 3, 1])
        kernel = self.weights[node.name]["kernel"].reshape(1, 1, 1, node.kernel)
        half = node.kernel // 2
        conv = self.emit(
            "Conv",
            [row, self.constant(f"{node.name}_conv.weight", kernel)],
            f"{node.name}_conv",
            kernel_shape=[1, node.kernel],
            pads=[0, half, 0, half],
        )
        column = self.emit("Transpose", [conv], f"{node.name}_gate", perm=[0, 3, 1, 2])
        gate = self.emit("Sigmoid", [column], f"{node.name}_sigmoid")
        return self.emit("Mul", [x, gate], node.name)

    def relu(self, node: ir.ReLU) -> str:
        return self.emit("Relu", [self.source(node)], node.name)

    def add(self, node: ir.Add) -> str:
        return self.emit("Add", [self.source(node, 0), self.source(node, 1)], node.name)

    def avg_pool(self, node: ir.AvgPool) -> str:
        size = [node.size] * 2
        return self.emit(
            "AveragePool", [self.source(node)], node.name, kernel_shape=size, strides=size, ceil_mode=1
        )  # count_include_pad defaults to 0: the clipped window's mean, as Keras' "same"

    def identity(self, node: ir.Dropout | ir.DropPath) -> str:
        """An op that is the identity at inference: its input, in its input's feature order."""
        if node.inputs[0] in self.order:
            self.order[node.name] = self.order[node.inputs[0]]
        return self.source(node)

    def global_pool(self, node: ir.GlobalPool) -> str:
        op = "GlobalAveragePool" if node.mode == "avg" else "GlobalMaxPool"
        pooled = self.emit(op, [self.source(node)], f"{node.name}_4d")
        return self.emit("Flatten", [pooled], node.name, axis=1)

    def node(self, node: ir.Node) -> None:
        if node.name in self.tensor_of:  # a BatchNorm folded into its conv
            return
        if node.stage == "head" and self.float is np.float16:
            # The head is cheap and its pooled/flattened features are sensitive: run it in float32.
            source = node.inputs[0]
            self.tensor_of[source] = self.emit(
                "Cast", [self.tensor_of[source]], f"{source}_fp32", to=TensorProto.FLOAT
            )
            self.float = np.float32
        out = ONNX_OPS[type(node)].emit(self, node)
        self.tensor_of[node.name] = out

    def input(self) -> onnx.ValueInfoProto:
        height, width, channels = self.graph.input.shape
        nhwc = self.options.layout == "nhwc"
        shape = ["batch", height, width, channels] if nhwc else ["batch", channels, height, width]
        x = "input"
        if nhwc:
            x = self.emit("Transpose", [x], "input_nchw", perm=[0, 3, 1, 2])
        if self.options.fp16:
            x = self.emit("Cast", [x], "input_fp16", to=TensorProto.FLOAT16)
        self.tensor_of["input"] = x
        return helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)

    def output(self, name: str) -> onnx.ValueInfoProto:
        node = self.graph.node(name)
        tensor = self.tensor_of[name]
        if self.options.fp16 and node.stage != "head":
            tensor = self.emit("Cast", [tensor], f"{name}_fp32", to=TensorProto.FLOAT)
        final = self.emit("Identity", [tensor], f"output_{name}")
        shape = (
            ["batch", node.shape[2]]
            if self.graph.is_vector(name)
            else ["batch", node.shape[2], *node.shape[:2]]
        )
        return helper.make_tensor_value_info(final, TensorProto.FLOAT, shape)


@dataclass(frozen=True)
class OnnxOp:
    """How one IR op becomes ONNX nodes: its emitter method, and the pairs of ONNX ops it writes
    for one IR node (first op -> the ops that may follow it), which the recount counts once."""

    emit: Callable[[_Emitter, ir.Node], str]
    pairs: dict[str, frozenset[str]] = field(default_factory=dict)


ONNX_OPS: dict[type[ir.Node], OnnxOp] = {
    ir.Input: OnnxOp(lambda emitter, node: "input"),  # the graph input (see _Emitter.input)
    ir.Conv: OnnxOp(_Emitter.conv),
    ir.BatchNorm: OnnxOp(_Emitter.batch_norm),
    ir.ReLU: OnnxOp(_Emitter.relu),
    ir.Add: OnnxOp(_Emitter.add),
    ir.MaxPool: OnnxOp(_Emitter.max_pool, {"Pad": frozenset({"MaxPool"})}),
    ir.ZeroPadShortcut: OnnxOp(_Emitter.zero_pad_shortcut, {"MaxPool": frozenset({"Pad"})}),
    ir.AvgPool: OnnxOp(_Emitter.avg_pool),
    ir.Upsample: OnnxOp(_Emitter.upsample),
    ir.SqueezeExcite: OnnxOp(_Emitter.squeeze_excite),
    ir.ChannelAttention: OnnxOp(_Emitter.channel_attention),
    ir.DropPath: OnnxOp(_Emitter.identity),
    ir.Flatten: OnnxOp(_Emitter.flatten),
    ir.Dropout: OnnxOp(_Emitter.identity),
    ir.GlobalPool: OnnxOp(
        _Emitter.global_pool,
        {"GlobalAveragePool": frozenset({"Flatten"}), "GlobalMaxPool": frozenset({"Flatten"})},
    ),
    ir.Dense: OnnxOp(_Emitter.dense, {"Gemm": frozenset({"Relu", "Softmax"})}),
}
"""The ONNX entry of each IR op (the registry: tests/ir/test_op_registry.py checks every node class
has one)."""


def export_onnx(network: Network, weights: WeightStore, options: ExportOptions) -> onnx.ModelProto:
    """Build the ONNX model of the compiled network's graph with `weights` (keyed by IR node)."""
    spec, graph = network.spec, network.graph
    emitter = _Emitter(graph, weights, options)
    graph_input = emitter.input()
    for node in graph.nodes[1:]:
        emitter.node(node)
    output_names = options.outputs or list(graph.outputs.values())
    outputs = [emitter.output(name) for name in output_names]
    onnx_graph = helper.make_graph(emitter.nodes, spec.name, [graph_input], outputs, emitter.initializers)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    metadata = {
        "spec_name": spec.name,
        "spec_hash": spec_hash(spec),
        "source": graph.facts.source,
        "input_size": str(graph.input.shape[0]),
        "input_channels": str(graph.input.shape[2]),
        "layout": options.layout,
        "precision": "float16" if options.fp16 else "float32",
        "preprocess": (options.preprocess or graph.facts.preprocess).as_json(),
        "class_names": json.dumps(options.class_names),
        "bn_folded": str(options.fold_bn).lower(),
    }
    if options.record is not None:
        metadata["rescompile"] = options.record.model_dump_json()
    stamp(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model
