"""`rescompile diff`, the CI gate: operands resolved, networks compared, budgets checked, printed."""

from __future__ import annotations

import os

from rescompile.analysis.budgets import parse_rule, rule_breaches, spec_breaches
from rescompile.analysis.diff import compare
from rescompile.analysis.diff_report import as_csv, as_json, github, markdown
from rescompile.errors import printable
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
    elif fmt == "csv":  # no place for breaches in the table: they go to stderr with the warnings
        text = as_csv(networks)
        warnings = warnings + [f"budget broken: {breach.message}" for breach in breaches]
    elif fmt == "github":
        text = github(networks, breaches)
        warnings = warnings + _append_step_summary(markdown(networks, breaches))
    else:
        text = markdown(networks, breaches)
    return text, warnings, 1 if breaches else 0


def _append_step_summary(text: str) -> list[str]:
    """Add the Markdown report to the job's summary page when run in a GitHub Actions step; the
    warning when it cannot be written (the gate's verdict does not depend on it)."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            return [f"GITHUB_STEP_SUMMARY {printable(summary)}: cannot append ({exc.strerror or exc})"]
    return []
