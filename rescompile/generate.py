"""`rescompile generate`: everything under generated/ is a function of specs/ and templates/."""

from __future__ import annotations

import difflib
from pathlib import Path

from rescompile.analysis.analyze import Analysis, analyze
from rescompile.analysis.tables import render
from rescompile.fileio import write_text_atomic
from rescompile.keras_backend.build import module_source
from rescompile.spec.library import find_specs

TABLE1_SPECS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def expected_files(spec_root: Path) -> dict[str, str]:
    """File name under generated/ -> its content."""
    analyses = [analyze(path) for path in find_specs([spec_root])]
    by_name = {a.spec.name: a for a in analyses}
    table1: list[Analysis] = [by_name[name] for name in TABLE1_SPECS if name in by_name]
    files = {"tables.md": render("tables.md.j2", analyses=analyses, table1=table1)}
    for a in analyses:
        files[f"{a.spec.name}.py"] = module_source(a)
    return files


def stale(out_dir: Path, files: dict[str, str]) -> str:
    """A unified diff between `out_dir` and what it should hold; empty when up to date."""
    chunks = []
    present = {p.name for p in out_dir.iterdir() if p.is_file()} if out_dir.is_dir() else set()
    for name in sorted(set(files) | present):
        old = (out_dir / name).read_text(encoding="utf-8") if name in present else ""
        new = files.get(name, "")
        if old != new:
            chunks.extend(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    fromfile=f"{out_dir / name} (committed)",
                    tofile=f"{out_dir / name} (generated)",
                )
            )
    return "".join(chunks)


def write(out_dir: Path, files: dict[str, str]) -> list[str]:
    """Write every file atomically, remove files no spec produces; returns the names changed."""
    changed = []
    for name, text in files.items():
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            write_text_atomic(path, text)
            changed.append(name)
    for path in out_dir.iterdir():
        if path.is_file() and path.name not in files:
            path.unlink()
            changed.append(path.name)
    return changed
