"""Class-name lists shipped with rescompile, named by a spec's `head.class_names`."""

from __future__ import annotations

import functools
from pathlib import Path

FILES = {"imagenet": "imagenet_classes.txt"}
"""Each file: one class per line, `<WordNet id> <readable name>`, in class-index order."""


@functools.cache
def named_class_names(name: str) -> tuple[str, ...]:
    """The readable names of the list `name` (e.g. `imagenet`: index 281 is "tabby")."""
    lines = (Path(__file__).parent / FILES[name]).read_text(encoding="utf-8").splitlines()
    return tuple(line.split(" ", 1)[1] for line in lines)


def class_names_for(classes: int) -> list[str]:
    """Names for data that carries only label numbers: ImageNet's for 1000 classes (and for
    1001, the TF model garden's convention with 0 as background), else the numbers."""
    if classes == 1000:
        return list(named_class_names("imagenet"))
    if classes == 1001:
        return ["background", *named_class_names("imagenet")]
    return [str(i) for i in range(classes)]
