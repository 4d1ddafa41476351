"""Pictures of a run: loss, accuracy and learning-rate curves; confusion matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rescompile.fileio import write_atomic


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure, path: Path) -> None:
    """Save a matplotlib figure as PNG, atomically."""
    write_atomic(
        path, lambda tmp: figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight"), suffix=".png"
    )


def plot_curves(rows: list[dict], run_dir: Path) -> list[Path]:
    """loss.png, accuracy.png and lr.png against epochs (train and validation)."""
    plt = pyplot()
    epochs = [int(r["epoch"]) for r in rows]
    written = []
    for name, series in (
        ("loss", [("train", "loss"), ("validation", "val_loss")]),
        ("accuracy", [("train", "accuracy"), ("validation", "val_accuracy")]),
        ("lr", [("learning rate", "lr")]),
    ):
        figure, axis = plt.subplots(figsize=(6, 4))
        for label, key in series:
            axis.plot(
                epochs, [float(r[key]) for r in rows], label=label, marker="." if len(rows) < 30 else None
            )
        axis.set_xlabel("epoch")
        axis.set_ylabel(name)
        if name == "lr":
            axis.set_yscale("log")
        axis.legend()
        axis.grid(alpha=0.3)
        path = run_dir / f"{name}.png"
        save_png(figure, path)
        plt.close(figure)
        written.append(path)
    return written


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def plot_confusion(matrix: np.ndarray, names: list[str], path: Path) -> None:
    """The confusion matrix as a labelled heat map."""
    plt = pyplot()
    size = max(4, 0.5 * len(names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(names)), names, rotation=90)
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(names) <= 20:
        for (row, col), count in np.ndenumerate(matrix):
            axis.text(col, row, str(count), ha="center", va="center", fontsize=8)
    save_png(figure, path)
    plt.close(figure)
