"""The images `export --int8` calibrates on: a folder of images or a CIFAR batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rescompile.errors import RescompileError
from rescompile.inputs.datasets import read_cifar_batch
from rescompile.inputs.images import image_files, read_image


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
