"""`rescompile predict`: images in, top-k classes out, from an ONNX or a Keras model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rescompile.errors import RescompileError
from rescompile.inputs.images import read_image
from rescompile.serve.footprint import require_batch_memory
from rescompile.serve.runtime import (
    Prediction,
    input_geometry,
    metadata,
    open_session,
    run_session,
    top_k,
)
from rescompile.spec.preprocessing import Preprocessing


def _onnx(model: Path, images: list[Path], provider: str) -> tuple[np.ndarray, list[str], str]:
    session = open_session(model, provider)
    meta = metadata(session, model)
    geometry = input_geometry(session, meta, model, rgb=True)
    if geometry.batch not in (None, len(images)):
        raise RescompileError(f"{model}: takes batches of exactly {geometry.batch} images, got {len(images)}")
    require_batch_memory(model, len(images), geometry.sample_shape, "pass at most {} images at once")
    preprocessing = meta.get("preprocess", Preprocessing())
    batch = preprocessing.normalize(
        np.stack([read_image(path, geometry.size, preprocessing.crop) for path in images])
    )
    if geometry.layout == "nchw":
        batch = batch.transpose(0, 3, 1, 2)
    probabilities = run_session(session, {geometry.name: batch}, model)[0]
    return probabilities, meta.get("class_names", []), session.get_providers()[0]


def _keras(model_path: Path, images: list[Path], spec: Path | None) -> tuple[np.ndarray, list[str], str]:
    from rescompile.keras_backend.model_file import analysis_for_model, load_keras_model

    model = load_keras_model(model_path)
    analysis, record = analysis_for_model(model, model_path, spec)
    size = analysis.graph.input.shape[0]
    preprocessing = record.preprocess
    batch = preprocessing.normalize(np.stack([read_image(path, size, preprocessing.crop) for path in images]))
    import keras

    engine = f"keras ({keras.backend.backend()})"
    return np.asarray(model.predict(batch, verbose=0)), record.class_names, engine


def predict(
    model: Path, images: list[Path], *, k: int, provider: str, spec: Path | None = None
) -> tuple[list[Prediction], str]:
    """Top-k predictions per image and the engine that produced them."""
    if k < 1:
        raise RescompileError(f"--top-k must be at least 1, got {k}")
    if model.suffix == ".keras":
        probabilities, names, used = _keras(model, images, spec)
    else:
        probabilities, names, used = _onnx(model, images, provider)
    if probabilities.ndim != 2:
        raise RescompileError(
            f"{model}: the model does not end in a classifier (output {probabilities.shape})"
        )
    return top_k(probabilities, names, [str(p) for p in images], k), used
