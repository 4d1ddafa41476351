"""`rescompile report`: several training runs compared in one Markdown table and one figure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rescompile.analysis.tables import si, thousands
from rescompile.train.run_dir import RECIPE, MetricsRow, RunSummary, read_metrics, read_recipe, read_summary


@dataclass
class Run:
    """One run directory's summary and curves."""

    path: Path
    summary: RunSummary
    rows: list[MetricsRow]


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


SETTINGS = ("dataset", "recipe", "epochs", "precision", "distribute", "replicas", "data")
"""Fields of a run's summary that can tell runs of one spec apart."""


def _flat(tree: dict, prefix: str = "") -> dict[str, str]:
    """A nested dict as {"a.b": "value"}, the keys as `--set` takes them."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def _settings(run: Run, same_recipe: bool) -> dict[str, str]:
    """What the run was trained with: its summary's SETTINGS, and the recipe's fields too when every
    run has the same recipe (otherwise its name says enough)."""
    settings = {}
    if same_recipe and (run.path / RECIPE).is_file():
        settings = _flat(read_recipe(run.path).model_dump(mode="json", exclude={"name", "source"}))
    return settings | {key: str(getattr(run.summary, key)) for key in SETTINGS}  # epochs as trained


SETTING_WORDS = {
    "optimizer.lr": "lr",
    "optimizer.name": "optimizer",
    "optimizer.momentum": "momentum",
    "optimizer.weight_decay": "weight decay",
    "batch_size": "batch",
    "schedule.kind": "schedule",
    "schedule.warmup_epochs": "warm-up epochs",
    "label_smoothing": "label smoothing",
    "augment.pad_crop": "pad-crop",
}
"""Legend words for settings (keyed as `--set` names them); any other setting shows its key."""


def setting_label(key: str, value: str) -> str:
    """A setting as a legend says it: "lr 0.4", "batch 128", "augment.flip True"."""
    return f"{SETTING_WORDS.get(key, key)} {value}"


def run_labels(runs: list[Run]) -> list[str]:
    """Legend labels: each run's spec and the settings that differ between the runs, e.g.
    "cifar_resnet20 (lr 0.05)"; the run directory's name is added where that is not enough."""
    same_recipe = len({run.summary.recipe for run in runs}) == 1
    settings = [_settings(run, same_recipe) for run in runs]
    keys = sorted({key for found in settings for key in found})
    differing = [key for key in keys if len({found.get(key, "none") for found in settings}) > 1]
    labels = []
    for run, found in zip(runs, settings, strict=True):
        shown = ", ".join(setting_label(key, found.get(key, "none")) for key in differing)
        labels.append(f"{run.summary.spec} ({shown})" if shown else run.summary.spec)
    return [
        f"{label} [{run.path.name}]" if labels.count(label) > 1 else label
        for run, label in zip(runs, labels, strict=True)
    ]


def _names(values: list[str]) -> str:
    """Distinct values in order of first appearance, comma-separated."""
    return ", ".join(dict.fromkeys(values))


def runs_figure(runs: list[Run]):
    """Training loss (log scale) and validation accuracy of every run, overlaid, against optimizer
    steps; titled with the specs, datasets and runs, one legend below."""
    from rescompile.figures import PanelCurve, percent_ticks, two_panels

    title = (
        f"{_names([r.summary.spec for r in runs])} on {_names([r.summary.dataset for r in runs])}"
        f"\nruns: {_names([r.path.name for r in runs])}"
    )
    curves = [
        PanelCurve(
            label,
            [row.step for row in run.rows],
            [row.loss for row in run.rows],
            [row.val_accuracy for row in run.rows],
        )
        for run, label in zip(runs, run_labels(runs), strict=True)
    ]
    figure, (loss_axis, accuracy_axis) = two_panels(title, curves)
    loss_axis.set(title="training loss", ylabel="training loss (log scale)", yscale="log")
    accuracy_axis.set(title="validation accuracy", ylabel="validation accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.set_xlabel("iterations")
    percent_ticks(accuracy_axis)
    return figure


def plot_runs(runs: list[Run], path: Path) -> None:
    """Write runs_figure(runs) to `path`."""
    from rescompile.figures import write_figure

    write_figure(runs_figure(runs), path)


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
