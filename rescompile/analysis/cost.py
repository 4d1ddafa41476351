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


def node_cost(node: ir.Node, graph: ir.Graph) -> Cost:
    """The cost of one node."""
    height, width, channels = node.shape
    activations = height * width * channels
    if isinstance(node, ir.Conv):
        in_channels = graph.node(node.inputs[0]).shape[2]
        kernel_weights = node.kernel * node.kernel * (in_channels // node.groups) * node.filters
        return Cost(
            weights=kernel_weights,
            conv_bias=node.filters if node.bias else 0,
            macs=height * width * kernel_weights,
            activations=activations,
            depth=1 if node.main_path else 0,
        )
    if isinstance(node, ir.SqueezeExcite):  # two 1x1 convs on the pooled vector; not counted in depth
        return Cost(
            weights=2 * channels * node.reduced,
            conv_bias=node.reduced + channels,
            macs=2 * channels * node.reduced,
            # the gate's vectors: pooled (C), reduced and its ReLU (2r), expanded and its sigmoid (2C)
            activations=activations + 3 * channels + 2 * node.reduced,
        )
    if isinstance(node, ir.BatchNorm):
        return Cost(bn_params=2 * channels, bn_stats=2 * channels, activations=activations)
    if isinstance(node, ir.Dense):
        in_features = graph.node(node.inputs[0]).shape[2]
        return Cost(
            weights=in_features * node.units + node.units,
            macs=in_features * node.units,
            activations=activations,
            depth=1,
        )
    return Cost(activations=activations)


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
