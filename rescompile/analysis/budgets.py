"""Budgets that fail a CI job: `diff --fail-on` rules on the change of a metric (`macs>+2%`,
`params>0`, `depth!=0`) and the one-sided limits of each new spec's `budget:`."""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from rescompile.analysis.check import BUDGET_METRICS, metric_value
from rescompile.analysis.diff import NetworkDiff, Where
from rescompile.analysis.tables import si, thousands
from rescompile.errors import RescompileError

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
SUFFIXES = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
_RULE = re.compile(
    r"^\s*([a-z_]+)\s*(>=|<=|==|!=|>|<)\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([kKMG]?)\s*(%?)\s*$"
)


@dataclass(frozen=True)
class Rule:
    """A `--fail-on` rule: broken when the metric's change (absolute, or relative with `%`)
    compares with `value` as `op` says."""

    text: str
    metric: str
    op: str
    value: float
    relative: bool

    def change(self, old: int, new: int) -> float:
        """The change the rule compares: new - old, or (new - old) / old with `%`."""
        if not self.relative:
            return new - old
        if old == 0:
            return 0.0 if new == 0 else math.copysign(math.inf, new)
        return (new - old) / old

    def broken(self, old: int, new: int) -> bool:
        """Whether a change from `old` to `new` breaks the rule."""
        return OPERATORS[self.op](self.change(old, new), self.value)


def parse_rule(text: str) -> Rule:
    """`macs>+2%` -> Rule; a malformed rule or an unknown metric is one error saying what is allowed."""
    match = _RULE.match(text)
    if match is None:
        raise RescompileError(
            f"--fail-on {text!r}: expected METRIC OP CHANGE, e.g. 'macs>+2%', 'params>0', 'depth!=0'"
            f" (OP one of {' '.join(OPERATORS)}; CHANGE a number, with k/M/G or %)"
        )
    metric, op, number, suffix, percent = match.groups()
    if metric not in BUDGET_METRICS:
        close = difflib.get_close_matches(metric, BUDGET_METRICS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RescompileError(
            f"--fail-on {text!r}: unknown metric {metric!r}{hint};"
            f" expected one of {', '.join(BUDGET_METRICS)}"
        )
    if percent and suffix:
        raise RescompileError(f"--fail-on {text!r}: give a percentage or a number with k/M/G, not both")
    value = float(number) * SUFFIXES[suffix]
    return Rule(text.strip(), metric, op, value / 100 if percent else value, bool(percent))


@dataclass(frozen=True)
class Breach:
    """A broken budget: a `--fail-on` rule on a network's change, or a limit of its spec."""

    network: str
    metric: str
    old: int | None
    new: int
    limit: str
    """What was broken: the rule as given, or the spec's limit (`budget: macs max 4.2e9`)."""
    where: Where | None
    """The line to point at: the stage that changed the metric most, or the spec's limit."""
    words: str = ""
    """A spec limit's verdict: over budget (a max), under budget (a min)."""

    @property
    def message(self) -> str:
        """One line naming the network, the metric, old, new and the limit."""
        if self.old is None:
            return f"{self.network}: {self.metric} {_number(self.new)} is {self.words} ({self.limit})"
        change = f"{self.new - self.old:+,}"
        if self.old:
            change += f", {(self.new - self.old) / self.old:+.1%}"
        return (
            f"{self.network}: {self.metric} {_number(self.old)} -> {_number(self.new)} ({change})"
            f" breaks --fail-on '{self.limit}'"
        )


def _number(value: float) -> str:
    text = thousands(value)
    return text if value < 1e4 else f"{text} ({si(value)})"


def _largest_change(network: NetworkDiff, metric: str) -> Where | None:
    """Where the stage whose change of `metric` is largest is written (the network's name if none)."""
    changes = [
        (abs(metric_value(s.new, metric) - (metric_value(s.old, metric) if s.old else 0)), s.where)
        for s in network.stages
        if s.new is not None and s.where is not None
    ]
    best = max(changes, key=lambda change: change[0], default=(0, None))
    return best[1] if best[0] else network.where


def rule_breaches(networks: list[NetworkDiff], rules: list[Rule]) -> list[Breach]:
    """Every rule broken by a network present on both sides."""
    found = []
    for network in networks:
        if network.old is None or network.new is None:
            continue
        for rule in rules:
            old = metric_value(network.old.cost, rule.metric)
            new = metric_value(network.new.cost, rule.metric)
            if rule.broken(old, new):
                found.append(
                    Breach(
                        network.label, rule.metric, old, new, rule.text, _largest_change(network, rule.metric)
                    )
                )
    return found


def spec_breaches(networks: list[NetworkDiff]) -> list[Breach]:
    """Every limit of a new spec's `budget:` that its network breaks."""
    found = []
    for network in networks:
        if network.new is None:
            continue
        positions = network.new.spec._positions
        for limit in network.new.budget:
            if not limit.ok:
                where = positions.get(("budget", limit.metric, limit.side)) or positions.get(("budget",))
                text = f"budget.{limit.metric}.{limit.side} = {_number(limit.limit)}"
                found.append(
                    Breach(network.label, limit.metric, None, limit.computed, text, where, limit.words)
                )
    return found
