"""`rescompile export`: a built/trained .keras model (or a spec) -> an ONNX file, atomically."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from pydantic import ValidationError

from rescompile.analysis.analyze import Analysis, analyze, analyze_spec
from rescompile.errors import RescompileError
from rescompile.fileio import write_atomic
from rescompile.keras_backend.build import model_record
from rescompile.onnx_backend.emit import ExportOptions
from rescompile.progress import Steps
from rescompile.spec.artifact import ModelRecord, read_keras_record
from rescompile.spec.library import find_library_spec
from rescompile.spec.schema import Spec


def load_keras_model(path: Path):
    """Load a .keras file with a clear error on failure."""
    if not path.is_file():
        raise RescompileError(f"{path}: file not found")
    import keras

    try:
        with _recursion_limit(100_000):  # ResNet-1202 has 4,000 layers
            return keras.saving.load_model(path)
    except Exception as exc:
        raise RescompileError(f"{path}: cannot load Keras model ({exc})") from None


@contextlib.contextmanager
def _recursion_limit(limit: int) -> Iterator[None]:
    """Python's recursion limit raised for a while, then restored: left raised, a C recursion
    later in the process (json.loads of a deeply nested file) would overflow the stack instead
    of raising RecursionError."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def analysis_from_record(record: ModelRecord, source: Path) -> Analysis:
    """The IR of the spec a model file carries, at the input, classifier and outputs it was built with."""
    try:
        spec = Spec.model_validate(record.spec)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(map(str, error["loc"]))
        raise RescompileError(f"{source}: the spec it carries is invalid ({where}: {error['msg']})") from None
    spec._file = f"{source} (its spec)"
    return analyze_spec(
        spec, record.input_size, record.channels, record.classes, record.include_top, record.outputs
    )


def analysis_for_model(model, model_path: Path, spec: Path | None) -> tuple[Analysis, ModelRecord]:
    """The IR and record of a Keras model: from the record it carries, or from `spec` (which wins;
    for models made elsewhere, e.g. keras.applications, whose layer names the spec follows)."""
    record = read_keras_record(model_path)
    if spec is None and record is not None:
        return analysis_from_record(record, model_path), record
    spec_path = spec or find_library_spec(model.name)
    _, height, _, channels = model.input.shape
    include_top = record.include_top if record else "predictions" in {layer.name for layer in model.layers}
    classes = model.get_layer("predictions").units if include_top else None
    outputs = record.outputs if record else None
    analysis = analyze(spec_path, height, channels, classes, include_top, outputs=outputs)
    if analysis.spec.name != model.name:
        raise RescompileError(f"{spec_path} describes {analysis.spec.name}, but the model is {model.name}")
    if record is None:
        record = model_record(analysis, include_top)
    return analysis, record


def onnx_options(options: ExportOptions, analysis: Analysis, record: ModelRecord) -> ExportOptions:
    """Export options completed from the model's record: its preprocessing, class names, outputs."""
    return replace(
        options,
        preprocess=options.preprocess or record.preprocess.model_dump(mode="json"),
        class_names=options.class_names or record.class_names,
        outputs=options.outputs or list(analysis.graph.outputs.values()),
        record=record,
    )


def write_onnx(model, analysis: Analysis, output: Path, options: ExportOptions) -> None:
    """Export a Keras model through the IR and write the ONNX file atomically."""
    import onnx

    from rescompile.onnx_backend.emit import export_onnx, keras_weights

    if output.suffix != ".onnx":
        raise RescompileError(f"-o {output}: the output file must end in .onnx")
    onnx_model = export_onnx(analysis.spec, analysis.graph, keras_weights(model), options)
    write_atomic(output, lambda tmp: onnx.save(onnx_model, tmp))


def export(source: Path, output: Path, spec: Path | None, options: ExportOptions) -> Analysis:
    """Export MODEL.keras (described by the record it carries, or --spec) or SPEC (freshly
    initialised); the ONNX file carries the model's record and preprocessing."""
    with Steps(f"export {source.name}", 2) as steps:
        if source.suffix in (".yaml", ".yml"):
            from rescompile.keras_backend.build import build

            steps.advance("building the Keras model")
            with tempfile.TemporaryDirectory() as scratch:
                result = build(source, Path(scratch), save=False)
            model, analysis = result.model, result.analysis
            record = model_record(analysis, include_top=True)
        else:
            steps.advance("loading the Keras model")
            model = load_keras_model(source)
            analysis, record = analysis_for_model(model, source, spec)
        steps.advance(f"emitting {len(analysis.graph.nodes)} IR nodes as ONNX")
        write_onnx(model, analysis, output, onnx_options(options, analysis, record))
    return analysis


def export_int8(
    source: Path, output: Path, spec: Path | None, options: ExportOptions, calibration: Path, limit: int
) -> tuple[Analysis, int]:
    """Export fp32, then quantize it statically to INT8, calibrated on `limit` images preprocessed
    as the model's record says (a run's per-pixel mean included); returns the calibration count."""
    from rescompile.onnx_backend import DEFAULT_CALIBRATION
    from rescompile.onnx_backend.quantize import calibration_images, quantize
    from rescompile.onnx_backend.runtime import metadata, open_session

    if output.suffix != ".onnx":
        raise RescompileError(f"-o {output}: the output file must end in .onnx")
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = Path(scratch) / "fp32.onnx"
        analysis = export(source, fp32, spec, options)
        images = calibration_images(calibration, analysis.graph.input.shape[0], limit)
        if len(images) < DEFAULT_CALIBRATION // 4:
            print(
                f"warning: calibrating on only {len(images)} images ({DEFAULT_CALIBRATION} is the default):"
                " INT8 activation ranges may not cover your data",
                file=sys.stderr,
                flush=True,
            )
        config = metadata(open_session(fp32, "cpu"), fp32)["preprocess"]
        write_atomic(output, lambda tmp: quantize(fp32, tmp, images, config), suffix=".onnx")
    return analysis, len(images)
