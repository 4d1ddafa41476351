"""`rescompile build`: spec -> generated Keras module -> keras.Model -> <out>/<name>.keras."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rescompile.analysis.analyze import Analysis, analyze
from rescompile.analysis.memory import require_memory
from rescompile.checkpoints.preprocess import checkpoint_preprocess
from rescompile.errors import RescompileError
from rescompile.fileio import remove_stale_temporaries, write_text_atomic
from rescompile.ir.target import Target
from rescompile.keras_backend.model_file import model_record, save_model
from rescompile.keras_backend.printer import needed_recursion_limit, render_keras
from rescompile.spec.artifact import ModelRecord
from rescompile.spec.library import spec_label
from rescompile.spec.schema import MAX_SIZE


@dataclass
class BuildResult:
    """What `build` produced."""

    analysis: Analysis
    model: object
    source_path: Path
    model_path: Path | None
    loaded_layers: int
    record: ModelRecord
    """What the model file carries (preprocessing: a PyTorch checkpoint's own, else the spec's)."""


def _check_range(option: str, value: int | None, low: int, high: int) -> None:
    if value is not None and not low <= value <= high:
        raise RescompileError(f"{option} must be between {low} and {high:,}, got {value}")


def build_target(
    *,
    input_size: int | None = None,
    classes: int | None = None,
    in_channels: int | None = None,
    include_top: bool = True,
    outputs: list[str] | None = None,
) -> Target:
    """The target `build`'s options ask for, their ranges checked."""
    _check_range("--classes", classes, 1, 1_000_000)
    _check_range("--input-size", input_size, 1, MAX_SIZE)
    _check_range("--in-channels", in_channels, 1, 64)
    return Target(
        input_size=input_size,
        channels=in_channels,
        classes=classes,
        include_top=include_top,
        outputs=None if outputs is None else tuple(outputs),
    )


def _check_writable(out: Path) -> None:
    """--out must be a writable folder, or one that can be made: checked before the model is built,
    and made only when its first file is written (a failed build leaves no empty folder)."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RescompileError(f"--out {out}: cannot create folder ({existing} is not a folder)")
    if not os.access(existing, os.W_OK):
        raise RescompileError(f"--out {out}: folder is not writable")


def module_source(analysis: Analysis, label: str | None = None) -> str:
    """The generated Keras module of the analysed network (printed from its whole graph), its
    header naming the spec file `label` (default: the spec's own)."""
    return render_keras(analysis.network.whole, spec_label(label or analysis.path))


def keras_model(analysis: Analysis, source: str):
    """The keras.Model of the analysed network for its target, built by the module `source`
    (imported from a scratch copy)."""
    from rescompile.keras_backend.model import load_module, recursion_limit

    target = analysis.network.target
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"{analysis.spec.name}.py"
        path.write_text(source, encoding="utf-8")
        module = load_module(path)
    features = [name for name in analysis.graph.outputs if name != "output"]
    with recursion_limit(needed_recursion_limit(analysis.graph) or 0):
        return module.build(
            input_shape=analysis.graph.input.shape,
            classes=target.classes,
            outputs=features or None,
            include_top=target.include_top,
        )


def build(
    analysis: Analysis,
    out: Path,
    *,
    weights: str | None = None,
    freeze: str | None = None,
    save: bool = True,
    check_memory: bool = True,
    allow_partial: bool = False,
    weights_format: str | None = None,
    source: str | None = None,
) -> BuildResult:
    """Generate, build, load weights and save atomically the compiled network of `analysis`;
    nothing is written on error. `source`: the module, where the caller printed it already."""
    if check_memory:
        require_memory(analysis)
    if weights and weights != "imagenet" and not Path(weights).is_file():
        raise RescompileError(f"--weights {weights}: file not found")
    from rescompile.keras_backend.model import stages_to_freeze

    frozen = stages_to_freeze(freeze, len(analysis.graph.stages))
    _check_writable(out)
    source_path = out / f"{analysis.spec.name}.py"
    for name in (source_path.name, f"{analysis.spec.name}.keras", f"{analysis.spec.name}.onnx"):
        remove_stale_temporaries(out, name)
    source = source or module_source(analysis)
    model = keras_model(analysis, source)  # the module is written only once it builds
    loaded = 0
    if weights:
        from rescompile.keras_backend.model import load_weights

        loaded = load_weights(
            model, weights, graph=analysis.graph, allow_partial=allow_partial, weights_format=weights_format
        )
    if frozen:
        from rescompile.keras_backend.model import freeze as freeze_stages

        freeze_stages(model, analysis.graph, frozen)
    write_text_atomic(source_path, source)
    record = model_record(analysis, checkpoint_preprocess(weights))
    model_path = None
    if save:
        model_path = out / f"{analysis.spec.name}.keras"
        save_model(model, model_path, record)
    return BuildResult(analysis, model, source_path, model_path, loaded, record)


def build_spec(
    spec_path: Path,
    out: Path,
    *,
    input_size: int | None = None,
    classes: int | None = None,
    in_channels: int | None = None,
    include_top: bool = True,
    outputs: list[str] | None = None,
    options: dict | None = None,
    **build_options,
) -> BuildResult:
    """Compile a spec file for the target these options ask for (`options`: spec options
    overridden, see `analyze`), then `build` it with `build_options`."""
    target = build_target(
        input_size=input_size,
        classes=classes,
        in_channels=in_channels,
        include_top=include_top,
        outputs=outputs,
    )
    return build(analyze(spec_path, target, options), out, **build_options)
