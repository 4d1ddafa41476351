"""A .keras file and the rescompile record it carries: saving, loading, and the IR it describes
(from its record, or from a spec for models made elsewhere)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from rescompile.analysis.analyze import Analysis, analyze, analyze_spec
from rescompile.errors import RescompileError
from rescompile.fileio import write_atomic
from rescompile.ir import Dense
from rescompile.ir.lower import lower
from rescompile.keras_backend.archive import keras_load_recursion_limit
from rescompile.keras_backend.model import recursion_limit
from rescompile.spec.artifact import ModelRecord, add_to_keras_file, read_keras_record
from rescompile.spec.class_lists import named_class_names
from rescompile.spec.library import resolve_spec
from rescompile.spec.loader import load_spec
from rescompile.spec.preprocessing import Preprocessing
from rescompile.spec.schema import Spec


def model_record(
    analysis: Analysis,
    include_top: bool,
    preprocess: Preprocessing | None = None,
    *,
    class_names: list[str] | None = None,
) -> ModelRecord:
    """The record a model file built from `analysis` carries (preprocessing: the spec's, unless a
    training run computed its own; class names: the run's, else the list the spec names)."""
    height, _, channels = analysis.graph.input.shape
    head = [node for node in analysis.graph.nodes if node.name == "predictions"]
    named = analysis.spec.head.class_names
    if not class_names and named and head and head[0].shape[2] == len(named_class_names(named)):
        class_names = list(named_class_names(named))  # the spec's classifier, not a --classes override
    return ModelRecord(
        spec=analysis.spec.model_dump(mode="json"),
        input_size=height,
        channels=channels,
        classes=head[0].shape[2] if head else None,
        include_top=include_top,
        outputs=[name for name in analysis.graph.outputs if name != "output"],
        preprocess=preprocess or Preprocessing.model_validate(analysis.spec.preprocess.model_dump()),
        class_names=class_names or [],
    )


def save_model(model, path: Path, record: ModelRecord) -> None:
    """Save a .keras file atomically, with its rescompile record inside."""

    def write(tmp: Path) -> None:
        model.save(tmp)
        add_to_keras_file(tmp, record)

    write_atomic(path, write, suffix=".keras")


def load_keras_model(path: Path):
    """Load a .keras file, checked first (keras_load_recursion_limit), with a clear error on failure."""
    limit = keras_load_recursion_limit(path)
    import keras

    try:
        with recursion_limit(limit):
            return keras.saving.load_model(path)
    except Exception as exc:
        raise RescompileError(f"{path}: cannot load Keras model ({exc})") from None


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
    if record is not None:
        check_record(record, model, model_path)
    if spec is None:
        if record is None:
            raise RescompileError(
                f"{model_path}: carries no rescompile record (made elsewhere, or re-saved without it):"
                " pass --spec SPEC"
            )
        return analysis_from_record(record, model_path), record
    spec = resolve_spec(spec)
    _, height, _, channels = model.input.shape
    if record is not None:
        include_top, classes, outputs = record.include_top, record.classes, record.outputs
    else:
        include_top, classes, outputs = *_classifier_in(model, spec, height, channels), None
    analysis = analyze(spec, height, channels, classes, include_top, outputs=outputs)
    if analysis.spec.name != model.name:
        raise RescompileError(f"{spec} describes {analysis.spec.name}, but the model is {model.name}")
    return analysis, record or model_record(analysis, include_top)


def check_record(record: ModelRecord, model, path: Path) -> None:
    """The record against the model it travels with: the input's size and channels, and the
    classifier's class count (the record checks its own preprocessing and class names)."""
    takes = tuple(model.input.shape[1:])
    says = (record.input_size, record.input_size, record.channels)
    if takes != says:
        raise RescompileError(f"{path}: its record says the input is {says}, but the model takes {takes}")
    if record.include_top and record.classes is not None and len(model.outputs) == 1:
        classes = model.outputs[0].shape[-1]
        if classes != record.classes:
            raise RescompileError(
                f"{path}: its record says {record.classes} classes, but the model's classifier has {classes}"
            )


def _classifier_in(model, spec: Path, height: int, channels: int) -> tuple[bool, int | None]:
    """Whether a model made elsewhere has the spec's classifier (the IR names its Dense layer) and
    its class count: (include_top, classes)."""
    graph = lower(load_spec(spec), height, channels)
    head = next((node for node in reversed(graph.nodes) if isinstance(node, Dense)), None)
    present = {layer.name: layer for layer in model.layers}
    if head is None or head.name not in present:
        return False, None
    return True, int(present[head.name].kernel.shape[-1])
