"""ONNX export: exact against Keras for every spec, clean graph, metadata, independent recount."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from rescompile import ir
from rescompile.keras_backend.archive import RECURSION_PER_LAYER
from rescompile.keras_backend.model import recursion_limit
from rescompile.keras_backend.weights import weight_store
from rescompile.onnx_backend.emit import ExportOptions, export_onnx
from rescompile.onnx_backend.recount import recount
from tests.keras_helpers import generated_model, randomize_batchnorm
from tests.library_cover import library_params

keras = pytest.importorskip("keras")
SPECS = library_params()  # the specs that cover every printed part by default, the rest with -m slow


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _reduced_size(path: Path) -> int | None:
    """64 px for ImageNet networks; CIFAR and transfer specs run at their own 32 px."""
    small = ("cifar", "plain2", "plain3", "plain4", "plain5", "transfer")
    return None if any(part in str(path) for part in small) else 64


def _sensitivity(pooled, x: np.ndarray, features: np.ndarray, probabilities: np.ndarray, ulp: float):
    """How far Keras' own outputs move when the input is perturbed by one rounding step `ulp`
    (deep networks with random weights amplify rounding: an exporter cannot do better)."""
    signs = np.random.default_rng(1).choice([-1.0, 1.0], x.shape).astype("float32")
    nudged_features, nudged_probabilities = pooled.predict(
        (x * (1 + signs * ulp)).astype("float32"), verbose=0
    )
    return float(np.abs(nudged_features - features).max()), float(
        np.abs(nudged_probabilities - probabilities).max()
    )


def _feature_layer(graph: ir.Graph) -> str:
    """The last layer of the last stage: the backbone's final feature map."""
    return [node.name for node in graph.nodes if node.stage == graph.stages[-1].name][-1]


def _reference(model, x: np.ndarray, feature: str) -> tuple[np.ndarray, np.ndarray, tuple, tuple]:
    """Keras' final feature map and probabilities, and their sensitivity at fp32 and fp16 rounding."""
    with recursion_limit(RECURSION_PER_LAYER * len(model.layers)):  # Keras walks the graph recursively
        pooled = keras.Model(model.input, [model.get_layer(feature).output, model.output])
    features, probabilities = pooled.predict(x, verbose=0)
    fp32 = _sensitivity(pooled, x, features, probabilities, 2.0**-23)
    fp16 = _sensitivity(pooled, x, features, probabilities, 2.0**-10)
    return features, probabilities, fp32, fp16


@pytest.mark.parametrize("path", SPECS, ids=str)
def test_onnxruntime_equals_keras_and_recount_equals_analysis(path: Path, tmp_path: Path) -> None:
    analysis, model = generated_model(str(path), _reduced_size(path))
    x = np.random.default_rng(0).normal(0, 1, (3, *analysis.graph.input.shape)).astype("float32")
    randomize_batchnorm(model, graph=analysis.graph, x=np.concatenate([x, x[::-1] * 0.5]))
    feature = _feature_layer(analysis.graph)
    features, probabilities, (feature_noise, probability_noise), (_, fp16_noise) = _reference(
        model, x, feature
    )
    weights = weight_store(model, analysis.graph)
    for fold in (True, False):
        options = ExportOptions(fold_bn=fold, outputs=[feature, "predictions"])
        exported = export_onnx(analysis.network, weights, options)
        got_features, got_probabilities = _session(exported).run(None, {"input": x})
        got_features = got_features.transpose(0, 2, 3, 1)  # NCHW -> NHWC
        # Bound: 1e-4, or the network's own sensitivity to float32 rounding where that is larger
        # (chaotic deep random nets); a wrong layer gives errors of order one, far above both.
        scale = max(1.0, float(np.abs(features).max()))
        assert np.abs(got_features - features).max() < max(1e-4 * scale, 4 * feature_noise)
        assert np.abs(got_probabilities - probabilities).max() < max(1e-4, 4 * probability_noise)
        assert features.std() > 1e-3 * max(1.0, float(np.abs(features).max())), "features must not be trivial"
        half = export_onnx(analysis.network, weights, ExportOptions(fold_bn=fold, fp16=True))
        assert np.abs(_session(half).run(None, {"input": x})[0] - probabilities).max() < max(
            1e-2, 4 * fp16_noise
        )
        if not fold:
            onnx.save(exported, tmp_path / "unfolded.onnx")
            counted = recount(tmp_path / "unfolded.onnx").cost
            cost = analysis.cost
            assert (counted.params, counted.bn_params, counted.conv_bias, counted.bn_stats, counted.macs) == (
                cost.params,
                cost.bn_params,
                cost.conv_bias,
                cost.bn_stats,
                cost.macs,
            )


@pytest.mark.parametrize(
    "spec", ["specs/resnet50.yaml", "specs/cifar/resnet20.yaml", "specs/keras/resnet50v2.yaml"]
)
def test_fp16_export_is_close(spec: str) -> None:
    analysis, model = generated_model(spec)
    randomize_batchnorm(model)
    x = np.random.default_rng(0).normal(0, 1, (2, *analysis.graph.input.shape)).astype("float32")
    exported = export_onnx(analysis.network, weight_store(model, analysis.graph), ExportOptions(fp16=True))
    assert exported.graph.initializer[0].data_type == onnx.TensorProto.FLOAT16
    got = _session(exported).run(None, {"input": x})[0]
    assert np.abs(got - model.predict(x, verbose=0)).max() < 1e-2


def test_resnet50_at_224_is_exact() -> None:
    analysis, model = generated_model("specs/keras/resnet50.yaml")
    randomize_batchnorm(model)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype("float32")
    exported = export_onnx(analysis.network, weight_store(model, analysis.graph), ExportOptions())
    assert np.abs(_session(exported).run(None, {"input": x})[0] - model.predict(x, verbose=0)).max() < 1e-4


def test_graph_is_clean_with_metadata_and_dynamic_batch() -> None:
    analysis, model = generated_model("specs/cifar/resnet20.yaml")
    names = [f"class{i}" for i in range(10)]
    exported = export_onnx(
        analysis.network, weight_store(model, analysis.graph), ExportOptions(class_names=names)
    )
    ops = [node.op_type for node in exported.graph.node]
    assert ops.count("Transpose") == 1 and "BatchNormalization" not in ops
    assert exported.opset_import[0].version >= 17
    meta = {p.key: p.value for p in exported.metadata_props}
    assert meta["spec_name"] == "cifar_resnet20" and len(meta["spec_hash"]) == 16
    assert json.loads(meta["class_names"]) == names and json.loads(meta["preprocess"])["mean"] == "per-pixel"
    session = _session(exported)
    for batch in (1, 5):
        assert session.run(None, {"input": np.zeros((batch, 32, 32, 3), "float32")})[0].shape == (batch, 10)
    nchw = export_onnx(analysis.network, weight_store(model, analysis.graph), ExportOptions(layout="nchw"))
    assert "Transpose" not in [node.op_type for node in nchw.graph.node]
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    a = _session(nchw).run(None, {"input": x.transpose(0, 3, 1, 2)})[0]
    assert np.abs(a - session.run(None, {"input": x})[0]).max() < 1e-5
