"""Keras code generation: IR -> jinja2 template -> a standalone, readable Python module."""

from __future__ import annotations

import itertools
import math

import jinja2

from rescompile import ir
from rescompile.errors import RescompileError
from rescompile.lower import stride_row
from rescompile.spec.schema import Spec, StemConv, StemPool
from rescompile.tables import environment, stem_text


class Code(str):
    """Python source that the generator itself wrote: the only text printed into a module as is."""


def escape_text(text: str) -> str:
    """`text` for the inside of a double-quoted (or triple-quoted) Python string literal.

    Printable characters stay as they are (readable); quotes and backslashes are escaped, and
    everything else (newlines, NUL, lone surrogates) becomes an escape sequence, so no text can
    end the literal or make the module unparsable.
    """
    return "".join(
        "\\" + char if char in '"\\' else char if char.isprintable() else repr(char)[1:-1] for char in text
    )


def py_literal(value: object) -> str:
    """A Python literal (double-quoted strings, as ruff formats them) of validated data only.

    Accepts None, booleans, integers, finite floats, strings, and tuples/lists of them; anything
    else is refused, so no object's own `repr` can reach generated code.
    """
    if isinstance(value, Code):
        return value
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RescompileError(f"cannot write the non-finite number {value} into generated code")
        return repr(value)
    if isinstance(value, str):
        return '"' + escape_text(value) + '"'
    if isinstance(value, tuple):
        return "(" + ", ".join(map(py_literal, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(map(py_literal, value)) + "]"
    raise TypeError(f"internal: {type(value).__name__} has no safe Python literal")


def doc_text(value: object) -> Code:
    """Free text for a docstring: escaped so it cannot end the docstring."""
    return Code(escape_text(str(value)))


def code_environment() -> jinja2.Environment:
    """The code templates' environment: every `{{ expression }}` prints as a Python literal
    (escape by default), except text the generator marked as `Code`; `| doc` escapes free text
    for docstrings."""
    env = environment(code=True)
    env.finalize = py_literal
    env.filters["doc"] = doc_text
    return env


def _runs(stage: ir.StagePlan) -> list[tuple[int, int, str]]:
    """Run-length encode the blocks of a stage as (count, stride, shortcut kind)."""
    keyed = itertools.groupby(stage.blocks, key=lambda block: (block.stride, block.shortcut))
    return [(len(list(blocks)), stride, kind) for (stride, kind), blocks in keyed]


def _stem(spec: Spec, graph: ir.Graph) -> list[dict]:
    stem_nodes = [node for node in graph.nodes if node.stage == "stem"]
    names = [
        n.name if isinstance(n, ir.Upsample) else n.name.rsplit("_", 1)[0]
        for n in stem_nodes
        if isinstance(n, (ir.Conv, ir.MaxPool, ir.Upsample))
    ]
    layers = []
    for layer, name in zip(spec.stem, names, strict=True):
        if isinstance(layer, StemConv):
            kernel, filters = layer.conv
            layers.append(
                dict(
                    kind="conv",
                    name=name,
                    kernel=kernel,
                    filters=filters,
                    stride=layer.stride,
                    bn=layer.bn,
                    relu=layer.relu,
                    bias=Code("BIAS_BEFORE_BN" if layer.bn else "BIAS_WITHOUT_BN"),
                )
            )
        elif isinstance(layer, StemPool):
            layers.append(dict(kind="pool", name=name, size=layer.maxpool, stride=layer.stride))
        else:
            layers.append(dict(kind="upsample", name=name, factor=layer.upsample))
    return layers


def _head_layers(graph: ir.Graph) -> list[dict]:
    """The spec-declared head as the template writes it (after any pooling)."""
    kinds = {ir.Flatten: "flatten", ir.Dropout: "dropout", ir.BatchNorm: "batchnorm", ir.Dense: "dense"}
    return [
        {"kind": kinds[type(node)], "name": node.name, "node": node}
        for node in graph.nodes
        if node.stage == "head" and type(node) in kinds and graph.is_vector(node.name)
    ]


def _stride_row(spec: Spec) -> int:
    rows = {stride_row(spec, [tuple(r) for r in stage.block]) for stage in spec.stages}
    if len(rows) != 1:
        raise RescompileError(f"{spec.name}: stages stride on different rows; the generator needs one")
    return rows.pop()


def _check_supported(graph: ir.Graph) -> None:
    for node in graph.nodes:
        if (
            isinstance(node, ir.ZeroPadShortcut)
            and node.extra_channels != graph.node(node.inputs[0]).shape[2]
        ):
            raise RescompileError(f"{node.name}: option A shortcuts must double the channels")


def render_keras(spec: Spec, graph: ir.Graph, path: str) -> str:
    """The generated Keras module for a spec (deterministic: same spec, same text)."""
    _check_supported(graph)
    stages = [{"name": stage.name, "rows": list(stage.rows), "runs": _runs(stage)} for stage in graph.stages]
    shortcuts = sorted({block.shortcut for stage in graph.stages for block in stage.blocks} - {"identity"})
    template = code_environment().get_template("keras_model.py.j2")
    return template.render(
        spec=spec,
        path=path,
        stages=stages,
        stem=_stem(spec, graph),
        stem_text=stem_text(spec),
        shortcuts=shortcuts,
        pre=spec.options.residual == "pre-activation",
        plain=spec.options.shortcut == "none",
        stride_row=_stride_row(spec),
        layer_count=len(graph.nodes),
        head_layers=_head_layers(graph) if spec.head.layers is not None else None,
    )
