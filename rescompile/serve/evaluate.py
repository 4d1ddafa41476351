"""`rescompile evaluate`: test accuracy and a confusion matrix for a trained model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rescompile.errors import RescompileError


@dataclass
class Evaluation:
    """Accuracy, the confusion matrix, and where its picture was written."""

    accuracy: float
    matrix: np.ndarray
    class_names: list[str]
    picture: Path


def evaluate(
    model_path: Path, data: str | None, spec: Path | None, out: Path | None, classes: int
) -> Evaluation:
    """Evaluate MODEL (.keras, or a run directory) on the test split of --data."""
    from rescompile.data.datasets import load_dataset
    from rescompile.onnx_backend.export import analysis_for_model, load_keras_model
    from rescompile.train.plots import confusion_matrix, plot_confusion
    from rescompile.train.tfdata import Normalization, evaluation_dataset

    if model_path.is_dir():
        model_path = model_path / "model.keras"
    model = load_keras_model(model_path)
    analysis, record = analysis_for_model(model, model_path, spec)
    config = record.preprocess.model_dump(mode="json")
    if config["mean"] == "per-pixel":
        raise RescompileError(f"{model_path}: an untrained model; its per-pixel mean is not computed yet")
    normalization = Normalization.from_preprocess(config)
    dataset = load_dataset(data, analysis.graph.input.shape[0], classes)
    if model.output.shape[-1] != dataset.classes:
        raise RescompileError(
            f"{model_path}: {model.output.shape[-1]} outputs, but the data has {dataset.classes}"
        )
    probabilities = model.predict(
        evaluation_dataset(dataset.x_test, dataset.y_test, 256, normalization), verbose=0
    )
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(dataset.y_test, predicted, dataset.classes)
    accuracy = float((predicted == dataset.y_test).mean())
    picture = (out or model_path.parent) / "confusion.png"
    title = (
        f"{analysis.spec.name} ({_run_name(model_path)}) on {dataset.name}, test split\n"
        f"accuracy {accuracy:.2%} on {len(predicted)} images"
    )
    plot_confusion(matrix, dataset.class_names, picture, title)
    return Evaluation(accuracy, matrix, dataset.class_names, picture)


def _run_name(model_path: Path) -> str:
    """The run directory's name for a run's model.keras, else the model file's name."""
    return model_path.parent.name if model_path.name == "model.keras" else model_path.name


def confusion_text(class_names: list[str], matrix: np.ndarray) -> str:
    """The confusion matrix as a text table (no final newline): a "true \\ predicted" header row of
    the class names, then one row of counts per true class, its name first; columns right-aligned,
    each as wide as its widest cell."""
    table = [["true \\ predicted", *class_names]]
    table += [[name, *map(str, row)] for name, row in zip(class_names, matrix.tolist(), strict=True)]
    widths = [max(map(len, column)) for column in zip(*table, strict=True)]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in table
    )
