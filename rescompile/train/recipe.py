"""Training recipes as YAML (recipes/*.yaml), validated with pydantic; any field overridable."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Literal, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from rescompile.errors import RescompileError, printable
from rescompile.inputs.augment import Augment, Positive, Strict
from rescompile.resources import recipe_names, resource_dir
from rescompile.spec.loader import load_yaml_mapping

RECIPES = resource_dir("recipes")


class Optimizer(Strict):
    """The optimizer and its base learning rate."""

    name: Literal["sgd", "adam", "rmsprop"] = "sgd"
    lr: Positive = 0.1
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = False
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    reference_batch: Annotated[int, Field(ge=1)] | None = None
    """When set, `lr` is the rate at this batch size and scales linearly with the batch (Goyal et al.)."""

    def lr_for(self, batch_size: int) -> float:
        """The base learning rate at `batch_size`."""
        return self.lr * batch_size / self.reference_batch if self.reference_batch else self.lr


class Schedule(Strict):
    """Learning-rate schedule over optimizer steps (iterations).

    piecewise: lr x factors[i] after boundaries[i] (in `unit`: steps or epochs);
    onecycle: linear warm-up to lr over `warmup` of training, then cosine down to lr x final;
    warm-up: an initial constant lr x warmup_factor for warmup_steps (ResNet-110's trick), or a
    linear ramp over warmup_epochs (Goyal et al.).
    """

    kind: Literal["constant", "piecewise", "onecycle"] = "constant"
    unit: Literal["steps", "epochs"] = "steps"
    boundaries: list[Annotated[float, Field(gt=0)]] = Field(default_factory=list)
    factors: list[Positive] = Field(default_factory=list)
    warmup: Annotated[float, Field(ge=0, lt=1)] = 0.0
    final: Annotated[float, Field(ge=0, le=1)] = 0.0
    warmup_steps: Annotated[int, Field(ge=0)] = 0
    warmup_factor: Positive = 0.1
    warmup_epochs: Annotated[float, Field(ge=0)] = 0.0
    """A linear ramp to lr over this many epochs (Goyal et al.: 5), from lr x warmup_factor or,
    with optimizer.reference_batch, from the reference batch's rate."""
    run_length: Positive | None = None
    """The run length (in `unit`) that boundaries and warm-ups are written for: a run of another
    length (`--epochs`, `--steps`) scales them to keep their fraction of the run. Filled in from
    the recipe's own `steps` or `epochs` when they are in the schedule's unit; None: never scaled."""

    @model_validator(mode="after")
    def _one_factor_per_boundary(self) -> Schedule:
        if len(self.boundaries) != len(self.factors):
            raise ValueError(
                "boundaries and factors must have equal lengths, "
                f"got {len(self.boundaries)} and {len(self.factors)}"
            )
        return self


class Plateau(Strict):
    """ReduceLROnPlateau on validation accuracy (applied on top of the schedule)."""

    factor: Annotated[float, Field(gt=0, lt=1)] = 0.31622776601683794
    patience: Annotated[int, Field(ge=1)] = 5
    min_lr: Annotated[float, Field(ge=0)] = 0.5e-6


class Evaluation(Strict):
    """How images of any size are evaluated: the central square of `crop_fraction` of the shorter
    side (resize 256, crop 224: 0.875; 1.0 resizes the whole image), and the paper's 10-crop
    testing (four corners and the center, each also flipped; softmax averaged) for the final test."""

    crop_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    ten_crop: bool = False


class FineTune(Strict):
    """A second phase: the frozen backbone is unfrozen (BatchNorm stays in inference mode) and
    the whole network trains on at a constant, lower learning rate."""

    epochs: Annotated[float, Field(gt=0)]
    lr: Positive


class Recipe(Strict):
    """How to train: optimizer, schedule, batch, length, augmentation and preprocessing."""

    name: str
    source: str = ""
    optimizer: Optimizer = Optimizer()
    schedule: Schedule = Schedule()
    plateau: Plateau | None = None
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 128
    epochs: Annotated[float, Field(gt=0)] | None = None
    steps: Annotated[int, Field(ge=1)] | None = None
    validation: Annotated[int, Field(ge=0)] = 5000
    augment: Augment = Augment()
    normalize: Literal["per-pixel-mean", "per-channel", "spec"] = "per-pixel-mean"
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    l2: Annotated[float, Field(ge=0, lt=1)] = 0.0
    """SGD weight decay as the papers apply it (coupled: an L2 penalty of half this on every
    convolution and dense kernel the spec does not already regularise)."""
    zero_init_residual: bool = False
    """Start each residual block's last BatchNorm gamma at zero, so blocks begin as identities."""
    evaluation: Evaluation = Evaluation()
    finetune: FineTune | None = None
    export: Literal["last", "best"] = "last"
    """Which weights the run exports (model.keras, model.onnx) and tests: the last epoch's, or the
    epoch with the best validation accuracy (needs a held-out validation split)."""

    @model_validator(mode="after")
    def _best_needs_a_validation_split(self) -> Recipe:
        if self.export == "best" and self.validation == 0:
            raise ValueError(
                "export: best picks an epoch by validation accuracy, which needs validation > 0"
                " (with 0 the validation images are the test images)"
            )
        return self


MAX_SET_DEPTH = 8
"""Levels a `--set` key may name (recipe fields nest three deep, e.g. augment.crop.scale)."""


def _apply(tree: dict, assignment: str) -> None:
    """Apply `a.b.c=value` (value parsed as YAML) to a nested dict."""
    if "=" not in assignment:
        raise RescompileError(f"--set {assignment!r}: expected key=value, e.g. optimizer.lr=0.05")
    key, raw = assignment.split("=", 1)
    value = _set_value(key, raw)
    node = tree
    parts = key.strip().split(".")
    if len(parts) > MAX_SET_DEPTH:
        raise RescompileError(
            f"--set {printable(key[:60])}...: {len(parts)} levels of keys;"
            f" recipe fields nest at most {MAX_SET_DEPTH}"
        )
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RescompileError(f"--set {key}: {part} is not a group of fields")
    node[parts[-1]] = value


def _set_value(key: str, raw: str) -> object:
    """A `--set` value parsed as YAML (text where it is not YAML), its nesting counted from the
    parser's events (which do not recurse) before it is built."""
    try:
        depth = 0
        for event in yaml.parse(raw, Loader=yaml.SafeLoader):
            depth += isinstance(event, yaml.CollectionStartEvent) - isinstance(event, yaml.CollectionEndEvent)
            if depth > MAX_SET_DEPTH:
                raise RescompileError(
                    f"--set {printable(key[:60])}: the value nests more than {MAX_SET_DEPTH} levels"
                )
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def overridden_fields(overrides: list[str]) -> frozenset[str]:
    """The dotted keys that `--set key=value` assignments name."""
    return frozenset(assignment.split("=", 1)[0].strip() for assignment in overrides)


def _record_run_length(tree: dict, overrides: list[str]) -> None:
    """Note the run the schedule is written for (the recipe's own steps or epochs, in the
    schedule's unit), unless the command line rewrites the schedule itself."""
    schedule = tree.get("schedule")
    if not isinstance(schedule, dict) or "run_length" in schedule:
        return
    if any(key.startswith("schedule.") for key in overridden_fields(overrides)):
        return
    length = tree.get(schedule.get("unit", "steps"))
    if isinstance(length, int | float) and not isinstance(length, bool):
        schedule["run_length"] = length


def recipe_differences(recipe: Recipe, other: Recipe) -> list[str]:
    """The top-level fields in which two recipes differ."""
    return [key for key, value in recipe if getattr(other, key) != value]


def field_value(recipe: Recipe, key: str) -> object:
    """The value of a dotted field (`optimizer.lr`); None where the path does not exist."""
    node: object = recipe
    for part in key.split("."):
        node = getattr(node, part, None)
    return node


def recipe_overrides(
    sets: list[str] | None = None,
    epochs: float | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    steps: int | None = None,
) -> list[str]:
    """The `--set` assignments of the command line, with its shortcut options appended
    (`--epochs N` also clears `steps`, so the run lasts N epochs; `--steps N` clears `epochs`)."""
    overrides = list(sets or [])
    if epochs is not None:
        overrides += [f"epochs={epochs}", "steps=null"]
    if steps is not None:
        overrides += [f"steps={steps}", "epochs=null"]
    if batch_size is not None:
        overrides.append(f"batch_size={batch_size}")
    if lr is not None:
        overrides.append(f"optimizer.lr={lr}")
    return overrides


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    """A recipe by name (recipes/<name>.yaml) or path, with `--set key=value` overrides."""
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPES / f"{name_or_path}.yaml"
        if not path.exists():
            known = ", ".join(recipe_names())
            raise RescompileError(f"--recipe {name_or_path}: unknown recipe (known: {known})")
    tree = load_yaml_mapping(path)
    _record_run_length(tree, overrides or [])
    for assignment in overrides or []:
        _apply(tree, assignment)
    try:
        return Recipe.model_validate(tree)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = [str(part) for part in error["loc"]]
        where = ".".join(loc)
        given = [key for key in overridden_fields(overrides or []) if f"{where}.".startswith(f"{key}.")]
        source = f"--set {where}" if given else f"{path}: {where}"
        if error["type"] == "extra_forbidden":
            raise RescompileError(f"{source}: {_unknown_field(loc)}") from None
        raise RescompileError(f"{source}: {error['msg']} (got {error.get('input')!r})") from None


def _unknown_field(loc: list[str]) -> str:
    """ "unknown field", the closest known name, and the names the group has."""
    model: type[BaseModel] = Recipe
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        groups = [
            a for a in (annotation, *get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not groups:
            return "unknown field"
        model = groups[0]
    known = list(model.model_fields)
    close = difflib.get_close_matches(loc[-1], known, n=1)
    prefix = "".join(f"{part}." for part in loc[:-1])
    hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
    group = ".".join(loc[:-1]) or "a recipe"
    return f"unknown field{hint}; {group} has {', '.join(known)}"
