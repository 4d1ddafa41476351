"""What a run trains on: CIFAR arrays in memory, or a streamed source (image folders, TFRecords),
behind one interface the trainer uses: the splits' sizes, the fitted normalisation, and tf.data
pipelines for training (per worker), validation and the final test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import tensorflow as tf

from rescompile.errors import RescompileError
from rescompile.inputs import streaming
from rescompile.inputs.datasets import Dataset
from rescompile.inputs.scoring import top_k_accuracy
from rescompile.inputs.sources import FileSplit, RecordSplit, Source, Split, open_data
from rescompile.inputs.tfdata import (
    Shard,
    array_loader,
    evaluation_dataset,
    fit_normalization,
    training_dataset,
)
from rescompile.options import EVAL_BATCH
from rescompile.spec.preprocessing import Preprocessing
from rescompile.train.recipe import Recipe

NORMALIZATION_SAMPLE = 1000
"""Streamed training images a per-pixel or per-channel mean is estimated from."""


class Inputs(Protocol):
    """The data of a run."""

    name: str
    class_names: list[str]
    image_size: int
    normalization: Preprocessing
    train_count: int
    notes: list[str]

    def steps_per_epoch(self, global_batch: int, shard: Shard) -> int: ...
    def training(self, recipe: Recipe, seed: int, first_epoch: int, shard: Shard) -> tf.data.Dataset: ...
    def validation(self, batch: int) -> tf.data.Dataset: ...
    def test(self, batch: int) -> tf.data.Dataset: ...
    def ten_crop_accuracy(self, model) -> tuple[float, float]: ...


def _holdout(count: int, validation: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices: a seeded permutation's first `validation` are held out."""
    if validation >= count:
        raise RescompileError(
            f"the recipe's validation split ({validation} images) leaves no training images (have"
            f" {count}): pass --set validation={count // 10}, or 0 to validate on the test set"
        )
    order = np.random.default_rng(seed).permutation(count)
    return order[validation:], order[:validation]


@dataclass
class ArrayInputs:
    """CIFAR in memory: a seeded validation hold-out, the recipe's normalisation fitted on it."""

    dataset: Dataset
    train: tuple[np.ndarray, np.ndarray]
    held_out: tuple[np.ndarray, np.ndarray]
    normalization: Preprocessing
    notes: list[str]

    @classmethod
    def create(cls, dataset: Dataset, recipe: Recipe, seed: int, *, spec: Preprocessing) -> ArrayInputs:
        train, held = _holdout(len(dataset.x_train), recipe.validation, seed)
        x, y = dataset.x_train, dataset.y_train
        held_out = (x[held], y[held]) if len(held) else (dataset.x_test, dataset.y_test)
        normalization = fit_normalization(x[train], recipe.normalize, spec)
        return cls(dataset, (x[train], y[train]), held_out, normalization, [])

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names

    @property
    def image_size(self) -> int:
        return int(self.train[0].shape[1])

    @property
    def train_count(self) -> int:
        return len(self.train[0])

    def steps_per_epoch(self, global_batch: int, shard: Shard) -> int:
        return self.train_count // global_batch

    def training(self, recipe: Recipe, seed: int, first_epoch: int, shard: Shard) -> tf.data.Dataset:
        load = array_loader(*self.train, recipe.augment, normalization=self.normalization)
        return training_dataset(
            self.train_count, load, recipe.batch_size, seed=seed, first_epoch=first_epoch, shard=shard
        )

    def validation(self, batch: int) -> tf.data.Dataset:
        return evaluation_dataset(*self.held_out, batch, normalization=self.normalization)

    def test(self, batch: int) -> tf.data.Dataset:
        return evaluation_dataset(
            self.dataset.x_test, self.dataset.y_test, batch, normalization=self.normalization
        )

    def ten_crop_accuracy(self, model) -> tuple[float, float]:
        raise RescompileError(
            "10-crop testing needs images larger than the input (an image folder or TFRecords)"
        )


@dataclass
class StreamInputs:
    """Image files or TFRecord shards, decoded and augmented inside tf.data."""

    source: Source
    train: Split
    held_out: Split
    image_size: int
    normalization: Preprocessing
    strict: bool
    notes: list[str]

    @classmethod
    def create(
        cls, source: Source, recipe: Recipe, seed: int, *, spec: Preprocessing, size: int, strict: bool
    ) -> StreamInputs:
        notes = [source.note]
        if source.skipped:
            notes.append(
                f"skipped {len(source.skipped)} truncated or unreadable images"
                f" (--strict fails instead), e.g. {source.skipped[0]}"
            )
        train, held_out = source.train, source.test
        if recipe.validation:
            if isinstance(train, RecordSplit):
                raise RescompileError(
                    f"TFRecord data cannot hold out --set validation={recipe.validation} images:"
                    " pass --set validation=0 to validate on the evaluation shards"
                )
            kept, held = _holdout(len(train), recipe.validation, seed)
            train, held_out = train.subset(np.sort(kept)), train.subset(np.sort(held))
            notes.append(f"held out {len(held)} training images for validation (seed {seed})")
        if isinstance(train, RecordSplit):
            streaming.check_records(train, "--data")
            streaming.check_records(source.test, "--val-data")
        if recipe.normalize == "spec":
            normalization = spec.as_float32()
        else:
            sample = _sample(
                train,
                size,
                recipe.evaluation.crop_fraction,
                seed=seed,
                classes=len(source.class_names),
                strict=strict,
            )
            normalization = fit_normalization(sample, recipe.normalize, spec)
        normalization = normalization.model_copy(update={"crop": recipe.evaluation.crop_fraction})
        return cls(source, train, held_out, size, normalization, strict, notes)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    @property
    def train_count(self) -> int:
        return len(self.train)

    def steps_per_epoch(self, global_batch: int, shard: Shard) -> int:
        if isinstance(self.train, RecordSplit):
            return streaming.record_steps(self.train, global_batch, shard)
        return self.train_count // global_batch

    def training(self, recipe: Recipe, seed: int, first_epoch: int, shard: Shard) -> tf.data.Dataset:
        return streaming.streamed_training(
            self.train,
            recipe.augment,
            self.normalization,
            size=self.image_size,
            global_batch=recipe.batch_size,
            seed=seed,
            first_epoch=first_epoch,
            shard=shard,
            strict=self.strict,
            classes=len(self.class_names),
        )

    def _evaluation(self, split: Split, batch: int) -> tf.data.Dataset:
        transform = streaming.eval_transform(self.normalization, self.image_size)
        return streaming.evaluation_stream(
            split, transform, batch, classes=len(self.class_names), strict=self.strict
        )

    def validation(self, batch: int) -> tf.data.Dataset:
        return self._evaluation(self.held_out, batch)

    def test(self, batch: int) -> tf.data.Dataset:
        return self._evaluation(self.source.test, batch)

    def ten_crop_accuracy(self, model) -> tuple[float, float]:
        scores, labels = streaming.split_scores(
            model, self.source.test, self.normalization, size=self.image_size, ten_crop=True
        )
        return top_k_accuracy(scores, labels, 1), top_k_accuracy(scores, labels, 5)


def _sample(
    split: Split, size: int, crop_fraction: float, *, seed: int, classes: int, strict: bool
) -> np.ndarray:
    """Up to NORMALIZATION_SAMPLE training images, evaluation-cropped, as uint8 arrays."""
    identity = Preprocessing(mean=[0.0], std=[1.0], crop=crop_fraction)
    transform = streaming.eval_transform(identity, size)
    if isinstance(split, FileSplit) and len(split) > NORMALIZATION_SAMPLE:
        pick = np.random.default_rng(seed).choice(len(split), NORMALIZATION_SAMPLE, replace=False)
        split = split.subset(np.sort(pick))
    batches = -(-NORMALIZATION_SAMPLE // EVAL_BATCH)
    images = streaming.evaluation_stream(split, transform, EVAL_BATCH, classes=classes, strict=strict).take(
        batches
    )
    with streaming.data_errors(classes):
        return np.concatenate([np.round(x.numpy()).astype(np.uint8) for x, _ in images])[
            :NORMALIZATION_SAMPLE
        ]


def training_images(opened: Dataset | Source) -> int:
    """The images of the training split, before a validation hold-out."""
    return len(opened.x_train) if isinstance(opened, Dataset) else len(opened.train)


def inputs_from(
    opened: Dataset | Source, recipe: Recipe, seed: int, *, spec: Preprocessing, size: int, strict: bool
) -> Inputs:
    """The run's inputs from opened data, with the recipe's hold-out and normalisation (`spec`:
    the spec's preprocessing, which a recipe's `normalize` replaces or keeps)."""
    if isinstance(opened, Dataset):
        return ArrayInputs.create(opened, recipe, seed, spec=spec)
    return StreamInputs.create(opened, recipe, seed, spec=spec, size=size, strict=strict)


def open_inputs(
    data: str | None,
    val_data: str | None,
    classes: int,
    *,
    recipe: Recipe,
    seed: int,
    spec: Preprocessing,
    size: int,
    strict: bool,
) -> Inputs:
    """The run's inputs from `--data` (and `--val-data`)."""
    opened = open_data(data, val_data, classes, seed=seed, strict=strict)
    return inputs_from(opened, recipe, seed, spec=spec, size=size, strict=strict)
