"""The `rescompile` command line: a thin layer over the library, one-line errors, exit 2."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from rescompile.errors import RescompileError, printable
from rescompile.onnx_backend import DEFAULT_CALIBRATION
from rescompile.options import (
    EVAL_BATCH,
    GRADIENTS_BATCH,
    CheckFormat,
    DiffFormat,
    Initializer,
    Layout,
    PrecisionChoice,
    Provider,
    ReportFormat,
    TableFormat,
)
from rescompile.resources import recipe_names

RECIPE_NAMES = recipe_names()
PrecisionOption = Annotated[
    PrecisionChoice,
    typer.Option(
        help="Training precision; auto: mixed_float16 on tensor-core GPUs, mixed_bfloat16 on CPUs"
        " with native bfloat16 (AMX, AVX-512 BF16), else float32. A resumed run keeps its own."
    ),
]


def _plain_help_types() -> None:
    """typer's help shows Python types and braces: `<bool>` beside flags, `<list[str]>` beside
    repeatable values, `{spec}` in the usage line. Show a flag bare, a repeatable value by its kind
    (`<path>...`), and arguments as usage lines write them (`SPEC`, `[SPEC]`, `IMAGES...`)."""
    import re

    from typer import core

    if not all(hasattr(core, name) for name in ("_TyperParameter", "TyperOption", "TyperArgument")):
        return  # another typer: its own help

    def plain(display_type_rich):
        def shown(self, ctx):
            if getattr(self, "is_flag", False) and self.metavar is None:
                return None
            text = display_type_rich(self, ctx)
            listed = re.fullmatch(r"<list\[(\w+)\]>(?:\.\.\.)?", text or "")
            return f"<{listed.group(1).lower()}>..." if listed else text

        return shown

    def usage_name(self) -> str:
        name = self.metavar or self.name.upper()
        return (name if self.required else f"[{name}]") + ("..." if self.nargs != 1 else "")

    for kind in (core._TyperParameter, core.TyperOption):
        kind.display_type_rich = plain(kind.display_type_rich)
    core.TyperArgument._usage_display_name = usage_name


_plain_help_types()


def examples(*lines: str) -> str:
    """A command's help epilog: its example command lines."""
    return "Examples:\n\n" + "\n\n".join(f"  $ {line}" for line in lines)


app = typer.Typer(
    help="Compile ResNet stage tables into checked models, code, tables and ONNX.",
    epilog=examples("rescompile check specs", "rescompile build resnet50 --onnx"),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

SpecArgs = Annotated[
    list[Path],
    typer.Argument(help="Spec files, folders or library names (default: specs/, else the library)."),
]


def _complete_spec(incomplete: str) -> list[str]:
    from rescompile.spec.library import spec_completions

    return spec_completions(incomplete)


RecipeSets = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE", help="Override a recipe field, e.g. optimizer.lr=0.05."),
]
Epochs = Annotated[
    float | None,
    typer.Option(
        help="Shortcut for --set epochs=N (clears steps); the schedule keeps its fractions of the run."
    ),
]
BatchSize = Annotated[int | None, typer.Option(help="Shortcut for --set batch_size=N.")]
Freeze = Annotated[
    str | None,
    typer.Option(
        metavar="<backbone|N>",
        help="Freeze `backbone` (the stem and every stage) or a stage count N (the stem and the first"
        " N stages).",
    ),
]
RecipeOption = Annotated[
    str | None,
    typer.Option(
        help=f"Recipe name ({', '.join(RECIPE_NAMES)}) or YAML file (default: paper).",
        autocompletion=lambda incomplete: [name for name in RECIPE_NAMES if name.startswith(incomplete)],
    ),
]
Seed = Annotated[int, typer.Option(help="Random seed (data order, augmentation, initialisation).")]
Weights = Annotated[
    str | None,
    typer.Option(
        help="Pretrained weights: a keras.applications .h5 file, imagenet, or a torchvision/timm"
        " checkpoint (.safetensors, .pth)."
    ),
]
WeightsFormat = Annotated[
    Literal["torchvision", "timm"] | None,
    typer.Option(help="The naming of a PyTorch --weights checkpoint (default: detected from its keys)."),
]
MemoryCheck = Annotated[
    bool, typer.Option(help="Refuse networks (and training batches) larger than the free memory.")
]
DataClasses = Annotated[
    int,
    typer.Option(help="10 or 100 for CIFAR; for TFRecords, the label count (1000, or 1001 with background)."),
]
DataOption = Annotated[
    str | None,
    typer.Option(
        help="CIFAR tarball/folder, image folder (with train/ and val/ splits or one folder per class),"
        " or TFRecord shards ('train-*', a folder of them) (default: CIFAR through keras.datasets)."
    ),
]
ValDataOption = Annotated[
    str | None, typer.Option(help="A separate evaluation folder or TFRecord glob (image data only).")
]
Strict = Annotated[
    bool, typer.Option("--strict", help="Fail on a truncated or undecodable image instead of skipping it.")
]
AllowPartial = Annotated[
    bool, typer.Option("--allow-partial", help="Load --weights that lack some layers (warn, not fail).")
]
OutputFormat = Annotated[ReportFormat, typer.Option("--format", help="Markdown or JSON.")]
ProviderOption = Annotated[
    Provider, typer.Option(help="onnxruntime's execution provider (auto: CUDA if it works).")
]
ModelSpec = Annotated[
    Path | None,
    typer.Option(
        help="The model's spec, a file or a library name (default: the record in the model file;"
        " needed for models made elsewhere, e.g. keras.applications)."
    ),
]


def friendly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Report RescompileError as one line on stderr with exit status 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except RescompileError as exc:
            typer.echo(f"error: {printable(str(exc))}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _analyses(specs: list[Path] | None) -> list:
    from rescompile.analysis.analyze import analyze
    from rescompile.spec.library import find_specs, resolve_spec_args

    return [analyze(path) for path in find_specs(resolve_spec_args(specs))]


@app.command("check", epilog=examples("rescompile check specs", "rescompile check resnet50 cifar/resnet110"))
@friendly
def check_command(
    specs: SpecArgs = None,
    fmt: Annotated[CheckFormat, typer.Option("--format", help="A text report, or JSON.")] = "text",
) -> None:
    """Validate and lower specs and compare their counts with the published numbers and budgets."""
    from rescompile.commands.check import check_specs

    status = check_specs(specs, typer.echo, fmt)
    if status:
        raise typer.Exit(status)


@app.command(
    "table", epilog=examples("rescompile table cifar --format csv", "rescompile table --from-onnx model.onnx")
)
@friendly
def table_command(
    specs: SpecArgs = None,
    per_stage: Annotated[bool, typer.Option("--per-stage", help="One row per stage.")] = False,
    fmt: Annotated[TableFormat, typer.Option("--format", help="Table format.")] = "md",
    from_onnx: Annotated[
        list[Path] | None, typer.Option("--from-onnx", help="Recount from ONNX files instead of specs.")
    ] = None,
) -> None:
    """Print parameters, multiply-adds and depth of specs (or recounted from ONNX files)."""
    from rescompile.analysis.tables import table

    if from_onnx:
        from rescompile.onnx_backend.recount import recount

        if per_stage:
            raise RescompileError("--per-stage needs specs; an ONNX recount is per network")
        typer.echo(table([recount(path) for path in from_onnx], fmt), nl=False)
        return
    typer.echo(table(_analyses(specs), fmt, per_stage), nl=False)


@app.command(
    "diff",
    epilog=examples(
        "rescompile diff resnet50 resnet50_v1.5",
        "rescompile diff HEAD~1:specs/resnet50.yaml specs/resnet50.yaml --per-block",
        "rescompile diff --base origin/main --fail-on 'macs>+2%' --fail-on 'params>0' --format github",
    ),
)
@friendly
def diff_command(
    ctx: typer.Context,
    operands: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="OLD NEW | PATH...",
            help="Two specs, folders or library names, each may be REV:PATH (a git revision); with"
            " --base, the paths to compare (default: the project's spec folder).",
        ),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base", metavar="REV", help="Compare the PATHs at git revision REV with the working tree."
        ),
    ] = None,
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on",
            metavar="RULE",
            help="Exit 1 when a change breaks RULE: METRIC OP CHANGE, e.g. 'macs>+2%', 'params>0',"
            " 'depth!=0' (metrics of `table`; k/M/G or %).",
        ),
    ] = None,
    per_block: Annotated[bool, typer.Option("--per-block", help="Rows per block of changed stages.")] = False,
    fmt: Annotated[DiffFormat, typer.Option("--format", help="Output format.")] = "md",
) -> None:
    """Per-stage deltas of parameters and multiply-adds between specs, folders or git revisions.

    Stages and networks are matched by name; exit 1 when a --fail-on rule or a spec's budget is
    broken."""
    from typer._click.exceptions import UsageError

    from rescompile.commands.diff import run_diff

    operands = operands or []
    if base is None and len(operands) != 2:
        missing = "OLD" if not operands else "NEW"
        message = (
            f"Missing argument '{missing}'." if len(operands) < 2 else "expected two operands, OLD and NEW"
        )
        raise UsageError(f"{message} (or --base REV [PATH...])", ctx)
    text, warnings, status = run_diff(operands, base=base, rules=fail_on or [], per_block=per_block, fmt=fmt)
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(text, nl=False)
    if status:
        raise typer.Exit(status)


@app.command("list", epilog=examples("rescompile list", "rescompile list --format json"))
@friendly
def list_command(fmt: OutputFormat = "md") -> None:
    """List the spec library shipped with rescompile: path, network, family, params, MACs, source."""
    from rescompile.analysis.listing import list_library

    typer.echo(list_library(fmt), nl=False)


@app.command("schema", epilog=examples("rescompile schema > rescompile-spec.schema.json"))
@friendly
def schema_command() -> None:
    """Print the JSON Schema of spec files (for editor validation and completion)."""
    from rescompile.spec.json_schema import spec_json_schema

    typer.echo(json.dumps(spec_json_schema(), indent=2))


@app.command("generate", epilog=examples("rescompile generate", "rescompile generate --check"))
@friendly
def generate_command(
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 with a diff if stale.")
    ] = False,
    specs: Annotated[Path, typer.Option(help="The spec library.")] = Path("specs"),
    out: Annotated[Path, typer.Option(help="The generated folder.")] = Path("generated"),
) -> None:
    """Regenerate generated/ (tables and Keras sources) from specs/ and templates/."""
    from rescompile import generate

    files = generate.expected_files(specs)
    if check:
        difference = generate.stale(out, files)
        if difference:
            sys.stdout.write(difference)
            typer.echo(f"{out}/ is stale: run `rescompile generate`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out}/ is up to date ({len(files)} files)")
        return
    changed = generate.write(out, files)
    typer.echo(f"{out}/: {len(changed)} of {len(files)} files changed")


@app.command(
    "build",
    epilog=examples(
        "rescompile build specs/resnet50.yaml",
        "rescompile build keras/resnet50 --weights imagenet --no-include-top --input-size 160",
        "rescompile build resnet50d --weights resnet50d.ra2_in1k/model.safetensors --onnx",
    ),
)
@friendly
def build_command(
    spec: Annotated[
        Path,
        typer.Argument(help="The spec to build: a file or a library name.", autocompletion=_complete_spec),
    ],
    out: Annotated[Path, typer.Option(help="Output folder for <name>.py and <name>.keras.")] = Path("build"),
    input_size: Annotated[int | None, typer.Option(help="Input height and width.")] = None,
    classes: Annotated[int | None, typer.Option(help="Classifier outputs.")] = None,
    in_channels: Annotated[int | None, typer.Option(help="Input channels (pretrained stems adapt).")] = None,
    weights: Weights = None,
    include_top: Annotated[bool, typer.Option(help="Keep the classifier.")] = True,
    freeze: Freeze = None,
    outputs: Annotated[
        str | None, typer.Option(help="Stage outputs instead of the classifier, e.g. C3,C4,C5.")
    ] = None,
    onnx: Annotated[bool, typer.Option("--onnx", help="Also export <out>/<name>.onnx.")] = False,
    memory_check: MemoryCheck = True,
    allow_partial: AllowPartial = False,
    weights_format: WeightsFormat = None,
) -> None:
    """Generate the Keras module, build the model and save <out>/<name>.keras."""
    from rescompile.analysis.analyze import analyze
    from rescompile.keras_backend.build import build, build_target
    from rescompile.keras_backend.summary import print_build_summary
    from rescompile.spec.library import resolve_spec

    features = [name.strip() for name in outputs.split(",")] if outputs is not None else None
    target = build_target(
        input_size=input_size,
        classes=classes,
        in_channels=in_channels,
        include_top=include_top,
        outputs=features,
    )
    result = build(
        analyze(resolve_spec(spec), target),
        out,
        weights=weights,
        freeze=freeze,
        check_memory=memory_check,
        allow_partial=allow_partial,
        weights_format=weights_format,
    )
    print_build_summary(result)
    if onnx:
        from rescompile.keras_backend.weights import weight_store
        from rescompile.onnx_backend.export import export_with_record

        path = out / f"{result.analysis.spec.name}.onnx"
        weights = weight_store(result.model, result.analysis.graph)
        export_with_record(weights, result.analysis, path, record=result.record)
        typer.echo(f"wrote {path}")


@app.command(
    "export",
    epilog=examples(
        "rescompile export build/resnet50.keras -o resnet50.onnx",
        "rescompile export runs/r20/model.keras -o r20_int8.onnx --int8 --calibration cifar-10-python.tar.gz",
    ),
)
@friendly
def export_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="MODEL.keras, or a SPEC file or library name (freshly initialised).",
            autocompletion=_complete_spec,
        ),
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="The .onnx file to write.")],
    spec: ModelSpec = None,
    fold_bn: Annotated[bool, typer.Option(help="Fold BatchNorm into the preceding convs.")] = True,
    layout: Annotated[Layout, typer.Option(help="Input layout (nhwc: Keras').")] = "nhwc",
    fp16: Annotated[bool, typer.Option("--fp16", help="float16 weights and compute (GPU serving).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Static INT8 quantization (CPU serving).")] = False,
    calibration: Annotated[Path | None, typer.Option(help="Images folder or CIFAR batch for --int8.")] = None,
    calibration_size: Annotated[int, typer.Option(help="Calibration images to use.")] = DEFAULT_CALIBRATION,
    class_names: Annotated[Path | None, typer.Option(help="Text file, one class name per line.")] = None,
    weights: Weights = None,
    weights_format: WeightsFormat = None,
) -> None:
    """Export a Keras model to ONNX through the IR (BN folded, one transpose, dynamic batch)."""
    from rescompile.commands.export import export
    from rescompile.inputs.class_names import read_class_names
    from rescompile.onnx_backend.emit import ExportOptions
    from rescompile.spec.library import resolve_spec

    if int8 and (fp16 or calibration is None):
        raise RescompileError("--int8 needs --calibration DATA and cannot be combined with --fp16")
    names = read_class_names(class_names) if class_names is not None else []
    options = ExportOptions(fold_bn=fold_bn, layout=layout, fp16=fp16, class_names=names)
    if source.suffix not in (".keras", ".onnx"):
        source = resolve_spec(source)
    spec = resolve_spec(spec) if spec is not None else None
    if not int8:
        analysis, _ = export(source, out, options, spec=spec, weights=weights, weights_format=weights_format)
        typer.echo(f"wrote {out} ({analysis.spec.name}, {analysis.graph.input.shape[0]}px)")
        return
    from rescompile.commands.export import export_int8
    from rescompile.inputs.calibration import calibration_images

    def images(size: int):
        return calibration_images(calibration, size, calibration_size)

    analysis, count = export_int8(
        source, out, options, calibration=images, spec=spec, weights=weights, weights_format=weights_format
    )
    typer.echo(f"wrote {out} (INT8, {analysis.spec.name}, calibrated on {count} images)")


@app.command("predict", epilog=examples("rescompile predict resnet50.onnx cat.jpg dog.png --top-k 3"))
@friendly
def predict_command(
    model: Annotated[Path, typer.Argument(help="An .onnx or .keras model.")],
    images: Annotated[list[Path], typer.Argument(help="PNG/JPEG images.")],
    top_k: Annotated[int, typer.Option(help="Classes to show per image.")] = 5,
    fmt: OutputFormat = "md",
    as_json: Annotated[bool, typer.Option("--json", hidden=True, help="Same as --format json.")] = False,
    provider: ProviderOption = "auto",
    spec: ModelSpec = None,
) -> None:
    """Top-k classes of images, preprocessed as the model's metadata says."""
    from rescompile.serve.predict import predict

    results, used = predict(model, images, k=top_k, provider=provider, spec=spec)
    if as_json or fmt == "json":
        payload = [
            {"image": r.image, "top": [{"class": c, "name": n, "p": p} for c, n, p in r.classes]}
            for r in results
        ]
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(f"({used})", err=True)
    for result in results:  # file names and the model's class names: one line each, escapes shown
        typer.echo(printable(result.image))
        for index, name, probability in result.classes:
            shown = printable(name) + (f" ({index})" if name != str(index) else "")
            typer.echo(f"  {probability:7.2%}  {shown}")


@app.command("bench", epilog=examples("rescompile bench resnet50.onnx --batch-size 1,32 --provider cpu"))
@friendly
def bench_command(
    model: Annotated[Path, typer.Argument(help="An .onnx model.")],
    batch_size: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8,32",
    seconds: Annotated[float, typer.Option(help="Minimum timing per batch size.")] = 3.0,
    warmup: Annotated[int, typer.Option(help="Untimed runs first.")] = 3,
    provider: ProviderOption = "auto",
    fmt: OutputFormat = "md",
) -> None:
    """Throughput (img/s) and latency p50/p99 per batch size on onnxruntime."""
    from rescompile.serve.bench import HEADER, Bench, as_json, batch_sizes, markdown_row

    bench = Bench(model, batch_sizes(batch_size), provider)
    if fmt == "json":
        typer.echo(as_json(bench, list(bench.rows(seconds, warmup))))
        return
    typer.echo(f"{model} on {bench.provider}\n{HEADER}")
    for row in bench.rows(seconds, warmup):
        typer.echo(markdown_row(row))


@app.command(
    "train",
    epilog=examples(
        "rescompile train cifar/resnet20 --data cifar-10-python.tar.gz --out runs/r20",
        "rescompile train --resume --out runs/r20",
    ),
)
@friendly
def train_command(
    out: Annotated[Path, typer.Option(help="Run directory.")],
    spec: Annotated[
        Path | None,
        typer.Argument(
            help="The spec to train: a file or a library name (none with --resume).",
            autocompletion=_complete_spec,
        ),
    ] = None,
    data: DataOption = None,
    val_data: ValDataOption = None,
    strict: Strict = False,
    recipe: RecipeOption = None,
    set_: RecipeSets = None,
    epochs: Epochs = None,
    steps: Annotated[
        int | None,
        typer.Option(min=1, help="Shortcut for --set steps=N (clears epochs); the schedule scales."),
    ] = None,
    batch_size: BatchSize = None,
    lr: Annotated[float | None, typer.Option(help="Shortcut for --set optimizer.lr=X.")] = None,
    precision: PrecisionOption = "auto",
    jit: Annotated[
        bool | None,
        typer.Option(
            "--jit/--no-jit",
            help="XLA-compile the training step (default: Keras' auto: on GPUs, off on CPUs and under"
            " --distribute).",
            show_default=False,
        ),
    ] = None,
    seed: Seed = 0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its own spec, recipe and data.")
    ] = False,
    distribute: Annotated[
        Literal["mirrored", "multiworker"] | None, typer.Option(help="A tf.distribute strategy.")
    ] = None,
    cpu_devices: Annotated[int, typer.Option(help="Split the CPU into N logical devices.")] = 1,
    classes: DataClasses = 10,
    weights: Weights = None,
    freeze: Freeze = None,
    memory_check: MemoryCheck = True,
    allow_partial: AllowPartial = False,
    weights_format: WeightsFormat = None,
    tensorboard: Annotated[bool, typer.Option(help="Write TensorBoard logs to RUN_DIR/logs.")] = True,
    worker_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds --distribute multiworker waits for the other TF_CONFIG tasks to be reachable."
        ),
    ] = 300.0,
) -> None:
    """Train a spec with a recipe; checkpoint every epoch; export the final model to ONNX."""
    from rescompile.spec.library import resolve_spec
    from rescompile.train.recipe import load_recipe, overridden_fields, recipe_overrides
    from rescompile.train.trainer import TrainOptions, train

    overrides = recipe_overrides(set_, epochs, batch_size, lr, steps)
    if spec is None and not resume:
        raise RescompileError("train needs a SPEC (a file or a library name), or --resume --out RUN_DIR")
    options = TrainOptions(
        spec=resolve_spec(spec) if spec is not None else None,
        data=data,
        val_data=val_data,
        strict=strict,
        out=out,
        precision=precision,
        jit=jit,
        seed=seed,
        resume=resume,
        distribute=distribute,
        cpu_devices=cpu_devices,
        classes=classes,
        weights=weights,
        freeze=freeze,
        check_memory=memory_check,
        allow_partial=allow_partial,
        weights_format=weights_format,
        tensorboard=tensorboard,
        worker_timeout=worker_timeout,
        given=overridden_fields(overrides),
    )
    base = recipe or (str(out / "recipe.json") if resume else "paper")  # --resume: the run's own
    chosen = None if resume and recipe is None and not overrides else load_recipe(base, overrides)
    typer.echo(train(options, chosen).model_dump_json(indent=2))


@app.command(
    "evaluate",
    epilog=examples(
        "rescompile evaluate runs/r20 --data cifar-10-python.tar.gz",
        "rescompile evaluate r20_int8.onnx --data cifar-10-python.tar.gz",
    ),
)
@friendly
def evaluate_command(
    model: Annotated[Path, typer.Argument(help="A .keras or .onnx model, or a run directory.")],
    data: DataOption = None,
    spec: ModelSpec = None,
    out: Annotated[
        Path | None, typer.Option(help="Where to write confusion.png (default: the model's folder).")
    ] = None,
    classes: DataClasses = 10,
    ten_crop: Annotated[
        bool, typer.Option("--ten-crop", help="Average over 10 crops (corners, center, flips).")
    ] = False,
    batch_size: Annotated[
        int,
        typer.Option(min=1, help="Images per batch (crops, with --ten-crop)."),
    ] = EVAL_BATCH,
    provider: ProviderOption = "auto",
) -> None:
    """Top-1/top-5 accuracy and the confusion matrix of a model on a test set.

    Every image is scored: the test split (CIFAR), the val/ split, or the folder or TFRecords
    given. The matrix is printed and written as confusion.png. An .onnx model runs on onnxruntime
    with the preprocessing its metadata records (no TensorFlow needed)."""
    from rescompile.serve.evaluate import confusion_text, evaluate

    result = evaluate(
        model,
        data=data,
        spec=spec,
        out=out,
        classes=classes,
        ten_crop=ten_crop,
        batch_size=batch_size,
        provider=provider,
    )
    top5 = f", top-5 {result.top5:.2%}" if result.top5 is not None else ""
    typer.echo(
        f"accuracy {result.accuracy:.2%}{top5} on {int(result.matrix.sum())} images"
        f" of {printable(result.split)}" + (" (10-crop)" if ten_crop else "")
    )
    typer.echo(confusion_text(result.class_names, result.matrix))
    typer.echo(f"wrote {result.picture}")


def _print_version(value: bool) -> None:
    if value:
        from rescompile import __version__

        typer.echo(f"rescompile {__version__} (Python {sys.version.split()[0]})")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Compile ResNet stage tables into checked models, code, tables and ONNX."""


experiment_app = typer.Typer(
    help="Experiments from the ResNet papers.",
    epilog=examples(
        "rescompile experiment degradation --depths 20,56 --out runs/deg",
        "rescompile experiment gradients cifar/resnet56 --out runs/gradients",
    ),
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command(
    "degradation",
    epilog=examples(
        "rescompile experiment degradation --depths 20,56 --data cifar-10-python.tar.gz --out runs/deg"
    ),
)
@friendly
def degradation_command(
    out: Annotated[Path, typer.Option(help="Experiment folder (one run directory per network).")],
    depths: Annotated[str, typer.Option(help="Comma-separated depths: 20, 32, 44, 56.")] = "20,56",
    data: Annotated[
        str | None, typer.Option(help="CIFAR tarball or folder (default: keras.datasets).")
    ] = None,
    recipe: RecipeOption = None,
    set_: RecipeSets = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    seed: Seed = 0,
    precision: PrecisionOption = "auto",
    force: Annotated[
        bool, typer.Option("--force", help="Retrain runs in --out made with another recipe, data or seed.")
    ] = False,
) -> None:
    """Train plain nets and their residual twins alike; plot training/test error (Fig. 6)."""
    from rescompile.experiments import degradation
    from rescompile.train.recipe import load_recipe, recipe_overrides

    try:
        chosen = [int(d) for d in depths.split(",")]
    except ValueError:
        raise RescompileError(f"--depths must be comma-separated integers, got {depths!r}") from None
    chosen_recipe = load_recipe(recipe or "paper", recipe_overrides(set_, epochs, batch_size))
    result = degradation.run(
        chosen, data=data, recipe=chosen_recipe, out=out, seed=seed, precision=precision, force=force
    )
    for run in result.runs:
        typer.echo(
            f"{run.kind:>8}-{run.depth:<3} train error {run.final_train_error:.2%}"
            f"  test error {run.final_test_error:.2%}"
        )
    typer.echo(f"deeper plain net trains worse: {result.deeper_plain_trains_worse}")
    typer.echo(f"deeper ResNet trains worse:    {result.deeper_resnet_trains_worse}")
    typer.echo(f"wrote {out / 'results.json'} and {out / 'degradation.png'}")


@experiment_app.command(
    "gradients",
    epilog=examples(
        "rescompile experiment gradients cifar/resnet56 --no-batchnorm plain/plain56 --out runs/gradients"
    ),
)
@friendly
def gradients_command(
    specs: Annotated[
        list[Path] | None,
        typer.Argument(help="Spec files or library names, as written.", autocompletion=_complete_spec),
    ] = None,
    out: Annotated[Path, typer.Option(help="Where to write gradients.png and gradients.json.")] = Path(
        "gradients"
    ),
    no_batchnorm: Annotated[
        list[Path] | None, typer.Option("--no-batchnorm", help="A spec to profile with BatchNorm off.")
    ] = None,
    initializer: Annotated[
        Initializer | None, typer.Option(help="Initializer for the --no-batchnorm networks.")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Random images in the batch the gradients are taken on.")
    ] = GRADIENTS_BATCH,
) -> None:
    """Gradient norm of every weighted layer on one batch, against depth (log scale)."""
    from rescompile.experiments import gradients
    from rescompile.spec import load_spec
    from rescompile.spec.library import resolve_spec

    if not specs and not no_batchnorm:
        raise RescompileError("name at least one SPEC or --no-batchnorm SPEC")
    named = [load_spec(resolve_spec(spec)) for spec in specs or []]
    unnormalised = [load_spec(resolve_spec(spec)) for spec in no_batchnorm or []]
    for profile in gradients.run(named, unnormalised, out, initializer=initializer, batch=batch_size):
        typer.echo(
            f"{profile.label}: backprop signal first/last = {profile.signal_first_to_last:.3g}, "
            f"kernel gradient {profile.kernel_norms[0]:.3g} (first) .. {profile.kernel_norms[-1]:.3g} (last)"
        )
    typer.echo(f"wrote {out / 'gradients.png'} and {out / 'gradients.json'}")


@app.command(
    "report",
    epilog=examples("rescompile report runs/r20 runs/r56", "rescompile report runs/degradation --out report"),
)
@friendly
def report_command(
    runs: Annotated[list[Path], typer.Argument(help="Run directories of `rescompile train`.")],
    out: Annotated[Path, typer.Option(help="Where to write report.md and curves.png.")] = Path("report"),
) -> None:
    """Compare runs in one Markdown table (next to the paper's numbers) and one figure."""
    from rescompile.experiments.report import report

    text, figure = report(runs, out)
    typer.echo(text, nl=False)
    typer.echo(f"wrote {out / 'report.md'} and {figure}")


@app.command("doctor", epilog=examples("rescompile doctor"))
@friendly
def doctor_command() -> None:
    """Report onnxruntime packages and providers, CUDA/cuDNN, the Keras backend and GPUs."""
    from rescompile.doctor import report

    healthy = True
    for topic, finding, ok in report():
        typer.echo(f"{'ok ' if ok else 'BAD'}  {topic}: {finding}")
        healthy = healthy and ok
    if not healthy:
        raise typer.Exit(1)


def main() -> None:
    """Entry point of the console script: usage errors, too, are one line with exit status 2."""
    from typer._click.exceptions import NoArgsIsHelpError, UsageError

    from rescompile.quiet import import_keras_quietly_when_needed

    import_keras_quietly_when_needed(filter_logs=True)
    try:
        code = app(standalone_mode=False, prog_name="rescompile")
    except NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "rescompile"
        message = exc.format_message().replace("Value error, ", "")  # pydantic's prefix on choices
        typer.echo(f"error: {message} (see `{command} --help`)", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
