"""Compare a compiled network's counts with the published numbers in its spec's `expect:` and the
limits of its `budget:`."""

from __future__ import annotations

from dataclasses import dataclass

from rescompile.analysis.cost import Cost
from rescompile.spec.schema import Budget, Expectation, Spec

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
