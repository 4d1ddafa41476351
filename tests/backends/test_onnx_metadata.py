"""What an exported ONNX file says about itself: who wrote it (producer name and version) and its
precision (float32, float16, or int8 and how it was quantized), as predict and bench read it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from rescompile import __version__
from rescompile.onnx_backend import DEFAULT_CALIBRATION
from rescompile.onnx_backend.quantize import quantize
from rescompile.serve.runtime import metadata, open_session
from rescompile.spec.preprocessing import Preprocessing
from tests.onnx_helpers import export_spec
from tests.synthetic import colour_images

SPEC = Path("specs/cifar/resnet20.yaml")
INT8 = (
    "static QDQ, uint8 activations, int8 per-channel weights (7-bit), stem float32, calibrated on {} images"
)


def _producer(path: Path) -> tuple[str, str]:
    model = onnx.load(str(path), load_external_data=False)
    return model.producer_name, model.producer_version


def _metadata(path: Path) -> dict:
    """The metadata as `predict` and `bench` read and validate it."""
    return metadata(open_session(path, "cpu"), path)


@pytest.mark.parametrize("fp16, precision", [(False, "float32"), (True, "float16")])
def test_float_export_says_its_precision_and_producer(fp16: bool, precision: str, tmp_path: Path) -> None:
    path = tmp_path / "resnet20.onnx"
    export_spec(SPEC, path, fp16=fp16)
    assert _producer(path) == ("rescompile", __version__)
    meta = _metadata(path)
    assert meta["precision"] == precision and "quantization" not in meta
    assert meta["spec_name"] == "cifar_resnet20" and meta["input_size"] == 32


def test_int8_file_says_int8_and_how_and_keeps_the_rest(tmp_path: Path) -> None:
    fp32, int8 = tmp_path / "resnet20.onnx", tmp_path / "resnet20_int8.onnx"
    export_spec(SPEC, fp32)
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    quantize(fp32, int8, images, preprocessing=Preprocessing(scale=1 / 255))
    assert _producer(int8) == ("rescompile", __version__)  # not onnxruntime's quantizer
    meta, float_meta = _metadata(int8), _metadata(fp32)
    assert meta["precision"] == "int8" and meta["quantization"] == INT8.format(8)
    assert {key: meta[key] for key in float_meta if key != "precision"} == {
        key: value for key, value in float_meta.items() if key != "precision"
    }
    # What the description says: QDQ, and the stem's convolution reads float32 weights.
    graph = onnx.load(str(int8)).graph
    stem = next(node for node in graph.node if node.op_type == "Conv")
    initializers = {tensor.name: tensor.data_type for tensor in graph.initializer}
    assert initializers[stem.input[1]] == onnx.TensorProto.FLOAT
    assert any(node.op_type == "QuantizeLinear" for node in graph.node)


def test_export_cli_int8_from_a_spec(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    folder = tmp_path / "calibration"
    folder.mkdir()
    for index, image in enumerate(colour_images(4)[0]):
        Image.fromarray(image).save(folder / f"image{index}.png")
    output = tmp_path / "resnet20_int8.onnx"
    args = ["export", str(SPEC), "-o", str(output), "--int8", "--calibration", str(folder)]
    done = subprocess.run(
        [sys.executable, "-m", "rescompile", *args, "--calibration-size", "4"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        f"warning: calibrating on only 4 images ({DEFAULT_CALIBRATION} is the default):"
        " INT8 activation ranges may not cover your data"
    ) in done.stderr  # far below the default: the user is told
    assert _producer(output) == ("rescompile", __version__)
    meta = _metadata(output)
    assert meta["precision"] == "int8" and meta["quantization"] == INT8.format(4)
    assert meta["spec_name"] == "cifar_resnet20" and meta["preprocess"].mean == "per-pixel"
