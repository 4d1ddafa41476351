"""torch.save's zip files (`.pth`) read without torch and without running code: the pickle goes
through an unpickler that knows only how to rebuild tensors (as numpy arrays) and ordered dicts;
any other global it names is refused before anything is called."""

from __future__ import annotations

import collections
import io
import math
import pickle
import zipfile
from pathlib import Path

import numpy as np

from rescompile.checkpoints.arrays import bfloat16_to_float32, checked_shape

MAX_PICKLE = 64_000_000
"""A state dict's pickle holds names and shapes only: far below this."""

STORAGES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class Refused(ValueError):
    """The pickle names something other than tensors and dicts."""


class _Sealed:
    """A value the pickle can hold but not change: BUILD (its attribute setting) is refused."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        object.__setattr__(self, "value", value)

    def __setattr__(self, name: str, value) -> None:
        raise Refused("the pickle sets attributes of a tensor or storage")


class _StorageType(_Sealed):
    """What a pickle's `torch.FloatStorage` (etc.) stands for: a storage's element type name."""

    __slots__ = ()


class _Storage(_Sealed):
    """A storage: the flat array of one data/<key> record."""

    __slots__ = ()


class Tensor(_Sealed):
    """A tensor rebuilt from a pickle: its array."""

    __slots__ = ()


def _rebuild_tensor(storage, offset, size, stride, *_ignored) -> Tensor:
    """torch._utils._rebuild_tensor_v2: a strided view of a storage, copied, bounds checked."""
    if not isinstance(storage, _Storage):
        raise Refused("a tensor without a storage")
    storage = storage.value
    shape = checked_shape(size, "tensor")
    strides = checked_shape(stride, "tensor strides")
    if type(offset) is not int or offset < 0 or len(strides) != len(shape):
        raise Refused("a tensor with a bad offset or strides")
    if math.prod(shape):
        last = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
        if last >= storage.size:
            raise Refused(f"a tensor of shape {list(shape)} reaching past its storage of {storage.size}")
    view = np.lib.stride_tricks.as_strided(
        storage[offset:] if math.prod(shape) else storage[:0],
        shape,
        [s * storage.itemsize for s in strides],
        writeable=False,
    )
    return Tensor(np.array(view))


ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
}


class _Unpickler(pickle.Unpickler):
    """Finds only the globals a state dict needs; storages come from the zip's data/ records."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.prefix = prefix
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if module == "torch" and name in STORAGES:
            return _StorageType(name)
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        raise Refused(f"the pickle calls {module}.{name}"[:200])

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise Refused("an unknown persistent record")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _StorageType) or not isinstance(key, str) or type(numel) is not int:
            raise Refused("a storage without a known type")
        if key not in self.storages:
            self.storages[key] = _Storage(self._storage(key, kind.value, numel))
        return self.storages[key]

    def _storage(self, key: str, kind: str, numel: int) -> np.ndarray:
        dtype = np.dtype(STORAGES[kind])
        data = _member(self.archive, f"{self.prefix}data/{key}", numel * dtype.itemsize)
        array = np.frombuffer(data, dtype=dtype)
        return bfloat16_to_float32(array) if kind == "BFloat16Storage" else array


def _member(archive: zipfile.ZipFile, name: str, size: int | None = None) -> bytes:
    """A stored (uncompressed, as torch writes) member of `size` bytes (None: the pickle, at most
    MAX_PICKLE), which the zip file must be large enough to hold before a byte is read."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise Refused(f"no record {name}"[:200]) from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise Refused(f"{name} is compressed (torch writes its records uncompressed)"[:200])
    if size is not None and info.file_size != size:
        raise Refused(f"{name} holds {info.file_size} bytes, not {size}"[:200])
    archive.fp.seek(0, io.SEEK_END)
    if info.file_size > min(archive.fp.tell(), MAX_PICKLE if size is None else info.file_size):
        raise Refused(f"{name} claims {info.file_size} bytes, more than it can hold"[:200])
    with archive.open(info) as handle:
        return handle.read(info.file_size)


def read_pth(path: Path) -> dict[str, np.ndarray]:
    """Tensor name -> array from a torch.save zip file (a state dict, or a dict holding one under
    `state_dict` or `model`); ValueError (Refused) says what is wrong."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [
                name for name in archive.namelist() if name.endswith("data.pkl") and name.count("/") == 1
            ]
            if len(pickles) != 1:
                raise Refused("not a torch.save zip file (no <archive>/data.pkl)")
            prefix = pickles[0].removesuffix("data.pkl")
            unpickler = _Unpickler(_member(archive, pickles[0]), archive, prefix)
            try:
                loaded = unpickler.load()
            except ValueError as exc:  # Refused, a bad shape, an unsupported protocol
                raise Refused(str(exc)[:200]) from None
            except Exception as exc:  # a malformed pickle: whatever the C unpickler raises
                raise Refused(f"cannot read its pickle ({type(exc).__name__})") from None
    except zipfile.BadZipFile:
        raise Refused("not a zip file (torch.save's format since PyTorch 1.6)") from None
    return _state_dict(loaded)


def _state_dict(loaded: object) -> dict[str, np.ndarray]:
    """The tensors of a state dict, found at the top or under `state_dict` or `model`."""
    if isinstance(loaded, dict) and not any(isinstance(v, Tensor) for v in loaded.values()):
        nested = loaded.get("state_dict", loaded.get("model"))
        loaded = nested if isinstance(nested, dict) else loaded
    if not isinstance(loaded, dict) or not loaded:
        raise Refused("holds no state dict of tensors")
    return {str(key): value.value for key, value in loaded.items() if isinstance(value, Tensor)}
