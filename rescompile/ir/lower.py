"""Lowering: a validated Spec becomes the IR graph, with every size checked."""

from __future__ import annotations

import dataclasses
import math

from rescompile import ir
from rescompile.errors import RescompileError, SpecError, gathered
from rescompile.ir.target import OWN, Target
from rescompile.spec.schema import (
    RESERVED_STAGE_NAMES,
    HeadBatchNorm,
    HeadDense,
    HeadDropout,
    HeadFlatten,
    Spec,
    StemConv,
    StemPool,
)

MAX_STRIDE = 4


def conv_output(size: int, kernel: int, stride: int, pad: int) -> int:
    """Spatial output size of a convolution or pooling window."""
    return (size + 2 * pad - kernel) // stride + 1


class _Builder:
    """Appends nodes in topological order, tracking the current tensor and its shape."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.options = spec.options
        self.nodes: list[ir.Node] = []
        self.stage = "input"
        self.block = 0
        self.main_path = True
        self.errors: list[SpecError] = []

    def report(self, error: SpecError) -> None:
        """Record `error` and go on lowering; `lower` raises them all at the end. One per field:
        a row or option that fails in one block would fail again in the next."""
        if all(error.field != earlier.field for earlier in self.errors):
            self.errors.append(error)

    def add(self, kind: type[ir.Node], name: str, inputs: list[ir.Node], shape: ir.Shape, **attrs) -> ir.Node:
        node = kind(
            name=name,
            inputs=tuple(n.name for n in inputs),
            shape=shape,
            stage=self.stage,
            block=self.block,
            main_path=self.main_path,
            **attrs,
        )
        self.nodes.append(node)
        return node

    def conv(
        self,
        x: ir.Node,
        prefix: str,
        kernel: int,
        filters: int,
        stride: int,
        normalized: bool,
        row: int = 0,
        strided: bool = False,
        groups: int = 1,
        where: tuple = (),
    ) -> ir.Node:
        """`<prefix>_conv`, explicitly padded by `<prefix>_pad` where strided (Keras' names);
        `groups` splits it into grouped convolutions (`where`: the spec row, for the error)."""
        height, width, channels = x.shape
        if channels % groups:
            self.report(
                self.spec.error(where, f"groups {groups} do not divide the {channels} input channels")
            )
        pad = kernel // 2
        shape = (conv_output(height, kernel, stride, pad), conv_output(width, kernel, stride, pad), filters)
        normalized = normalized and self.options.batchnorm
        bias = {"all": True, "none": False, "unnormalized": not normalized}[self.options.conv_bias]
        padded = kernel > 1 and stride > 1  # explicitly, as the paper pads: "same" would pad one side
        return self.add(
            ir.Conv,
            f"{prefix}_conv",
            [x],
            shape,
            kernel=kernel,
            stride=stride,
            pad=pad,
            filters=filters,
            bias=bias,
            row=row,
            strided=strided,
            pad_name=f"{prefix}_pad" if padded else "",
            groups=groups,
        )

    def bn(self, x: ir.Node, name: str) -> ir.Node:
        if not self.options.batchnorm:
            return x
        return self.add(
            ir.BatchNorm,
            name,
            [x],
            x.shape,
            epsilon=float(self.options.bn_epsilon),
            momentum=float(self.options.bn_momentum),
        )

    def relu(self, x: ir.Node, name: str) -> ir.Node:
        return self.add(ir.ReLU, name, [x], x.shape)

    def maxpool(self, x: ir.Node, prefix: str, size: int, stride: int) -> ir.Node:
        """`<prefix>_pool`, padded explicitly by `<prefix>_pad` (Keras' names)."""
        height, width, channels = x.shape
        pad = size // 2
        shape = (conv_output(height, size, stride, pad), conv_output(width, size, stride, pad), channels)
        return self.add(
            ir.MaxPool,
            f"{prefix}_pool",
            [x],
            shape,
            size=size,
            stride=stride,
            pad=pad,
            pad_name=f"{prefix}_pad",
        )


def _stem_name(spec: Spec, index: int) -> str:
    layer = spec.stem[index]
    if layer.name:
        return layer.name
    same_kind = [i for i, other in enumerate(spec.stem) if isinstance(other, type(layer))]
    base = "conv1" if isinstance(layer, StemConv) else "pool1" if isinstance(layer, StemPool) else "upsample1"
    position = same_kind.index(index)
    return base if position == 0 else f"{base}_{position + 1}"


RESERVED_NAMES = frozenset(
    {"input", "avg_pool", "max_pool", "flatten", "predictions", "post_bn", "post_relu"}
)
"""Layer names the network's input, pre-activation tail and head use."""


def _claim_stem_names(b: _Builder, index: int, nodes: list[ir.Node], taken: dict[str, int]) -> None:
    """The layer names stem item `index` gives the model (its nodes' own and their helpers') must
    not collide with the earlier items', the stages' blocks or the head's."""
    spec = b.spec
    name = _stem_name(spec, index)
    block_prefixes = tuple(f"{stage.name}_block" for stage in spec.stages)
    for layer_name in sorted({n for node in nodes for n in node.layer_names()}):
        clash = None
        if layer_name in taken:
            clash = f"stem[{taken[layer_name]}]"
        elif layer_name in RESERVED_NAMES or layer_name.startswith(("head_", *block_prefixes)):
            clash = "the blocks or the head"
        if clash:
            gives = (
                f"{name!r} is a layer name"
                if layer_name == name
                else f"{name!r} names a layer {layer_name!r}"
            )
            b.report(spec.error(("stem", index, "name"), f"{gives} that {clash} already uses"))
        taken[layer_name] = index


def _lower_stem(b: _Builder, x: ir.Node) -> ir.Node:
    b.stage = "stem"
    taken: dict[str, int] = {}
    for index, layer in enumerate(b.spec.stem):
        name = _stem_name(b.spec, index)
        first = len(b.nodes)
        if isinstance(layer, StemConv):
            kernel, filters, *groups = layer.conv
            where = ("stem", index, "conv")
            x = b.conv(
                x,
                name,
                kernel,
                filters,
                layer.stride,
                layer.bn,
                groups=groups[0] if groups else 1,
                where=where,
            )
            if layer.bn:
                x = b.bn(x, f"{name}_bn")
            if layer.relu:
                x = b.relu(x, f"{name}_relu")
        elif isinstance(layer, StemPool):
            x = b.maxpool(x, name, layer.maxpool, layer.stride)
        else:
            height, width, channels = x.shape
            shape = (height * layer.upsample, width * layer.upsample, channels)
            x = b.add(ir.Upsample, name, [x], shape, factor=layer.upsample)
        _claim_stem_names(b, index, b.nodes[first:], taken)
    return x


def _stage_stride(b: _Builder, index: int, size: int) -> int | None:
    """The stride that takes the stage's input size to its declared output size (None, the error
    reported, when there is none)."""
    stage = b.spec.stages[index]
    if stage.output > size:
        b.report(
            b.spec.error(
                ("stages", index, "output"), f"output {stage.output} is larger than its input {size}"
            )
        )
        return None
    kernel = _stride_kernel(b.spec, stage.block)
    for stride in range(1, MAX_STRIDE + 1):
        if conv_output(size, kernel, stride, kernel // 2) == stage.output:
            return stride
    b.report(
        b.spec.error(
            ("stages", index, "output"),
            f"output {stage.output} does not follow from input {size}: no stride up to {MAX_STRIDE} gives it",
        )
    )
    return None


def stride_row(spec: Spec, rows: list[tuple[int, int]]) -> int:
    """Index of the row that carries the stride: the first conv, or the first spatial one (v1.5)."""
    if spec.options.downsample == "3x3":
        return next((i for i, row in enumerate(rows) if row[0] > 1), 0)
    return 0


def _stride_kernel(spec: Spec, rows: list[tuple[int, int]]) -> int:
    return rows[stride_row(spec, rows)][0]


def _shortcut_kind(options, stride: int, in_channels: int, out_channels: int) -> ir.ShortcutKind:
    if options.shortcut == "none":
        return "none"
    if options.shortcut == "C":
        return "project"
    if stride == 1 and in_channels == out_channels:
        return "identity"
    if options.shortcut == "A" and out_channels >= in_channels:
        return "zeropad"
    if in_channels == out_channels and options.strided_identity == "maxpool":
        return "maxpool"
    return "project"


def _lower_shortcut(b: _Builder, x: ir.Node, plan: ir.BlockPlan, rows: list[tuple[int, int]]) -> ir.Node:
    """The shortcut branch (names `<block>_0_*`); a projection has the last row's filters."""
    b.main_path = False
    height, width, channels = x.shape
    size = (conv_output(height, 1, plan.stride, 0), conv_output(width, 1, plan.stride, 0))
    out_channels = rows[-1][1]
    if plan.shortcut == "project" and b.options.avg_down and plan.stride > 1:
        x = b.add(ir.AvgPool, f"{plan.name}_0_pool", [x], (*size, channels), size=plan.stride)
        normalized = b.options.shortcut_bn
        x = b.conv(x, f"{plan.name}_0", 1, out_channels, 1, normalized, row=len(rows))
        if normalized:
            x = b.bn(x, f"{plan.name}_0_bn")
    elif plan.shortcut == "project":
        normalized = b.options.shortcut_bn
        x = b.conv(x, f"{plan.name}_0", 1, out_channels, plan.stride, normalized, row=len(rows), strided=True)
        if normalized:
            x = b.bn(x, f"{plan.name}_0_bn")
    elif plan.shortcut == "zeropad":
        x = b.add(
            ir.ZeroPadShortcut,
            f"{plan.name}_0_pad",
            [x],
            (*size, out_channels),
            stride=plan.stride,
            extra_channels=out_channels - channels,
            subsample_name=f"{plan.name}_0_subsample",
            zeros_name=f"{plan.name}_0_zeros",
        )
    elif plan.shortcut == "maxpool":
        x = b.add(
            ir.MaxPool,
            f"{plan.name}_0_pool",
            [x],
            (*size, channels),
            size=1,
            stride=plan.stride,
            pad=0,
            strided=True,
        )
    b.main_path = True
    return x


def _lower_block(
    b: _Builder, x: ir.Node, plan: ir.BlockPlan, rows: list[tuple[int, int]], groups: list[int], index: int
) -> ir.Node:
    """One block of stage `index`: its rows' convs (grouped as `groups` says), BN and ReLU in the
    block's form, and its shortcut."""
    name = plan.name
    strided = stride_row(b.spec, rows)
    pre = plan.form == "pre-activation"
    residual_input = x
    if pre:
        x = b.bn(x, f"{name}_preact_bn")
        x = b.relu(x, f"{name}_preact_relu")
        if plan.shortcut == "project":
            residual_input = x
    shortcut = None if plan.shortcut == "none" else _lower_shortcut(b, residual_input, plan, rows)
    x = _squeeze_excite(b, x, name, "pre")
    for j, (kernel, filters) in enumerate(rows, start=1):
        last = j == len(rows)
        stride = plan.stride if j - 1 == strided else 1
        normalized = not (pre and last)
        x = b.conv(
            x,
            f"{name}_{j}",
            kernel,
            filters,
            stride,
            normalized,
            row=j,
            strided=j - 1 == strided,
            groups=groups[j - 1],
            where=("stages", index, "block", j - 1),
        )
        if pre and last:
            break
        x = b.bn(x, f"{name}_{j}_bn")
        if not last:
            x = b.relu(x, f"{name}_{j}_relu")
            if b.options.dropout:
                x = b.add(ir.Dropout, f"{name}_{j}_dropout", [x], x.shape, rate=float(b.options.dropout))
    x = _squeeze_excite(b, x, name, "standard")
    x = _channel_attention(b, x, name)
    if b.options.stochastic_depth is not None and plan.survival < 1:
        x = b.add(ir.DropPath, f"{name}_drop_path", [x], x.shape, survival=plan.survival)
    if shortcut is not None:
        if shortcut.shape != x.shape:
            raise ValueError(f"internal: shortcut {shortcut.shape} != residual {x.shape} in {name}")
        x = b.add(ir.Add, f"{name}_out" if pre else f"{name}_add", [shortcut, x], x.shape)
    x = _squeeze_excite(b, x, name, "post")
    if not pre:
        x = b.relu(x, f"{name}_out")
    return x


def _squeeze_excite(b: _Builder, x: ir.Node, block: str, position: str) -> ir.Node:
    """`<block>_se` where the spec's squeeze-and-excitation sits at `position`, else `x`."""
    se = b.options.se
    if se is None or se.position != position:
        return x
    channels = x.shape[2]
    if se.ratio > channels:
        b.report(
            b.spec.error(("options", "se", "ratio"), f"{se.ratio} exceeds the {channels} channels of {block}")
        )
        return x
    return b.add(ir.SqueezeExcite, f"{block}_se", [x], x.shape, ratio=se.ratio, reduced=channels // se.ratio)


def _channel_attention(b: _Builder, x: ir.Node, block: str) -> ir.Node:
    """`<block>_eca` where the spec asks for efficient channel attention, else `x`."""
    eca = b.options.eca
    if eca is None:
        return x
    kernel = eca.kernel or eca_kernel(x.shape[2], eca.gamma, eca.beta, rounding=eca.rounding)
    return b.add(ir.ChannelAttention, f"{block}_eca", [x], x.shape, kernel=kernel)


def eca_kernel(channels: int, gamma: int, beta: int, *, rounding: str = "nearest") -> int:
    """ECA's adaptive kernel size for C channels from t = (log2(C) + beta) / gamma: the odd number
    nearest t, a tie going down (`nearest`, the paper's |t|odd), or int(t) made odd upwards (`up`)."""
    t = abs((math.log2(channels) + beta) / gamma)
    if rounding == "up":
        size = int(t)
        return size if size % 2 else size + 1
    below = math.floor(t) if math.floor(t) % 2 else math.floor(t) - 1
    return max(1, below if t - below <= below + 2 - t else below + 2)


def _survival(b: _Builder, block: int, blocks: int) -> float:
    """Block `block` (1-based, of `blocks`)'s survival probability under stochastic depth."""
    spec = b.spec
    rule = spec.options.stochastic_depth
    if rule is None:
        return 1.0
    if spec.options.shortcut == "none":
        b.report(spec.error(("options", "stochastic_depth"), "a plain network has no residual to drop"))
        return 1.0
    final = float(rule.survival)
    return final if rule.rule == "uniform" else 1 - block / blocks * (1 - final)


def _lower_stages(
    b: _Builder, x: ir.Node, strides: list[int] | None
) -> tuple[ir.Node, list[ir.StagePlan], list[ir.Node]]:
    plans: list[ir.StagePlan] = []
    stage_outputs: list[ir.Node] = []
    total_blocks, number = sum(stage.repeat for stage in b.spec.stages), 0
    follows = True  # whether the stage before has the size it declares
    for index, stage in enumerate(b.spec.stages):
        rows = [(row[0], row[1]) for row in stage.block]
        groups = [row[2] if len(row) > 2 else 1 for row in stage.block]
        if strides:
            stride = strides[index]
        elif follows:
            stride = _stage_stride(b, index, x.shape[0])
        else:  # the stage before has a wrong size: checking this one against it would only cascade
            stride = None
        stride_at = 0 if b.options.stride_block == "first" else stage.repeat - 1
        blocks = []
        b.stage = stage.name
        for k in range(stage.repeat):
            b.block = k + 1
            block_stride = (stride or 1) if k == stride_at else 1  # no stride: the rows are still checked
            in_channels = x.shape[2]
            kind = _shortcut_kind(b.options, block_stride, in_channels, rows[-1][1])
            number += 1
            plan = ir.BlockPlan(
                f"{stage.name}_block{k + 1}",  # the stage's block_prefix and number
                block_stride,
                in_channels,
                kind,
                b.options.residual,
                _survival(b, number, total_blocks),
            )
            blocks.append(plan)
            x = _lower_block(b, x, plan, rows, groups, index)
        b.block = 0
        produced = x.shape[0] == stage.output
        if not strides and not produced:
            if stride is not None:
                message = f"declared {stage.output} but the network produces {x.shape[0]}"
                b.report(b.spec.error(("stages", index, "output"), message))
            # the next stage starts from the size this one declares
            x = dataclasses.replace(x, shape=(stage.output, stage.output, x.shape[2]))
        follows = not follows or (stride is not None and produced)
        plans.append(
            ir.StagePlan(
                stage.name,
                tuple(rows),
                tuple(blocks),
                x.shape,
                feature=f"C{index + 2}",
                block_prefix=f"{stage.name}_block",
                last=x.name,
            )
        )
        stage_outputs.append(x)
    return x, plans, stage_outputs


def _lower_head(b: _Builder, x: ir.Node, classes: int | None, include_top: bool) -> ir.Node:
    head = b.spec.head
    b.stage = "head"
    if b.options.residual == "pre-activation":
        x = b.bn(x, "post_bn")
        x = b.relu(x, "post_relu")
    if not include_top:
        return x
    if head.pool != "none":
        x = b.add(ir.GlobalPool, f"{head.pool}_pool", [x], (1, 1, x.shape[2]), mode=head.pool)
    if head.layers is not None:
        return _lower_head_layers(b, x, classes)
    if head.classes:
        if head.pool == "none":
            b.report(b.spec.error(("head", "pool"), "a classifier needs global pooling (avg or max)"))
        units = classes or head.classes
        x = b.add(ir.Dense, "predictions", [x], (1, 1, units), units=units, activation=head.activation)
    return x


def _lower_head_layers(b: _Builder, x: ir.Node, classes: int | None) -> ir.Node:
    """The spec's own head: flatten/dense/dropout/batchnorm; the last dense is `predictions`."""
    layers = b.spec.head.layers or []
    for index, layer in enumerate(layers, start=1):
        if isinstance(layer, HeadDense):
            last = index == len(layers)
            units = (classes or layer.dense) if last else layer.dense
            name = "predictions" if last else f"head_dense{index}"
            x = b.add(ir.Dense, name, [x], (1, 1, units), units=units, activation=layer.activation)
        elif isinstance(layer, HeadDropout):
            x = b.add(ir.Dropout, f"head_dropout{index}", [x], x.shape, rate=float(layer.dropout))
        elif isinstance(layer, HeadBatchNorm):
            x = b.bn(x, f"head_bn{index}")
        elif x.shape[:2] != (1, 1) or not isinstance(x, ir.GlobalPool):
            x = b.add(ir.Flatten, "flatten", [x], (1, 1, x.shape[0] * x.shape[1] * x.shape[2]))
    return x


def _ancestors(nodes: list[ir.Node], names: list[str]) -> list[ir.Node]:
    """The nodes that `names` are computed from (themselves included), in topological order."""
    needed = set(names)
    for node in reversed(nodes):
        if node.name in needed:
            needed.update(node.inputs)
    return [node for node in nodes if node.name in needed]


def _check_fields(spec: Spec) -> list[SpecError]:
    """The rules that tie a spec's fields together (sizes are checked as the stages lower)."""
    errors: list[SpecError] = []

    def fail(path: tuple, message: str) -> None:
        errors.append(spec.error(path, message))

    seen: set[str] = set()
    for index, stage in enumerate(spec.stages):
        if stage.name in seen:
            fail(("stages", index, "name"), f"duplicate stage name {stage.name!r}")
        if stage.name in RESERVED_STAGE_NAMES:
            fail(("stages", index, "name"), f"{stage.name!r} names a part of every network")
        seen.add(stage.name)
    channels = spec.input.channels
    pre = spec.preprocess
    if isinstance(pre.mean, list) and len(pre.mean) != channels:
        fail(("preprocess", "mean"), f"expected {channels} values, got {len(pre.mean)}")
    if len(pre.std) != channels:
        fail(("preprocess", "std"), f"expected {channels} values, got {len(pre.std)}")
    if spec.head.class_names == "imagenet" and spec.head.classes != 1000:
        fail(("head", "class_names"), f"imagenet names 1000 classes; this head has {spec.head.classes}")
    layers = spec.head.layers
    if layers is not None:
        if not isinstance(layers[-1], HeadDense) or layers[-1].dense != spec.head.classes:
            fail(
                ("head", "layers", len(layers) - 1),
                f"the last layer must be a dense of {spec.head.classes} units (head.classes)",
            )
        flattens = [index for index, layer in enumerate(layers) if isinstance(layer, HeadFlatten)]
        if spec.head.pool == "none" and not flattens:
            fail(("head", "layers"), "without pooling the head needs a flatten layer")
        if len(flattens) > 1:
            fail(("head", "layers", flattens[1]), "the head can flatten only once")
    for index, name in enumerate(spec.outputs):
        if not _is_stage_output(spec, name):
            fail(("outputs", index), f"{name} is not a stage output; this network has {_stage_range(spec)}")
    return errors


def check_spec(spec: Spec) -> None:
    """Raise every error of the rules that tie the spec's fields together, as one SpecError (the
    first, carrying the others): what a spec must pass before it is lowered or compared."""
    errors = _check_fields(spec)
    if errors:
        raise gathered(errors)


def _is_stage_output(spec: Spec, name: str) -> bool:
    return name[:1] == "C" and name[1:].isdigit() and 2 <= int(name[1:]) < 2 + len(spec.stages)


def _stage_range(spec: Spec) -> str:
    return f"C2..C{len(spec.stages) + 1}"


def _facts(spec: Spec) -> ir.ModelFacts:
    options = spec.options
    return ir.ModelFacts(
        source=spec.source,
        preprocess=spec.preprocess,
        initializer=options.initializer,
        weight_decay=float(options.weight_decay),
        outputs=tuple(spec.outputs),
    )


def lower(spec: Spec, target: Target = OWN, reference: ir.Graph | None = None) -> ir.Graph:
    """Lower a spec to the IR graph of `target`. Its errors, each naming the spec line that caused
    it, are raised together: the first, carrying the others in `more`.

    Another input keeps the strides the spec's table implies (those of `reference`, the spec's
    own network, lowered here when not given), and must be at least as large as the network's
    total downsampling. With stage outputs (the target's, else the spec's), the graph holds just
    what computes them.
    """
    check_spec(spec)  # sizes checked on fields that contradict each other would only add noise
    strides = None
    size = target.input_size or spec.input.size
    if target.input_size is not None:
        reference = reference or lower(spec)
        strides = [max(block.stride for block in plan.blocks) for plan in reference.stages]
        downsampling = spec.input.size // reference.stages[-1].output[0]
        if size < downsampling:
            raise RescompileError(
                f"input size {size} is too small for {spec.name}: it downsamples by {downsampling}"
            )
    features = target.outputs_of(spec)
    for name in features:
        if not _is_stage_output(spec, name):
            raise RescompileError(f"output {name!r}: {spec.name} has stage outputs {_stage_range(spec)}")
    b = _Builder(spec)
    b.stage = "input"
    x = b.add(ir.Input, "input", [], (size, size, target.channels or spec.input.channels))
    x = _lower_stem(b, x)
    x, plans, stage_outputs = _lower_stages(b, x, strides)
    if not features:
        x = _lower_head(b, x, target.classes, target.include_top)
    if b.errors:
        raise gathered(b.errors)
    facts = _facts(spec)
    if features:
        named = {name: stage_outputs[int(name[1:]) - 2].name for name in features}
        return ir.Graph(spec.name, _ancestors(b.nodes, list(named.values())), plans, named, facts)
    return ir.Graph(spec.name, b.nodes, plans, {"output": x.name}, facts)
