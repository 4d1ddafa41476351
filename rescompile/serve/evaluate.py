"""`rescompile evaluate`: test accuracy and a confusion matrix for a trained model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rescompile.errors import RescompileError, printable
from rescompile.options import EVAL_BATCH


@dataclass
class Evaluation:
    """Accuracy, the confusion matrix, what was scored, and where its picture was written."""

    accuracy: float
    top5: float | None
    matrix: np.ndarray
    class_names: list[str]
    split: str
    picture: Path


def evaluate(
    model_path: Path,
    *,
    data: str | None = None,
    spec: Path | None = None,
    out: Path | None = None,
    classes: int = 10,
    ten_crop: bool = False,
    batch_size: int = EVAL_BATCH,
) -> Evaluation:
    """Evaluate MODEL (.keras, or a run directory) on every image of the test split of --data
    (CIFAR, scored `batch_size` images at a time), its val/ split, or the folder or TFRecord shards
    given (streamed); confusion.png goes to `out`, by default the model's folder."""
    from rescompile.data.sources import is_streamed
    from rescompile.keras_backend.model_file import analysis_for_model, load_keras_model
    from rescompile.train.plots import confusion_matrix, plot_confusion
    from rescompile.train.streaming import top_k_accuracy
    from rescompile.train.tfdata import Normalization

    if model_path.is_dir():
        model_path = model_path / "model.keras"
    model = load_keras_model(model_path)
    analysis, record = analysis_for_model(model, model_path, spec)
    config = record.preprocess.model_dump(mode="json")
    if config["mean"] == "per-pixel":
        raise RescompileError(f"{model_path}: an untrained model; its per-pixel mean is not computed yet")
    normalization = Normalization.from_preprocess(config)
    outputs = int(model.output.shape[-1])
    size = analysis.graph.input.shape[0]
    if is_streamed(data):
        scores, labels, folders, split = _streamed_scores(
            model, data, normalization, size, ten_crop, batch_size
        )  # type: ignore[arg-type]
        if folders is not None and record.class_names and folders != record.class_names:
            raise RescompileError(
                f"{model_path}: trained on classes {record.class_names[:3]}...,"
                f" but --data {data} has {folders[:3]}..."
            )
        names = folders or record.class_names or [str(i) for i in range(outputs)]
    else:
        if ten_crop:
            raise RescompileError(
                "--ten-crop needs images larger than the input (an image folder or TFRecords)"
            )
        scores, labels, names, split = _cifar_scores(model, data, normalization, classes, batch_size)
    if outputs != len(names):
        raise RescompileError(f"{model_path}: {outputs} outputs, but the data has {len(names)} classes")
    predicted = scores.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, len(names))
    accuracy = top_k_accuracy(scores, labels, 1)
    top5 = top_k_accuracy(scores, labels, 5) if outputs > 5 else None
    picture = (out or model_path.parent) / "confusion.png"
    title = (
        f"{analysis.spec.name} ({_run_name(model_path)}) on {split}\n"
        f"accuracy {accuracy:.2%} on {len(predicted)} images"
    )
    plot_confusion(matrix, names, picture, title)
    return Evaluation(accuracy, top5, matrix, names, split, picture)


def _cifar_scores(model, data: str | None, normalization, classes: int, batch_size: int):
    from rescompile.data.datasets import load_dataset
    from rescompile.train.tfdata import evaluation_dataset

    dataset = load_dataset(data, classes)
    batches = evaluation_dataset(dataset.x_test, dataset.y_test, batch_size, normalization)
    scores = model.predict(batches, verbose=0)
    return np.asarray(scores), dataset.y_test, dataset.class_names, f"{dataset.name}, test split"


def _streamed_scores(model, data: str, normalization, size: int, ten_crop: bool, batch_size: int):
    """Scores and labels of every image of the evaluation split, streamed through tf.data."""
    from rescompile.data.sources import RecordSplit, evaluation_split
    from rescompile.train.streaming import check_records, split_scores

    split, names, described = evaluation_split(data)
    if isinstance(split, RecordSplit):
        check_records(split, "--data")
    scores, labels = split_scores(model, split, normalization, size, ten_crop, batch_size)
    if len(labels) < len(split):
        described += f" ({len(split) - len(labels)} images failed to decode and were skipped)"
    return scores, labels, names, described


def _run_name(model_path: Path) -> str:
    """The run directory's name for a run's model.keras, else the model file's name."""
    return model_path.parent.name if model_path.name == "model.keras" else model_path.name


def confusion_text(class_names: list[str], matrix: np.ndarray) -> str:
    """The confusion matrix as a text table (no final newline): a "true \\ predicted" header row of
    the class names, then one row of counts per true class, its name first; columns right-aligned,
    each as wide as its widest cell. Past COUNTS_UP_TO classes, a summary instead."""
    from rescompile.train.plots import COUNTS_UP_TO, confusion_summary

    class_names = [printable(name) for name in class_names]  # folder names, shown one line each
    if len(class_names) > COUNTS_UP_TO:
        return confusion_summary(matrix, class_names)
    table = [["true \\ predicted", *class_names]]
    table += [[name, *map(str, row)] for name, row in zip(class_names, matrix.tolist(), strict=True)]
    widths = [max(map(len, column)) for column in zip(*table, strict=True)]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in table
    )
