"""`rescompile check`: validate, lower and compare every spec file it is given with its published
numbers and its budget."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from rescompile.analysis.analyze import Analysis, analyze
from rescompile.analysis.tables import thousands
from rescompile.errors import RescompileError, printable
from rescompile.spec.library import find_specs, resolve_spec_args


def _spec_files(specs: list[Path] | None) -> Iterator[Path | RescompileError]:
    """The spec files that each of `specs` names (none: specs/ here, else the library), or the
    error of one that names none, so that one bad argument does not hide the others."""
    for arguments in [[spec] for spec in specs] if specs else [None]:
        try:
            found = find_specs(resolve_spec_args(arguments))
        except RescompileError as exc:
            yield exc
        else:
            yield from found


def _report(exc: RescompileError, echo: Callable[..., object]) -> int:
    """Print an error and those gathered with it, one line each; returns 1 (one invalid argument)."""
    for error in (exc, *getattr(exc, "more", [])):
        echo(f"error: {printable(str(error))}", err=True)
    return 1


def _text_rows(analysis: Analysis) -> list[str]:
    """A checked spec's lines in `check`'s text report: its status, every published number and
    every budget limit."""
    status = "ok" if analysis.ok and analysis.within_budget else "FAIL"
    lines = [f"{status:4}  {printable(str(analysis.path))}  ({analysis.spec.name})"]
    for result in analysis.checks:
        lines.append(
            f"      {'✓' if result.ok else '✗'} {result.metric:<12} computed {thousands(result.computed):>15}"
            f"  expected {thousands(result.expected):>15}  {result.tolerance:<12}"
            f" {printable(result.source)}"
        )
    for limit in analysis.budget:
        sign = "≤" if limit.side == "max" else "≥"
        lines.append(
            f"      {'✓' if limit.ok else '✗'} {limit.metric:<12} computed {thousands(limit.computed):>15}"
            f"  budget {sign} {thousands(limit.limit):>15}  {limit.words}"
        )
    return lines


def _json_record(analysis: Analysis) -> dict:
    return {
        "file": analysis.path,
        "name": analysis.spec.name,
        "ok": analysis.ok and analysis.within_budget,
        "paper_ok": analysis.ok,
        "within_budget": analysis.within_budget,
        "checks": [
            {
                "metric": r.metric,
                "computed": r.computed,
                "expected": r.expected,
                "tolerance": r.tolerance,
                "source": r.source,
                "ok": r.ok,
            }
            for r in analysis.checks
        ],
        "budget": [
            {"metric": b.metric, "computed": b.computed, b.side: b.limit, "ok": b.ok, "status": b.words}
            for b in analysis.budget
        ],
    }


def check_specs(specs: list[Path] | None, echo: Callable[..., object], fmt: str = "text") -> int:
    """`rescompile check`: validate, lower and compare every spec file that `specs` names with its
    published numbers and its budget. As text: a table per good file on `echo(text)`, every error
    of every bad file on `echo(text, err=True)`; as JSON (`fmt="json"`): one document on `echo`
    with `specs` (each with its checks and budget limits) and `errors`. Returns the exit status:
    2 when a file is invalid (or missing), else 1 when a number is off or over budget, else 0."""
    files = failed = over = invalid = 0
    records: list[dict] = []
    errors: list[str] = []
    report = (lambda line, err=False: errors.append(line)) if fmt == "json" else echo
    for path in _spec_files(specs):
        files += 1
        if isinstance(path, RescompileError):  # an argument that names no file
            invalid += _report(path, report)
            continue
        try:
            analysis = analyze(path)
        except RescompileError as exc:
            invalid += _report(exc, report)
            continue
        if fmt == "json":
            records.append(_json_record(analysis))
        else:
            for line in _text_rows(analysis):
                echo(line)
        failed += not analysis.ok
        over += not analysis.within_budget
    if fmt == "json":
        messages = [line.removeprefix("error: ") for line in errors]
        echo(json.dumps({"specs": records, "errors": messages}, indent=2, ensure_ascii=False))
    else:
        if failed:
            echo(f"{failed} spec(s) do not reproduce their published numbers", err=True)
        if over:
            echo(f"{over} spec(s) are over budget", err=True)
        if invalid and files > 1:
            echo(f"{invalid} of {files} spec arguments are invalid or missing", err=True)
    return 2 if invalid else 1 if failed or over else 0
