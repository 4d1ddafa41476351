"""Tables of costs (Markdown via jinja2 templates, CSV, JSON)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import get_args

import jinja2

from rescompile import ir
from rescompile.analysis.analyze import Analysis
from rescompile.analysis.cost import Cost
from rescompile.options import TableFormat
from rescompile.resources import resource_dir
from rescompile.spec.schema import Stage

FORMATS = get_args(TableFormat)


def si(value: float) -> str:
    """3857973248 -> '3.858 G'."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3f} {suffix}"
    return f"{value:g}"


def thousands(value: float) -> str:
    """25557032 -> '25,557,032'; 0.27e6 -> '270,000'; 1.5 -> '1.5'."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,g}"


def verdict(analysis: Analysis) -> str:
    """✓ when every expectation holds, ✗ when one fails, blank when there are none."""
    if not analysis.checks:
        return ""
    return "✓" if analysis.ok else "✗"


@dataclass(frozen=True)
class StageRow:
    """One row of a per-stage table."""

    name: str
    output: str
    blocks: int
    cost: Cost


def stage_rows(analysis: Analysis) -> list[StageRow]:
    """Per-stage rows: stem, each stage of the table, head."""
    outputs = {node.stage: node.shape for node in analysis.graph.nodes}
    blocks = {plan.name: len(plan.blocks) for plan in analysis.graph.stages}
    return [
        StageRow(name, "x".join(map(str, outputs[name])), blocks.get(name, 0), cost)
        for name, cost in analysis.stages.items()
    ]


def block_text(stage: Stage) -> str:
    """A stage as the paper writes it: [3x3, 64; 3x3, 64] x 2."""
    rows = "; ".join(
        f"{row[0]}x{row[0]}, {row[1]}" + (f", C={row[2]}" if len(row) > 2 else "") for row in stage.block
    )
    return f"[{rows}] x {stage.repeat}"


def row_text(row: tuple[int, ...]) -> str:
    """A table row as the papers write it: `3x3, 128`, or `3x3, 128, C=32` when grouped."""
    return f"{row[0]}x{row[0]}, {row[1]}" + (f", C={row[2]}" if len(row) > 2 else "")


def stem_text(graph: ir.Graph) -> str:
    """The stem as the paper writes it: 7x7, 64, stride 2; 3x3 max pool, stride 2."""
    parts = []
    for node in graph.nodes:
        if node.stage != "stem":
            continue
        if isinstance(node, ir.Conv):
            row = (node.kernel, node.filters, *([node.groups] if node.groups > 1 else []))
            parts.append(f"{row_text(row)}, stride {node.stride}")
        elif isinstance(node, ir.MaxPool):
            parts.append(f"{node.size}x{node.size} max pool, stride {node.stride}")
        elif isinstance(node, ir.Upsample):
            parts.append(f"{node.factor}x upsampling")
    return "; ".join(parts)


def stem_size(analysis: Analysis) -> str:
    """Output size of the stem's first layer."""
    first = next(node for node in analysis.graph.nodes if node.stage == "stem")
    return f"{first.shape[0]}x{first.shape[1]}"


def environment(code: bool = False) -> jinja2.Environment:
    """The jinja2 environment with the table filters; `code` trims block tags' lines."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(resource_dir("templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=code,
        lstrip_blocks=code,
    )
    env.filters.update(
        si=si,
        thousands=thousands,
        verdict=verdict,
        stage_rows=stage_rows,
        block_text=block_text,
        stem_text=stem_text,
        stem_size=stem_size,
    )
    return env


def render(template: str, **context: object) -> str:
    """Render one template of templates/."""
    return environment().get_template(template).render(**context)


def notes(item: object) -> list[str]:
    """What a table says under an item's row: an ONNX recount's differences from the spec it
    carries (recount.OnnxCount.notes); an Analysis has none."""
    return list(getattr(item, "notes", []))


def with_notes(text: str, analyses: list[Analysis]) -> str:
    """A Markdown table followed by its notes, one list item per note naming its file."""
    lines = [f"- {a.path}: {note}" for a in analyses for note in notes(a)]
    if not lines:
        return text
    return text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"


def _records(analyses: list[Analysis], per_stage: bool) -> list[dict]:
    records = []
    for a in analyses:
        rows = stage_rows(a) if per_stage else [StageRow("total", "", 0, a.cost)]
        for row in rows:
            record = {"spec": a.name, "file": a.path}
            if per_stage:
                record.update(stage=row.name, output=row.output, blocks=row.blocks)
            record.update(
                depth=row.cost.depth,
                params=row.cost.params,
                weights=row.cost.weights,
                bn_params=row.cost.bn_params,
                conv_bias=row.cost.conv_bias,
                bn_stats=row.cost.bn_stats,
                params_total=row.cost.params_total,
                macs=row.cost.macs,
                flops=2 * row.cost.macs,
                activations=row.cost.activations,
            )
            if not per_stage:
                record["paper_ok"] = a.ok if a.checks else None
            if hasattr(a, "notes"):  # an ONNX recount (a table holds recounts only, or specs only)
                record.update(bn_folded=a.bn_folded, notes="; ".join(notes(a)))
            records.append(record)
    return records


def table(analyses: list[Analysis], fmt: str = "md", per_stage: bool = False) -> str:
    """The cost table of several specs (or ONNX recounts, with their notes) in Markdown, CSV or JSON."""
    if fmt == "md":
        return with_notes(
            render("stages.md.j2" if per_stage else "summary.md.j2", analyses=analyses), analyses
        )
    records = _records(analyses, per_stage)
    if fmt == "json":
        return json.dumps(records, indent=2) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()
