"""Refuse networks that cannot fit in this machine's memory, before allocating anything."""

from __future__ import annotations

import os

from rescompile.analysis.analyze import Analysis
from rescompile.errors import RescompileError

FLOAT_BYTES = 4
WEIGHT_COPIES = 3
"""Keras holds a layer's initial value and its variable; saving copies the weights once more."""


def available_bytes() -> int:
    """Memory available to a new allocation: MemAvailable on Linux, else physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _gib(count: int) -> str:
    return f"{count / 2**30:,.1f} GiB"


def require_memory(analysis: Analysis, batch: int = 1, training: bool = False) -> None:
    """Raise with the estimate (weights and activations, in bytes) when it exceeds what is free.

    Activations are the float32 outputs of every layer for `batch` images, three times over when
    training (the forward values kept for the backward pass, and their gradients).
    """
    weights = analysis.cost.params_total * FLOAT_BYTES
    activations = analysis.cost.activations * FLOAT_BYTES * batch * (3 if training else 1)
    need = WEIGHT_COPIES * weights + activations
    have = available_bytes()
    if need > have:
        raise RescompileError(
            f"{analysis.spec.name}: needs about {_gib(need)} "
            f"({weights:,} bytes of weights x {WEIGHT_COPIES}, "
            f"{activations:,} bytes of activations at batch {batch}) but {_gib(have)} is available; "
            "pass --no-memory-check to try anyway"
        )
