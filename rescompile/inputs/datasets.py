"""CIFAR-10/100 in memory: the python-format tarball or folder, or keras.datasets."""

from __future__ import annotations

import io
import lzma
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rescompile.errors import RescompileError
from rescompile.inputs.images import image_files

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class _SafeUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles: allow plain containers and numpy arrays, nothing executable."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")


def _unpickle(raw: bytes) -> Any:
    return _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()


def parse_cifar_batch(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels from the bytes of one CIFAR python-format batch."""
    try:
        batch = _unpickle(raw)
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels = np.asarray(batch.get(b"labels", batch.get(b"fine_labels")), dtype=np.int64)
    except Exception as exc:  # a hostile pickle raises anything: ValueError, OverflowError, MemoryError...
        raise RescompileError(f"{source}: not a CIFAR python-format batch ({_one_line(exc)})") from None
    if len(labels) != len(data):
        raise RescompileError(f"{source}: {len(data)} images but {len(labels)} labels")
    return data, labels


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch file."""
    try:
        return parse_cifar_batch(path.read_bytes(), str(path))
    except OSError as exc:
        raise RescompileError(f"{path}: {exc.strerror or exc}") from None


@dataclass
class Dataset:
    """Images as uint8 NHWC arrays with integer labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]

    @property
    def classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)


CIFAR_MEMBERS = frozenset(
    {*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta", "train", "test", "meta"}
)
BATCH_BYTES = 32 * 2**20
"""A CIFAR batch of 10,000 images (CIFAR-10's data and test batches, CIFAR-100's test) is 30.7 MB."""
MEMBER_BYTES = {"train": 160 * 2**20, "batches.meta": 2**20, "meta": 2**20}
"""CIFAR-100's train member holds 50,000 images (155 MB); the meta members hold class names."""
MAX_ARCHIVE_BYTES = 512 * 2**20
"""What an archive may decompress to in all: the CIFAR-10 and -100 tarballs hold ~185 MB."""
MAX_ARCHIVE_MEMBERS = 64


def _member_budget(name: str) -> int:
    return MEMBER_BYTES.get(name, BATCH_BYTES)


def _cifar_members(path: Path) -> dict[str, bytes]:
    """Member base name -> bytes of the CIFAR members (CIFAR_MEMBERS), from a CIFAR tarball or an
    extracted folder; a truncated, corrupt or oversized archive is a one-line error. A tarball is
    read as a stream, each member's size checked against what a CIFAR member holds before it is
    read, and the whole against MAX_ARCHIVE_BYTES before anything is skipped."""
    if path.is_dir():
        try:
            return {
                p.name: _read_member(p)
                for p in sorted(path.rglob("*"))
                if p.name in CIFAR_MEMBERS and p.is_file()
            }
        except OSError as exc:
            raise RescompileError(
                f"--data {path}: cannot read {exc.filename} ({exc.strerror or exc})"
            ) from None
    if not path.exists():
        raise RescompileError(f"--data {path}: no such file or folder")
    if not path.is_file():
        raise RescompileError(f"--data {path}: not a regular file or a folder")
    try:
        with tarfile.open(path, "r|*") as archive:
            members: dict[str, bytes] = {}
            for count, member in enumerate(archive, start=1):
                name = Path(member.name).name
                _check_member(path, member, count, archive.offset)
                if member.isfile() and name in CIFAR_MEMBERS:
                    if name in members:
                        raise RescompileError(f"--data {path}: {name} appears twice in the archive")
                    members[name] = archive.extractfile(member).read()  # type: ignore[union-attr]
            return members
    except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
        unknown = isinstance(exc, tarfile.ReadError) and str(exc) in _UNKNOWN_FORMAT
        detail = (
            "not a tar, tar.gz, tar.bz2 or tar.xz archive" if unknown else _one_line(exc.__cause__ or exc)
        )
        raise RescompileError(f"--data {path}: not a readable CIFAR tarball ({detail})") from None


_UNKNOWN_FORMAT = {"invalid header", "empty file", "bad checksum"}


def _check_member(path: Path, member: tarfile.TarInfo, count: int, offset: int) -> None:
    """Refuse an archive whose next member would pass a CIFAR member's size or the whole budget."""
    name = Path(member.name).name
    if count > MAX_ARCHIVE_MEMBERS:
        raise RescompileError(
            f"--data {path}: more than {MAX_ARCHIVE_MEMBERS} members, more than a CIFAR archive"
        )
    if name in CIFAR_MEMBERS and member.size > _member_budget(name):
        raise RescompileError(
            f"--data {path}: {member.name} has {member.size:,} bytes,"
            f" more than a CIFAR {name} member ({_member_budget(name):,})"
        )
    if offset + member.size > MAX_ARCHIVE_BYTES:
        raise RescompileError(
            f"--data {path}: decompresses to more than {MAX_ARCHIVE_BYTES:,} bytes, more than a CIFAR archive"
        )


def _read_member(path: Path) -> bytes:
    size, budget = path.stat().st_size, _member_budget(path.name)
    if size > budget:
        raise RescompileError(
            f"--data {path}: {size:,} bytes, more than a CIFAR {path.name} member ({budget:,})"
        )
    return path.read_bytes()


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type where it has none), cut to `limit`."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _batch(members: dict[str, bytes], name: str, source: Path) -> tuple[np.ndarray, np.ndarray]:
    if name not in members:
        raise RescompileError(
            f"--data {source}: {name} is missing (is this the python-format CIFAR archive?)"
        )
    return parse_cifar_batch(members[name], f"--data {source}: {name}")


def load_cifar(path: Path, classes: int = 10) -> Dataset:
    """CIFAR-10 (data_batch_1..5, test_batch, batches.meta) or CIFAR-100 (train, test, meta)."""
    members = _cifar_members(path)
    if classes == 10:
        train = [
            _batch(members, f"data_batch_{i}", path) for i in range(1, 6) if f"data_batch_{i}" in members
        ]
        if not train:
            loose = image_files(path)[:1] if path.is_dir() else []
            raise RescompileError(
                f"--data {path}: images ({loose[0].name}, ...) but no class folders: image data needs one"
                " sub-folder per class (DATA/cat/*.jpg, DATA/dog/*.jpg), or train/ and val/ folders of"
                " them; `rescompile predict MODEL IMAGE...` scores images without labels"
                if loose
                else f"--data {path}: no data_batch_* files (expected the CIFAR-10 python version)"
            )
        test = _batch(members, "test_batch", path)
        names = _label_names(members, "batches.meta", b"label_names") or CIFAR10_CLASSES
    else:
        train = [_batch(members, "train", path)]
        test = _batch(members, "test", path)
        names = _label_names(members, "meta", b"fine_label_names") or [str(i) for i in range(100)]
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    dataset = Dataset(f"cifar{classes}", x_train, y_train, test[0], test[1], names)
    check_labels(dataset, str(path))
    return dataset


def _label_names(members: dict[str, bytes], name: str, key: bytes) -> list[str] | None:
    if name not in members:
        return None
    try:
        names = list(_unpickle(members[name])[key])
    except Exception:  # an unreadable meta file costs only the names: the defaults are used
        return None
    return [n.decode("utf-8", errors="replace") if isinstance(n, bytes) else str(n) for n in names]


def check_labels(dataset: Dataset, source: str) -> None:
    """Every label in 0..classes-1."""
    for split, labels in (("train", dataset.y_train), ("test", dataset.y_test)):
        bad = labels[(labels < 0) | (labels >= dataset.classes)]
        if bad.size:
            examples = sorted(set(bad.tolist()))[:5]
            raise RescompileError(
                f"--data {source}: {split} labels out of range 0..{dataset.classes - 1}: {examples}"
            )


def load_keras_cifar(classes: int = 10) -> Dataset:
    """CIFAR through keras.datasets (downloads into ~/.keras/datasets where a network exists)."""
    import keras

    try:
        loader = keras.datasets.cifar10 if classes == 10 else keras.datasets.cifar100
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as exc:
        raise RescompileError(
            f"cannot fetch CIFAR-{classes} through keras.datasets ({exc}); pass --data"
        ) from None
    names = CIFAR10_CLASSES if classes == 10 else [str(i) for i in range(100)]
    return Dataset(f"cifar{classes}", x_train, y_train.ravel(), x_test, y_test.ravel(), names)


def load_dataset(data: str | None, classes: int = 10) -> Dataset:
    """`--data` for CIFAR: a tarball, its extracted folder, or nothing (keras.datasets). Image
    folders and TFRecords are streamed (`rescompile.inputs.sources`)."""
    if data is None:
        return load_keras_cifar(classes)
    path = Path(data)
    if path.is_dir():
        nested = [p for p in path.iterdir() if p.is_dir() and p.name.startswith("cifar-")]
        return load_cifar(nested[0] if nested else path, classes)
    return load_cifar(path, classes)
