"""A bounded reader of safetensors files (timm's and Hugging Face's format): an 8-byte little-endian
header length, a JSON header {name: {dtype, shape, data_offsets}}, then the raw tensors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from rescompile.checkpoints.arrays import bfloat16_to_float32, checked_shape

MAX_HEADER = 100_000_000
"""The format's own limit on the JSON header (100 MB)."""

DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Tensor name -> array (bfloat16 widened to float32); ValueError says what is wrong."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ValueError("too short for a safetensors file")
        length = int.from_bytes(prefix, "little")
        if not 2 <= length <= min(MAX_HEADER, size - 8):
            raise ValueError(f"header length {length} does not fit the file's {size} bytes")
        try:
            header = json.loads(handle.read(length))
        except (ValueError, RecursionError):
            raise ValueError("header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    header.pop("__metadata__", None)
    data_size = size - 8 - length
    data = np.memmap(path, dtype="u1", mode="r", offset=8 + length, shape=(data_size,)) if data_size else b""
    return {name: _tensor(name, entry, data, data_size) for name, entry in header.items()}


def _tensor(name: str, entry: object, data, data_size: int) -> np.ndarray:
    where = f"tensor {name!r}"[:120]
    if not isinstance(entry, dict) or entry.get("dtype") not in DTYPES:
        raise ValueError(
            f"{where}: unknown dtype {entry.get('dtype') if isinstance(entry, dict) else entry!r}"[:200]
        )
    shape = checked_shape(entry.get("shape"), where)
    offsets = entry.get("data_offsets")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)):
        raise ValueError(f"{where}: bad data_offsets")
    begin, end = offsets
    dtype = np.dtype(DTYPES[entry["dtype"]])
    if not 0 <= begin <= end <= data_size or end - begin != math.prod(shape) * dtype.itemsize:
        raise ValueError(
            f"{where}: data_offsets {offsets} do not hold shape {list(shape)} of {entry['dtype']}"
        )
    array = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape).copy()
    return bfloat16_to_float32(array) if entry["dtype"] == "BF16" else array
