"""Reading the user's images: decoded, cropped and resized safely, as float32 RGB."""

from __future__ import annotations

import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np

from rescompile.errors import RescompileError

SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
MAX_PIXELS = 89_478_485
"""Pillow's MAX_IMAGE_PIXELS: an image whose header claims more is refused as a decompression bomb."""


def read_image(path: Path, size: int, crop: float = 1.0) -> np.ndarray:
    """An image as float32 RGB (H, W, 3) in [0, 255]: its central square of `crop` of the shorter
    side (1: the whole image), resized to size x size.

    Grayscale, palette and RGBA images are converted to RGB (alpha dropped); 16-bit grayscale is
    scaled to 0..255 (divided by 257), not clipped; any other size is resized bilinearly, so a
    batch of mixed sizes becomes one batch. Only regular files are read, an image whose header
    claims more pixels than Pillow's MAX_IMAGE_PIXELS is refused as a possible decompression
    bomb, and a truncated or corrupt file is an error, never a traceback.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        handle = open_regular(path)
    except FileNotFoundError:
        raise RescompileError(f"{path}: file not found") from None
    except OSError as exc:
        raise RescompileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        with handle, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on odd files: not for the user's stderr
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(handle) as image:
                image.load()
                if image.mode in SIXTEEN_BIT_MODES:
                    return _grey16(image, size)
                image = image.convert("RGB")
                if crop < 1.0:
                    image = image.crop(_central_square(image.size, crop))
                if image.size != (size, size):
                    image = image.resize((size, size), Image.Resampling.BILINEAR)
                return np.asarray(image, dtype=np.float32)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise RescompileError(
            f"{path}: image too large ({pixels}, limit {Image.MAX_IMAGE_PIXELS:,}); "
            "refusing a possible decompression bomb"
        ) from None
    except UnidentifiedImageError:
        raise RescompileError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except Exception as exc:  # Pillow's decoders raise OSError, SyntaxError, ValueError, zlib.error...
        raise RescompileError(f"{path}: not a readable image ({_one_line(exc)})") from None


def _central_square(size: tuple[int, int], fraction: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the central square of `fraction` of the shorter side,
    placed as the tf.data evaluation crop places it (`rescompile.inputs.crops.center_window`)."""
    width, height = size
    side = max(round(min(width, height) * fraction), 1)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def open_regular(path: Path | str):
    """A binary file object for a regular file; a FIFO or device is refused before any read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RescompileError(f"{path}: not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _grey16(image, size: int) -> np.ndarray:
    """A 16-bit grayscale image scaled to 0..255 (65535 -> 255) and repeated into RGB."""
    from PIL import Image

    grey = np.clip(np.asarray(image).astype(np.float32), 0, 65535) / 257.0
    plane = Image.fromarray(grey)
    if plane.size != (size, size):
        plane = plane.resize((size, size), Image.Resampling.BILINEAR)
    return np.repeat(np.asarray(plane, dtype=np.float32)[..., None], 3, axis=-1)


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, cut to `limit` characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def image_files(folder: Path) -> list[Path]:
    """PNG and JPEG files below a folder, sorted."""
    suffixes = {".png", ".jpg", ".jpeg"}
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes)
