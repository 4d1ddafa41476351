"""Static INT8 quantization for CPU serving, calibrated on the user's images or a CIFAR batch."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from rescompile.data import read_cifar_batch
from rescompile.errors import RescompileError
from rescompile.images import image_files, preprocess, read_image


def calibration_images(source: Path, size: int, limit: int) -> np.ndarray:
    """Up to `limit` images (float32 RGB 0..255, size x size) from a folder or a CIFAR batch."""
    if source.is_dir():
        files = image_files(source)[:limit]
        if not files:
            raise RescompileError(f"{source}: no PNG or JPEG images")
        return np.stack([read_image(path, size) for path in files])
    if not source.is_file():
        raise RescompileError(f"{source}: no such file or folder")
    images, _ = read_cifar_batch(source)
    images = images[:limit].astype(np.float32)
    if size != 32:
        from PIL import Image

        images = np.stack(
            [np.asarray(Image.fromarray(i.astype(np.uint8)).resize((size, size)), np.float32) for i in images]
        )
    return images


def quantize(model_path: Path, output: Path, calibration: np.ndarray, config: dict) -> None:
    """Quantize an fp32 ONNX model to INT8 (QDQ, per-channel weights) with static calibration."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = [preprocess(calibration[i : i + 16], config) for i in range(0, len(calibration), 16)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter({"input": batch} for batch in batches)

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(output),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
