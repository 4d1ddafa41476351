"""`rescompile build`: spec -> generated Keras module -> keras.Model -> <out>/<name>.keras."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rescompile.analysis import Analysis, analyze
from rescompile.codegen import render_keras
from rescompile.errors import RescompileError
from rescompile.fileio import write_atomic, write_text_atomic


@dataclass
class BuildResult:
    """What `build` produced."""

    analysis: Analysis
    model: object
    source_path: Path
    model_path: Path | None
    loaded_layers: int


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RescompileError(f"--out {out}: cannot create folder ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK):
        raise RescompileError(f"--out {out}: folder is not writable")


def build_model(analysis: Analysis, source_path: Path, classes: int | None = None, include_top: bool = True):
    """Import the generated module and build the keras.Model for the analysed input shape."""
    from rescompile.keras_backend import load_module

    module = load_module(source_path)
    return module.build(input_shape=analysis.graph.input.shape, classes=classes, include_top=include_top)


def build(
    spec_path: Path,
    out: Path,
    input_size: int | None = None,
    classes: int | None = None,
    in_channels: int | None = None,
    weights: str | None = None,
    include_top: bool = True,
    freeze: int = 0,
    save: bool = True,
    options: dict | None = None,
) -> BuildResult:
    """Validate, generate, build, load weights and save atomically; nothing is written on error."""
    if classes is not None and classes < 1:
        raise RescompileError(f"--classes must be at least 1, got {classes}")
    analysis = analyze(spec_path, input_size, in_channels, classes, include_top, options)
    if weights and weights != "imagenet" and not Path(weights).is_file():
        raise RescompileError(f"--weights {weights}: file not found")
    _check_writable(out)
    source_path = out / f"{analysis.spec.name}.py"
    write_text_atomic(source_path, render_keras(analysis.spec, analysis.graph, analysis.path))
    model = build_model(analysis, source_path, classes, include_top)
    loaded = 0
    if weights:
        from rescompile.keras_backend import load_weights

        loaded = load_weights(model, weights)
    if freeze:
        from rescompile.keras_backend import freeze as freeze_stages

        if not 0 <= freeze <= len(analysis.graph.stages):
            raise RescompileError(f"--freeze must be 0..{len(analysis.graph.stages)}, got {freeze}")
        freeze_stages(model, analysis.graph, freeze)
    model_path = None
    if save:
        model_path = out / f"{analysis.spec.name}.keras"
        write_atomic(model_path, model.save, suffix=".keras")
    return BuildResult(analysis, model, source_path, model_path, loaded)
