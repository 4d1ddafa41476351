"""The class-name lists shipped with rescompile, which a spec's `head.class_names` names."""

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
