"""The ResNet family beyond the two papers: grouped convolutions (ResNeXt), wide and dropout blocks
(WRN), squeeze-and-excitation, ResNet-D's average-pool shortcut, stochastic depth. Counts are
checked against the papers by tests/analysis/test_paper_numbers.py and Keras/ONNX agreement by
tests/backends/test_keras_agreement.py and tests/backends/test_onnx_export.py for every library
spec; here: what each construct does, in the IR, in Keras and in ONNX, and that it trains and
resumes exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from rescompile import ir
from rescompile.analysis.analyze import analyze
from rescompile.keras_backend.weights import weight_store
from rescompile.onnx_backend.emit import ExportOptions, export_onnx
from rescompile.spec import Spec, load_spec
from tests.keras_helpers import generated_model, randomize_batchnorm
from tests.run_helpers import interrupt_after_first_epoch
from tests.synthetic import write_cifar_tarball

keras = pytest.importorskip("keras")


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rescompile", *args], capture_output=True, text=True, **kwargs
    )


def test_grouped_convolution_counts_a_fraction_of_the_weights() -> None:
    plain, grouped = analyze("specs/resnet50_v1.5.yaml"), analyze("specs/resnext50_32x4d.yaml")
    conv = next(n for n in grouped.graph.nodes if n.name == "conv2_x_block1_2_conv")
    assert isinstance(conv, ir.Conv) and conv.groups == 32 and conv.filters == 128
    # a 3x3 over 128 channels in 32 groups: 3 * 3 * (128 / 32) * 128 weights, 56 * 56 times
    from rescompile.analysis.cost import node_cost

    assert node_cost(conv, grouped.graph).weights == 3 * 3 * 4 * 128
    assert node_cost(conv, grouped.graph).macs == 56 * 56 * 3 * 3 * 4 * 128
    assert grouped.cost.depth == plain.cost.depth == 50


def _variant(folder: Path, spec: str, name: str, options: str) -> Path:
    """A spec extending library `spec` with `options` (a YAML flow mapping), named `name`."""
    path = folder / f"{name}.yaml"
    path.write_text(f"extends: {Path(spec).resolve()}\nname: {name}\noptions: {options}\n")
    return path


def _inputs(layer) -> list:
    return layer.input if isinstance(layer.input, list) else [layer.input]


SE_GATES = {
    # position: (the tensor conv3_x_block1's gate scales, the layer taking the gated tensor, channels)
    "standard": ("conv3_x_block1_3_bn", "conv3_x_block1_add", 512),
    "pre": ("conv2_x_block3_out", "conv3_x_block1_1_conv", 256),  # the block's input; the shortcut ungated
    "post": ("conv3_x_block1_add", "conv3_x_block1_out", 512),
}


@pytest.mark.parametrize("position", sorted(SE_GATES))
def test_squeeze_excitation_positions_in_the_ir_keras_and_onnx(position: str, tmp_path: Path) -> None:
    from rescompile.keras_backend.build import build_spec

    spec = _variant(tmp_path, "specs/seresnet50.yaml", f"se_{position}", f"{{se: {{position: {position}}}}}")
    keras.utils.set_random_seed(0)
    result = build_spec(spec, tmp_path, input_size=64, save=False)
    analysis, model, graph = result.analysis, result.model, result.analysis.graph
    gated, consumer, channels = SE_GATES[position]
    assert graph.node("conv3_x_block1_se").inputs == (gated,)
    assert "conv3_x_block1_se" in graph.node(consumer).inputs
    assert "conv3_x_block1_se" not in graph.node("conv3_x_block1_0_conv").inputs
    se = [n for n in graph.nodes if isinstance(n, ir.SqueezeExcite)]
    assert len(se) == 16 and all(n.reduced * n.ratio == n.shape[2] for n in se)
    gate = model.get_layer("conv3_x_block1_se")
    assert gate.input[0] is model.get_layer(gated).output
    assert any(tensor is gate.output for tensor in _inputs(model.get_layer(consumer)))
    assert model.get_layer("conv3_x_block1_se_reduce").kernel.shape == (1, 1, channels, channels // 16)
    x = np.random.default_rng(0).normal(0, 1, (2, 64, 64, 3)).astype("float32")
    randomize_batchnorm(model, graph=graph, x=np.concatenate([x, x[::-1] * 0.5]))
    feature = "conv5_x_block3_out"
    options = ExportOptions(outputs=[feature, "predictions"])
    exported = export_onnx(analysis.network, weight_store(model, graph), options)
    ops = [node.op_type for node in exported.graph.node]
    assert ops.count("Sigmoid") == ops.count("Mul") == ops.count("GlobalAveragePool") - 1 == 16
    assert "BatchNormalization" not in ops, "BN folded"
    assert next(n for n in exported.graph.node if n.name == "conv2_x_block1_se_expand").op_type == "Conv"
    features = keras.Model(model.input, model.get_layer(feature).output)
    expected = features.predict(x, verbose=0)
    signs = np.random.default_rng(1).choice([-1.0, 1.0], x.shape)
    nudged = features.predict((x * (1 + signs * 2.0**-23)).astype("float32"), verbose=0)
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0].transpose(0, 2, 3, 1)  # NCHW -> NHWC
    # Bound: 1e-4, or Keras' own change under one float32 rounding of the input where larger (a gate
    # after every sum amplifies it: 4e-4 for `post`); a misplaced gate errs by the features' order.
    scale = max(1.0, float(np.abs(expected).max()))
    assert expected.std() > 1e-3 * scale
    assert np.abs(got - expected).max() < max(1e-4 * scale, 4 * np.abs(nudged - expected).max())


def test_avg_down_shortcut_averages_before_its_unstrided_projection() -> None:
    analysis, model = generated_model("specs/resnet50d.yaml", 64)
    pool = model.get_layer("conv3_x_block1_0_pool")
    assert type(pool).__name__ == "AveragePooling2D" and pool.strides == (2, 2)
    assert model.get_layer("conv3_x_block1_0_conv").strides == (1, 1)
    assert model.get_layer("conv2_x_block1_0_conv").strides == (1, 1)
    assert "conv2_x_block1_0_pool" not in {layer.name for layer in model.layers}, "no pool at stride 1"
    exported = export_onnx(analysis.network, weight_store(model, analysis.graph), ExportOptions())
    pools = [n for n in exported.graph.node if n.op_type == "AveragePool"]
    assert len(pools) == 3 and all(onnx.helper.get_attribute_value(p.attribute[0]) for p in pools)


SURVIVAL = {  # Huang et al. Eq. 4 (p_L = 0.5 over ResNet-110's 54 blocks), and one p for all
    "linear": [1 - block / 54 * 0.5 for block in range(1, 55)],
    "uniform": [0.5] * 54,
}


@pytest.mark.parametrize("rule", sorted(SURVIVAL))
def test_stochastic_depth_rules_train_stochastically_and_vanish_at_inference(
    rule: str, tmp_path: Path
) -> None:
    from rescompile.keras_backend.build import build_spec

    library = "specs/cifar/resnet110_stochastic_depth.yaml"
    spec = _variant(tmp_path, library, f"sd_{rule}", f"{{stochastic_depth: {{rule: {rule}}}}}")
    result = build_spec(spec, tmp_path, save=False)
    analysis, model = result.analysis, result.model
    blocks = [block for stage in analysis.graph.stages for block in stage.blocks]
    assert np.allclose([block.survival for block in blocks], SURVIVAL[rule])
    rates = [model.get_layer(f"{block.name}_drop_path").rate for block in blocks]
    assert np.allclose(rates, 1 - np.array(SURVIVAL[rule]))
    x = np.random.default_rng(0).normal(0, 1, (4, 32, 32, 3)).astype("float32")
    inference = [np.asarray(model(x, training=False)) for _ in range(2)]
    assert np.array_equal(*inference)
    training = [np.asarray(model(x, training=True)) for _ in range(2)]
    assert not np.allclose(*training), "residuals are dropped at random in training"
    exported = export_onnx(analysis.network, weight_store(model, analysis.graph), ExportOptions())
    assert not {"Dropout", "RandomUniformLike"} & {n.op_type for n in exported.graph.node}


def test_width_widens_every_block_row_but_a_bottlenecks_expansion(tmp_path: Path) -> None:
    wide, plain = load_spec("specs/wide_resnet50_2.yaml"), load_spec("specs/resnet50_v1.5.yaml")
    for widened, stage in zip(wide.stages, plain.stages, strict=True):
        *inner, expansion = stage.block
        assert widened.block == [(kernel, 2 * filters) for kernel, filters in inner] + [expansion]
    assert wide.stem == plain.stem and wide.options.width == 1, "the resolved spec holds the widened table"
    again = Spec.model_validate(wide.model_dump(mode="json"))
    assert again.model_dump() == wide.model_dump(), "a resolved spec is not widened again"
    wrn = load_spec("specs/cifar/wrn28_10.yaml")
    assert wrn.stem[0].conv == (3, 16)
    assert [stage.block for stage in wrn.stages] == [[(3, 160)] * 2, [(3, 320)] * 2, [(3, 640)] * 2]
    grouped = _variant(tmp_path, "specs/resnext50_32x4d.yaml", "wide_resnext", "{width: 2}")
    assert load_spec(grouped).stages[0].block == [(1, 256), (3, 256, 32), (1, 256)]  # groups kept


@pytest.fixture(scope="module")
def family_spec(tmp_path_factory) -> Path:
    """ResNet-20 with every new construct: grouped 3x3s (in the last stage), SE, avg-down,
    drop-path, dropout."""
    folder = tmp_path_factory.mktemp("family")
    spec = folder / "family.yaml"
    base = Path("specs/cifar/resnet20.yaml").resolve()
    spec.write_text(
        f"extends: {base}\nname: family20\n"
        "stages:\n  - {name: conv4, block: [[3, 64, 4], [3, 64]]}\n"  # TF trains grouped convs slowly on CPUs
        "options: {shortcut: B, avg_down: true, dropout: 0.1, se: {ratio: 4},"
        " stochastic_depth: {survival: 0.8}}\n"
    )
    return spec


def _train(spec: Path, tarball: Path, run: Path, *extra: str) -> list[str]:
    return [
        "train", str(spec), "--data", str(tarball), "--out", str(run), "--recipe", "fast", "--epochs", "2",
        "--batch-size", "50", "--set", "validation=100", "--no-tensorboard", "--precision", "float32", *extra,
    ]  # fmt: skip


@pytest.mark.slow  # three trainings, 4 min on 2 cores; CI runs it with -m slow
def test_every_construct_trains_and_an_interrupted_run_resumes_exactly(
    family_spec: Path, tmp_path: Path
) -> None:
    tarball = write_cifar_tarball(tmp_path / "cifar.tar.gz", 300, 50)
    straight = tmp_path / "straight"
    done = cli(*_train(family_spec, tarball, straight))
    assert done.returncode == 0, done.stderr[-2000:]
    interrupted = tmp_path / "interrupted"
    status, _ = interrupt_after_first_epoch(_train(family_spec, tarball, interrupted), interrupted)
    state = json.loads((interrupted / "state.json").read_text())
    assert status == 130 and state["epoch"] == 1 and len(state["seed_states"]) == 9 + 9
    done = cli("train", "--resume", "--out", str(interrupted))
    assert done.returncode == 0, done.stderr[-2000:]
    a = keras.saving.load_model(straight / "model.keras").get_weights()
    b = keras.saving.load_model(interrupted / "model.keras").get_weights()
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    onnx_ops = {n.op_type for n in onnx.load(str(straight / "model.onnx")).graph.node}
    assert {"Conv", "AveragePool", "Sigmoid", "Mul"} <= onnx_ops and "Dropout" not in onnx_ops


def test_random_generators_are_restored_so_masks_repeat_after_a_reload(
    family_spec: Path, tmp_path: Path
) -> None:
    from rescompile.keras_backend.build import build_spec
    from rescompile.keras_backend.model import restore_seed_states, seed_states

    model = build_spec(family_spec, tmp_path, save=False).model
    x = np.ones((8, 32, 32, 3), "float32")
    model(x, training=True)
    states = seed_states(model)
    assert len(states) == 9 + 9 and all(len(s) == 2 for s in states)  # drop-path and dropout per block
    model.save(tmp_path / "m.keras")
    expected = np.asarray(model(x, training=True))
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert not np.array_equal(np.asarray(reloaded(x, training=True)), expected), "a reload forgets them"
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    restore_seed_states(reloaded, states)
    assert np.array_equal(np.asarray(reloaded(x, training=True)), expected)
