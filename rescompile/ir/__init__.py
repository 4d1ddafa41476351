"""The IR: one flat graph of typed nodes with shapes, in topological order. No framework."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from rescompile.spec.schema import Preprocess

Shape = tuple[int, int, int]
"""(height, width, channels) of one image; the batch dimension is implicit."""


@dataclass(frozen=True, kw_only=True)
class Node:
    """A layer: its stable name, inputs, output shape and where it sits in the table."""

    name: str
    inputs: tuple[str, ...]
    shape: Shape
    stage: str
    block: int = 0
    main_path: bool = True

    passes_through: ClassVar[bool] = False
    """Ending a residual branch, the node passes the branch's end through (a gate, a drop-path):
    the layer before it ends the branch."""

    def layer_names(self) -> tuple[str, ...]:
        """Every layer name this node gives a framework model (its own and its helpers')."""
        return (self.name,)

    def weight_shapes(self, in_channels: int) -> dict[str, tuple[int, ...]]:
        """The node's weights in a store (ir/weights.py), by part, in the store's layouts."""
        return {}


@dataclass(frozen=True, kw_only=True)
class Input(Node):
    """The image input."""


@dataclass(frozen=True, kw_only=True)
class Conv(Node):
    """2-D convolution with symmetric zero padding.

    In a block, `row` is the table row whose filters it has (1-based; 0 outside blocks) and
    `strided` says it carries the block's stride; `pad_name` names the explicit padding layer a
    framework with only same/valid padding puts before it when strided (Keras' ZeroPadding2D).
    """

    kernel: int
    stride: int
    pad: int
    filters: int
    bias: bool
    row: int = 0
    strided: bool = False
    groups: int = 1
    """Grouped convolution: input and output channels split into `groups` independent convs."""
    pad_name: str = ""

    def layer_names(self) -> tuple[str, ...]:
        return (self.name, self.pad_name) if self.pad_name else (self.name,)

    def weight_shapes(self, in_channels: int) -> dict[str, tuple[int, ...]]:
        kernel = (self.kernel, self.kernel, in_channels // self.groups, self.filters)
        return {"kernel": kernel, "bias": (self.filters,)} if self.bias else {"kernel": kernel}


@dataclass(frozen=True, kw_only=True)
class BatchNorm(Node):
    """Batch normalisation over channels."""

    epsilon: float
    momentum: float

    def weight_shapes(self, in_channels: int) -> dict[str, tuple[int, ...]]:
        return dict.fromkeys(("gamma", "beta", "mean", "var"), (in_channels,))


@dataclass(frozen=True, kw_only=True)
class ReLU(Node):
    """Rectified linear unit."""


@dataclass(frozen=True, kw_only=True)
class Add(Node):
    """Element-wise sum of the residual and the shortcut."""


@dataclass(frozen=True, kw_only=True)
class MaxPool(Node):
    """Max pooling with symmetric zero padding (size 1 subsamples: the V2 strided identity).

    `strided` and `pad_name` as for Conv (a stem pool is padded explicitly, as Keras' ResNets do).
    """

    size: int
    stride: int
    pad: int
    strided: bool = False
    pad_name: str = ""

    def layer_names(self) -> tuple[str, ...]:
        return (self.name, self.pad_name) if self.pad_name else (self.name,)


@dataclass(frozen=True, kw_only=True)
class DropPath(Node):
    """Stochastic depth: in training the whole residual of a sample is zeroed with probability
    1 - `survival` (and scaled by 1 / `survival` otherwise); the identity at inference."""

    survival: float
    passes_through: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class AvgPool(Node):
    """Average pooling over `size` x `size` windows with stride `size`, the last window clipped
    at an odd edge (ceil mode, padding not averaged in): ResNet-D's strided shortcut."""

    size: int


@dataclass(frozen=True, kw_only=True)
class ZeroPadShortcut(Node):
    """Option A: identity subsampled by `stride`, extra channels filled with zeros (as many as it
    has: option A doubles the channels).

    Frameworks without the op build it from a subsampling and a zeros layer, named here.
    """

    stride: int
    extra_channels: int
    subsample_name: str
    zeros_name: str

    def layer_names(self) -> tuple[str, ...]:
        return (self.subsample_name, self.zeros_name, self.name)


@dataclass(frozen=True, kw_only=True)
class SqueezeExcite(Node):
    """Squeeze-and-excitation: x * sigmoid(expand(relu(reduce(mean over H, W of x)))), where
    reduce and expand are 1x1 convolutions with biases (C -> `reduced` = C // `ratio` -> C channels)."""

    ratio: int
    reduced: int
    passes_through: ClassVar[bool] = True

    def layer_names(self) -> tuple[str, ...]:
        return (f"{self.name}_squeeze", f"{self.name}_reduce", f"{self.name}_expand", self.name)

    def weight_shapes(self, in_channels: int) -> dict[str, tuple[int, ...]]:
        c, r = in_channels, self.reduced
        return {
            "reduce_kernel": (1, 1, c, r),
            "reduce_bias": (r,),
            "expand_kernel": (1, 1, r, c),
            "expand_bias": (c,),
        }


@dataclass(frozen=True, kw_only=True)
class ChannelAttention(Node):
    """Efficient channel attention (ECA): x * sigmoid(conv1d(mean over H, W of x)), the 1-D
    convolution running across the channels with `kernel` taps, zero-padded, without bias."""

    kernel: int
    passes_through: ClassVar[bool] = True

    def layer_names(self) -> tuple[str, ...]:
        parts = ("squeeze", "sequence", "conv", "gate")
        return (*(f"{self.name}_{part}" for part in parts), self.name)

    def weight_shapes(self, in_channels: int) -> dict[str, tuple[int, ...]]:
        return {"kernel": (self.kernel, 1, 1)}


@dataclass(frozen=True, kw_only=True)
class Upsample(Node):
    """Nearest-neighbour upsampling by an integer factor."""

    factor: int


@dataclass(frozen=True, kw_only=True)
class Flatten(Node):
    """A feature map flattened to a vector, in (height, width, channel) order as Keras does."""


@dataclass(frozen=True, kw_only=True)
class Dropout(Node):
    """Dropout: identity at inference."""

    rate: float


@dataclass(frozen=True, kw_only=True)
class GlobalPool(Node):
    """Global average or max pooling to one value per channel."""

    mode: Literal["avg", "max"]


@dataclass(frozen=True, kw_only=True)
class Dense(Node):
    """The fully connected classifier."""

    units: int
    activation: Literal["softmax", "linear", "relu"]

    def weight_shapes(self, in_channels: int) -> dict[str, tuple[int, ...]]:
        return {"kernel": (in_channels, self.units), "bias": (self.units,)}


ShortcutKind = Literal["identity", "project", "zeropad", "maxpool", "none"]
BlockForm = Literal["post-activation", "pre-activation"]


@dataclass(frozen=True)
class BlockPlan:
    """One residual block: its name, stride, input channels, shortcut and form. Its ops are the
    graph's nodes with the block's stage and number, in order."""

    name: str
    stride: int
    in_channels: int
    shortcut: ShortcutKind
    form: BlockForm
    survival: float = 1.0
    """The probability its residual is kept in training (stochastic depth; 1: always)."""


@dataclass(frozen=True)
class StagePlan:
    """One stage of the table: its rows and the blocks they expand to (named `block_prefix` and
    their number), its output's shape, feature name (C2, C3, ...) and node."""

    name: str
    rows: tuple[tuple[int, int], ...]
    blocks: tuple[BlockPlan, ...]
    output: Shape
    feature: str
    block_prefix: str
    last: str


@dataclass(frozen=True)
class ModelFacts:
    """What a model made from the graph needs beyond its nodes: where the network is published,
    how its inputs are prepared, how its weights start and are regularised, and the stage outputs
    it returns by default."""

    source: str = ""
    preprocess: Preprocess = field(default_factory=Preprocess)
    initializer: str = "he_normal"
    weight_decay: float = 0.0
    outputs: tuple[str, ...] = ()


@dataclass
class Graph:
    """A lowered network: nodes in topological order, the stage plan, named outputs and the
    model's facts."""

    name: str
    nodes: list[Node]
    stages: list[StagePlan]
    outputs: dict[str, str] = field(default_factory=dict)
    facts: ModelFacts = field(default_factory=ModelFacts)

    def __post_init__(self) -> None:
        self._by_name = {node.name: node for node in self.nodes}

    def node(self, name: str) -> Node:
        """The node called `name`."""
        return self._by_name[name]

    def weight_shapes(self, node: Node) -> dict[str, tuple[int, ...]]:
        """`node`'s weights by part (ir/weights.py), for the channels of its input."""
        return node.weight_shapes(self._by_name[node.inputs[0]].shape[2]) if node.inputs else {}

    def is_vector(self, name: str) -> bool:
        """True for tensors that are vectors per image (after pooling or flattening)."""
        node = self._by_name[name]
        if isinstance(node, (GlobalPool, Flatten, Dense)):
            return True
        if isinstance(node, (BatchNorm, ReLU, Dropout)):
            return self.is_vector(node.inputs[0])
        return False

    def residual_branch_ends(self) -> list[str]:
        """The node that ends each block's residual branch (the Add's second input), found back
        through a squeeze-excitation gate or a drop-path: a BatchNorm in post-activation blocks, a
        convolution in pre-activation ones."""
        ends = []
        for node in self.nodes:
            if isinstance(node, Add):
                end = self._by_name[node.inputs[1]]
                while end.passes_through:
                    end = self._by_name[end.inputs[0]]
                ends.append(end.name)
        return ends

    @property
    def features(self) -> dict[str, str]:
        """Each stage's feature name (C2, C3, ...) and its output node."""
        return {stage.feature: stage.last for stage in self.stages}

    @property
    def classifier(self) -> Dense | None:
        """The dense layer that ends the network, if it has one."""
        last = self._by_name[self.outputs["output"]] if "output" in self.outputs else None
        return last if isinstance(last, Dense) else None

    @property
    def input(self) -> Input:
        """The input node."""
        first = self.nodes[0]
        assert isinstance(first, Input)
        return first
