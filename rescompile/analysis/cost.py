"""Cost analysis: parameters (by convention), multiply-adds, activations and depth, per node.

Parameter columns, since frameworks and papers disagree on what they count:
  weights   convolution kernels and the dense layer's kernel and bias
  bn_params BatchNorm scale and offset (gamma, beta; trainable)
  conv_bias biases of convolutions (keras.applications V1 has them; the paper does not)
  bn_stats  BatchNorm moving mean and variance (non-trainable; Keras' count_params() includes them)
params = weights + bn_params + conv_bias is torchvision's convention (all trainable parameters);
params_total adds bn_stats (Keras'); params_conv_fc = weights + conv_bias leaves BatchNorm out, as
the pre-activation paper does for ResNet-1001 (10.2M).
MACs are multiply-accumulates of convolutions and the fully connected layer: the paper's "FLOPs".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from rescompile import ir


@dataclass(frozen=True)
class Cost:
    """Costs of one node or a sum of nodes."""

    weights: int = 0
    bn_params: int = 0
    conv_bias: int = 0
    bn_stats: int = 0
    macs: int = 0
    activations: int = 0
    depth: int = 0

    @property
    def params(self) -> int:
        """Trainable parameters (torchvision's convention)."""
        return self.weights + self.bn_params + self.conv_bias

    @property
    def params_conv_fc(self) -> int:
        """Parameters of convolutions and the fully connected layer only, no BatchNorm."""
        return self.weights + self.conv_bias

    @property
    def flops(self) -> int:
        """Floating-point operations: two per multiply-add (what the papers' "FLOPs" are not)."""
        return 2 * self.macs

    @property
    def params_total(self) -> int:
        """All parameters including BatchNorm moving statistics (Keras' count_params())."""
        return self.params + self.bn_stats

    def __add__(self, other: Cost) -> Cost:
        return Cost(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(Cost)})


def _activations(node: ir.Node) -> int:
    height, width, channels = node.shape
    return height * width * channels


def _conv(node: ir.Conv, graph: ir.Graph) -> Cost:
    height, width, _ = node.shape
    in_channels = graph.node(node.inputs[0]).shape[2]
    kernel_weights = node.kernel * node.kernel * (in_channels // node.groups) * node.filters
    return Cost(
        weights=kernel_weights,
        conv_bias=node.filters if node.bias else 0,
        macs=height * width * kernel_weights,
        activations=_activations(node),
        depth=1 if node.main_path else 0,
    )


def _squeeze_excite(node: ir.SqueezeExcite, graph: ir.Graph) -> Cost:
    """Two 1x1 convs on the pooled vector; not counted in depth."""
    channels = node.shape[2]
    return Cost(
        weights=2 * channels * node.reduced,
        conv_bias=node.reduced + channels,
        macs=2 * channels * node.reduced,
        # the gate's vectors: pooled (C), reduced and its ReLU (2r), expanded and its sigmoid (2C)
        activations=_activations(node) + 3 * channels + 2 * node.reduced,
    )


def _channel_attention(node: ir.ChannelAttention, graph: ir.Graph) -> Cost:
    """A 1-D convolution of `kernel` taps across the pooled vector; not counted in depth."""
    channels = node.shape[2]
    return Cost(
        weights=node.kernel,
        macs=channels * node.kernel,
        activations=_activations(node) + 3 * channels,  # pooled, convolved and its sigmoid (3C)
    )


def _batch_norm(node: ir.BatchNorm, graph: ir.Graph) -> Cost:
    channels = node.shape[2]
    return Cost(bn_params=2 * channels, bn_stats=2 * channels, activations=_activations(node))


def _dense(node: ir.Dense, graph: ir.Graph) -> Cost:
    in_features = graph.node(node.inputs[0]).shape[2]
    return Cost(
        weights=in_features * node.units + node.units,
        macs=in_features * node.units,
        activations=_activations(node),
        depth=1,
    )


def _output_only(node: ir.Node, graph: ir.Graph) -> Cost:
    """An op without weights or multiply-adds: its output's values."""
    return Cost(activations=_activations(node))


COST_RULES: dict[type[ir.Node], Callable[..., Cost]] = {
    ir.Input: _output_only,
    ir.Conv: _conv,
    ir.BatchNorm: _batch_norm,
    ir.ReLU: _output_only,
    ir.Add: _output_only,
    ir.MaxPool: _output_only,
    ir.ZeroPadShortcut: _output_only,
    ir.AvgPool: _output_only,
    ir.Upsample: _output_only,
    ir.SqueezeExcite: _squeeze_excite,
    ir.ChannelAttention: _channel_attention,
    ir.DropPath: _output_only,
    ir.Flatten: _output_only,
    ir.Dropout: _output_only,
    ir.GlobalPool: _output_only,
    ir.Dense: _dense,
}
"""The cost rule of each IR op (the registry: tests/ir/test_op_registry.py checks every node class
has one)."""


def node_cost(node: ir.Node, graph: ir.Graph) -> Cost:
    """The cost of one node."""
    return COST_RULES[type(node)](node, graph)


def total(graph: ir.Graph) -> Cost:
    """The whole network's cost."""
    return sum((node_cost(node, graph) for node in graph.nodes), Cost())


def per_stage(graph: ir.Graph) -> dict[str, Cost]:
    """Costs grouped by stage (stem, each stage of the table, head), in network order."""
    stages: dict[str, Cost] = {}
    for node in graph.nodes:
        if isinstance(node, ir.Input):
            continue
        stages[node.stage] = stages.get(node.stage, Cost()) + node_cost(node, graph)
    return stages
