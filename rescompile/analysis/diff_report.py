"""`rescompile diff` printed for people and programs: Markdown (a pull-request comment or
`$GITHUB_STEP_SUMMARY`), JSON, CSV, and GitHub workflow commands that annotate the changed lines."""

from __future__ import annotations

import csv
import io
import json
import os

from rescompile.analysis.budgets import Breach
from rescompile.analysis.check import BUDGET_METRICS
from rescompile.analysis.cost import Cost
from rescompile.analysis.diff import CHANGED, UNCHANGED, NetworkDiff, PartDiff
from rescompile.analysis.tables import si
from rescompile.errors import printable

METRICS = BUDGET_METRICS
"""The metrics of `table` (those a budget may limit), in every format of the diff."""


def totals(cost: Cost | None) -> dict[str, int] | None:
    """A cost as the metrics of `table`; None for a side that lacks it."""
    return None if cost is None else {metric: getattr(cost, metric) for metric in METRICS}


def _cell(text: str) -> str:
    """Text for a Markdown table cell: one line, its pipes escaped."""
    return printable(text).replace("|", "\\|")


def _change(old: int | None, new: int | None) -> str:
    if old is None or new is None:
        return ""
    delta = new - old
    return f"{delta:+,}" + (f" ({delta / old:+.1%})" if old else "")


def _value(cost: Cost | None, metric: str) -> int | None:
    return None if cost is None else getattr(cost, metric)


def _columns(old: Cost | None, new: Cost | None) -> list[str]:
    params_old, params_new = _value(old, "params"), _value(new, "params")
    macs_old, macs_new = _value(old, "macs"), _value(new, "macs")
    return [
        "" if params_old is None else f"{params_old:,}",
        "" if params_new is None else f"{params_new:,}",
        _change(params_old, params_new),
        "" if macs_old is None else si(macs_old),
        "" if macs_new is None else si(macs_new),
        _change(macs_old, macs_new),
    ]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


_HEADER = ["params old", "params new", "Δ params", "MACs old", "MACs new", "Δ MACs"]


def _stage_table(network: NetworkDiff) -> list[str]:
    lines = [_row(["stage", "status", *_HEADER]), "|---|---|" + "---:|" * len(_HEADER)]
    for stage in network.stages:
        lines.append(_row([_cell(stage.name), stage.status, *_columns(stage.old, stage.new)]))
        for block in stage.blocks:
            if block.status != UNCHANGED:
                lines.append(_row([_cell(f"  {block.name}"), block.status, *_columns(block.old, block.new)]))
    old, new = network.old, network.new
    lines.append(_row(["**total**", "", *_columns(old.cost if old else None, new.cost if new else None)]))
    return lines


def _file(network: NetworkDiff) -> str:
    """The network's file for a heading, its HTML tags escaped (a file named `<details>.yaml`
    must not change how a pull-request comment renders)."""
    side = network.new or network.old
    return _cell(side.path).replace("<", "&lt;").replace(">", "&gt;") if side else ""


def markdown(networks: list[NetworkDiff], breaches: list[Breach]) -> str:
    """A summary table of the networks that changed (or were added or removed), then the per-stage
    table of each, then the broken budgets."""
    moved = [n for n in networks if n.status != UNCHANGED]
    counts = {status: sum(n.status == status for n in moved) for status in ("changed", "added", "removed")}
    words = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
    lines = [f"**rescompile diff**: {words or 'no network changed'} ({len(networks)} compared)", ""]
    if moved:
        lines += [_row(["network", "status", *_HEADER]), "|---|---|" + "---:|" * len(_HEADER)]
        for network in moved:
            old, new = network.old, network.new
            lines.append(
                _row(
                    [
                        _cell(network.label),
                        network.status,
                        *_columns(old.cost if old else None, new.cost if new else None),
                    ]
                )
            )
        for network in moved:
            lines += ["", f"### {_cell(network.label)} ({network.status}, {_file(network)})", ""]
            lines += _stage_table(network)
    if breaches:
        lines += ["", f"**{len(breaches)} budget(s) broken**", ""]
        lines += [f"- ✗ {_cell(breach.message)}" for breach in breaches]
    return "\n".join(lines) + "\n"


def _part_json(part: PartDiff) -> dict:
    record: dict = {
        "name": part.name,
        "status": part.status,
        "old": totals(part.old),
        "new": totals(part.new),
    }
    if part.where:
        record["file"], record["line"] = part.where
    if part.blocks:
        record["blocks"] = [_part_json(block) for block in part.blocks]
    return record


def as_json(networks: list[NetworkDiff], breaches: list[Breach], warnings: list[str]) -> str:
    """`{"networks": [...], "breaches": [...]}` (README's "Diffs in CI" documents the fields)."""
    document = {
        "networks": [
            {
                "name": network.label,
                "status": network.status,
                "old_file": network.old.path if network.old else None,
                "new_file": network.new.path if network.new else None,
                "old": totals(network.old.cost if network.old else None),
                "new": totals(network.new.cost if network.new else None),
                "stages": [_part_json(stage) for stage in network.stages],
            }
            for network in networks
        ],
        "breaches": [
            {
                "network": b.network,
                "metric": b.metric,
                "old": b.old,
                "new": b.new,
                "limit": b.limit,
                "file": b.where[0] if b.where else None,
                "line": b.where[1] if b.where else None,
                "message": b.message,
            }
            for b in breaches
        ],
        "warnings": warnings,
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def as_csv(networks: list[NetworkDiff]) -> str:
    """One row per network (stage `total`) and per stage, old and new of every metric."""
    fields = ["network", "status", "stage", "stage_status"]
    fields += [f"{side}_{metric}" for metric in METRICS for side in ("old", "new")]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for network in networks:
        old, new = network.old, network.new
        parts = [
            PartDiff("total", network.status, old.cost if old else None, new.cost if new else None, None)
        ]
        for part in parts + network.stages:
            row = {"network": network.label, "status": network.status, "stage": part.name}
            row["stage_status"] = part.status
            for metric in METRICS:
                row[f"old_{metric}"] = _value(part.old, metric)
                row[f"new_{metric}"] = _value(part.new, metric)
            writer.writerow(row)
    return out.getvalue()


def _escape(text: str, property_value: bool = False) -> str:
    """Text of a GitHub workflow command (its data, or with `property_value` a property)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if property_value else text


def _annotation(kind: str, where: tuple[str, int] | None, title: str, message: str) -> str:
    properties = [f"title={_escape(title, True)}"]
    if where:
        properties = [f"file={_escape(annotation_path(where[0]), True)}", f"line={where[1]}", *properties]
    return f"::{kind} {','.join(properties)}::{_escape(message)}"


def annotation_path(display: str) -> str:
    """A file as GitHub names it (from the repository's root): a `REV:path` loses its revision; a
    working-tree path is taken relative to the root when run inside the repository."""
    if ":" in display and not os.path.exists(display):
        return display.partition(":")[2]
    root = os.environ.get("GITHUB_WORKSPACE")
    if root:
        try:
            return os.path.relpath(os.path.abspath(display), root)
        except ValueError:
            return display
    return display


def github(networks: list[NetworkDiff], breaches: list[Breach]) -> str:
    """Workflow commands (an error per broken budget, a notice per changed stage, at its line in
    the new spec), then the Markdown summary."""
    lines = [_annotation("error", b.where, "budget", b.message) for b in breaches]
    for network in networks:
        if network.status != CHANGED:
            continue
        for stage in network.stages:
            if stage.status != UNCHANGED and stage.new is not None:
                old, new = stage.old, stage.new
                message = (
                    f"{network.label}: stage {stage.name} {stage.status}: params"
                    f" {_change(_value(old, 'params'), new.params) or f'{new.params:,}'},"
                    f" MACs {_change(_value(old, 'macs'), new.macs) or si(new.macs)}"
                )
                lines.append(_annotation("notice", stage.where, "rescompile diff", message))
    return "\n".join([*lines, markdown(networks, breaches)])
