"""The state-dict keys of a torchvision or timm ResNet, derived from the IR: each node's role (stem
conv, a block's row conv or its BN, the projection shortcut, the squeeze-excitation convs, the
classifier) gives its module path, whatever the network. Shapes are torch's layouts."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from rescompile import ir

Convention = Literal["torchvision", "timm"]
CONVENTIONS: tuple[Convention, ...] = ("torchvision", "timm")
TORCH_BN_EPSILON = 1e-5
"""torch.nn.BatchNorm2d's default, which torchvision's and timm's ResNets keep."""

BN_FIELDS = ("weight", "bias", "running_mean", "running_var")
BN_PARTS = ("gamma", "beta", "mean", "var")
"""A BatchNorm's tensors and the store parts they fill."""
IGNORED = "num_batches_tracked"
"""A BatchNorm's step counter: no part of the function."""


@dataclass(frozen=True)
class Param:
    """One tensor of the state dict: its key and its shape in torch's layout."""

    key: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class NodeParams:
    """The tensors of one IR node, each with the weight-store part it fills (ir/weights.py)."""

    node: str
    params: tuple[Param, ...]
    parts: tuple[str, ...]
    head: bool


class NamingError(ValueError):
    """The network has a part that the convention's ResNet does not have."""


def detect(keys: list[str]) -> Convention:
    """timm where the keys show a part only timm's ResNet names (a deep stem, squeeze-excitation,
    an average-pool downsample); otherwise torchvision (whose names timm shares)."""
    pattern = re.compile(r"^conv1\.\d+\.|\.se\.fc1\.|\.downsample\.2\.")
    return "timm" if any(pattern.search(key) for key in keys) else "torchvision"


def node_params(graph: ir.Graph, convention: Convention) -> list[NodeParams]:
    """The state-dict tensors of every node of `graph` with weights. Head nodes that the
    convention does not name (a head of the spec's own) have none: they are new."""
    namer = _Namer(graph, convention)
    return [found for node in graph.nodes if (found := namer.params(node)) is not None]


def unused_prefixes(graph: ir.Graph) -> tuple[str, ...]:
    """Key prefixes of the parts of a full network that `graph` leaves out (later stages when it
    ends at stage outputs, the classifier when it has none or its own): their keys are unused,
    not unexpected."""
    present = {node.stage for node in graph.nodes}
    prefixes = [
        f"layer{index}." for index, plan in enumerate(graph.stages, start=1) if plan.name not in present
    ]
    if not any(isinstance(node, ir.Dense) and _is_classifier(graph, node) for node in graph.nodes):
        prefixes.append("fc.")
    return tuple(prefixes)


def _is_classifier(graph: ir.Graph, node: ir.Dense) -> bool:
    return node.name == "predictions" and isinstance(graph.node(node.inputs[0]), ir.GlobalPool)


class _Namer:
    """Module paths of the nodes of one graph under one convention."""

    def __init__(self, graph: ir.Graph, convention: Convention) -> None:
        self.graph = graph
        self.convention = convention
        self.stem_convs = [n.name for n in graph.nodes if isinstance(n, ir.Conv) and n.stage == "stem"]
        self.stage_index = {plan.name: index for index, plan in enumerate(graph.stages, start=1)}
        self.avg_down = any(isinstance(node, ir.AvgPool) for node in graph.nodes)
        if convention == "torchvision":
            if len(self.stem_convs) > 1:
                self._lacks(f"deep stem ({len(self.stem_convs)} convolutions)")
            if self.avg_down:
                self._lacks("average-pool downsampling (ResNet-D)")

    def _lacks(self, part: str) -> None:
        advice = " (timm's has: --weights-format timm)" if self.convention == "torchvision" else ""
        raise NamingError(f"{self.convention}'s ResNet has no {part}{advice}")

    def params(self, node: ir.Node) -> NodeParams | None:
        """The tensors of `node` (None for a node without weights)."""
        if isinstance(node, ir.Conv):
            return self._node(node, self._conv_module(node), _conv_tensors(self.graph, node))
        if isinstance(node, ir.BatchNorm):
            channels = (node.shape[2],)
            tensors = {field: (part, channels) for field, part in zip(BN_FIELDS, BN_PARTS, strict=True)}
            return self._node(node, self._bn_module(node), tensors)
        if isinstance(node, ir.SqueezeExcite):
            if self.convention == "torchvision":
                self._lacks("squeeze-excitation")
            self._check_gate_position(node, "squeeze-excitation", "options.se.position: standard")
            c, r = node.shape[2], node.reduced
            tensors = {
                "fc1.weight": ("reduce_kernel", (r, c, 1, 1)),
                "fc1.bias": ("reduce_bias", (r,)),
                "fc2.weight": ("expand_kernel", (c, r, 1, 1)),
                "fc2.bias": ("expand_bias", (c,)),
            }
            return self._node(node, f"{self._block(node)}.se", tensors)
        if isinstance(node, ir.ChannelAttention):
            if self.convention == "torchvision":
                self._lacks("efficient channel attention")
            self._check_gate_position(node, "channel attention", "the residual before the sum")
            return self._node(
                node, f"{self._block(node)}.se", {"conv.weight": ("kernel", (1, 1, node.kernel))}
            )
        if isinstance(node, ir.Dense):
            if not _is_classifier(self.graph, node):
                return NodeParams(node.name, (), (), head=True)
            features = self.graph.node(node.inputs[0]).shape[2]
            tensors = {"weight": ("kernel", (node.units, features)), "bias": ("bias", (node.units,))}
            return self._node(node, "fc", tensors)
        return None

    def _node(
        self, node: ir.Node, module: str | None, tensors: dict[str, tuple[str, tuple[int, ...]]]
    ) -> NodeParams:
        """The tensors of `node` under `module` (None: a module the convention lacks): key suffix ->
        (store part, torch shape)."""
        head = node.stage == "head"
        if module is None:
            if head:
                return NodeParams(node.name, (), (), head=True)
            raise NamingError(f"{self.convention}'s ResNet has no layer like {node.name}")
        params = tuple(Param(f"{module}.{suffix}", shape) for suffix, (_, shape) in tensors.items())
        return NodeParams(node.name, params, tuple(part for part, _ in tensors.values()), head)

    def _block(self, node: ir.Node) -> str:
        return f"layer{self.stage_index[node.stage]}.{node.block - 1}"

    def _conv_module(self, node: ir.Conv) -> str | None:
        if node.stage == "stem":
            index = self.stem_convs.index(node.name)
            return "conv1" if len(self.stem_convs) == 1 else f"conv1.{3 * index}"
        if node.stage not in self.stage_index:
            return None
        if not node.main_path:
            return f"{self._block(node)}.downsample.{int(self.avg_down)}"
        self._check_stride(node)
        return f"{self._block(node)}.conv{node.row}"

    def _bn_module(self, node: ir.BatchNorm) -> str | None:
        conv = self.graph.node(node.inputs[0])
        if not isinstance(conv, ir.Conv):  # a pre-activation BN, or one in a head of the spec's own
            return None
        if conv.stage == "stem":
            index = self.stem_convs.index(conv.name)
            module = "bn1" if index == len(self.stem_convs) - 1 else f"conv1.{3 * index + 1}"
        elif conv.stage not in self.stage_index:
            return None
        elif not conv.main_path:
            module = f"{self._block(conv)}.downsample.{int(self.avg_down) + 1}"
        else:
            module = f"{self._block(conv)}.bn{conv.row}"
        if not math.isclose(node.epsilon, TORCH_BN_EPSILON, rel_tol=1e-9):
            raise NamingError(
                f"{self.convention}'s BatchNorm epsilon is {TORCH_BN_EPSILON:g};"
                f" {node.name}'s is {node.epsilon:g} (options.bn_epsilon)"
            )
        return module

    def _check_gate_position(self, node: ir.Node, gate: str, option: str) -> None:
        """timm's gates scale the residual after its last BatchNorm, before the sum."""
        before = self.graph.node(node.inputs[0])
        rows = len(self.graph.stages[self.stage_index[node.stage] - 1].rows)
        conv = self.graph.node(before.inputs[0]) if isinstance(before, ir.BatchNorm) else None
        if not (isinstance(conv, ir.Conv) and conv.main_path and conv.row == rows):
            raise NamingError(
                f"{self.convention}'s {gate} gates a block's residual before the sum;"
                f" {node.name} of {self.graph.name} does not ({option})"
            )

    def _check_stride(self, node: ir.Conv) -> None:
        """torchvision's and timm's blocks stride on their first spatial conv (v1.5's 3x3)."""
        if node.stride == 1:
            return
        rows = self.graph.stages[self.stage_index[node.stage] - 1].rows
        first_spatial = next((j for j, (kernel, _) in enumerate(rows, start=1) if kernel > 1), 1)
        if node.row != first_spatial:
            raise NamingError(
                f"{self.convention}'s blocks stride on their first 3x3 convolution (ResNet v1.5);"
                f" {node.name} of {self.graph.name} strides its row {node.row} (options.downsample: 3x3)"
            )


def _conv_tensors(graph: ir.Graph, node: ir.Conv) -> dict[str, tuple[str, tuple[int, ...]]]:
    channels = graph.node(node.inputs[0]).shape[2]
    tensors = {"weight": ("kernel", (node.filters, channels // node.groups, node.kernel, node.kernel))}
    if node.bias:
        tensors["bias"] = ("bias", (node.filters,))
    return tensors
