"""Compare a compiled network's counts with the published numbers in its spec's `expect:` and the
limits of its `budget:`, and `rescompile check`, which does so for every spec file it is given."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rescompile.analysis.cost import Cost
from rescompile.errors import RescompileError, printable
from rescompile.spec.schema import Budget, Expectation, Spec

if TYPE_CHECKING:
    from rescompile.analysis.analyze import Analysis

METRICS = ("params", "params_total", "params_conv_fc", "macs", "depth")
BUDGET_METRICS = tuple(Budget.model_fields)
"""The metrics of `table` that a budget (in a spec, or `diff --fail-on`) may limit."""


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


@dataclass(frozen=True)
class BudgetResult:
    """One limit of the spec's `budget:` against the computed value."""

    metric: str
    computed: int
    side: str
    """'max' or 'min'."""
    limit: float

    @property
    def ok(self) -> bool:
        """Whether the computed value is within the limit."""
        return self.computed <= self.limit if self.side == "max" else self.computed >= self.limit

    @property
    def words(self) -> str:
        """How a breach is worded: over budget (a max) or under budget (a min)."""
        return "within budget" if self.ok else "over budget" if self.side == "max" else "under budget"


def metric_value(cost: Cost, metric: str) -> int:
    """The computed value of one of METRICS or BUDGET_METRICS."""
    return getattr(cost, metric)


def check_budget(spec: Spec, cost: Cost) -> list[BudgetResult]:
    """Every limit of the spec's `budget:`, checked against `cost`."""
    results = []
    for metric in BUDGET_METRICS:
        bound = getattr(spec.budget, metric)
        for side in ("max", "min"):
            limit = getattr(bound, side) if bound is not None else None
            if limit is not None:
                results.append(BudgetResult(metric, metric_value(cost, metric), side, limit))
    return results


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


def _text_rows(analysis: Analysis) -> list[str]:
    """A checked spec's lines in `check`'s text report: its status, every published number and
    every budget limit."""
    from rescompile.analysis.tables import thousands

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
    from rescompile.analysis.analyze import analyze  # here: analyze imports this module

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
        import json

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
