"""Files shipped with rescompile (spec library, templates, recipes), found in one place."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).parent


def resource_dir(name: str) -> Path:
    """The folder `name` (specs, templates or recipes): the copy packaged in a wheel, else the
    repository's top-level folder of that name."""
    packaged = PACKAGE / name
    return packaged if packaged.is_dir() else PACKAGE.parent / name


def recipe_names() -> list[str]:
    """The shipped training recipes' names (recipes/<name>.yaml), sorted."""
    return sorted(path.stem for path in resource_dir("recipes").glob("*.yaml"))
