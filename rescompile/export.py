"""`rescompile export`: a built/trained .keras model (or a spec) -> an ONNX file, atomically."""

from __future__ import annotations

import sys
from pathlib import Path

from rescompile.analysis import Analysis, analyze, find_library_spec
from rescompile.errors import RescompileError
from rescompile.fileio import write_atomic
from rescompile.onnx_export import ExportOptions


def load_keras_model(path: Path):
    """Load a .keras file with a clear error on failure."""
    if not path.is_file():
        raise RescompileError(f"{path}: file not found")
    import keras

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 100_000))  # ResNet-1202 has 4,000 layers
    try:
        return keras.saving.load_model(path)
    except Exception as exc:
        raise RescompileError(f"{path}: cannot load Keras model ({exc})") from None


def analysis_for_model(model, spec: Path | None) -> Analysis:
    """The IR of the spec a Keras model was built from, at the model's input shape and head."""
    spec_path = spec or find_library_spec(model.name)
    _, height, _, channels = model.input.shape
    names = {layer.name for layer in model.layers}
    include_top = "predictions" in names
    classes = model.get_layer("predictions").units if include_top else None
    analysis = analyze(spec_path, height, channels, classes, include_top)
    if analysis.spec.name != model.name:
        raise RescompileError(f"{spec_path} describes {analysis.spec.name}, but the model is {model.name}")
    return analysis


def write_onnx(model, analysis: Analysis, output: Path, options: ExportOptions) -> None:
    """Export a Keras model through the IR and write the ONNX file atomically."""
    import onnx

    from rescompile.onnx_export import export_onnx, keras_weights

    if output.suffix != ".onnx":
        raise RescompileError(f"-o {output}: the output file must end in .onnx")
    onnx_model = export_onnx(analysis.spec, analysis.graph, keras_weights(model), options)
    write_atomic(output, lambda tmp: onnx.save(onnx_model, tmp))


def export(source: Path, output: Path, spec: Path | None, options: ExportOptions) -> Analysis:
    """Export MODEL.keras (with its spec found by name, or --spec) or SPEC (freshly initialised)."""
    if source.suffix in (".yaml", ".yml"):
        import tempfile

        from rescompile.build import build

        with tempfile.TemporaryDirectory() as scratch:
            result = build(source, Path(scratch), save=False)
        model, analysis = result.model, result.analysis
    else:
        model = load_keras_model(source)
        analysis = analysis_for_model(model, spec)
    write_onnx(model, analysis, output, options)
    return analysis
