"""`rescompile list`: the spec library with each network's family, params, MACs and source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

from rescompile.analysis.analyze import analyze
from rescompile.analysis.tables import si
from rescompile.errors import RescompileError
from rescompile.options import ReportFormat
from rescompile.spec.library import library_dir, library_specs

LIST_FORMATS = get_args(ReportFormat)


def family(relative: Path) -> str:
    """The spec's family: its top-level folder in the library, `imagenet` for the top level."""
    return relative.parts[0] if len(relative.parts) > 1 else "imagenet"


def library_entries(library: Path | None = None) -> list[dict]:
    """One record per library spec: path, network name, family, params, MACs and source."""
    library = library_dir() if library is None else library
    entries = []
    for path in library_specs(library):
        analysis = analyze(path)
        relative = path.relative_to(library)
        entries.append(
            {
                "path": relative.as_posix(),
                "name": analysis.spec.name,
                "family": family(relative),
                "params": analysis.cost.params,
                "macs": analysis.cost.macs,
                "source": analysis.spec.source,
            }
        )
    return entries


def _cell(value: object) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def list_library(fmt: str = "md", library: Path | None = None) -> str:
    """`rescompile list`: the library as a Markdown table or a JSON list."""
    if fmt not in LIST_FORMATS:
        raise RescompileError(f"--format must be one of {', '.join(LIST_FORMATS)}, got {fmt!r}")
    entries = library_entries(library)
    if fmt == "json":
        return json.dumps(entries, indent=2) + "\n"
    lines = [
        "| spec | network | family | params | MACs | source |",
        "|---|---|---|---:|---:|---|",
    ]
    for entry in entries:
        cells = [
            entry["path"],
            entry["name"],
            entry["family"],
            f"{entry['params']:,}",
            si(entry["macs"]),
            entry["source"],
        ]
        lines.append("| " + " | ".join(map(_cell, cells)) + " |")
    return "\n".join(lines) + "\n"
