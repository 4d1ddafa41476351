"""Raw little-endian tensor bytes to numpy arrays, shared by the safetensors and `.pth` readers."""

from __future__ import annotations

import numpy as np

MAX_DIMENSIONS = 8
"""More dimensions than any weight of a convolutional network has."""


def bfloat16_to_float32(raw: np.ndarray) -> np.ndarray:
    """bfloat16 values (as uint16) widened exactly to float32: they are float32's upper halves."""
    return (raw.astype("<u4") << 16).view("<f4")


def checked_shape(shape: object, where: str) -> tuple[int, ...]:
    """`shape` as a tuple of non-negative ints, or ValueError naming `where`."""
    if (
        not isinstance(shape, (list, tuple))
        or len(shape) > MAX_DIMENSIONS
        or not all(type(n) is int and n >= 0 for n in shape)
    ):
        raise ValueError(f"{where}: bad shape {shape!r}"[:200])
    return tuple(shape)
