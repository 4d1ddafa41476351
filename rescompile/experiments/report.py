"""`rescompile report`: several training runs compared in one Markdown table and one figure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rescompile.analysis.tables import si, thousands
from rescompile.train.callbacks import read_metrics
from rescompile.train.plots import save_png
from rescompile.train.run_dir import RunSummary, read_summary


@dataclass
class Run:
    """One run directory's summary and curves."""

    path: Path
    summary: RunSummary
    rows: list[dict]


def load_run(path: Path) -> Run:
    """A finished run directory: its summary.json (validated) and metrics.csv."""
    return Run(path, read_summary(path), read_metrics(path / "metrics.csv", 10**9))


def _percent(value: float | None) -> str:
    return f"{100 * value:.2f}%" if value is not None else "–"


def markdown(runs: list[Run]) -> str:
    """The comparison table, with the paper's accuracy next to each run."""
    header = ("run", "spec", "params", "MACs", "epochs", "best val acc", "test acc", "paper test acc")
    lines = ["| " + " | ".join((*header, "wall time", "img/s")) + " |", "|---|---|" + "---:|" * 8]
    for run in runs:
        s = run.summary  # paper_test_error is set only for runs on the paper's dataset
        paper = _percent(1 - s.paper_test_error / 100) if s.paper_test_error is not None else "–"
        speed = f"{s.images_per_second:.0f}" if s.images_per_second else "–"
        cells = (
            run.path.name,
            s.spec,
            thousands(s.params),
            si(s.macs),
            str(s.epochs),
            _percent(s.best_val_accuracy),
            _percent(s.test_accuracy),
            paper,
            f"{s.wall_seconds / 60:.1f} min",
            speed,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_runs(runs: list[Run], path: Path) -> None:
    """Training loss and validation accuracy of every run, overlaid, against optimizer steps."""
    from rescompile.train.plots import pyplot

    plt = pyplot()

    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        steps = [int(r["step"]) for r in run.rows]
        loss_axis.plot(steps, [float(r["loss"]) for r in run.rows], label=run.path.name)
        accuracy_axis.plot(steps, [float(r["val_accuracy"]) for r in run.rows], label=run.path.name)
    loss_axis.set(xlabel="iterations", ylabel="training loss", yscale="log")
    accuracy_axis.set(xlabel="iterations", ylabel="validation accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    save_png(figure, path)
    plt.close(figure)


def expand(paths: list[Path]) -> list[Path]:
    """Run directories; an experiment folder (with results.json) stands for all its runs."""
    expanded = []
    for path in paths:
        results = path / "results.json"
        if results.is_file():
            expanded += [path / run["run_dir"] for run in json.loads(results.read_text())["runs"]]
        else:
            expanded.append(path)
    return expanded


def report(paths: list[Path], out: Path) -> tuple[str, Path]:
    """Write report.md and curves.png into `out`; returns the Markdown and the figure's path."""
    runs = [load_run(path) for path in expand(paths)]
    text = markdown(runs)
    out.mkdir(parents=True, exist_ok=True)
    from rescompile.fileio import write_text_atomic

    write_text_atomic(out / "report.md", text)
    plot_runs(runs, out / "curves.png")
    return text, out / "curves.png"
