"""Compare a compiled network's counts with the published numbers in its spec's `expect:`, and
`rescompile check`, which does so for every spec file it is given."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rescompile.analysis.cost import Cost
from rescompile.errors import RescompileError, printable
from rescompile.spec.schema import Expectation, Spec

METRICS = ("params", "params_total", "params_conv_fc", "macs", "depth")


@dataclass(frozen=True)
class CheckResult:
    """One expectation against the computed value."""

    metric: str
    computed: int
    expected: float
    tolerance: str
    source: str
    ok: bool


def _round_sig(value: float, digits: int) -> float:
    return float(f"{value:.{digits}g}")


def _matches(computed: int, expectation: Expectation) -> tuple[bool, str]:
    value = expectation.value
    if expectation.rel is not None:
        return abs(computed - value) <= expectation.rel * value, f"±{expectation.rel:.2%}"
    if expectation.sig is not None:
        ok = _round_sig(computed, expectation.sig) == _round_sig(value, expectation.sig)
        return ok, f"{expectation.sig} sig. fig."
    return computed == value, "exact"


def metric_value(cost: Cost, metric: str) -> int:
    """The computed value of one of METRICS."""
    return getattr(cost, metric)


def check(spec: Spec, cost: Cost) -> list[CheckResult]:
    """Every expectation of the spec, checked against `cost`."""
    results = []
    for metric in METRICS:
        for expectation in getattr(spec.expect, metric) or []:
            computed = metric_value(cost, metric)
            ok, tolerance = _matches(computed, expectation)
            results.append(
                CheckResult(metric, computed, expectation.value, tolerance, expectation.source or "", ok)
            )
    return results


def _spec_files(specs: list[Path] | None) -> Iterator[Path | RescompileError]:
    """The spec files that each of `specs` names (none: specs/ here, else the library), or the
    error of one that names none, so that one bad argument does not hide the others."""
    from rescompile.spec.library import find_specs, resolve_spec_args

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


def check_specs(specs: list[Path] | None, echo: Callable[..., object]) -> int:
    """`rescompile check`: validate, lower and compare every spec file that `specs` names, a table
    of its published numbers per good file on `echo(text)`, every error of every bad file on
    `echo(text, err=True)`. Returns the exit status: 2 when a file is invalid (or missing), else 1
    when a number is off, else 0."""
    from rescompile.analysis.analyze import analyze  # here: analyze imports this module
    from rescompile.analysis.tables import thousands

    files = failed = invalid = 0
    for path in _spec_files(specs):
        files += 1
        if isinstance(path, RescompileError):  # an argument that names no file
            invalid += _report(path, echo)
            continue
        try:
            analysis = analyze(path)
        except RescompileError as exc:
            invalid += _report(exc, echo)
            continue
        echo(f"{'ok' if analysis.ok else 'FAIL':4}  {printable(str(analysis.path))}  ({analysis.spec.name})")
        for result in analysis.checks:
            mark = "✓" if result.ok else "✗"
            echo(
                f"      {mark} {result.metric:<12} computed {thousands(result.computed):>15}"
                f"  expected {thousands(result.expected):>15}  {result.tolerance:<12}"
                f" {printable(result.source)}"
            )
        failed += not analysis.ok
    if failed:
        echo(f"{failed} spec(s) do not reproduce their published numbers", err=True)
    if invalid and files > 1:
        echo(f"{invalid} of {files} spec arguments are invalid or missing", err=True)
    return 2 if invalid else 1 if failed else 0
