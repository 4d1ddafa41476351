"""Atomic file writing: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import glob
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from rescompile.errors import RescompileError


def write_atomic(path: Path, write: Callable[[Path], None], suffix: str = ".tmp") -> None:
    """Call `write(tmp)` on a temporary file next to `path`, then rename it over `path`.

    `suffix` ends the temporary name, for writers that insist on an extension (Keras: `.keras`).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        os.close(handle)
    except OSError as exc:
        raise RescompileError(f"cannot write {path}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        write(tmp)
        _fsync(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:  # a full disk (ENOSPC), a quota, an I/O error: the old file stays
        tmp.unlink(missing_ok=True)
        raise RescompileError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    """Flush a written file to disk before it replaces the old one, so that a crash or a full
    disk found only at flush time cannot leave a renamed but empty file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: Path, name: str) -> list[Path]:
    """Delete the temporaries that killed writes of `folder / name` left behind.

    write_atomic's temporaries are `.{name}.XXXXXXXX{suffix}` (tempfile's 8 random characters)
    next to the file; only regular files with exactly that form are removed, so other hidden
    files stay. Call it only where no other process writes `name` at the same time (build,
    train --resume). Returns the removed paths.
    """
    folder = Path(folder)
    pattern = re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}.*", re.DOTALL)
    removed = []
    try:
        candidates = sorted(folder.glob(f".{glob.escape(name)}.*"))
    except OSError:
        return []
    for path in candidates:
        if not pattern.fullmatch(path.name) or path.is_symlink() or not path.is_file():
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise RescompileError(f"cannot remove {path}: {exc.strerror or exc}") from None
        removed.append(path)
    return removed


def write_text_atomic(path: Path, text: str) -> None:
    """Write text atomically."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def model_file_kind(path: Path) -> str | None:
    """What a model or weights file is, by its first bytes and name: "a Keras model (.keras)" (a
    zip archive), "HDF5 weights" or "an ONNX model" (.onnx); None for anything else (a spec)."""
    path = Path(path)
    head = b""
    try:  # a FIFO would block an open(): only regular files are read
        if path.is_file():
            with path.open("rb") as handle:
                head = handle.read(8)
    except (OSError, ValueError):
        pass
    if head.startswith(b"PK\x03\x04"):
        return "a Keras model (.keras)"
    if head == b"\x89HDF\r\n\x1a\n":
        return "HDF5 weights"
    return "an ONNX model" if path.suffix.lower() == ".onnx" else None


def refuse_non_onnx(path: Path) -> None:
    """A Keras model or HDF5 weights given where an ONNX model is expected: say what it is."""
    kind = model_file_kind(path)
    if kind is not None and kind != "an ONNX model":
        raise RescompileError(
            f"{path} is {kind}, not an ONNX model: `rescompile export {path} -o model.onnx` makes one"
            if kind.startswith("a Keras")
            else f"{path} is {kind}, not an ONNX model: build or train with it as --weights, then export"
        )
