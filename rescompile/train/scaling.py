"""A recipe fitted to the run at hand: its schedule scaled to the run's length, and (on small data)
a validation split, batch and learning rate that leave an epoch enough steps to learn from.

Pure arithmetic on the recipe (no TensorFlow), so the trainer can say what it did in its first line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rescompile.train.recipe import Recipe

MIN_STEPS_PER_EPOCH = 25
"""Small data: the default batch is lowered (to a power of two, at least MIN_BATCH) until an epoch
has this many steps."""
MIN_BATCH = 8
FITTED = frozenset({"validation", "batch_size", "optimizer.lr"})
"""The recipe fields fit_small_data may change (given all, it changes nothing)."""


@dataclass(frozen=True)
class StepPlan:
    """The schedule in optimizer steps: piecewise boundaries, the constant warm-up and the ramp."""

    boundaries: list[int]
    warmup_steps: int
    ramp_steps: int
    ratio: float
    """The run's length over the length the schedule was written for (1.0: not scaled)."""


def step_plan(recipe: Recipe, steps_per_epoch: int, total_steps: int) -> StepPlan:
    """The recipe's schedule in steps. With `schedule.run_length` (the run the recipe was written
    for), boundaries and warm-ups keep their fraction of the run: a run of a tenth of the length
    decays its learning rate after a tenth of the steps."""
    plan = recipe.schedule
    per_unit = steps_per_epoch if plan.unit == "epochs" else 1
    ratio = total_steps / (plan.run_length * per_unit) if plan.run_length else 1.0
    return StepPlan(
        boundaries=[round(b * per_unit * ratio) for b in plan.boundaries],
        warmup_steps=round(plan.warmup_steps * ratio),
        ramp_steps=round(plan.warmup_epochs * steps_per_epoch * ratio),
        ratio=ratio,
    )


def describe_schedule(recipe: Recipe, steps_per_epoch: int, total_steps: int) -> str:
    """One phrase for train's first line: the learning rates by step, and how they were scaled."""
    plan = step_plan(recipe, steps_per_epoch, total_steps)
    base = recipe.optimizer.lr_for(recipe.batch_size)
    schedule = recipe.schedule
    parts = [f"lr {base:g}"]
    if plan.warmup_steps:
        parts.append(f"{base * schedule.warmup_factor:g} for the first {plan.warmup_steps} steps")
    if plan.ramp_steps:
        parts.append(f"ramped up over {plan.ramp_steps} steps")
    if schedule.kind == "onecycle":
        parts.append(
            f"rising over {schedule.warmup:.0%} of the run, then cosine to {base * schedule.final:g}"
        )
    steps = zip(plan.boundaries, schedule.factors, strict=True)
    parts += [f"x{factor:g} from step {step}" for step, factor in steps]
    text = ", ".join(parts) + f" of {total_steps}"
    if abs(plan.ratio - 1) > 1e-9:
        unit = schedule.unit
        text += (
            f" (scaled x{plan.ratio:.3g} from the recipe's {schedule.run_length:g} {unit}:"
            " boundaries and warm-up keep their fraction of the run)"
        )
    return text


def fit_small_data(recipe: Recipe, images: int, given: frozenset[str]) -> tuple[Recipe, str | None]:
    """(recipe, note): on data too small for the recipe's validation split or batch, a tenth held
    out, a batch giving MIN_STEPS_PER_EPOCH steps an epoch and the learning rate scaled with the
    batch (Goyal et al.'s linear rule); the fields in `given` (set on the command line) are kept."""
    changes: dict = {}
    said = []
    validation = recipe.validation
    if "validation" not in given and validation > images // 5:
        validation = images // 10
        changes["validation"] = validation
        said.append(f"validation {recipe.validation} -> {validation} images (a tenth)")
    train = images - validation
    batch = recipe.batch_size
    if "batch_size" not in given and train > 0 and train // batch < MIN_STEPS_PER_EPOCH:
        fitted = max(MIN_BATCH, 2 ** math.floor(math.log2(max(1, train / MIN_STEPS_PER_EPOCH))))
        if fitted < batch:
            changes["batch_size"] = fitted
            said.append(f"batch {batch} -> {fitted} ({train // fitted} steps an epoch)")
            optimizer = recipe.optimizer
            if "optimizer.lr" not in given and optimizer.reference_batch is None:
                lr = optimizer.lr * fitted / batch
                changes["optimizer"] = optimizer.model_copy(update={"lr": lr})
                said.append(f"lr {optimizer.lr:g} -> {lr:g} (scaled with the batch)")
    if not changes:
        return recipe, None
    note = (
        f"small data ({images} images) for recipe {recipe.name}: " + ", ".join(said) + "; the options"
        " --batch-size, --lr and --set validation=N keep what you give"
    )
    return recipe.model_copy(update=changes), note
