"""torchvision/timm checkpoints through `--weights`: each reduced reference model (basic and
bottleneck ResNet, ResNeXt, Wide ResNet, timm's SE-ResNet and ResNet-D) gives torch's logits in
Keras and ONNX; every key that does not fit is listed in one error; preprocessing travels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rescompile.checkpoints.preprocess import IMAGENET as IMAGENET_PREPROCESSING
from rescompile.errors import RescompileError
from rescompile.keras_backend.build import build_spec
from rescompile.keras_backend.model import load_weights
from rescompile.spec.artifact import read_keras_record
from tests.checkpoint_helpers import FIXTURES, MODELS, fixture_state, write_safetensors, write_torch_zip
from tests.numerics import assert_close_to_scale

keras = pytest.importorskip("keras")
REFS = np.load(FIXTURES / "refs.npz")
IMAGENET = IMAGENET_PREPROCESSING.model_dump()
BOTTLENECK = FIXTURES / "tv_resnet_bottleneck.yaml"
PARTIAL_HINT = " (--allow-partial loads the rest)"


def _weights(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


@pytest.mark.parametrize("name", MODELS)
def test_each_reference_checkpoint_gives_torchs_logits_in_keras(name: str, tmp_path: Path) -> None:
    result = build_spec(
        FIXTURES / f"{name}.yaml", tmp_path, weights=str(FIXTURES / f"{name}.safetensors"), save=False
    )
    assert_close_to_scale(result.model.predict(REFS["input"], verbose=0), REFS[name], relative=1e-5)
    assert result.record.preprocess.model_dump() == IMAGENET


def test_cli_build_from_a_pth_writes_keras_and_onnx_that_preprocess_as_the_checkpoint(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "rescompile", "build", str(FIXTURES / "tv_resnet_basic.yaml"),
            "--out", str(tmp_path), "--weights", str(FIXTURES / "tv_resnet_basic.pth"),
            "--weights-format", "torchvision", "--onnx",
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded weights into 27 layers" in done.stdout
    record = read_keras_record(tmp_path / "tv_resnet_basic.keras")
    assert record is not None and record.preprocess.model_dump() == IMAGENET
    session = ort.InferenceSession(str(tmp_path / "tv_resnet_basic.onnx"), providers=["CPUExecutionProvider"])
    assert_close_to_scale(
        session.run(None, {"input": REFS["input"]})[0], REFS["tv_resnet_basic"], relative=1e-5
    )
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["rescompile"])["preprocess"] == IMAGENET
    model = keras.saving.load_model(tmp_path / "tv_resnet_basic.keras")
    assert_close_to_scale(model.predict(REFS["input"], verbose=0), REFS["tv_resnet_basic"], relative=1e-5)


def test_missing_unexpected_and_misshaped_keys_are_one_error_and_nothing_loads(tmp_path: Path) -> None:
    state = fixture_state("tv_resnet_bottleneck")
    del state["layer2.0.bn3.running_var"]
    state["layer2.0.conv4.weight"] = np.zeros((32, 8, 1, 1), np.float32)
    state["layer3.0.conv2.weight"] = state["layer3.0.conv2.weight"][:, :8]
    path = write_safetensors(tmp_path / "bad.safetensors", state)
    built = build_spec(BOTTLENECK, tmp_path, save=False)
    model, graph = built.model, built.analysis.graph
    before = _weights(model)
    for allow_partial in (False, True):  # a mis-shaped key never loads
        with pytest.raises(RescompileError) as error:
            load_weights(model, path, graph=graph, allow_partial=allow_partial)
        assert str(error.value) == (
            f"{path}: the torchvision checkpoint does not fit tv_resnet_bottleneck: 1 missing:"
            " layer2.0.bn3.running_var; 1 unexpected: layer2.0.conv4.weight; 1 mis-shaped:"
            " layer3.0.conv2.weight [16, 8, 3, 3] (model [16, 16, 3, 3])"
        )
    after = _weights(model)
    assert all(
        np.array_equal(a, b) for name in before for a, b in zip(before[name], after[name], strict=True)
    )


def test_allow_partial_loads_the_rest_and_warns_of_each_key(tmp_path: Path, capsys) -> None:
    state = fixture_state("tv_resnet_bottleneck")
    del state["layer2.0.bn3.running_var"]
    state["extra.weight"] = np.zeros(3, np.float32)
    state["\x1b[31m" + "x" * 300] = np.zeros(3, np.float32)  # shown escaped and cut
    path = write_safetensors(tmp_path / "partial.safetensors", state)
    with pytest.raises(RescompileError) as error:
        build_spec(BOTTLENECK, tmp_path, weights=str(path), save=False)
    unexpected = "extra.weight, \\x1b[31m" + "x" * 95 + "..."
    assert str(error.value).endswith(
        f"1 missing: layer2.0.bn3.running_var; 2 unexpected: {unexpected}{PARTIAL_HINT}"
    )
    capsys.readouterr()
    result = build_spec(BOTTLENECK, tmp_path, weights=str(path), save=False, allow_partial=True)
    warnings = capsys.readouterr().err.strip().splitlines()
    assert warnings == [
        f"warning: {path}: 2 keys unused: {unexpected}",
        f"warning: {path}: 1 layer of the model has no weights in the file: conv3_x_block1_3_bn"
        " (left randomly initialised)",
    ]
    conv = result.model.get_layer("conv4_x_block1_2_conv").get_weights()[0]
    assert np.array_equal(conv, state["layer3.0.conv2.weight"].transpose(2, 3, 1, 0))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_refused(bad: float, tmp_path: Path) -> None:
    state = fixture_state("timm_seresnet")
    state["layer3.0.se.fc2.bias"][1] = bad
    path = write_safetensors(tmp_path / "poisoned.safetensors", state)
    with pytest.raises(RescompileError, match="layer conv4_x_block1_se_expand has non-finite weights"):
        build_spec(FIXTURES / "timm_seresnet.yaml", tmp_path, weights=str(path), save=False)


def test_a_new_classifier_is_a_new_head_and_the_backbone_still_loads(tmp_path: Path, capsys) -> None:
    weights = str(FIXTURES / "timm_resnetd.safetensors")
    result = build_spec(FIXTURES / "timm_resnetd.yaml", tmp_path, weights=weights, classes=5, save=False)
    assert capsys.readouterr().err.strip() == f"{weights}: new head, randomly initialised: predictions"
    features = build_spec(
        FIXTURES / "timm_resnetd.yaml", tmp_path, weights=weights, include_top=False, save=False
    )
    assert capsys.readouterr().err == ""  # the file's fc is unused, not unexpected
    late = build_spec(FIXTURES / "timm_resnetd.yaml", tmp_path, weights=weights, outputs=["C3"], save=False)
    assert capsys.readouterr().err == ""  # so are the stages after C3
    reference = build_spec(FIXTURES / "timm_resnetd.yaml", tmp_path, weights=weights, save=False).model
    inner = keras.Model(reference.input, reference.get_layer("conv5_x_block1_out").output)
    expected = inner.predict(REFS["input"], verbose=0)
    assert_close_to_scale(features.model.predict(REFS["input"], verbose=0), expected, relative=1e-6)
    head_input = keras.Model(result.model.input, result.model.get_layer("avg_pool").output)
    assert_close_to_scale(
        head_input.predict(REFS["input"], verbose=0), expected.mean(axis=(1, 2)), relative=1e-5
    )
    c3 = keras.Model(reference.input, reference.get_layer("conv3_x_block1_out").output)
    assert_close_to_scale(
        late.model.predict(REFS["input"], verbose=0), c3.predict(REFS["input"], verbose=0), 1e-6
    )


def test_a_grey_stem_adapts_the_checkpoints_rgb_kernel(tmp_path: Path) -> None:
    weights = str(FIXTURES / "tv_resnet_basic.safetensors")
    rgb = build_spec(FIXTURES / "tv_resnet_basic.yaml", tmp_path, weights=weights, save=False).model
    grey = build_spec(
        FIXTURES / "tv_resnet_basic.yaml", tmp_path, weights=weights, in_channels=1, save=False
    ).model
    image = REFS["input"].mean(axis=3, keepdims=True)
    expected = rgb.predict(np.repeat(image, 3, axis=3), verbose=0)
    assert_close_to_scale(grey.predict(image, verbose=0), expected, relative=1e-5)


@pytest.mark.parametrize(
    ("spec", "options", "weights_format", "says"),
    [
        ("timm_seresnet", {}, "torchvision", "torchvision's ResNet has no squeeze-excitation (timm's has"),
        ("timm_resnetd", {}, "torchvision", "torchvision's ResNet has no deep stem (3 convolutions)"),
        ("tv_resnet_bottleneck", {"downsample": "first-conv"}, None, "stride on their first 3x3 convolution"),
        ("tv_resnet_bottleneck", {"bn_epsilon": 1.001e-5}, None, "BatchNorm epsilon is 1e-05;"),
    ],
)
def test_a_network_the_checkpoints_code_cannot_describe_is_refused(
    spec: str, options: dict, weights_format: str | None, says: str, tmp_path: Path
) -> None:
    weights = FIXTURES / f"{spec}.safetensors"
    with pytest.raises(RescompileError) as error:
        build_spec(
            FIXTURES / f"{spec}.yaml", tmp_path, weights=str(weights), options=options or None,
            weights_format=weights_format, save=False,
        )  # fmt: skip
    assert str(error.value).startswith(f"{weights}: ") and says in str(error.value)


def test_weights_format_is_checked_and_only_for_pytorch_files(tmp_path: Path) -> None:
    with pytest.raises(
        RescompileError, match="--weights-format must be one of torchvision, timm, got 'keras'"
    ):
        build_spec(
            BOTTLENECK, tmp_path, weights=str(FIXTURES / "tv_resnext.safetensors"), weights_format="keras"
        )
    h5 = tmp_path / "w.h5"
    h5.write_bytes(b"")
    with pytest.raises(RescompileError, match="--weights-format is for PyTorch checkpoints"):
        build_spec(BOTTLENECK, tmp_path, weights=str(h5), weights_format="timm", save=False)


def test_cli_refuses_a_malicious_pth_in_one_line_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = (
        b"\x80\x02cos\nsystem\nX" + len(f"touch {marker}").to_bytes(4, "little") + f"touch {marker}".encode()
    )
    path = write_torch_zip(tmp_path / "evil.pth", payload + b"\x85R.")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rescompile",
            "build",
            str(BOTTLENECK),
            "--out",
            str(tmp_path / "out"),
            "--weights",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {path}: not a readable torch.save file: the pickle calls os.system"
    assert not marker.exists() and not (tmp_path / "out" / "tv_resnet_bottleneck.keras").exists()


def test_a_timm_checkpoint_loads_under_the_transfer_specs_new_head(tmp_path: Path, capsys) -> None:
    weights = str(FIXTURES / "timm_resnetd.safetensors")
    spec = FIXTURES / "timm_resnetd_transfer.yaml"
    result = build_spec(spec, tmp_path, weights=weights, freeze="backbone", save=False)
    new = capsys.readouterr().err.strip()
    assert new.startswith(f"{weights}: new head, randomly initialised: head_bn2, head_dense3,")
    images = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    reference = build_spec(
        FIXTURES / "timm_resnetd.yaml", tmp_path, weights=weights, input_size=64, save=False
    ).model
    expected = keras.Model(reference.input, reference.get_layer("conv5_x_block1_out").output)
    backbone = keras.Model(result.model.input, result.model.get_layer("conv5_x_block1_out").output)
    upsampled = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)
    assert_close_to_scale(backbone.predict(images, verbose=0), expected.predict(upsampled, verbose=0), 1e-6)
    assert not result.model.get_layer("conv3_x_block1_2_conv").trainable
    assert result.model.get_layer("predictions").trainable


@pytest.mark.slow  # trains twice (head, then fine-tune): ~40 s on 2 cores
def test_train_transfers_from_a_timm_checkpoint_normalising_as_it_expects(tmp_path: Path) -> None:
    from tests.synthetic import write_cifar_tarball

    tarball = write_cifar_tarball(tmp_path / "cifar.tar.gz", 60, 20)
    run = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable, "-m", "rescompile", "train", str(FIXTURES / "timm_resnetd_transfer.yaml"),
            "--data", str(tarball), "--out", str(run), "--recipe", "transfer",
            "--weights", str(FIXTURES / "timm_resnetd.safetensors"), "--weights-format", "timm",
            "--freeze", "backbone", "--set", "validation=20", "--precision", "float32", "--no-tensorboard",
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loaded 36 layers from" in done.stdout and "fine-tuning the whole network" in done.stdout
    preprocess = json.loads((run / "preprocess.json").read_text())
    for field in ("mean", "std", "scale"):  # as float32 holds them
        assert preprocess[field] == pytest.approx(IMAGENET[field], rel=1e-6)
    assert json.loads((run / "spec.json").read_text())["preprocess"] == IMAGENET  # a resumed run keeps it
    record = read_keras_record(run / "model.keras")
    assert record is not None and record.classes == 10
    assert record.preprocess.mean == pytest.approx(IMAGENET["mean"], rel=1e-6)


def test_export_of_a_spec_with_a_checkpoint_writes_its_onnx_and_preprocessing(tmp_path: Path) -> None:
    from rescompile.commands.export import export
    from rescompile.onnx_backend.emit import ExportOptions

    weights = str(FIXTURES / "timm_seresnet.safetensors")
    out = tmp_path / "seresnet.onnx"
    export(FIXTURES / "timm_seresnet.yaml", out, ExportOptions(), weights=weights, weights_format="timm")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert_close_to_scale(
        session.run(None, {"input": REFS["input"]})[0], REFS["timm_seresnet"], relative=1e-5
    )
    assert json.loads(session.get_modelmeta().custom_metadata_map["preprocess"]) == IMAGENET
    with pytest.raises(RescompileError, match=f"--weights is for a SPEC: {out} carries its own weights"):
        export(out, tmp_path / "again.onnx", ExportOptions(), weights=weights)
