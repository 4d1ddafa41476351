"""The look every figure of rescompile shares: a title naming the network and the data,
integer ticks on axes that count (epochs, iterations, layers), markers on short curves (a
single point is otherwise invisible), and legends outside the data; figures written atomically."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

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
