"""`rescompile report`: several training runs compared in one Markdown table and one figure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rescompile.analysis.tables import si, thousands
from rescompile.errors import RescompileError
from rescompile.train.callbacks import read_metrics
from rescompile.train.plots import save_png

REQUIRED = (
    "spec",
    "epochs",
    "test_accuracy",
    "best_val_accuracy",
    "wall_seconds",
    "images_per_second",
)


@dataclass
class Run:
    """One run directory's summary and curves."""

    path: Path
    summary: dict
    rows: list[dict]
    paper_error: float | None


def load_run(path: Path) -> Run:
    """A run directory: summary.json (required fields checked) and metrics.csv."""
    summary_path = path / "summary.json"
    if not summary_path.is_file():
        raise RescompileError(f"{path}: not a finished run (no summary.json)")
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as exc:
        raise RescompileError(f"{summary_path}: invalid JSON ({exc})") from None
    missing = [key for key in REQUIRED if key not in summary]
    if missing:
        raise RescompileError(f"{summary_path}: missing {', '.join(missing)}")
    paper_error = summary.get("paper_test_error")  # written only for runs on the paper's dataset
    return Run(path, summary, read_metrics(path / "metrics.csv", 10**9), paper_error)


def _percent(value: float | None) -> str:
    return f"{100 * value:.2f}%" if value is not None else "–"


def markdown(runs: list[Run]) -> str:
    """The comparison table, with the paper's accuracy next to each run."""
    header = ("run", "spec", "params", "MACs", "epochs", "best val acc", "test acc", "paper test acc")
    lines = ["| " + " | ".join((*header, "wall time", "img/s")) + " |", "|---|---|" + "---:|" * 8]
    for run in runs:
        s = run.summary
        paper = _percent(1 - run.paper_error / 100) if run.paper_error is not None else "–"
        speed = f"{s['images_per_second']:.0f}" if s["images_per_second"] else "–"
        cells = (
            run.path.name,
            s["spec"],
            thousands(s.get("params", 0)),
            si(s.get("macs", 0)),
            str(s["epochs"]),
            _percent(s["best_val_accuracy"]),
            _percent(s["test_accuracy"]),
            paper,
            f"{s['wall_seconds'] / 60:.1f} min",
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
