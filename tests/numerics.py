"""Comparing outputs of two backends the way float32 allows: relative to the outputs' scale."""

from __future__ import annotations

import numpy as np


def assert_close_to_scale(got: np.ndarray, expected: np.ndarray, relative: float = 1e-4) -> None:
    """Largest difference under `relative` of the largest |expected| (and of 1, for probabilities).

    Untrained features reach ~100, where float32 sums in another order differ by ~1e-4 absolute;
    CPUs with other vector widths (AVX2, AVX-512) order the sums differently.
    """
    scale = max(1.0, float(np.abs(expected).max()))
    difference = float(np.abs(np.asarray(got) - np.asarray(expected)).max())
    assert difference < relative * scale, f"largest difference {difference:.3g} at scale {scale:.3g}"
