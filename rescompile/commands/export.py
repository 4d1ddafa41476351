"""`rescompile export`: a built/trained .keras model (or a spec) -> an ONNX file, atomically;
`--int8` quantizes it."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rescompile.analysis.analyze import Analysis
from rescompile.errors import RescompileError
from rescompile.fileio import write_atomic
from rescompile.keras_backend.model_file import analysis_for_model, load_keras_model
from rescompile.keras_backend.weights import weight_store
from rescompile.onnx_backend.emit import ExportOptions
from rescompile.onnx_backend.export import onnx_options, write_onnx
from rescompile.progress import Steps


def export(
    source: Path,
    output: Path,
    options: ExportOptions,
    *,
    spec: Path | None = None,
    weights: str | None = None,
    weights_format: str | None = None,
) -> tuple[Analysis, ExportOptions]:
    """Export MODEL.keras (described by the record it carries, or --spec) or SPEC (freshly
    initialised, or with `weights` loaded as `build --weights` loads them); the ONNX file carries
    the model's record and preprocessing. Returns the network and the options completed from the
    record (its preprocessing, class names and outputs), as written."""
    spec_source = source.suffix in (".yaml", ".yml")
    if weights is not None and not spec_source:
        raise RescompileError(f"--weights is for a SPEC: {source} carries its own weights")
    with Steps(f"export {source.name}", 2) as steps:
        if spec_source:
            from rescompile.keras_backend.build import build_spec

            steps.advance("building the Keras model")
            with tempfile.TemporaryDirectory() as scratch:
                result = build_spec(
                    source, Path(scratch), save=False, weights=weights, weights_format=weights_format
                )
            model, analysis, record = result.model, result.analysis, result.record
        else:
            steps.advance("loading the Keras model")
            model = load_keras_model(source)
            analysis, record = analysis_for_model(model, source, spec)
        steps.advance(f"emitting {len(analysis.graph.nodes)} IR nodes as ONNX")
        written = onnx_options(options, analysis, record)
        write_onnx(weight_store(model, analysis.graph), analysis, output, options=written)
    return analysis, written


def export_int8(
    source: Path,
    output: Path,
    options: ExportOptions,
    *,
    calibration: Callable[[int], np.ndarray],
    spec: Path | None = None,
    weights: str | None = None,
    weights_format: str | None = None,
) -> tuple[Analysis, int]:
    """Export fp32, then quantize it statically to INT8, calibrated on `calibration(input size)`'s
    images preprocessed as the model's record says (a run's per-pixel mean included); returns the
    calibration count."""
    from rescompile.onnx_backend import DEFAULT_CALIBRATION
    from rescompile.onnx_backend.quantize import quantize

    if output.suffix != ".onnx":
        raise RescompileError(f"-o {output}: the output file must end in .onnx")
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = Path(scratch) / "fp32.onnx"
        analysis, written = export(
            source, fp32, options, spec=spec, weights=weights, weights_format=weights_format
        )
        images = calibration(analysis.graph.input.shape[0])
        if len(images) < DEFAULT_CALIBRATION // 4:
            print(
                f"warning: calibrating on only {len(images)} images ({DEFAULT_CALIBRATION} is the default):"
                " INT8 activation ranges may not cover your data",
                file=sys.stderr,
                flush=True,
            )
        preprocessing = written.preprocess  # the model's own, as the fp32 file records it
        write_atomic(
            output, lambda tmp: quantize(fp32, tmp, images, preprocessing=preprocessing), suffix=".onnx"
        )
    return analysis, len(images)
