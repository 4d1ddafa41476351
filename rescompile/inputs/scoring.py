"""A model's scores on labelled images: top-k accuracy and the confusion matrix, summarised in
text or drawn (shared by `train` and `serve`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rescompile.figures import titled_figure, write_figure


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
