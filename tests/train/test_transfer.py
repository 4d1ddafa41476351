"""Transfer learning: a keras.applications ResNet50 backbone, upsampled CIFAR input, a new head."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import onnxruntime as ort
import pytest

from rescompile.analysis.analyze import analyze
from rescompile.keras_backend.build import build_spec
from rescompile.keras_backend.weights import weight_store
from rescompile.onnx_backend.emit import ExportOptions, export_onnx
from tests.keras_helpers import randomize_batchnorm
from tests.numerics import assert_close_to_scale
from tests.synthetic import write_cifar_tarball

keras = pytest.importorskip("keras")
SPEC = Path("specs/transfer/resnet50_cifar10.yaml")


@pytest.fixture(scope="module")
def notop_weights(tmp_path_factory) -> tuple[Path, object]:
    """A randomly initialised ResNet50(include_top=False) saved like resnet50_..._notop.h5."""
    from keras.src.legacy.saving import legacy_h5_format

    model = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(256, 256, 3))
    randomize_batchnorm(model)
    path = tmp_path_factory.mktemp("weights") / "resnet50_notop.h5"
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    return path, model


def test_spec_declares_upsampling_and_a_head_of_dense_dropout_batchnorm() -> None:
    analysis = analyze(SPEC)
    kinds = [type(node).__name__ for node in analysis.graph.nodes if node.stage == "head"]
    assert kinds == [
        "Flatten",
        "BatchNorm",
        "Dense",
        "Dropout",
        "BatchNorm",
        "Dense",
        "Dropout",
        "BatchNorm",
        "Dense",
    ]
    assert [n.shape for n in analysis.graph.nodes if type(n).__name__ == "Upsample"] == [
        (64, 64, 3),
        (128, 128, 3),
        (256, 256, 3),
    ]
    assert analysis.graph.stages[-1].output == (8, 8, 2048) and analysis.ok


def test_imagenet_backbone_weights_load_and_onnx_matches(notop_weights: tuple, tmp_path: Path) -> None:
    path, apps = notop_weights
    result = build_spec(SPEC, tmp_path, weights=str(path), save=False)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    upsampled = np.repeat(np.repeat(images, 8, axis=1), 8, axis=2)
    backbone = keras.Model(result.model.input, result.model.get_layer("conv5_block3_out").output)
    expected = apps.predict(upsampled, verbose=0)
    assert_close_to_scale(backbone.predict(images, verbose=0), expected)
    randomize_batchnorm(result.model, graph=result.analysis.graph)
    exported = export_onnx(
        result.analysis.network,
        weight_store(result.model, result.analysis.graph),
        ExportOptions(),
    )
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": images})[0]
    assert np.abs(got - result.model.predict(images, verbose=0)).max() < 1e-4
    ops = [node.op_type for node in exported.graph.node]
    assert ops.count("Transpose") == 1 and ops.count("Resize") == 3 and "Dropout" not in ops


@pytest.mark.slow  # 125 s on 2 cores (a ResNet-50 trained twice); CI runs it with -m slow
def test_train_frozen_backbone_then_fine_tune(notop_weights: tuple, tmp_path: Path) -> None:
    path, _ = notop_weights
    tarball = write_cifar_tarball(tmp_path / "cifar.tar.gz", 60, 20)
    run = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable, "-m", "rescompile", "train", str(SPEC), "--data", str(tarball), "--out", str(run),
            "--recipe", "transfer", "--weights", str(path), "--freeze", "backbone",
            "--set", "validation=20", "--set", "finetune.epochs=1", "--precision", "float32",
            "--batch-size", "20",  # given, so not fitted to the 40 training images: 2 steps an epoch
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "froze" in done.stdout and "fine-tuning the whole network" in done.stdout
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    assert [row.split(",")[:2] for row in rows] == [["1", "2"], ["2", "4"]]  # steps continue across phases
    assert float(rows[1].split(",")[2]) == pytest.approx(1e-5)  # the fine-tune learning rate
    model = keras.saving.load_model(run / "model.keras")
    assert model.output.shape[-1] == 10
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2
