"""Spec -> IR -> costs -> checks, for one spec file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rescompile import ir
from rescompile.analysis.check import BudgetResult, CheckResult, check, check_budget
from rescompile.analysis.cost import Cost, per_stage, total
from rescompile.ir.lower import lower
from rescompile.spec import Spec, load_spec


@dataclass
class Analysis:
    """Everything the framework-free commands report about one spec."""

    path: str
    spec: Spec
    graph: ir.Graph
    cost: Cost
    stages: dict[str, Cost]
    checks: list[CheckResult]
    compared: bool = True
    """False when the built network is not the one the spec's published numbers describe."""
    budget: list[BudgetResult] = field(default_factory=list)
    """The limits of the spec's `budget:` (checked when the network is the spec's own)."""

    @property
    def name(self) -> str:
        """The network's name."""
        return self.spec.name

    @property
    def ok(self) -> bool:
        """True when every published number is reproduced."""
        return all(result.ok for result in self.checks)

    @property
    def within_budget(self) -> bool:
        """True when no limit of the spec's budget is broken."""
        return all(limit.ok for limit in self.budget)


def analyze(
    path: str | Path,
    input_size: int | None = None,
    channels: int | None = None,
    classes: int | None = None,
    include_top: bool = True,
    options: dict | None = None,
    outputs: list[str] | None = None,
) -> Analysis:
    """Load, lower, cost and check one spec file (optionally with another input or classifier,
    stage outputs instead of the classifier, or with `options` overridden: the network is then
    renamed `<name>_<option>_<value>`)."""
    spec = load_spec(path)
    if options:
        suffix = "_".join(f"{key}_{str(value).lower()}" for key, value in sorted(options.items()))
        updated = spec.options.model_copy(update=options)
        spec = spec.model_copy(update={"options": updated, "name": f"{spec.name}_{suffix}"})
    return analyze_spec(spec, input_size, channels, classes, include_top, outputs, compared=not options)


def analyze_spec(
    spec: Spec,
    input_size: int | None = None,
    channels: int | None = None,
    classes: int | None = None,
    include_top: bool = True,
    outputs: list[str] | None = None,
    compared: bool = True,
) -> Analysis:
    """Lower, cost and check a validated spec. Its published numbers are compared only when the
    network built is the one they describe (the spec's input, classifier and outputs)."""
    graph = lower(spec, input_size, channels, classes, include_top, outputs)
    cost = total(graph)
    as_published = (
        compared
        and input_size in (None, spec.input.size)
        and channels in (None, spec.input.channels)
        and classes in (None, spec.head.classes)
        and include_top
        and outputs in (None, spec.outputs)
    )
    checks = check(spec, cost) if as_published else []
    budget = check_budget(spec, cost) if as_published else []
    return Analysis(spec._file, spec, graph, cost, per_stage(graph), checks, as_published, budget)
