"""A compiled network and its weights (keyed by IR node) -> an ONNX file, written atomically."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rescompile.analysis.analyze import Analysis
from rescompile.errors import RescompileError
from rescompile.fileio import write_atomic
from rescompile.ir.weights import WeightStore
from rescompile.onnx_backend.emit import ExportOptions
from rescompile.spec.artifact import ModelRecord


def onnx_options(options: ExportOptions, analysis: Analysis, record: ModelRecord) -> ExportOptions:
    """Export options completed from the model's record: its preprocessing, class names, outputs."""
    return replace(
        options,
        preprocess=options.preprocess or record.preprocess,
        class_names=options.class_names or record.class_names,
        outputs=options.outputs or list(analysis.graph.outputs.values()),
        record=record,
    )


def write_onnx(weights: WeightStore, analysis: Analysis, output: Path, *, options: ExportOptions) -> None:
    """Emit the analysed network with `weights` as ONNX and write the file atomically."""
    import onnx

    from rescompile.onnx_backend.emit import export_onnx

    if output.suffix != ".onnx":
        raise RescompileError(f"-o {output}: the output file must end in .onnx")
    onnx_model = export_onnx(analysis.network, weights, options)
    write_atomic(output, lambda tmp: onnx.save(onnx_model, tmp))


def export_with_record(
    weights: WeightStore, analysis: Analysis, output: Path, *, record: ModelRecord
) -> None:
    """Export a model just built or trained, with the default options completed from its record
    (`build --onnx`, and a training run's model.onnx)."""
    write_onnx(weights, analysis, output, options=onnx_options(ExportOptions(), analysis, record))
