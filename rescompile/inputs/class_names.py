"""Class names of data: those of label numbers (ImageNet's for 1000 classes) and the user's text
files (`export --class-names`)."""

from __future__ import annotations

from pathlib import Path

from rescompile.errors import RescompileError
from rescompile.spec.class_lists import named_class_names


def class_names_for(classes: int) -> list[str]:
    """Names for data that carries only label numbers: ImageNet's for 1000 classes (and for
    1001, the TF model garden's convention with 0 as background), else the numbers."""
    if classes == 1000:
        return list(named_class_names("imagenet"))
    if classes == 1001:
        return ["background", *named_class_names("imagenet")]
    return [str(i) for i in range(classes)]


def read_class_names(path: Path) -> list[str]:
    """The class names of a text file, one per line (blank lines and surrounding spaces dropped);
    a missing, oversized, binary or non-UTF-8 file is a one-line error naming it."""
    try:
        if path.stat().st_size > 16 * 2**20:
            raise RescompileError(f"--class-names {path}: file too large for a list of names")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RescompileError(f"--class-names {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RescompileError(f"--class-names {path}: not UTF-8 text (one class name per line)") from None
    if "\x00" in text:
        raise RescompileError(f"--class-names {path}: a binary file, not one class name per line")
    return [line.strip() for line in text.splitlines() if line.strip()]
