"""Compare a compiled network's counts with the published numbers in its spec's `expect:`."""

from __future__ import annotations

from dataclasses import dataclass

from rescompile.analysis.cost import Cost
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
