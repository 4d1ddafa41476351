"""The learning-rate schedule of a recipe, as a serialisable Keras schedule of the step count."""

from __future__ import annotations

import math

import keras
from keras import ops

from rescompile.train.recipe import Recipe
from rescompile.train.scaling import step_plan


@keras.saving.register_keras_serializable(package="rescompile")
class RecipeSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = base x piecewise factor | one-cycle shape, after an optional constant warm-up or
    linear ramp (from base x warmup_factor).

    Boundaries are in steps (epochs are converted by the caller). `scale` multiplies everything;
    ReduceLROnPlateau lowers it, and it is saved with the run's state.
    """

    def __init__(
        self,
        base: float,
        kind: str,
        boundaries: list[int],
        factors: list[float],
        total_steps: int,
        warmup: float = 0.0,
        final: float = 0.0,
        warmup_steps: int = 0,
        warmup_factor: float = 0.1,
        ramp_steps: int = 0,
        ramp_factor: float = 0.1,
        scale: float = 1.0,
    ) -> None:
        self.base = base
        self.kind = kind
        self.boundaries = list(boundaries)
        self.factors = list(factors)
        self.total_steps = total_steps
        self.warmup = warmup
        self.final = final
        self.warmup_steps = warmup_steps
        self.warmup_factor = warmup_factor
        self.ramp_steps = ramp_steps
        self.ramp_factor = ramp_factor
        self.scale = keras.Variable(scale, trainable=False, dtype="float32", name="lr_scale")

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr = ops.convert_to_tensor(self.base, "float32")
        if self.kind == "piecewise":
            for boundary, factor in zip(self.boundaries, self.factors, strict=True):
                lr = ops.where(step >= boundary, self.base * factor, lr)
        elif self.kind == "onecycle":
            peak = max(1.0, self.warmup * self.total_steps)
            rising = self.base * step / peak
            progress = ops.clip((step - peak) / max(1.0, self.total_steps - peak), 0.0, 1.0)
            falling = self.base * (self.final + (1 - self.final) * 0.5 * (1 + ops.cos(math.pi * progress)))
            lr = ops.where(step < peak, rising, falling)
        if self.warmup_steps:
            lr = ops.where(step < self.warmup_steps, self.base * self.warmup_factor, lr)
        if self.ramp_steps:
            ramp = self.ramp_factor + (1 - self.ramp_factor) * step / self.ramp_steps
            lr = ops.where(step < self.ramp_steps, lr * ramp, lr)
        return lr * self.scale

    def get_config(self) -> dict:
        return {
            "base": self.base,
            "kind": self.kind,
            "boundaries": self.boundaries,
            "factors": self.factors,
            "total_steps": self.total_steps,
            "warmup": self.warmup,
            "final": self.final,
            "warmup_steps": self.warmup_steps,
            "warmup_factor": self.warmup_factor,
            "ramp_steps": self.ramp_steps,
            "ramp_factor": self.ramp_factor,
            "scale": float(self.scale.numpy()),
        }


def make_schedule(recipe: Recipe, steps_per_epoch: int, total_steps: int) -> RecipeSchedule:
    """The recipe's schedule in steps (epochs converted, scaled to the run's length)."""
    plan = recipe.schedule
    steps = step_plan(recipe, steps_per_epoch, total_steps)
    reference = recipe.optimizer.reference_batch
    return RecipeSchedule(
        base=recipe.optimizer.lr_for(recipe.batch_size),
        kind=plan.kind,
        boundaries=steps.boundaries,
        factors=plan.factors,
        total_steps=total_steps,
        warmup=plan.warmup,
        final=plan.final,
        warmup_steps=steps.warmup_steps,
        warmup_factor=plan.warmup_factor,
        ramp_steps=steps.ramp_steps,
        ramp_factor=min(1.0, reference / recipe.batch_size) if reference else plan.warmup_factor,
    )


def make_optimizer(recipe: Recipe, schedule: RecipeSchedule) -> keras.optimizers.Optimizer:
    """SGD (with momentum, optionally Nesterov) or Adam, with the recipe's decoupled weight decay."""
    config = recipe.optimizer
    decay = config.weight_decay or None
    if config.name == "adam":
        return keras.optimizers.Adam(learning_rate=schedule, weight_decay=decay)
    if config.name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=schedule, weight_decay=decay)
    return keras.optimizers.SGD(
        learning_rate=schedule, momentum=config.momentum, nesterov=config.nesterov, weight_decay=decay
    )
