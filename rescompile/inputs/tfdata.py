"""tf.data input pipeline: normalisation, augmentation, deterministic per-epoch shuffling.

Every random choice is a stateless function of (seed, epoch, example), so an interrupted run that
resumes at epoch k sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from rescompile.inputs.augment import Augment, Erasing
from rescompile.spec.preprocessing import Preprocessing


def fit_normalization(x_train: np.ndarray, mode: str, spec: Preprocessing) -> Preprocessing:
    """Per-pixel mean (paper), per-channel mean/std, or the spec's fixed values (and colour order),
    as float32 numbers."""
    scale, color = float(spec.scale), spec.color
    if color == "BGR":
        x_train = x_train[..., ::-1]
    if mode == "per-pixel-mean":
        mean = np.zeros(x_train.shape[1:], np.float64)
        for start in range(0, len(x_train), 4096):
            mean += x_train[start : start + 4096].astype(np.float64).sum(axis=0)
        mean = (mean / len(x_train) * scale).astype(np.float32)
        return Preprocessing(color=color, scale=scale, mean=mean.tolist(), std=[1.0])
    if mode == "per-channel":
        pixels = x_train.reshape(-1, x_train.shape[-1]).astype(np.float64) * scale
        mean, std = pixels.mean(0).astype(np.float32), pixels.std(0).astype(np.float32)
        return Preprocessing(color=color, scale=scale, mean=mean.tolist(), std=std.tolist())
    return spec.as_float32()


def _erase(image: tf.Tensor, config: Erasing, seed: tf.Tensor, tries: int = 10) -> tf.Tensor:
    """Random erasing: with probability p, fill a random rectangle (area and aspect in range)."""
    height, width = image.shape[0], image.shape[1]
    area = float(height * width)
    u = tf.random.stateless_uniform([tries, 4], seed=seed)
    target = area * (config.area[0] + (config.area[1] - config.area[0]) * u[:, 0])
    log_low, log_high = np.log(config.aspect[0]), np.log(config.aspect[1])
    aspect = tf.exp(log_low + (log_high - log_low) * u[:, 1])
    h = tf.cast(tf.round(tf.sqrt(target * aspect)), tf.int32)
    w = tf.cast(tf.round(tf.sqrt(target / aspect)), tf.int32)
    fits = (h < height) & (w < width) & (h > 0) & (w > 0)
    chosen = tf.argmax(tf.cast(fits, tf.int32))  # the first try that fits
    h, w = h[chosen], w[chosen]
    top = tf.cast(u[chosen, 2] * tf.cast(height - h + 1, tf.float32), tf.int32)
    left = tf.cast(u[chosen, 3] * tf.cast(width - w + 1, tf.float32), tf.int32)
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    mask = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    fill_seed = seed + 1
    if config.per_pixel:
        fill = tf.random.stateless_uniform(image.shape, seed=fill_seed, maxval=255.0)
    else:
        fill = tf.random.stateless_uniform([1, 1, image.shape[2]], seed=fill_seed, maxval=255.0)
    apply = (tf.random.stateless_uniform([], seed=seed + 2) < config.p) & tf.reduce_any(fits)
    return tf.where(apply & mask[:, :, None], tf.broadcast_to(fill, image.shape), image)


def _pad_crop(image: tf.Tensor, pad: int, mode: str, seed: tf.Tensor) -> tf.Tensor:
    """Pad by `pad` pixels (zeros, or mirrored edges for shifts) and crop back at random."""
    height, width, channels = image.shape
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode=mode)
    return tf.image.stateless_random_crop(padded, [height, width, channels], seed=seed)


def augment_fn(config: Augment, normalization: Preprocessing, training: bool):
    """The per-example map: raw uint8 image -> augmented, normalised float32."""
    mean = tf.constant(normalization.mean_array())
    std = tf.constant(normalization.std_array())
    scale = float(normalization.scale)

    def apply(image: tf.Tensor, label: tf.Tensor, seed: tf.Tensor):
        x = tf.cast(image, tf.float32)
        if normalization.color == "BGR":
            x = x[..., ::-1]
        if training and config.erasing is not None:
            x = _erase(x, config.erasing, seed)
        x = (x * scale - mean) / std
        if training and config.pad_crop:
            x = _pad_crop(x, config.pad_crop, "CONSTANT", seed + 3)
        if training and config.shift:
            pad = max(1, round(config.shift * x.shape[0]))
            x = _pad_crop(x, pad, "SYMMETRIC", seed + 4)
        if training and config.flip:
            x = tf.image.stateless_random_flip_left_right(x, seed=seed + 5)
        return x, label

    return apply


@dataclass(frozen=True)
class Shard:
    """This worker's part of every global batch: of each step's `global_batch` examples, worker
    `index` of `count` reads the index-th contiguous block, split into batches for its
    `replicas` (as MirroredStrategy splits a batch over replicas)."""

    index: int = 0
    count: int = 1
    replicas: int = 1

    def batch(self, global_batch: int) -> int:
        """The per-replica batch."""
        return global_batch // (self.count * self.replicas)


def element_seed(seed: int, epoch: tf.Tensor, position: tf.Tensor) -> tf.Tensor:
    """The stateless seed of one example's random draws: a function of (seed, epoch, example)."""
    return tf.stack([tf.cast(seed, tf.int64) * 7919 + tf.cast(epoch, tf.int64), tf.cast(position, tf.int64)])


def training_dataset(
    count: int,
    load,
    global_batch: int,
    *,
    seed: int,
    first_epoch: int,
    shard: Shard = Shard(),
    skip_errors: bool = False,
) -> tf.data.Dataset:
    """Epochs first_epoch, first_epoch+1, ... of shuffled, augmented full batches, without end.

    `load(index, seed)` gives example `index` of `count` augmented with `seed`. An epoch is the
    first count // global_batch * global_batch examples of a permutation drawn from (seed, epoch);
    a worker takes its block of each step's examples, so the workers' step-k batches together are
    the single-process step-k batch. With `skip_errors`, an example that fails to decode is
    dropped (TensorFlow logs it) instead of stopping the run.
    """
    steps = count // global_batch
    share = global_batch // shard.count
    batch = shard.batch(global_batch)

    def epoch(index: tf.Tensor) -> tf.data.Dataset:
        order = tf.random.experimental.stateless_shuffle(tf.range(count), seed=tf.stack([seed, index]))
        blocks = tf.reshape(order[: steps * global_batch], [steps, global_batch])
        mine = tf.reshape(blocks[:, shard.index * share : (shard.index + 1) * share], [-1])
        positions = tf.data.Dataset.from_tensor_slices(mine)
        examples = positions.map(
            lambda i: load(i, element_seed(seed, index, i)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if skip_errors:
            examples = examples.ignore_errors(log_warning=True)
        return examples.batch(batch, drop_remainder=True)

    epochs = tf.data.Dataset.range(first_epoch, 2**31 - 1)
    return epochs.flat_map(epoch).prefetch(tf.data.AUTOTUNE)


def array_loader(x: np.ndarray, y: np.ndarray, augment: Augment, *, normalization: Preprocessing):
    """`load(index, seed)` over in-memory uint8 images."""
    images, labels = tf.constant(x), tf.constant(y.astype(np.int32))
    mapper = augment_fn(augment, normalization, training=True)
    return lambda i, seed: mapper(tf.gather(images, i), tf.gather(labels, i), seed)


def evaluation_dataset(
    x: np.ndarray, y: np.ndarray, batch: int, *, normalization: Preprocessing
) -> tf.data.Dataset:
    """Normalised, unaugmented, in order, cached."""
    mapper = augment_fn(Augment(), normalization, training=False)
    data = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32)))
    data = data.map(
        lambda image, label: mapper(image, label, tf.zeros(2, tf.int64)), num_parallel_calls=tf.data.AUTOTUNE
    )
    return data.batch(batch).cache().prefetch(tf.data.AUTOTUNE)
