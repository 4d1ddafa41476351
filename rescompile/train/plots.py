"""Pictures of a run: loss, accuracy and learning-rate curves against epochs."""

from __future__ import annotations

import math
from pathlib import Path

from rescompile.figures import (
    draw_curve,
    integer_ticks,
    legend_outside,
    percent_ticks,
    titled_figure,
    write_figure,
)
from rescompile.train.run_dir import MetricsRow

CURVES = (
    ("loss", "loss", "log", (("train", "loss"), ("validation", "val_loss"))),
    ("accuracy", "accuracy", "linear", (("train", "accuracy"), ("validation", "val_accuracy"))),
    ("lr", "learning rate", "log", (("learning rate", "lr"),)),
)
"""Per picture of a run: its name, y label, y scale, and its (label, MetricsRow field) curves."""


def curve_figure(rows: list[MetricsRow], title: str, name: str):
    """The figure of one of CURVES against epochs. A column without values (no validation split)
    is left out; a log axis turns linear where a value is not positive (a schedule ending at 0)."""
    _, quantity, scale, series = next(curve for curve in CURVES if curve[0] == name)
    figure, axis = titled_figure(title)
    epochs = [row.epoch for row in rows]
    drawn = {label: [getattr(row, key) for row in rows] for label, key in series}
    drawn = {label: values for label, values in drawn.items() if not all(map(math.isnan, values))}
    for label, values in drawn.items():
        draw_curve(axis, epochs, values, label=label)
    if any(v <= 0 for values in drawn.values() for v in values):
        scale = "linear"
    axis.set(title=f"{quantity} per epoch", xlabel="epoch", yscale=scale)
    axis.set_ylabel(f"{quantity} (log scale)" if scale == "log" else quantity)
    axis.grid(alpha=0.3, which="both" if scale == "log" else "major")
    integer_ticks(axis)
    if name == "accuracy":
        percent_ticks(axis)
    if len(series) > 1:  # which of train and validation is shown, even where only one is
        legend_outside(figure, axis)
    return figure


def plot_curves(rows: list[MetricsRow], run_dir: Path, title: str | None = None) -> list[Path]:
    """loss.png, accuracy.png and lr.png against epochs (train and validation), titled `title`
    (e.g. "cifar_resnet20 on cifar10"; default: the run directory's name)."""
    written = []
    for name, *_ in CURVES:
        path = run_dir / f"{name}.png"
        write_figure(curve_figure(rows, title or run_dir.name, name), path)
        written.append(path)
    return written
