"""Pictures of a run: loss, accuracy and learning-rate curves; confusion matrices.

Also the look every figure of rescompile shares: a title naming the network and the data,
integer ticks on axes that count (epochs, iterations, layers), markers on short curves (a
single point is otherwise invisible), and legends outside the data.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rescompile.fileio import write_atomic

MARKERS_BELOW = 30
"""Curves with fewer points than this are drawn with a marker at every point."""
TITLE_WIDTH = 100
"""Characters per line of a figure's title before it wraps."""


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed); log axes write 0.01 to 100 as
    plain numbers (not 10^-2, 1.5×10^0)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["axes.formatter.min_exponent"] = 3
    import matplotlib.pyplot as plt

    return plt


def save_png(figure, path: Path) -> None:
    """Save a matplotlib figure as PNG, atomically."""
    write_atomic(
        path, lambda tmp: figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight"), suffix=".png"
    )


def write_figure(figure, path: Path) -> None:
    """Save a figure as PNG (atomically) and free it."""
    save_png(figure, path)
    pyplot().close(figure)


def titled_figure(title: str, columns: int = 1, figsize: tuple[float, float] = (6.5, 4), **options):
    """(figure, axes) with `columns` axes side by side under `title` (wrapped when long), laid out so
    that titles, labels, colour bars and outside legends do not overlap."""
    figure, axes = pyplot().subplots(1, columns, figsize=figsize, layout="constrained", **options)
    figure.suptitle(
        "\n".join(textwrap.fill(line, TITLE_WIDTH) for line in title.splitlines()), fontsize="large"
    )
    return figure, axes


def integer_ticks(axis) -> None:
    """Whole-number ticks only on the x axis (it counts epochs, iterations or layers); one tick where
    a single point spans less than one."""
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def percent_ticks(axis) -> None:
    """The y axis shows fractions (accuracy) as percentages, within 0–100% (the margin around a
    curve, or around a single point, would otherwise run past them). Call it after drawing."""
    from matplotlib.ticker import PercentFormatter

    axis.yaxis.set_major_formatter(PercentFormatter(1.0))
    bottom, top = axis.get_ylim()
    axis.set_ylim(max(bottom, 0.0), min(top, 1.0))
    for line in axis.lines:  # a point at 100% lies on the frame: its marker shows whole
        line.set_clip_on(False)


def draw_curve(axis, x: list, y: list, marker: str = "o", **style):
    """One line; with `marker` at every point when it has few (a single point is otherwise
    invisible). Returns the Line2D."""
    if len(x) < MARKERS_BELOW:
        style |= {"marker": marker, "markersize": 6 if len(x) == 1 else 4}
    (line,) = axis.plot(x, y, **style)
    return line


LEGEND_CHARS_PER_INCH = 14
"""About how many characters of legend text (8 pt) fit in an inch."""


def legend_outside(figure, axis):
    """The legend of `axis`'s curves centred below the axes, outside the data, in as few rows as the
    figure's width allows, its columns filled evenly."""
    handles, labels = axis.get_legend_handles_labels()
    fits = int(figure.get_figwidth() * LEGEND_CHARS_PER_INCH // (max(map(len, labels)) + 6))
    rows = math.ceil(len(labels) / max(1, fits))
    columns = math.ceil(len(labels) / rows)
    return figure.legend(handles, labels, loc="outside lower center", ncols=columns, fontsize=8)


@dataclass
class PanelCurve:
    """One curve of a two-panel figure: one x for both panels, its own y in each."""

    label: str
    x: list
    left: list
    right: list
    style: dict = field(default_factory=dict)
    """Passed to draw_curve (colour, linestyle, marker, ...)."""


def two_panels(title: str, curves: list[PanelCurve], **options):
    """(figure, (left, right)): every curve drawn in both axes, whose x axes count (integer ticks),
    with grids and one legend below; the caller names the axes. `options` go to subplots."""
    figure, axes = titled_figure(title, columns=2, figsize=(12, 4.5), **options)
    for curve in curves:
        for axis, y in zip(axes, (curve.left, curve.right), strict=True):
            draw_curve(axis, curve.x, y, label=curve.label, **curve.style)
    for axis in axes:
        axis.grid(alpha=0.3, which="both")
        integer_ticks(axis)
    legend_outside(figure, axes[1])
    return figure, axes


CURVES = (
    ("loss", "loss", "log", (("train", "loss"), ("validation", "val_loss"))),
    ("accuracy", "accuracy", "linear", (("train", "accuracy"), ("validation", "val_accuracy"))),
    ("lr", "learning rate", "log", (("learning rate", "lr"),)),
)
"""Per picture of a run: its name, y label, y scale, and its (label, metrics.csv column) curves."""


def curve_figure(rows: list[dict], title: str, name: str):
    """The figure of one of CURVES against epochs. A column without values (no validation split)
    is left out; a log axis turns linear where a value is not positive (a schedule ending at 0)."""
    _, quantity, scale, series = next(curve for curve in CURVES if curve[0] == name)
    figure, axis = titled_figure(title)
    epochs = [int(r["epoch"]) for r in rows]
    drawn = {label: [float(r[key]) for r in rows] for label, key in series}
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


def plot_curves(rows: list[dict], run_dir: Path, title: str | None = None) -> list[Path]:
    """loss.png, accuracy.png and lr.png against epochs (train and validation), titled `title`
    (e.g. "cifar_resnet20 on cifar10"; default: the run directory's name)."""
    written = []
    for name, *_ in CURVES:
        path = run_dir / f"{name}.png"
        write_figure(curve_figure(rows, title or run_dir.name, name), path)
        written.append(path)
    return written


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """The fraction of examples whose label is among the k highest scores."""
    ranked = np.argsort(-scores, axis=1)[:, :k]
    return float((ranked == labels[:, None]).any(axis=1).mean())


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def confusion_summary(matrix: np.ndarray, names: list[str], rows: int = 10) -> str:
    """A confusion matrix of too many classes to print as a table (over COUNTS_UP_TO), summarised
    (no final newline): its `rows` least accurate classes and most frequent confusions."""
    totals, correct = matrix.sum(axis=1), np.diag(matrix)
    scored = np.flatnonzero(totals)  # classes with test images
    worst = scored[np.argsort(correct[scored] / totals[scored], kind="stable")][:rows]
    errors = matrix.copy()
    np.fill_diagonal(errors, 0)
    confused = [i for i in np.argsort(-errors, axis=None, kind="stable")[:rows] if errors.flat[i]]
    pairs = [np.unravel_index(i, errors.shape) for i in confused]
    width = max(len(names[c]) for c in worst) if len(worst) else 0
    lines = [
        f"{len(names)} classes, too many to print in full:"
        f" accuracy {correct.sum() / max(1, totals.sum()):.2%} on {totals.sum()} images",
        "least accurate classes (accuracy, correct of the class's images):",
        *(
            f"  {names[c]:<{width}}  {correct[c] / totals[c]:7.2%}  {correct[c]} of {totals[c]}"
            for c in worst
        ),
        "most frequent confusions (true → predicted: images, of the true class's):",
        *(f"  {names[t]} → {names[p]}: {errors[t, p]} of {totals[t]}" for t, p in pairs),
    ]
    if not pairs:
        lines.append("  none")
    return "\n".join(lines)


COUNTS_UP_TO = 20
"""Confusion matrices of up to this many classes show the count in every cell."""
NAMED_UP_TO = 50
"""Confusion matrices of more classes name every k-th class only (with its index), readably."""
NAME_CHARS = 24
"""Class names longer than this are shortened with an ellipsis on a confusion matrix's axes."""


def _write_counts(axis, matrix: np.ndarray) -> None:
    """Every cell's count, white on dark cells and black on light ones."""
    dark = matrix.max() / 2
    size = 9 if len(matrix) <= 10 else 7
    for (row, col), count in np.ndenumerate(matrix):
        colour = "white" if count > dark else "black"
        axis.text(col, row, str(count), ha="center", va="center", fontsize=size, color=colour)


def confusion_figure(matrix: np.ndarray, names: list[str], title: str):
    """The confusion matrix as a heat map with a colour bar: true classes down, predicted across,
    counts in the cells (up to COUNTS_UP_TO classes), at most NAMED_UP_TO classes named per axis."""
    side = min(max(5.0, 0.6 * len(names) + 2.5), 16.0)
    figure, axis = titled_figure(title, figsize=(side + 1.2, side))
    image = axis.imshow(matrix, cmap="Blues", vmin=0, interpolation="nearest")
    figure.colorbar(image, ax=axis, label="images", shrink=0.8)
    step = math.ceil(len(names) / NAMED_UP_TO)
    shown = range(0, len(names), step)
    labels = [names[i] if step == 1 else f"{i} {names[i]}" for i in shown]
    labels = [label if len(label) <= NAME_CHARS else label[: NAME_CHARS - 1] + "…" for label in labels]
    size = 9 if len(names) <= COUNTS_UP_TO else 8
    axis.set_xticks(shown, labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=size)
    axis.set_yticks(shown, labels, fontsize=size)
    named = "" if step == 1 else f" (1 class in {step} named, of {len(names)})"
    axis.set_xlabel(f"predicted{named}", fontsize=11)
    axis.set_ylabel(f"true{named}", fontsize=11)
    if len(names) <= COUNTS_UP_TO:
        _write_counts(axis, matrix)
    return figure


def plot_confusion(matrix: np.ndarray, names: list[str], path: Path, title: str) -> None:
    """Write the confusion matrix's picture (see confusion_figure) to `path`."""
    write_figure(confusion_figure(matrix, names, title), path)
