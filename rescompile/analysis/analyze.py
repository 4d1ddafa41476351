"""Spec -> compiled network -> costs -> checks, for one spec file or model record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from rescompile import ir
from rescompile.analysis.check import BudgetResult, CheckResult, check, check_budget
from rescompile.analysis.cost import Cost, per_stage, total
from rescompile.errors import RescompileError
from rescompile.ir.network import Network, compile_network
from rescompile.ir.target import OWN, Target
from rescompile.spec import Spec, load_spec
from rescompile.spec.artifact import ModelRecord


@dataclass
class Analysis:
    """Everything the framework-free commands report about one compiled network."""

    network: Network
    cost: Cost
    stages: dict[str, Cost]
    checks: list[CheckResult]
    compared: bool = True
    """False when the built network is not the one the spec's published numbers describe."""
    budget: list[BudgetResult] = field(default_factory=list)
    """The limits of the spec's `budget:` (checked when the network is the spec's own)."""

    @property
    def spec(self) -> Spec:
        """The validated spec."""
        return self.network.spec

    @property
    def graph(self) -> ir.Graph:
        """The graph of the network for its target."""
        return self.network.graph

    @property
    def path(self) -> str:
        """The spec's file."""
        return self.network.path

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


def analyze(path: str | Path, target: Target = OWN, options: dict | None = None) -> Analysis:
    """Load, compile, cost and check one spec file for `target` (optionally with `options`
    overridden: the network is then renamed `<name>_<option>_<value>`)."""
    return analyze_network(
        compile_network(overridden(load_spec(path), options), target), compared=not options
    )


def overridden(spec: Spec, options: dict | None) -> Spec:
    """`spec` with `options` overridden and renamed `<name>_<option>_<value>` (itself without)."""
    if not options:
        return spec
    suffix = "_".join(f"{key}_{str(value).lower()}" for key, value in sorted(options.items()))
    updated = spec.options.model_copy(update=options)
    return spec.model_copy(update={"options": updated, "name": f"{spec.name}_{suffix}"})


def analyze_network(network: Network, compared: bool = True) -> Analysis:
    """Cost and check a compiled network. Its published numbers are compared only when it is the
    network they describe (the spec's input, classifier and outputs)."""
    graph, spec = network.graph, network.spec
    cost = total(graph)
    as_published = compared and network.target.is_published(spec)
    checks = check(spec, cost) if as_published else []
    budget = check_budget(spec, cost) if as_published else []
    return Analysis(network, cost, per_stage(graph), checks, as_published, budget)


def analyze_record(record: ModelRecord, source: Path) -> Analysis:
    """The compiled network a model file carries: its spec, at the input, classifier and outputs it
    was built with."""
    try:
        spec = Spec.model_validate(record.spec)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(map(str, error["loc"]))
        raise RescompileError(f"{source}: the spec it carries is invalid ({where}: {error['msg']})") from None
    spec._file = f"{source} (its spec)"
    return analyze_network(compile_network(spec, record_target(record)))


def record_target(record: ModelRecord) -> Target:
    """The target a model file's record says it was built for."""
    return Target(
        input_size=record.input_size,
        channels=record.channels,
        classes=record.classes,
        include_top=record.include_top,
        outputs=tuple(record.outputs),
    )
