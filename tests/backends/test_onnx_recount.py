"""`table --from-onnx`: the recount of an exported (folded, unfolded, INT8) file against the spec."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from rescompile import ir
from rescompile.analysis.analyze import analyze
from rescompile.errors import RescompileError
from rescompile.onnx_backend.recount import recount
from tests.onnx_helpers import export_spec

SPEC = Path("specs/cifar/resnet20.yaml")
BOTTLENECK = Path("specs/resnet50.yaml")  # projection shortcuts, parallel to 3-conv branches
PREACT = Path("specs/cifar/preact_resnet110.yaml")  # BN after an add stays: folding is partial


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """resnet20 exported with BN folded (the default), unfolded, and quantized to INT8 (QDQ)."""
    pytest.importorskip("keras")
    from rescompile.keras_backend.build import build_spec
    from rescompile.keras_backend.weights import weight_store
    from rescompile.onnx_backend.emit import ExportOptions
    from rescompile.onnx_backend.export import write_onnx
    from rescompile.onnx_backend.quantize import quantize
    from rescompile.spec.preprocessing import Preprocessing

    folder = tmp_path_factory.mktemp("onnx")
    result = build_spec(SPEC, folder, save=False)
    paths = {"fp32": folder / "resnet20.onnx", "unfolded": folder / "unfolded.onnx"}
    weights = weight_store(result.model, result.analysis.graph)
    write_onnx(weights, result.analysis, paths["fp32"], options=ExportOptions())
    write_onnx(weights, result.analysis, paths["unfolded"], options=ExportOptions(fold_bn=False))
    calibration = np.random.default_rng(0).uniform(0, 255, (32, 32, 32, 3)).astype("float32")
    paths["int8"] = folder / "resnet20_int8.onnx"
    quantize(paths["fp32"], paths["int8"], calibration, preprocessing=Preprocessing(scale=1 / 255))
    return paths


def _table(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rescompile", "table", *args], capture_output=True, text=True
    )


def _bn_activations(graph: ir.Graph) -> int:
    return sum(int(np.prod(node.shape)) for node in graph.nodes if isinstance(node, ir.BatchNorm))


def test_unfolded_recount_equals_the_spec_in_every_column(files: dict[str, Path]) -> None:
    counted = recount(files["unfolded"])
    assert counted.cost == analyze(SPEC).cost
    assert not counted.bn_folded and counted.name == "cifar_resnet20"


def test_folded_recount_keeps_weights_macs_and_depth(files: dict[str, Path]) -> None:
    analysis = analyze(SPEC)
    counted = recount(files["fp32"])
    cost, spec = counted.cost, analysis.cost
    assert (
        (cost.weights, cost.macs, cost.depth)
        == (spec.weights, spec.macs, spec.depth)
        == (268_346, 40_551_040, 20)
    )
    # BN lives in the convolutions: a bias per folded conv, no BN parameters, statistics or outputs.
    assert counted.bn_folded
    assert (cost.bn_params, cost.bn_stats) == (0, 0)
    assert cost.conv_bias == spec.bn_params // 2 == 688
    assert cost.activations == spec.activations - _bn_activations(analysis.graph)


def test_int8_file_counts_the_same_weights_and_macs(files: dict[str, Path]) -> None:
    ops = {node.op_type for node in onnx.load(str(files["int8"])).graph.node}
    assert "DequantizeLinear" in ops  # QDQ: the Conv weights are not initializers of the Conv
    fp32, int8 = recount(files["fp32"]), recount(files["int8"])
    assert (int8.cost.weights, int8.cost.conv_bias, int8.cost.macs, int8.cost.depth) == (
        fp32.cost.weights,
        fp32.cost.conv_bias,
        fp32.cost.macs,
        fp32.cost.depth,
    )
    assert int8.bn_folded


def test_cli_json_csv_and_markdown(files: dict[str, Path]) -> None:
    args = ["--from-onnx", str(files["fp32"]), "--from-onnx", str(files["int8"])]
    done = _table(*args, "--format", "json")
    assert done.returncode == 0, done.stderr
    records = json.loads(done.stdout)
    assert [r["file"] for r in records] == [str(files["fp32"]), str(files["int8"])]
    assert {r["spec"] for r in records} == {"cifar_resnet20"}
    assert [(r["weights"], r["macs"], r["depth"]) for r in records] == [(268_346, 40_551_040, 20)] * 2
    assert records[0]["flops"] == 2 * records[0]["macs"] and records[0]["paper_ok"] is None
    done = _table(*args, "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [int(row["macs"]) for row in rows] == [40_551_040] * 2
    done = _table(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("| cifar_resnet20 | 20 |") == 2


def _no_conv_model(path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu_only", [x], [y])
    onnx.save(helper.make_model(graph), path)
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (bytes(range(256)) * 8, "not a loadable ONNX model"),
        (b"\x12\x00", "no nodes"),  # a valid ModelProto (an empty producer_name) without a graph
        (None, "no Conv or Gemm node"),
    ],
    ids=["empty", "garbage", "no-nodes", "no-conv"],
)
def test_unusable_files_exit_2_with_one_line(content: bytes | None, message: str, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    if content is None:
        _no_conv_model(path)
    else:
        path.write_bytes(content)
    with pytest.raises(RescompileError, match=message):
        recount(path)
    done = _table("--from-onnx", str(path), "--format", "json")
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and message in lines[0]


@pytest.mark.parametrize(
    "spec, size, depth, activations",
    [
        (SPEC, None, 20, 666_698),
        (BOTTLENECK, 64, 50, 2_952_168),
        (Path("specs/resnet50d.yaml"), 64, 52, 3_306_472),  # deep stem, average-pool shortcuts
        (Path("specs/resnext50_32x4d.yaml"), 64, 50, 3_886_056),  # grouped 3x3 convolutions
        # SE: each gate adds its pooled, reduced, ReLU, expanded and sigmoid vectors (3C + 2r)
        (Path("specs/seresnet50.yaml"), 64, 50, 3_578_952),
    ],
    ids=["resnet20", "resnet50-64px", "resnet50d-64px", "resnext50-64px", "seresnet50-64px"],
)
def test_depth_and_activations_equal_the_irs(
    spec: Path, size: int | None, depth: int, activations: int, tmp_path: Path
) -> None:
    unfolded = export_spec(spec, tmp_path / "unfolded.onnx", size, fold_bn=False)
    counted = recount(tmp_path / "unfolded.onnx")
    assert (unfolded.cost.depth, unfolded.cost.activations) == (depth, activations)
    assert counted.cost == unfolded.cost and counted.reference == unfolded.cost
    assert not counted.bn_folded and counted.notes == []
    # Folded: the same depth; the BN outputs are no separate activations any more.
    export_spec(spec, tmp_path / "folded.onnx", size)
    folded = recount(tmp_path / "folded.onnx").cost
    assert folded.depth == depth
    assert folded.activations == activations - _bn_activations(unfolded.graph)


def test_depth_is_the_longest_path_whatever_the_node_names(tmp_path: Path) -> None:
    analysis = export_spec(BOTTLENECK, tmp_path / "resnet50.onnx", 64)
    model = onnx.load(str(tmp_path / "resnet50.onnx"))
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    for index, node in enumerate(model.graph.node):
        node.name = f"node{index}"
    onnx.save(model, tmp_path / "renamed.onnx")
    # 53 convolutions and the classifier, of which the 4 projection shortcuts are off the longest path.
    assert len(convs) + 1 == 54 and recount(tmp_path / "renamed.onnx").cost.depth == analysis.cost.depth == 50


@pytest.mark.parametrize(
    "spec, fewer, fewer_keras",
    # resnet20: its 19 convs' BN, 688 channels: 2 x 688 parameters and 2 x 688 statistics become 688
    # biases. preact_resnet110: the second BN of each of its 54 units follows a conv, 2,016 channels.
    [(SPEC, 688, 3 * 688), (PREACT, 2_016, 3 * 2_016)],
    ids=["resnet20", "preact_resnet110"],
)
def test_folded_bn_note_gives_the_difference(
    spec: Path, fewer: int, fewer_keras: int, tmp_path: Path
) -> None:
    path = tmp_path / "folded.onnx"
    analysis = export_spec(spec, path)
    counted = recount(path)
    cost, reference = counted.cost, analysis.cost
    assert counted.bn_folded and not counted.inferred and counted.reference == reference
    assert (reference.params - cost.params, reference.params_total - cost.params_total) == (
        fewer,
        fewer_keras,
    )
    note = (
        f"BN folded into the convolutions: params counts the folded weights, {fewer:,} fewer than the "
        f"Keras model's {reference.params:,} (params (Keras): {fewer_keras:,} fewer than its "
        f"{reference.params_total:,}, BN statistics included)"
    )
    fewer_activations = reference.activations - cost.activations
    assert 0 < fewer_activations <= _bn_activations(analysis.graph)  # all BN outputs (resnet20) or some
    assert len(counted.notes) == 2 and counted.notes[0] == note
    assert counted.notes[1].startswith(
        f"activations {fewer_activations:,} fewer than the IR's {reference.activations:,} (layers without"
    )
    done = _table("--from-onnx", str(path))
    assert done.returncode == 0, done.stderr
    assert f"|\n\n- {path}: {note}\n- {path}: activations " in done.stdout
    done = _table("--from-onnx", str(path), "--format", "json")
    [record] = json.loads(done.stdout)
    assert record["bn_folded"] is True and record["notes"].startswith(note + "; activations ")


def _without_metadata(path: Path, keep: tuple[str, ...] = ()) -> Path:
    model = onnx.load(str(path))
    kept = {prop.key: prop.value for prop in model.metadata_props if prop.key in keep}
    del model.metadata_props[:]
    helper.set_model_props(model, kept)
    onnx.save(model, path)
    return path


def test_folded_bn_note_without_a_record(tmp_path: Path) -> None:
    export_spec(SPEC, tmp_path / "no_record.onnx", record=False)
    counted = recount(tmp_path / "no_record.onnx")
    assert counted.bn_folded and counted.reference is None
    assert counted.notes == [
        "BN folded into the convolutions: params counts the folded weights (not compared with the "
        "Keras model: the file carries no rescompile record)"
    ]
    # No metadata at all: inferred from the graph (no BatchNormalization, a bias on every Conv).
    counted = recount(_without_metadata(tmp_path / "no_record.onnx"))
    assert counted.bn_folded and counted.inferred and len(counted.notes) == 1
    assert counted.notes[0].startswith("no BatchNormalization node and a bias on every convolution")
    export_spec(SPEC, tmp_path / "unfolded.onnx", record=False, fold_bn=False)
    assert recount(_without_metadata(tmp_path / "unfolded.onnx")).notes == []


def test_a_damaged_record_is_a_note_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "damaged.onnx"
    export_spec(SPEC, path)
    model = onnx.load(str(path))
    helper.set_model_props(model, {"rescompile": '{"spec": {}}', "bn_folded": "true"})
    onnx.save(model, path)
    counted = recount(path)
    assert (
        counted.bn_folded
        and counted.reference is None
        and "damaged rescompile record" in counted.reference_error
    )
    assert counted.cost.depth == 20 and len(counted.notes) == 1
    assert counted.notes[0].startswith(
        "BN folded into the convolutions: params counts the folded weights (not "
    )
    assert f"{path}: damaged rescompile record" in counted.notes[0]
