"""The IR: topological order, consistent shapes, stable names, and no framework import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rescompile import ir
from rescompile.analysis.analyze import analyze
from rescompile.ir.lower import conv_output
from rescompile.spec.library import find_specs

SPECS = find_specs([Path("specs")])


@pytest.mark.parametrize("path", SPECS, ids=str)
def test_graph_is_topological_with_consistent_shapes(path: Path) -> None:
    graph = analyze(path).graph
    seen: dict[str, ir.Node] = {}
    for node in graph.nodes:
        assert node.name not in seen, f"duplicate name {node.name}"
        inputs = [seen[name] for name in node.inputs]  # KeyError: used before defined
        if isinstance(node, ir.Conv):
            (h, w, _), (oh, ow, oc) = inputs[0].shape, node.shape
            assert (oh, ow, oc) == (
                conv_output(h, node.kernel, node.stride, node.pad),
                conv_output(w, node.kernel, node.stride, node.pad),
                node.filters,
            )
        elif isinstance(node, ir.Add):
            assert inputs[0].shape == inputs[1].shape == node.shape
        elif isinstance(node, (ir.BatchNorm, ir.ReLU)):
            assert inputs[0].shape == node.shape
        seen[node.name] = node
    assert all(name in seen for name in graph.outputs.values())


def test_keras_naming_of_faithful_specs() -> None:
    names = {node.name for node in analyze("specs/keras/resnet50.yaml").graph.nodes}
    assert {
        "conv1_conv",
        "conv1_bn",
        "pool1_pool",
        "conv2_block1_0_conv",
        "conv5_block3_out",
        "predictions",
    } <= names
    v2 = {node.name for node in analyze("specs/keras/resnet50v2.yaml").graph.nodes}
    assert {"conv2_block3_0_pool", "conv2_block1_preact_bn", "post_bn", "post_relu"} <= v2


def test_option_a_shortcut_is_a_zero_pad_without_parameters() -> None:
    graph = analyze("specs/cifar/resnet20.yaml").graph
    pads = [node for node in graph.nodes if isinstance(node, ir.ZeroPadShortcut)]
    assert [(p.stride, p.extra_channels) for p in pads] == [(2, 16), (2, 32)]
    assert not [n for n in graph.nodes if isinstance(n, ir.Conv) and not n.main_path]


def test_v2_keras_strides_in_the_last_block() -> None:
    stages = analyze("specs/keras/resnet50v2.yaml").graph.stages
    assert [[b.stride for b in stage.blocks] for stage in stages] == [
        [1, 1, 2],
        [1, 1, 1, 2],
        [1] * 5 + [2],
        [1, 1, 1],
    ]


def test_extends_overrides_only_what_differs() -> None:
    base, deep = analyze("specs/cifar/resnet20.yaml").spec, analyze("specs/cifar/resnet110.yaml").spec
    assert [s.repeat for s in deep.stages] == [18, 18, 18]
    assert [(s.name, s.output, s.block) for s in deep.stages] == [
        (s.name, s.output, s.block) for s in base.stages
    ]
    assert deep.options == base.options


def test_analysis_commands_import_no_framework() -> None:
    code = (
        "import sys; from rescompile.cli import app\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(app, ['table', 'specs']); assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['check', 'specs']); assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['schema']); assert r.exit_code == 0, r.output\n"
        "frameworks = ('tensorflow', 'keras', 'onnx', 'onnxruntime', 'jax', 'torch')\n"
        "bad = [m for m in frameworks if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
