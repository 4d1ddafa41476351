"""A .keras file and the rescompile record it carries: saving, loading, and the IR it describes
(from its record, or from a spec for models made elsewhere)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rescompile import ir
from rescompile.analysis.analyze import Analysis, analyze_network, analyze_record, record_target
from rescompile.errors import RescompileError
from rescompile.fileio import write_atomic
from rescompile.ir.network import compile_network, retarget
from rescompile.ir.target import Target
from rescompile.keras_backend.archive import keras_load_recursion_limit
from rescompile.keras_backend.model import recursion_limit
from rescompile.spec.artifact import ModelRecord, add_to_keras_file, read_keras_record
from rescompile.spec.class_lists import named_class_names
from rescompile.spec.library import resolve_spec
from rescompile.spec.loader import load_spec
from rescompile.spec.preprocessing import Preprocessing


def model_record(
    analysis: Analysis, preprocess: Preprocessing | None = None, *, class_names: list[str] | None = None
) -> ModelRecord:
    """The record a model file built from `analysis` carries (preprocessing: the spec's, unless a
    training run computed its own; class names: the run's, else the list the spec names)."""
    graph, target = analysis.graph, analysis.network.target
    height, _, channels = graph.input.shape
    classes = graph.classifier.units if graph.classifier else None
    named = analysis.spec.head.class_names
    if not class_names and named and classes == len(named_class_names(named)):
        class_names = list(named_class_names(named))  # the spec's classifier, not a --classes override
    return ModelRecord(
        spec=analysis.spec.model_dump(mode="json"),
        input_size=height,
        channels=channels,
        classes=classes,
        include_top=target.include_top,
        outputs=[name for name in graph.outputs if name != "output"],
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
        return analyze_record(record, model_path), record
    spec = resolve_spec(spec)
    network = compile_network(load_spec(spec))
    _, height, _, channels = model.input.shape
    if record is not None:
        target = replace(record_target(record), input_size=height, channels=channels)
    else:  # the spec's classifier (named as the IR names it), if the model has it
        include_top, classes = _classifier_in(model, network.whole)
        target = Target(input_size=height, channels=channels, classes=classes, include_top=include_top)
    analysis = analyze_network(retarget(network, target))
    if analysis.spec.name != model.name:
        raise RescompileError(f"{spec} describes {analysis.spec.name}, but the model is {model.name}")
    return analysis, record or model_record(analysis)


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


def _classifier_in(model, graph: ir.Graph) -> tuple[bool, int | None]:
    """Whether a model made elsewhere has the classifier of `graph` (the spec's, by the IR's name
    for it) and its class count: (include_top, classes)."""
    head = graph.classifier
    present = {layer.name: layer for layer in model.layers}
    if head is None or head.name not in present:
        return False, None
    return True, int(present[head.name].kernel.shape[-1])
