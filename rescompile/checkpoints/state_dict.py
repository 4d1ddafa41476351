"""A PyTorch checkpoint file to a numpy state dict: `.pth`/`.pt`/`.bin` (torch.save's zip) or
`.safetensors`, told apart by their first bytes; nothing in either is run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rescompile.checkpoints.pth import read_pth
from rescompile.checkpoints.safetensors import read_safetensors
from rescompile.errors import RescompileError

SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
"""File names read as PyTorch checkpoints (others are Keras HDF5 weights)."""


def is_torch_checkpoint(path: Path) -> bool:
    """Whether `path` is named as a PyTorch checkpoint."""
    return path.suffix.lower() in SUFFIXES


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Key -> array; a `module.` prefix that every key has (DataParallel's) is dropped."""
    try:
        with path.open("rb") as handle:
            zipped = handle.read(4) == b"PK\x03\x04"
        safetensors = path.suffix.lower() == ".safetensors" and not zipped
        state = read_safetensors(path) if safetensors else read_pth(path)
    except FileNotFoundError:
        raise RescompileError(f"{path}: weights file not found") from None
    except (OSError, ValueError, MemoryError) as exc:
        kind = "safetensors file" if path.suffix.lower() == ".safetensors" else "torch.save file"
        raise RescompileError(f"{path}: not a readable {kind}: {exc}") from None
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state
