"""`rescompile diff`, the CI gate: operands resolved, networks compared, budgets checked, printed."""

from __future__ import annotations

import os

from rescompile.analysis.budgets import parse_rule, rule_breaches, spec_breaches
from rescompile.analysis.diff import compare
from rescompile.analysis.diff_report import as_csv, as_json, github, markdown
from rescompile.spec.operands import base_operands, operand


def run_diff(
    operands: list[str], *, base: str | None, rules: list[str], per_block: bool, fmt: str
) -> tuple[str, list[str], int]:
    """The report of `diff` in `fmt`, its warnings (old specs left out) and its exit status: 1 when
    a budget is broken, else 0 (errors raise RescompileError: exit 2). Rules are checked before
    anything is read."""
    parsed = [parse_rule(rule) for rule in rules]
    if base is not None:
        pairs = base_operands(base, operands)
    else:
        pairs = [(operand(operands[0]), operand(operands[1]))]
    networks, warnings = compare(pairs, per_block, by_name=base is not None)
    breaches = rule_breaches(networks, parsed) + spec_breaches(networks)
    if fmt == "json":
        text = as_json(networks, breaches, warnings)
    elif fmt == "csv":
        text = as_csv(networks)
    elif fmt == "github":
        text = github(networks, breaches)
        _append_step_summary(markdown(networks, breaches))
    else:
        text = markdown(networks, breaches)
    return text, warnings, 1 if breaches else 0


def _append_step_summary(text: str) -> None:
    """Add the Markdown report to the job's summary page when run in a GitHub Actions step."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(text)
