"""Streamed data sources: image folders (with or without train/val splits) and TFRecord shards.

Nothing here decodes an image or imports TensorFlow: a source is lists of files with labels (or
of shards with their record counts), which `rescompile.inputs.streaming` turns into tf.data
pipelines. CIFAR (arrays that fit in memory) stays in `rescompile.inputs.datasets`.
"""

from __future__ import annotations

import glob
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rescompile.errors import RescompileError
from rescompile.inputs.class_names import class_names_for
from rescompile.inputs.datasets import Dataset, load_dataset
from rescompile.inputs.images import MAX_PIXELS, image_files, open_regular
from rescompile.inputs.tfrecord import compression, count_records

TRAIN_NAMES = ("train",)
EVAL_NAMES = ("val", "validation", "test")
RECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".record")


@dataclass(frozen=True)
class FileSplit:
    """Image files and their labels, in a fixed (sorted) order."""

    files: tuple[str, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, indices: np.ndarray) -> FileSplit:
        """The files at `indices`, in that order."""
        return FileSplit(tuple(self.files[i] for i in indices), self.labels[indices])


@dataclass(frozen=True)
class RecordSplit:
    """TFRecord shards (sorted), the number of examples in each and each one's compression ("" or
    "GZIP", read from its first bytes: a split may mix plain and GZIP shards)."""

    shards: tuple[str, ...]
    counts: tuple[int, ...]
    compressions: tuple[str, ...]

    def __len__(self) -> int:
        return sum(self.counts)


Split = FileSplit | RecordSplit


@dataclass(frozen=True)
class Source:
    """A streamed dataset: its splits, class names, and how the splits were found."""

    name: str
    class_names: list[str]
    train: Split
    test: Split
    note: str
    skipped: list[str] = field(default_factory=list)
    """Image files left out because they are truncated or not images."""


def is_streamed(data: str | None) -> bool:
    """True for an image folder or TFRecord shards; False for CIFAR (a tarball, its folder, or
    keras.datasets)."""
    if data is None:
        return False
    if _record_pattern(data) is not None:
        return True
    path = Path(data)
    if not path.is_dir() or (path / "data_batch_1").exists() or (path / "test_batch").exists():
        return False
    folders = [p for p in path.iterdir() if p.is_dir()]
    return bool(folders) and not any(p.name.startswith("cifar-") for p in folders)


def open_source(
    data: str, val_data: str | None, classes: int, *, seed: int, strict: bool, test_fraction: float = 0.2
) -> Source:
    """The splits of `--data` (and `--val-data`): TFRecord shards, a folder with train/ and val/
    (or validation/, test/) sub-folders, or a plain class-folder directory split at random."""
    pattern = _record_pattern(data)
    if pattern is not None:
        return _record_source(data, pattern, val_data, classes)
    root = Path(data)
    if not root.is_dir():
        raise RescompileError(f"--data {data}: no such folder")
    train_dir = _named_child(root, TRAIN_NAMES)
    eval_dir = _named_child(root, EVAL_NAMES)
    if val_data is not None:
        class_names, train = _class_folders(train_dir or root, "--data")
        _, test = _class_folders(Path(val_data), "--val-data", class_names)
        note = f"train on {train_dir or root}, test on --val-data {val_data}"
    elif train_dir is not None and eval_dir is not None:
        class_names, train = _class_folders(train_dir, "--data")
        _, test = _class_folders(eval_dir, "--data", class_names)
        note = f"splits found: {train_dir.name}/ ({len(train)} images), {eval_dir.name}/ ({len(test)} images)"
    else:
        class_names, every = _class_folders(train_dir or root, "--data")
        order = np.random.default_rng(seed).permutation(len(every))
        cut = int(len(every) * (1 - test_fraction))
        if cut == len(every) or cut == 0:
            raise RescompileError(
                f"--data {data}: {len(every)} images are too few to split into train and test"
            )
        train, test = every.subset(np.sort(order[:cut])), every.subset(np.sort(order[cut:]))
        note = (
            f"no train/ and val/ sub-folders: a seeded split (seed {seed}) of {len(every)} images into"
            f" {len(train)} train and {len(test)} test ({test_fraction:.0%});"
            " pass --val-data to name a test folder"
        )
    train, skipped_train = readable(train, strict, "--data")
    test, skipped_test = readable(test, strict, "--val-data" if val_data else "--data")
    return Source(root.resolve().name, class_names, train, test, note, skipped_train + skipped_test)


def _named_child(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / name for name in names if (root / name).is_dir()), None)


def _class_folders(root: Path, option: str, expected: list[str] | None = None) -> tuple[list[str], FileSplit]:
    """Class names (sorted sub-folder names) and every image below them, labelled."""
    if not root.is_dir():
        raise RescompileError(f"{option} {root}: no such folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    names = [p.name for p in folders]
    if expected is not None and names != expected:
        missing, extra = sorted(set(expected) - set(names)), sorted(set(names) - set(expected))
        raise RescompileError(
            f"{option} {root}: its class folders differ from the training split's"
            f" (missing {missing[:5]}, extra {extra[:5]})"
        )
    if len(folders) < 2:
        raise RescompileError(f"{option} {root}: expected one sub-folder per class, found {len(folders)}")
    files: list[str] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        found = image_files(folder)
        if not found and expected is None:
            raise RescompileError(f"{option} {root}: class folder {folder.name!r} has no PNG or JPEG images")
        files += [str(p) for p in found]
        labels += [label] * len(found)
    if not files:
        raise RescompileError(f"{option} {root}: the split is empty (no PNG or JPEG images)")
    return names, FileSplit(tuple(files), np.asarray(labels, np.int32))


def image_is_complete(path: str) -> bool:
    """A cheap check of a file's first and last bytes: a JPEG starts with SOI and ends with EOI
    (trailing padding allowed), a PNG has its signature and ends with IEND, and neither's header
    claims more than MAX_PIXELS (a decompression bomb). It catches the common damage (truncated
    downloads, empty or non-image files) without decoding; damage in the middle of a file is
    found by decoding, where every stream skips the image (or, with --strict, stops)."""
    try:
        with open_regular(path) as handle:  # a FIFO or device named *.jpg is refused, not waited on
            head = handle.read(24)
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - 64))
            tail = handle.read().rstrip(b"\x00\n\r ")
            if head.startswith(b"\xff\xd8"):
                return tail.endswith(b"\xff\xd9") and _jpeg_pixels(handle) <= MAX_PIXELS
    except (OSError, RescompileError):
        return False
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        pixels = int.from_bytes(head[16:20], "big") * int.from_bytes(head[20:24], "big")
        return tail[-8:-4] == b"IEND" and pixels <= MAX_PIXELS
    return False


def _jpeg_pixels(handle) -> int:
    """Width x height from a JPEG's frame header (SOFn), found by hopping over the segments
    before it; 0 where there is none in the first 64 segments (decoding then decides)."""
    handle.seek(2)
    for _ in range(64):
        segment = handle.read(4)
        if len(segment) < 4 or segment[0] != 0xFF:
            return 0
        if 0xC0 <= segment[1] <= 0xCF and segment[1] not in (0xC4, 0xC8, 0xCC):
            frame = handle.read(5)
            return int.from_bytes(frame[1:3], "big") * int.from_bytes(frame[3:5], "big")
        handle.seek(int.from_bytes(segment[2:], "big") - 2, os.SEEK_CUR)
    return 0


def readable(split: FileSplit, strict: bool, option: str) -> tuple[FileSplit, list[str]]:
    """The split without its damaged files, and those files (with `strict`, an error naming the
    first); checked by `image_is_complete` on 16 threads."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        complete = np.fromiter(pool.map(image_is_complete, split.files, chunksize=256), bool, len(split))
    bad = [split.files[i] for i in np.flatnonzero(~complete)]
    if bad and strict:
        raise RescompileError(
            f"--strict: {bad[0]} is truncated or not a PNG/JPEG image, or claims more than"
            f" {MAX_PIXELS:,} pixels ({len(bad)} such files)"
        )
    if len(bad) == len(split):
        raise RescompileError(f"{option}: none of the {len(bad)} image files is readable, e.g. {bad[0]}")
    return split.subset(np.flatnonzero(complete)), bad


def require_data(data: str | None, option: str) -> None:
    """Refuse, before anything slow, a data option that names nothing: a missing file or folder,
    or a TFRecord glob that no shard matches."""
    if data is None:
        return
    pattern = _record_pattern(data)
    if pattern is not None:
        _shards(pattern, option)
    elif not Path(data).exists():
        raise RescompileError(f"{option} {data}: no such file or folder")


def _record_pattern(data: str) -> str | None:
    """The glob of TFRecord shards `data` names: a glob, one shard, or a folder of shards."""
    if any(c in data for c in "*?["):
        return data
    path = Path(data)
    if path.is_file() and path.suffix in RECORD_SUFFIXES:
        return data
    if path.is_dir() and glob.glob(str(path / "train-*")):
        return str(path / "train-*")
    return None


def _shards(pattern: str, option: str) -> list[str]:
    shards = sorted(p for p in glob.glob(pattern) if Path(p).is_file())
    if not shards:
        raise RescompileError(f"{option} {pattern}: no TFRecord shards match")
    return shards


def _record_split(pattern: str, option: str) -> RecordSplit:
    shards = _shards(pattern, option)
    with ThreadPoolExecutor(max_workers=16) as pool:  # GZIP shards are decompressed to be counted
        kinds, counts = zip(*pool.map(_framing, map(Path, shards)), strict=True)
    if not sum(counts):
        raise RescompileError(f"{option} {pattern}: the {len(shards)} shards hold no records")
    return RecordSplit(tuple(shards), counts, kinds)


def _framing(shard: Path) -> tuple[str, int]:
    """A shard's compression and record count, its first bytes read once for both."""
    kind = compression(shard)
    return kind, count_records(shard, kind)


def _validation_beside(pattern: str) -> str | None:
    """The TF model garden's evaluation shards beside a `train-*` pattern: `validation-*`."""
    folder, name = os.path.split(pattern)
    return (
        os.path.join(folder, "validation-" + name.removeprefix("train-"))
        if name.startswith("train-")
        else None
    )


def _record_source(data: str, pattern: str, val_data: str | None, classes: int) -> Source:
    """TFRecord shards: the training pattern, and `--val-data` or the `validation-*` shards
    beside a `train-*` pattern (the TF model garden's names)."""
    train = _record_split(pattern, "--data")
    val_data = val_data or _validation_beside(pattern)
    if val_data is None:
        raise RescompileError(
            f"--data {data}: TFRecord shards need --val-data naming the evaluation shards"
            " (found automatically only beside train-* shards, as validation-*)"
        )
    test = _record_split(val_data, "--val-data")
    note = (
        f"TFRecords: {len(train.shards)} training shards ({len(train)} examples),"
        f" {len(test.shards)} evaluation shards ({len(test)})"
    )
    return Source(
        Path(pattern).parent.resolve().name or "tfrecords", class_names_for(classes), train, test, note
    )


def evaluation_split(data: str) -> tuple[Split, list[str] | None, str]:
    """(split, class names or None for label numbers, what it is) that `evaluate --data` scores in
    full: the val/ (validation/, test/) split of a folder that has one, else the class folders
    given; TFRecord shards: the glob given, or validation-* beside train-*."""
    pattern = _record_pattern(data)
    if pattern is not None:
        if Path(data).is_dir():  # a folder of shards: its evaluation ones
            pattern = _validation_beside(pattern) or pattern
        return _record_split(pattern, "--data"), None, pattern
    root = Path(data)
    chosen = _named_child(root, EVAL_NAMES) if _named_child(root, TRAIN_NAMES) else None
    names, split = _class_folders(chosen or root, "--data")
    kept, skipped = readable(split, False, "--data")
    return (
        kept,
        names,
        f"{chosen or root}" + (f" ({len(skipped)} unreadable images skipped)" if skipped else ""),
    )


def open_data(
    data: str | None, val_data: str | None, classes: int, *, seed: int, strict: bool
) -> Dataset | Source:
    """What `--data` (and `--val-data`) name: CIFAR arrays, or a streamed source."""
    if is_streamed(data):
        return open_source(data, val_data, classes, seed=seed, strict=strict)  # type: ignore[arg-type]
    if val_data is not None:
        raise RescompileError("--val-data applies to image folders and TFRecord shards, not CIFAR")
    return load_dataset(data, classes)
