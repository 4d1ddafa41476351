"""The per-stage summary `rescompile build` prints."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rescompile.analysis.tables import si, stage_rows, thousands
from rescompile.keras_backend.build import BuildResult


def print_build_summary(result: BuildResult, console: Console | None = None) -> None:
    """Per stage: output shape, params, MACs; then the paper check and the Keras cross-check."""
    console = console or Console(emoji=False)
    analysis = result.analysis
    table = Table(title=escape(f"{analysis.spec.name}  ({analysis.path})"))
    for column in ("stage", "output", "blocks", "params", "params (Keras)", "MACs"):
        table.add_column(column, justify="left" if column in ("stage", "output") else "right")
    for row in stage_rows(analysis):
        table.add_row(
            row.name,
            row.output,
            str(row.blocks or ""),
            thousands(row.cost.params),
            thousands(row.cost.params_total),
            si(row.cost.macs),
        )
    cost = analysis.cost
    table.add_row(
        "total", "", "", thousands(cost.params), thousands(cost.params_total), si(cost.macs), style="bold"
    )
    console.print(table)
    if not analysis.compared:
        console.print("paper numbers: not compared (this build changes the input, classifier or outputs)")
    for check in analysis.checks:
        mark = "[green]✓[/green]" if check.ok else "[red]✗[/red]"
        console.print(
            f"{mark} {check.metric}: {thousands(check.computed)} vs {thousands(check.expected)}"
            + escape(f" ({check.tolerance}{', ' + check.source if check.source else ''})")
        )
    keras_params = result.model.count_params()
    same = "[green]✓[/green]" if keras_params == cost.params_total else "[red]✗[/red]"
    console.print(
        f"{same} Keras count_params() {thousands(keras_params)} (IR: {thousands(cost.params_total)})"
    )
    if result.loaded_layers:
        console.print(f"loaded weights into {result.loaded_layers} layers")
    written = f"wrote {result.source_path}" + (f" and {result.model_path}" if result.model_path else "")
    console.print(escape(written))
