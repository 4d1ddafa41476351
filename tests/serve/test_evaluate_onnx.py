"""`evaluate MODEL.onnx`: onnxruntime with the model's own preprocessing, the same scores as the
.keras it was exported from, and no TensorFlow on that path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rescompile.spec.preprocessing import Preprocessing
from tests.synthetic import colour_images, write_cifar_tarball, write_image_folder

keras = pytest.importorskip("keras")

PREPROCESS = Preprocessing(scale=1 / 255, mean=[0.5, 0.4, 0.3], std=[0.25, 0.3, 0.2])
NAMES = [f"class{i}" for i in range(10)]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rescompile", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """A ResNet-20 fitted briefly to the colour classes, as .keras and as .onnx, and data files."""
    from rescompile.keras_backend.build import build_spec
    from rescompile.keras_backend.model_file import model_record, save_model
    from rescompile.keras_backend.weights import weight_store
    from rescompile.onnx_backend.export import export_with_record

    folder = tmp_path_factory.mktemp("evaluate_onnx")
    keras.utils.set_random_seed(0)
    result = build_spec(Path("specs/cifar/resnet20.yaml"), folder, save=False)
    images, labels = colour_images(320, seed=0)
    result.model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    result.model.fit(
        PREPROCESS.normalize(images.astype("float32")), labels, epochs=1, batch_size=32, verbose=0
    )
    record = model_record(result.analysis, preprocess=PREPROCESS, class_names=NAMES)
    save_model(result.model, folder / "r20.keras", record)
    export_with_record(
        weight_store(result.model, result.analysis.graph), result.analysis, folder / "r20.onnx", record=record
    )
    return {
        "folder": folder,
        "keras": folder / "r20.keras",
        "onnx": folder / "r20.onnx",
        "images": write_image_folder(folder / "images", 120, size=(32, 32), seed=3, suffix=".png"),
        "cifar": write_cifar_tarball(folder / "cifar.tar.gz", 50, 150, seed=4),
    }


def test_onnx_and_keras_score_the_same_folder_and_cifar_alike(models: dict) -> None:
    from rescompile.serve.evaluate import evaluate

    for data in (models["images"], models["cifar"]):
        on_keras = evaluate(models["keras"], data=str(data), out=models["folder"])
        on_onnx = evaluate(models["onnx"], data=str(data), out=models["folder"], provider="cpu")
        assert np.array_equal(on_onnx.matrix, on_keras.matrix), data
        assert on_onnx.accuracy == on_keras.accuracy and on_onnx.top5 == on_keras.top5
        assert on_onnx.matrix.sum() == (120 if data == models["images"] else 150)
        assert len(set(on_onnx.matrix.argmax(axis=1))) > 2, "the fitted model tells classes apart"


def test_evaluate_onnx_in_the_light_install_prints_what_keras_prints(models: dict) -> None:
    from tests.commands.test_light_install import light

    data = str(models["images"])
    done = light("evaluate", str(models["onnx"]), "--data", data, "--out", str(models["folder"]))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.strip().endswith("loaded: []"), done.stderr[-2000:]
    reference = cli("evaluate", str(models["keras"]), "--data", data, "--out", str(models["folder"]))
    assert reference.returncode == 0, reference.stderr[-2000:]
    assert done.stdout == reference.stdout  # accuracy, top-5 and the confusion matrix, line for line
    assert "accuracy " in done.stdout and "true \\ predicted" in done.stdout


def test_evaluate_onnx_refuses_what_it_cannot_score(models: dict, tmp_path: Path) -> None:
    done = cli("evaluate", str(models["onnx"]), "--data", str(models["images"]), "--ten-crop")
    assert done.returncode == 2 and "--ten-crop needs a .keras model" in done.stderr
    done = cli("evaluate", str(models["onnx"]))
    assert done.returncode == 2 and "needs --data" in done.stderr
    done = cli("evaluate", str(models["onnx"]), "--data", str(models["images"]), "--spec", "cifar/resnet20")
    assert done.returncode == 2 and "--spec applies to .keras models" in done.stderr
    big = tmp_path / "big"  # 64x64 images are resized to the input, as `predict` resizes them
    write_image_folder(big, 100, size=(64, 64), suffix=".png")
    done = cli("evaluate", str(models["onnx"]), "--data", str(big), "--out", str(tmp_path))
    assert done.returncode == 0 and "on 100 images" in done.stdout, done.stderr
