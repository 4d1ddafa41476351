"""The Keras printer: the IR becomes the lines of a standalone Keras module.

One printer function per IR op writes its Keras call from the node's fields alone. Every block
kind (a distinct sequence of ops) becomes one function of `(x, filters, stride, name)`, so the
module reads like keras.applications' resnet.py: small block functions with literal arguments and
the stage table as data. Nothing here looks at the spec: structure comes only from the IR.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

from rescompile import ir
from rescompile.analysis.tables import stem_text
from rescompile.errors import RescompileError
from rescompile.keras_backend.literals import Code, code_environment, py_literal

_SUFFIX = re.compile(r"_[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Scope:
    """How a node's names, filters and stride print: as literals, or inside a block function
    relative to its arguments (`name`, `filters`, `stride`)."""

    block: str = ""
    classifier: str = ""

    def per_block(self, table: str, value: float) -> Code:
        """A value that may differ between blocks of one kind: inside a block function, looked up
        by the block's name in `table` (which the module prints from the IR), else the number."""
        return Code(f"{table}[name]" if self.block else py_literal(value))

    def name(self, layer: str) -> Code:
        """A layer name: a literal, or `f"{name}_suffix"` for the block's own layers."""
        if self.block and layer.startswith(self.block + "_"):
            suffix = layer[len(self.block) :]
            if not _SUFFIX.fullmatch(suffix):
                raise RescompileError(
                    f"internal: layer name {layer!r} cannot be printed relative to its block"
                )
            return Code(f'f"{{name}}{suffix}"')
        return Code(py_literal(layer))

    def filters(self, node: ir.Conv) -> Code:
        """A conv's filters: the block row's entry of `filters`, or the number."""
        return Code(f"filters[{node.row - 1}]" if self.block and node.row else py_literal(node.filters))

    def stride(self, stride: int, strided: bool) -> Code:
        """An op's stride: the block's `stride` where the op carries it, else the number."""
        return Code("stride" if self.block and strided else py_literal(stride))


def _conv(node: ir.Conv, x: list[str], scope: Scope) -> str:
    pad = f", pad={scope.name(node.pad_name)}" if node.pad_name else ""
    groups = f", groups={node.groups}" if node.groups > 1 else ""
    # A spatial conv strides only where it is padded for it: a function without the pad keeps 1.
    stride = scope.stride(node.stride, node.strided and (node.kernel == 1 or bool(node.pad_name)))
    name = scope.name(node.name)
    return (
        f"conv({x[0]}, {scope.filters(node)}, {node.kernel}, {stride}, {name}, bias={node.bias}{pad}{groups})"
    )


def _batch_norm(node: ir.BatchNorm, x: list[str], scope: Scope) -> str:
    return f"batch_norm({x[0]}, {scope.name(node.name)})"


def _relu(node: ir.ReLU, x: list[str], scope: Scope) -> str:
    return f"relu({x[0]}, {scope.name(node.name)})"


def _add(node: ir.Add, x: list[str], scope: Scope) -> str:
    return f"layers.Add(name={scope.name(node.name)})([{', '.join(x)}])"


def _max_pool(node: ir.MaxPool, x: list[str], scope: Scope) -> str:
    pad = f", pad={scope.name(node.pad_name)}" if node.pad_name else ""
    stride = scope.stride(node.stride, node.strided)
    return f"max_pool({x[0]}, {node.size}, {stride}, {scope.name(node.name)}{pad})"


def _avg_pool(node: ir.AvgPool, x: list[str], scope: Scope) -> str:
    size, name = scope.stride(node.size, True), scope.name(node.name)
    return f'layers.AveragePooling2D({size}, strides={size}, padding="same", name={name})({x[0]})'


def _zero_pad_shortcut(node: ir.ZeroPadShortcut, x: list[str], scope: Scope) -> str:
    names = ", ".join(scope.name(name) for name in node.layer_names())
    return f"zero_pad_shortcut({x[0]}, {scope.stride(node.stride, True)}, {names})"


def _squeeze_excite(node: ir.SqueezeExcite, x: list[str], scope: Scope) -> str:
    width = scope.per_block(*_se_width(node))
    return f"squeeze_excite({x[0]}, {width}, {scope.name(node.name)})"


def _channel_attention(node: ir.ChannelAttention, x: list[str], scope: Scope) -> str:
    kernel = scope.per_block(*_eca_kernel(node))
    return f"channel_attention({x[0]}, {kernel}, {scope.name(node.name)})"


def _eca_kernel(node: ir.ChannelAttention) -> tuple[str, float]:
    return "ECA_KERNELS", node.kernel


def _se_width(node: ir.SqueezeExcite) -> tuple[str, float]:
    return "SE_WIDTHS", node.reduced


def _drop_path(node: ir.DropPath, x: list[str], scope: Scope) -> str:
    return f"drop_path({x[0]}, {scope.per_block(*_drop_rate(node))}, {scope.name(node.name)})"


def _drop_rate(node: ir.DropPath) -> tuple[str, float]:
    return "DROP_RATES", round(1 - node.survival, 12)


def _upsample(node: ir.Upsample, x: list[str], scope: Scope) -> str:
    return f"layers.UpSampling2D({node.factor}, name={scope.name(node.name)})({x[0]})"


def _flatten(node: ir.Flatten, x: list[str], scope: Scope) -> str:
    return f"layers.Flatten(name={scope.name(node.name)})({x[0]})"


def _dropout(node: ir.Dropout, x: list[str], scope: Scope) -> str:
    return f"layers.Dropout({py_literal(node.rate)}, name={scope.name(node.name)})({x[0]})"


def _global_pool(node: ir.GlobalPool, x: list[str], scope: Scope) -> str:
    kind = "GlobalAveragePooling2D" if node.mode == "avg" else "GlobalMaxPooling2D"
    return f"layers.{kind}(name={scope.name(node.name)})({x[0]})"


def _dense(node: ir.Dense, x: list[str], scope: Scope) -> str:
    activation, name = py_literal(node.activation), scope.name(node.name)
    if node.name == scope.classifier:  # width and activation follow build(); float32 (mixed precision)
        return f'dense({x[0]}, classes or CLASSES, classifier_activation, {name}, dtype="float32")'
    return f"dense({x[0]}, {node.units}, {activation}, {name})"


@dataclass(frozen=True)
class KerasOp:
    """How one IR op prints: its call, the module's helper function the call uses (if any), the
    value it looks up per block (table name and value: see Scope.per_block), and the sublayers
    that hold its weights where they are not the node's own layer (name suffix, store parts)."""

    print: Callable[..., str]
    helper: str = ""
    per_block: Callable[..., tuple[str, float]] | None = None
    weight_layers: tuple[tuple[str, tuple[str, ...]], ...] = ()


KERAS_OPS: dict[type[ir.Node], KerasOp] = {
    ir.Input: KerasOp(lambda node, x, scope: ""),  # `keras.Input` in build()
    ir.Conv: KerasOp(_conv, "conv"),
    ir.BatchNorm: KerasOp(_batch_norm, "batch_norm"),
    ir.ReLU: KerasOp(_relu, "relu"),
    ir.Add: KerasOp(_add),
    ir.MaxPool: KerasOp(_max_pool, "max_pool"),
    ir.ZeroPadShortcut: KerasOp(_zero_pad_shortcut, "zero_pad_shortcut"),
    ir.AvgPool: KerasOp(_avg_pool),
    ir.Upsample: KerasOp(_upsample),
    ir.SqueezeExcite: KerasOp(
        _squeeze_excite,
        "squeeze_excite",
        _se_width,
        (("_reduce", ("reduce_kernel", "reduce_bias")), ("_expand", ("expand_kernel", "expand_bias"))),
    ),
    ir.ChannelAttention: KerasOp(
        _channel_attention, "channel_attention", _eca_kernel, (("_conv", ("kernel",)),)
    ),
    ir.DropPath: KerasOp(_drop_path, "drop_path", _drop_rate),
    ir.Flatten: KerasOp(_flatten),
    ir.Dropout: KerasOp(_dropout),
    ir.GlobalPool: KerasOp(_global_pool),
    ir.Dense: KerasOp(_dense, "dense"),
}
"""The Keras entry of each IR op (the registry: tests/ir/test_op_registry.py checks every node class
has one)."""


def statements(nodes: list[ir.Node], entry: str, scope: Scope) -> list[Code]:
    """Assignments computing `nodes` in order from the value `entry`, which is held in `x`.

    Main-path values go to `x`, shortcut values to `shortcut`; a value still needed after its
    variable is reassigned is first kept in a spare one (the identity shortcut: `shortcut = x`).
    The last node's value ends in `x`.
    """
    last_use = {name: index for index, node in enumerate(nodes) for name in node.inputs}
    held = {entry: "x"}
    lines = []
    for index, node in enumerate(nodes):
        args = [held[name] for name in node.inputs]
        target = "x" if node.main_path else "shortcut"
        for value, variable in list(held.items()):
            if variable == target and last_use.get(value, -1) > index:
                spare = _unique("shortcut", set(held.values()))
                lines.append(Code(f"{spare} = {variable}"))
                held[value] = spare
        held = {value: variable for value, variable in held.items() if variable != target}
        held[node.name] = target
        lines.append(Code(f"{target} = {KERAS_OPS[type(node)].print(node, args, scope)}"))
    if nodes and held[nodes[-1].name] != "x":
        raise RescompileError(f"internal: {nodes[-1].name} does not end on the main path")
    return lines


@dataclass(frozen=True)
class BlockFunction:
    """A block kind: the function's name, docstring and body."""

    name: Code
    doc: str
    lines: tuple[Code, ...]


@dataclass(frozen=True)
class StageEntry:
    """One row of the module's stage table: its output's feature name, its blocks' name prefix,
    its rows' filters, and runs of blocks."""

    feature: str
    block_prefix: str
    filters: tuple[int, ...]
    runs: list[tuple[Code, int, int]]


LINE_LENGTH = 110


def stage_table(stages: list[StageEntry]) -> list[Code]:
    """The STAGES entries, one line each where it fits, else split as ruff formats them."""
    lines = []
    for stage in stages:
        feature, prefix = py_literal(stage.feature), py_literal(stage.block_prefix)
        filters, runs = py_literal(stage.filters), py_literal(stage.runs)
        if len(one_line := f"    ({feature}, {prefix}, {filters}, {runs}),") <= LINE_LENGTH:
            lines.append(Code(one_line))
            continue
        lines += [
            Code("    ("),
            Code(f"        {feature},"),
            Code(f"        {prefix},"),
            Code(f"        {filters},"),
        ]
        if len(f"        {runs},") <= LINE_LENGTH:
            lines.append(Code(f"        {runs},"))
        else:
            lines += [Code("        ["), *(Code(f"            {py_literal(run)},") for run in stage.runs)]
            lines.append(Code("        ],"))
        lines.append(Code("    ),"))
    return lines


@dataclass(frozen=True)
class ModulePlan:
    """Everything the module template prints, from the IR."""

    name: str
    facts: ir.ModelFacts
    stem_text: str
    input_shape: ir.Shape
    classes: int | None
    input_name: str
    recursion_limit: int | None
    """The Python recursion limit Keras needs to build a network this deep, where the default
    1,000 is not enough."""
    stem: list[Code]
    blocks: list[BlockFunction]
    stages: list[StageEntry]
    tail: list[Code]
    top: list[Code]
    helpers: set[str]
    batch_norm: tuple[float, float] | None
    per_block: dict[str, dict[str, float]]
    """The tables of values looked up per block (DROP_RATES, SE_WIDTHS): block name -> value."""
    classifier_activation: str | None
    """The classifier's activation: build()'s default for `classifier_activation`."""


RECURSION_PER_LAYER = 20
DEEP_LAYERS = 3_000
"""Keras builds a model's layer graph recursively: ResNet-1202's 4,208 layers fail at Python's
default recursion limit of 1,000; ResNet-1001's 3,339 pass from a shallow call stack, with little to
spare, so modules past 3,000 layers name the limit they need."""


def needed_recursion_limit(graph: ir.Graph) -> int | None:
    """The recursion limit building `graph` in Keras needs, None where the default suffices."""
    layers = len(graph.nodes)
    return RECURSION_PER_LAYER * layers if layers > DEEP_LAYERS else None


SHAPES = {(3, 3): "basic", (1, 3, 1): "bottleneck"}
SHORTCUTS = {
    "identity": ("identity", "identity shortcut"),
    "project": ("projection", "projection shortcut (1x1 conv)"),
    "zeropad": ("zero_pad", "identity shortcut, subsampled and zero-padded to more channels (option A)"),
    "maxpool": ("pooled_identity", "identity shortcut subsampled by a 1x1 max pool"),
    "none": ("", "no shortcut (a plain network)"),
}


def _kind_name(plan: ir.BlockPlan, nodes: list[ir.Node], taken: set[str]) -> tuple[str, str]:
    """A block kind's function name and docstring, e.g. `bottleneck_projection`,
    `se_bottleneck_identity`, `bottleneck_avg_projection` (ResNet-D)."""
    kernels = tuple(n.kernel for n in nodes if isinstance(n, ir.Conv) and n.main_path and n.row)
    se = any(isinstance(n, ir.SqueezeExcite) for n in nodes)
    eca = any(isinstance(n, ir.ChannelAttention) for n in nodes)
    shape = SHAPES.get(kernels, "block" + "".join(map(str, kernels)))
    suffix, shortcut = SHORTCUTS[plan.shortcut]
    if any(isinstance(n, ir.AvgPool) for n in nodes):
        suffix, shortcut = "avg_" + suffix, "projection shortcut after an average pool (ResNet-D)"
    name = ("preact_" if plan.form == "pre-activation" else "") + (
        "plain_" if plan.shortcut == "none" else ""
    )
    name += ("se_" if se else "") + ("eca_" if eca else "") + shape + (f"_{suffix}" if suffix else "")
    rows = " / ".join(f"{k}x{k}" for k in kernels)
    excite = (", squeeze-and-excitation" if se else "") + (", efficient channel attention" if eca else "")
    doc = f"{plan.form.capitalize()} {shape} block ({rows} convs{excite}), {shortcut}."
    if name in taken and any(isinstance(n, ir.Conv) and n.pad_name for n in nodes):
        name = f"{name}_padded"  # its strided convolution padded explicitly
    return _unique(name, taken), doc


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or `name_2`, `name_3`, ... when taken (two kinds of one shape and shortcut)."""
    candidates = itertools.chain([name], (f"{name}_{i}" for i in itertools.count(2)))
    return next(candidate for candidate in candidates if candidate not in taken)


def _block_functions(graph: ir.Graph) -> tuple[list[BlockFunction], list[StageEntry]]:
    kinds: dict[tuple[str, ...], BlockFunction] = {}
    stages = []
    ops: dict[tuple[str, int], list[ir.Node]] = {}
    for node in graph.nodes:  # grouped once: ResNet-1202 has 600 blocks of 4,000 nodes
        ops.setdefault((node.stage, node.block), []).append(node)
    for stage in graph.stages:
        chosen = []
        for number, plan in enumerate(stage.blocks, start=1):
            if plan.name != f"{stage.block_prefix}{number}":
                raise RescompileError(
                    f"internal: block {plan.name} is not named {stage.block_prefix}{number}"
                )
            nodes = ops[(stage.name, number)]
            entry = nodes[0].inputs[0]
            lines = tuple(statements(nodes, entry, Scope(block=plan.name)))
            if lines not in kinds:
                name, doc = _kind_name(plan, nodes, {kind.name for kind in kinds.values()})
                kinds[lines] = BlockFunction(Code(name), doc, lines)
            chosen.append((Code(kinds[lines].name), plan.stride))
        runs = [
            (function, stride, len(list(group))) for (function, stride), group in itertools.groupby(chosen)
        ]
        filters = tuple(filters for _, filters in stage.rows)
        stages.append(StageEntry(stage.feature, stage.block_prefix, filters, runs))
    return list(kinds.values()), stages


def _helpers(graph: ir.Graph) -> set[str]:
    """The module's helper functions that the printed calls use."""
    return {KERAS_OPS[type(node)].helper for node in graph.nodes} - {""}


def _per_block_tables(graph: ir.Graph) -> dict[str, dict[str, float]]:
    """The values block functions look up by block name, from the blocks' nodes."""
    tables: dict[str, dict[str, float]] = {}
    blocks = {
        (stage.name, number): plan.name
        for stage in graph.stages
        for number, plan in enumerate(stage.blocks, 1)
    }
    for node in graph.nodes:
        lookup = KERAS_OPS[type(node)].per_block
        if lookup is not None and node.block:
            table, value = lookup(node)
            tables.setdefault(Code(table), {})[blocks[(node.stage, node.block)]] = value
    return tables


def _batch_norm_settings(graph: ir.Graph) -> tuple[float, float] | None:
    settings = {(node.epsilon, node.momentum) for node in graph.nodes if isinstance(node, ir.BatchNorm)}
    if len(settings) > 1:
        raise RescompileError(f"internal: {graph.name} mixes BatchNorm settings; the printer needs one")
    return settings.pop() if settings else None


def _check_supported(graph: ir.Graph) -> None:
    for node in graph.nodes:
        if (
            isinstance(node, ir.ZeroPadShortcut)
            and node.extra_channels != graph.node(node.inputs[0]).shape[2]
        ):
            raise RescompileError(f"{node.name}: option A shortcuts must double the channels")


def plan_module(graph: ir.Graph) -> ModulePlan:
    """The module plan of a full graph (lowered with its head, without stage outputs)."""
    _check_supported(graph)
    stem = [node for node in graph.nodes if node.stage == "stem"]
    head = [node for node in graph.nodes if node.stage == "head"]
    last_block = next(node.name for node in reversed(graph.nodes) if node.stage != "head")
    classifier = graph.outputs.get("output", "")
    tail = [node for node in head if not graph.is_vector(node.name)]
    top = [node for node in head if graph.is_vector(node.name)]
    blocks, stages = _block_functions(graph)
    scope = Scope(classifier=classifier)
    dense = [node for node in top if isinstance(node, ir.Dense) and node.name == classifier]
    return ModulePlan(
        name=graph.name,
        facts=graph.facts,
        stem_text=stem_text(graph),
        input_shape=graph.input.shape,
        classes=graph.classifier.units if graph.classifier else None,
        input_name=graph.input.name,
        recursion_limit=needed_recursion_limit(graph),
        stem=statements(stem, graph.input.name, scope),
        blocks=blocks,
        stages=stages,
        tail=statements(tail, last_block, scope),
        top=statements(top, tail[-1].name if tail else last_block, scope),
        helpers=_helpers(graph),
        batch_norm=_batch_norm_settings(graph),
        per_block=_per_block_tables(graph),
        classifier_activation=dense[0].activation if dense else "softmax",
    )


def render_keras(graph: ir.Graph, label: str) -> str:
    """The generated Keras module of a whole graph (lowered with its classifier, without stage
    outputs: those are an argument of build()), printed from the graph alone and deterministic;
    its header names the spec by `label` (its library name, else its file name)."""
    template = code_environment().get_template("keras_model.py.j2")
    return template.render(label=label, plan=plan_module(graph), stage_table=stage_table)
