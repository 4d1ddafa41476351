"""Writing PyTorch-style checkpoint files without torch, for tests: safetensors and torch.save's
zip layout around a pickle of one's choosing."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

FIXTURES = Path("tests/fixtures/torch")
MODELS = (
    "tv_resnet_basic",
    "tv_resnet_bottleneck",
    "tv_resnext",
    "tv_wide_resnet",
    "timm_seresnet",
    "timm_resnetd",
)
"""The reduced torchvision/timm references made by tests/fixtures/make_torch_refs.py."""

CODES = {"float32": "F32", "float16": "F16", "float64": "F64", "int64": "I64", "uint16": "BF16"}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    """`tensors` in the safetensors layout (uint16 arrays stand for bfloat16 bits)."""
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        size = array.nbytes
        header[name] = {
            "dtype": CODES[str(array.dtype)],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + size],
        }
        blobs.append(array.tobytes())
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"".join(blobs))
    return path


def write_torch_zip(path: Path, pickle_bytes: bytes, storages: dict[str, bytes] | None = None) -> Path:
    """A zip as torch.save writes it: archive/data.pkl and archive/data/<key>, uncompressed."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        for key, data in (storages or {}).items():
            archive.writestr(f"archive/data/{key}", data)
    return path


def fixture_state(name: str) -> dict[str, np.ndarray]:
    """The state dict of fixture `name`."""
    from rescompile.checkpoints.safetensors import read_safetensors

    return read_safetensors(FIXTURES / f"{name}.safetensors")
