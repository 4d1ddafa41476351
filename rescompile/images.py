"""Reading the user's images and preprocessing them as a model's metadata says."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rescompile.errors import RescompileError


def read_image(path: Path, size: int) -> np.ndarray:
    """An image as float32 RGB (H, W, 3) in [0, 255], resized to size x size.

    Grayscale, palette and RGBA images are converted to RGB (alpha dropped); any other size is
    resized bilinearly, so a batch of mixed sizes becomes one batch.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.float32)
    except FileNotFoundError:
        raise RescompileError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise RescompileError(f"{path}: not a readable image ({exc})") from None


def preprocess(images: np.ndarray, config: dict) -> np.ndarray:
    """x' = (x * scale - mean) / std per channel, after reordering RGB to BGR if asked.

    A per-pixel mean (CIFAR recipes) is a property of the training data; models that need it
    carry it in their weights after training, so here it is left to the model.
    """
    x = images[..., ::-1] if config.get("color") == "BGR" else images
    x = x * float(config.get("scale", 1.0))
    mean = config.get("mean", 0.0)
    if mean != "per-pixel":
        x = x - np.asarray(mean, dtype=np.float32)
    return (x / np.asarray(config.get("std", 1.0), dtype=np.float32)).astype(np.float32)


def image_files(folder: Path) -> list[Path]:
    """PNG and JPEG files below a folder, sorted."""
    suffixes = {".png", ".jpg", ".jpeg"}
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes)
