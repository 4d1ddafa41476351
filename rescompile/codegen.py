"""Keras code generation: IR -> jinja2 template -> a standalone, readable Python module."""

from __future__ import annotations

import itertools

from rescompile import ir
from rescompile.errors import RescompileError
from rescompile.lower import stride_row
from rescompile.spec.schema import Spec, StemConv, StemPool
from rescompile.tables import environment, stem_text


def py_literal(value: object) -> str:
    """A Python literal with double-quoted strings (as ruff formats them)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "(" + ", ".join(map(py_literal, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(map(py_literal, value)) + "]"
    return repr(value)


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
    stages = [
        {"name": stage.name, "rows": py_literal(list(stage.rows)), "runs": py_literal(_runs(stage))}
        for stage in graph.stages
    ]
    preprocess = {key: py_literal(value) for key, value in spec.preprocess.model_dump().items()}
    shortcuts = sorted({block.shortcut for stage in graph.stages for block in stage.blocks} - {"identity"})
    template = environment(code=True).get_template("keras_model.py.j2")
    return template.render(
        spec=spec,
        path=path,
        stages=stages,
        preprocess=preprocess,
        stem=_stem(spec, graph),
        stem_text=stem_text(spec),
        shortcuts=shortcuts,
        pre=spec.options.residual == "pre-activation",
        plain=spec.options.shortcut == "none",
        stride_row=_stride_row(spec),
        layer_count=len(graph.nodes),
        head_layers=_head_layers(graph) if spec.head.layers is not None else None,
    )
