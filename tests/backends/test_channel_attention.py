"""Efficient channel attention (ECA-Net), the op added through the registry: its adaptive kernel,
its count against the paper, and the Keras module and the ONNX export computing the same gate."""

from __future__ import annotations

import numpy as np
import pytest

from rescompile import ir
from rescompile.analysis.analyze import analyze
from rescompile.ir.lower import eca_kernel
from rescompile.ir.target import Target

SPEC = "specs/ecaresnet50.yaml"


def test_the_kernel_adapts_to_the_channels_as_the_paper_says() -> None:
    # Wang et al. 2020, eq. 12 with gamma 2, b 1: t = (log2 C + 1) / 2 = 4.5, 5, 5.5, 6 -> |t|odd = 5
    assert [eca_kernel(c, 2, 1) for c in (64, 256, 512, 1024, 2048)] == [3, 5, 5, 5, 5]
    # the ECA-Net code's and timm's int(t) made odd upwards: 7 at 2048 channels
    assert [eca_kernel(c, 2, 1, rounding="up") for c in (64, 256, 512, 1024, 2048)] == [3, 5, 5, 5, 7]
    graph = analyze(SPEC).graph
    kernels = {n.stage: n.kernel for n in graph.nodes if isinstance(n, ir.ChannelAttention)}
    assert kernels == {"conv2_x": 5, "conv3_x": 5, "conv4_x": 5, "conv5_x": 5}


def test_eca_adds_the_papers_80_parameters_to_resnet50() -> None:
    eca, plain = analyze(SPEC), analyze("specs/resnet50_v1.5.yaml")
    assert eca.ok, [c.message for c in eca.checks if not c.ok]
    assert eca.cost.params - plain.cost.params == 80  # Wang et al. 2020: 16 blocks, k = 5
    assert eca.cost.depth == plain.cost.depth == 50, "a gate is not a layer of depth"


def test_keras_and_onnx_compute_the_same_gated_network(tmp_path) -> None:
    keras = pytest.importorskip("keras")
    ort = pytest.importorskip("onnxruntime")
    from rescompile.analysis.analyze import analyze as compile_spec
    from rescompile.keras_backend.build import build
    from rescompile.keras_backend.weights import weight_store
    from rescompile.onnx_backend.emit import ExportOptions, export_onnx

    keras.utils.set_random_seed(0)
    analysis = compile_spec(SPEC, Target(input_size=64, classes=10))
    model = build(analysis, tmp_path, save=False, check_memory=False).model
    graph = analysis.graph
    assert {layer.name for layer in model.layers} == {name for n in graph.nodes for name in n.layer_names()}
    assert model.count_params() == analysis.cost.params_total
    for layer in model.layers:  # gates far from 0.5 everywhere: kernels of order one
        if layer.name.endswith("_eca_conv"):
            layer.set_weights([np.random.default_rng(1).normal(0, 1, w.shape) for w in layer.get_weights()])
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    exported = export_onnx(analysis.network, weight_store(model, graph), ExportOptions())
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    assert np.abs(got - model.predict(x, verbose=0)).max() < 1e-4
