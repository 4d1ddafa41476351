"""`rescompile evaluate`: test accuracy and a confusion matrix for a trained model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rescompile.errors import RescompileError, printable
from rescompile.options import EVAL_BATCH
from rescompile.spec.preprocessing import Preprocessing


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
    provider: str = "auto",
) -> Evaluation:
    """Evaluate MODEL (.keras, .onnx, or a run directory) on every image of the test split of
    --data (CIFAR, scored `batch_size` images at a time), its val/ split, or the folder or TFRecord
    shards given (streamed); confusion.png goes to `out`, by default the model's folder. An .onnx
    model runs on onnxruntime (`provider`) with the preprocessing of its metadata, images read by
    Pillow (no TensorFlow)."""
    if model_path.is_dir():
        model_path = model_path / "model.keras"
    if model_path.suffix == ".onnx":
        if spec is not None:
            raise RescompileError("--spec applies to .keras models: an .onnx model carries its preprocessing")
        scored = _onnx_scores(
            model_path, data, classes, ten_crop=ten_crop, batch_size=batch_size, provider=provider
        )
    else:
        scored = _keras_scores(
            model_path, data, spec, classes=classes, ten_crop=ten_crop, batch_size=batch_size
        )
    return _evaluation(scored, model_path, out)


@dataclass
class _Scored:
    """A model's scores on every image of a split, with what the evaluation reports them by."""

    scores: np.ndarray
    labels: np.ndarray
    names: list[str]
    split: str
    network: str


def _keras_scores(
    model_path: Path, data: str | None, spec: Path | None, *, classes: int, ten_crop: bool, batch_size: int
) -> _Scored:
    from rescompile.inputs.sources import is_streamed
    from rescompile.keras_backend.model_file import analysis_for_model, load_keras_model

    model = load_keras_model(model_path)
    analysis, record = analysis_for_model(model, model_path, spec)
    normalization = _trained(record.preprocess, model_path).as_float32()
    outputs = int(model.output.shape[-1])
    size = analysis.graph.input.shape[0]
    if is_streamed(data):
        scores, labels, folders, split = _streamed_scores(
            model, data, normalization, size=size, ten_crop=ten_crop, batch_size=batch_size
        )  # type: ignore[arg-type]
        names = _class_names(model_path, data, folders, recorded=record.class_names, outputs=outputs)
    else:
        _no_ten_crop(ten_crop)
        scores, labels, names, split = _cifar_scores(
            model, data, normalization, classes=classes, batch_size=batch_size
        )
    return _Scored(scores, labels, names, split, analysis.spec.name)


def _onnx_scores(
    model_path: Path, data: str | None, classes: int, *, ten_crop: bool, batch_size: int, provider: str
) -> _Scored:
    """Scores of an ONNX model: CIFAR arrays or folder images (read by Pillow, as `predict` reads
    them), preprocessed as its metadata says, `batch_size` at a time on onnxruntime."""
    from rescompile.inputs.datasets import load_dataset
    from rescompile.inputs.images import read_image
    from rescompile.inputs.sources import RecordSplit, evaluation_split, is_streamed
    from rescompile.serve.runtime import input_geometry, metadata, open_session

    session = open_session(model_path, provider)
    meta = metadata(session, model_path)
    geometry = input_geometry(session, meta, model_path, rgb=True)
    preprocessing = _trained(meta.get("preprocess", Preprocessing()), model_path)
    network = meta.get("spec_name", model_path.stem)
    _no_ten_crop(ten_crop)
    if is_streamed(data):
        split, folders, described = evaluation_split(data)  # type: ignore[arg-type]
        if isinstance(split, RecordSplit):
            raise RescompileError(
                f"--data {data}: TFRecords are decoded by TensorFlow; evaluate the .keras model on"
                " them, or the .onnx on an image folder"
            )
        files = split.files

        def images(chunk: slice) -> np.ndarray:
            return np.stack([read_image(Path(f), geometry.size, preprocessing.crop) for f in files[chunk]])

        outputs = int(session.get_outputs()[0].shape[-1] or 0)
        names = _class_names(model_path, data, folders, recorded=meta.get("class_names", []), outputs=outputs)
        labels, count, split_name = split.labels, len(files), described
    else:
        if data is None:
            raise RescompileError(
                "evaluating an .onnx model needs --data (a CIFAR tarball or folder, or images)"
            )
        dataset = load_dataset(data, classes)
        if dataset.x_test.shape[1:3] != (geometry.size, geometry.size):
            raise RescompileError(
                f"{model_path}: takes {geometry.size}x{geometry.size} images, but --data {data} has"
                f" {dataset.x_test.shape[1]}x{dataset.x_test.shape[2]}"
            )

        def images(chunk: slice) -> np.ndarray:
            return dataset.x_test[chunk].astype(np.float32)

        names, labels, count = dataset.class_names, dataset.y_test, len(dataset.y_test)
        split_name = f"{dataset.name}, test split"
    scores = _run_batches(
        session, geometry, preprocessing, images=images, count=count, batch_size=batch_size, source=model_path
    )
    return _Scored(scores, np.asarray(labels), names, split_name, network)


def _run_batches(
    session, geometry, preprocessing: Preprocessing, *, images, count: int, batch_size: int, source: Path
) -> np.ndarray:
    """The model's outputs on images(slice) for every slice of `batch_size` up to `count` (a model
    with a fixed batch gets batches of exactly that, the last one padded)."""
    from rescompile.serve.runtime import run_session

    step = geometry.batch or batch_size
    scores = []
    for start in range(0, count, step):
        batch = preprocessing.normalize(images(slice(start, start + step)))
        kept = len(batch)
        if geometry.batch is not None and kept < step:
            batch = np.concatenate([batch, np.zeros((step - kept, *batch.shape[1:]), np.float32)])
        if geometry.layout == "nchw":
            batch = batch.transpose(0, 3, 1, 2)
        scores.append(np.asarray(run_session(session, {geometry.name: batch}, source)[0])[:kept])
    return np.concatenate(scores).astype(np.float32)


def _trained(preprocessing: Preprocessing, model_path: Path) -> Preprocessing:
    if not preprocessing.trained:
        raise RescompileError(f"{model_path}: an untrained model; its per-pixel mean is not computed yet")
    return preprocessing


def _no_ten_crop(ten_crop: bool) -> None:
    if ten_crop:
        raise RescompileError(
            "--ten-crop needs a .keras model and images larger than the input (an image folder or TFRecords)"
        )


def _class_names(
    model_path: Path, data: str, folders: list[str] | None, *, recorded: list[str], outputs: int
) -> list[str]:
    """The class names of streamed data: its folders (which must be the model's), else the model's."""
    if folders is not None and recorded and folders != recorded:
        raise RescompileError(
            f"{model_path}: trained on classes {recorded[:3]}..., but --data {data} has {folders[:3]}..."
        )
    return folders or recorded or [str(i) for i in range(outputs)]


def _evaluation(scored: _Scored, model_path: Path, out: Path | None) -> Evaluation:
    """Accuracy, top-5, the confusion matrix and its picture."""
    from rescompile.inputs.scoring import confusion_matrix, plot_confusion, top_k_accuracy

    outputs = scored.scores.shape[1]
    if outputs != len(scored.names):
        raise RescompileError(
            f"{model_path}: {outputs} outputs, but the data has {len(scored.names)} classes"
        )
    predicted = scored.scores.argmax(axis=1)
    matrix = confusion_matrix(scored.labels, predicted, len(scored.names))
    accuracy = top_k_accuracy(scored.scores, scored.labels, 1)
    top5 = top_k_accuracy(scored.scores, scored.labels, 5) if outputs > 5 else None
    picture = (out or model_path.parent) / "confusion.png"
    title = (
        f"{scored.network} ({_run_name(model_path)}) on {scored.split}\n"
        f"accuracy {accuracy:.2%} on {len(predicted)} images"
    )
    plot_confusion(matrix, scored.names, picture, title)
    return Evaluation(accuracy, top5, matrix, scored.names, scored.split, picture)


def _cifar_scores(model, data: str | None, normalization: Preprocessing, *, classes: int, batch_size: int):
    from rescompile.inputs.datasets import load_dataset
    from rescompile.inputs.tfdata import evaluation_dataset

    dataset = load_dataset(data, classes)
    batches = evaluation_dataset(dataset.x_test, dataset.y_test, batch_size, normalization=normalization)
    scores = model.predict(batches, verbose=0)
    return np.asarray(scores), dataset.y_test, dataset.class_names, f"{dataset.name}, test split"


def _streamed_scores(
    model, data: str, normalization: Preprocessing, *, size: int, ten_crop: bool, batch_size: int
):
    """Scores and labels of every image of the evaluation split, streamed through tf.data."""
    from rescompile.inputs.sources import RecordSplit, evaluation_split
    from rescompile.inputs.streaming import check_records, split_scores

    split, names, described = evaluation_split(data)
    if isinstance(split, RecordSplit):
        check_records(split, "--data")
    scores, labels = split_scores(model, split, normalization, size=size, ten_crop=ten_crop, batch=batch_size)
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
    from rescompile.inputs.scoring import COUNTS_UP_TO, confusion_summary

    class_names = [printable(name) for name in class_names]  # folder names, shown one line each
    if len(class_names) > COUNTS_UP_TO:
        return confusion_summary(matrix, class_names)
    table = [["true \\ predicted", *class_names]]
    table += [[name, *map(str, row)] for name, row in zip(class_names, matrix.tolist(), strict=True)]
    widths = [max(map(len, column)) for column in zip(*table, strict=True)]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in table
    )
