"""tf.data pipelines over streamed sources (image files, TFRecord shards): read, decode only the
crop window, resize, augment, normalise, inside parallel maps; nothing holds the whole dataset.

Training images are drawn as `rescompile.inputs.tfdata.training_dataset` draws arrays: every random
choice is a stateless function of (seed, epoch, example), so a resumed run sees the same batches.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator

import tensorflow as tf

from rescompile.errors import RescompileError, printable
from rescompile.inputs import crops
from rescompile.inputs.augment import Augment
from rescompile.inputs.sources import FileSplit, RecordSplit, Split
from rescompile.inputs.tfdata import Shard, augment_fn, element_seed, training_dataset
from rescompile.options import EVAL_BATCH
from rescompile.spec.preprocessing import Preprocessing

IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"
FEATURES = {
    IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
}
SHUFFLE_WINDOW = 1024
LABEL_MARK = "@rescompile-label@"


def train_transform(augment: Augment, normalization: Preprocessing, size: int):
    """encoded image, label, seed -> augmented, normalised (size, size, 3) float32, label."""
    crop = augment.crop
    pixels = augment_fn(
        augment.model_copy(update={"crop": None, "lighting": 0.0}), normalization, training=True
    )

    def apply(encoded: tf.Tensor, label: tf.Tensor, seed: tf.Tensor):
        if crop is None:
            window_of = crops.whole_window
        elif crop.kind == "random-resized":
            window_of = functools.partial(crops.random_resized_window, crop=crop, seed=seed + 11)
        else:
            window_of = functools.partial(crops.scale_jitter_window, crop=crop, seed=seed + 11)
        image = crops.resize(crops.decode_window(encoded, window_of), size, antialias=False)
        if augment.lighting:
            image = crops.lighting(image, augment.lighting, seed + 13)
        return pixels(image, label, seed)

    return apply


def eval_transform(normalization: Preprocessing, size: int):
    """encoded image, label -> the central crop (normalization.crop), resized and normalised, label."""
    pixels = augment_fn(Augment(), normalization, training=False)
    window_of = functools.partial(crops.center_window, fraction=normalization.crop)
    if normalization.crop == 1.0:
        window_of = crops.whole_window

    def apply(encoded: tf.Tensor, label: tf.Tensor):
        image = crops.resize(crops.decode_window(encoded, window_of), size)
        return pixels(image, label, tf.zeros(2, tf.int64))

    return apply


def ten_crop_transform(normalization: Preprocessing, size: int):
    """encoded image, label -> (10, size, size, 3): four corners and the center, and their flips."""
    pixels = augment_fn(Augment(), normalization, training=False)

    def apply(encoded: tf.Tensor, label: tf.Tensor):
        image = crops.decode_window(encoded, crops.whole_window)
        windows = crops.ten_crop_windows(tf.shape(image), normalization.crop)
        views = tf.map_fn(
            lambda w: crops.resize(tf.slice(image, [w[0], w[1], 0], [w[2], w[3], -1]), size),
            windows,
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        )
        views = tf.concat([views, tf.reverse(views, axis=[2])], axis=0)
        normalised, _ = pixels(views, label, tf.zeros(2, tf.int64))
        return normalised, label

    return apply


def _file_examples(split: FileSplit):
    files = tf.constant(list(split.files))
    labels = tf.constant(split.labels)
    return lambda i: (tf.io.read_file(files[i]), labels[i])


def streamed_training(
    split: Split,
    augment: Augment,
    normalization: Preprocessing,
    *,
    size: int,
    global_batch: int,
    seed: int,
    first_epoch: int,
    shard: Shard,
    strict: bool,
    classes: int,
) -> tf.data.Dataset:
    """Batches of `global_batch` augmented training examples, epoch after epoch, for this worker's
    shard (a TFRecord label outside 0..classes-1 fails it: data_errors reports where)."""
    transform = train_transform(augment, normalization, size)
    if isinstance(split, FileSplit):
        read = _file_examples(split)

        def load(i: tf.Tensor, example_seed: tf.Tensor):
            encoded, label = read(i)
            return transform(encoded, label, example_seed)

        return training_dataset(
            len(split),
            load,
            global_batch,
            seed=seed,
            first_epoch=first_epoch,
            shard=shard,
            skip_errors=not strict,
        )
    return _record_training(
        split,
        transform,
        global_batch,
        seed=seed,
        first_epoch=first_epoch,
        shard=shard,
        strict=strict,
        classes=classes,
    )


def _by_file(split: RecordSplit, shard: Shard) -> bool:
    """Several workers and at least as many shards: each worker reads its own shards."""
    return len(split.shards) >= shard.count > 1


def record_steps(split: RecordSplit, global_batch: int, shard: Shard) -> int:
    """Steps per epoch over TFRecords: every worker must take as many (the smallest share)."""
    if not _by_file(split, shard):
        return len(split) // global_batch
    shares = [sum(split.counts[w :: shard.count]) for w in range(shard.count)]
    return min(shares) // (global_batch // shard.count)  # per worker, before its replicas split it


def _record_training(
    split: RecordSplit,
    transform,
    global_batch: int,
    *,
    seed: int,
    first_epoch: int,
    shard: Shard,
    strict: bool,
    classes: int,
) -> tf.data.Dataset:
    """Shards interleaved in an order drawn per epoch, shuffled within windows of records. With
    at least as many shards as workers, each worker reads its own shards (by file), else every
    worker reads all and keeps every count-th example."""
    by_file = _by_file(split, shard)
    mine = slice(shard.index, None, shard.count) if by_file else slice(None)
    shards = split.shards[mine]
    steps = record_steps(split, global_batch, shard) * shard.replicas
    batch = shard.batch(global_batch)
    files, kinds = tf.constant(shards), tf.constant(split.compressions[mine])

    def epoch(index: tf.Tensor) -> tf.data.Dataset:
        order = tf.random.experimental.stateless_shuffle(tf.range(len(shards)), seed=tf.stack([seed, index]))
        records = tf.data.Dataset.from_tensor_slices(
            (tf.gather(files, order), tf.gather(kinds, order))
        ).interleave(
            _shard_records,
            cycle_length=min(16, len(shards)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if shard.count > 1 and not by_file:
            records = records.shard(shard.count, shard.index)
        records = _window_shuffled(records, tf.cast(seed, tf.int64) * 7919 + index)
        examples = records.enumerate().map(
            lambda position, item: (
                *transform(*parse_record(item[0]), element_seed(seed, index, position)),
                *item[1:],
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if not strict:  # a record that fails to decode is skipped; a bad label is checked after
            examples = examples.ignore_errors(log_warning=True)
        return examples.batch(batch, drop_remainder=True).map(_checked_labels(classes)).take(steps)

    return tf.data.Dataset.range(first_epoch, 2**31 - 1).flat_map(epoch).prefetch(tf.data.AUTOTUNE)


def _shard_records(path: tf.Tensor, kind: tf.Tensor) -> tf.data.Dataset:
    """One shard's records, decompressed as `kind` says, each as (record, shard, its position)."""
    records = tf.data.TFRecordDataset(path, compression_type=kind).enumerate()
    return records.map(lambda position, record: (record, path, position))


def _window_shuffled(records: tf.data.Dataset, epoch_seed: tf.Tensor) -> tf.data.Dataset:
    """Records shuffled within consecutive windows of SHUFFLE_WINDOW, each permutation a stateless
    function of (epoch seed, window): the same order on every run and resume, without the
    stateful buffer of Dataset.shuffle (whose seed cannot depend on the epoch inside the graph)."""
    windows = records.batch(SHUFFLE_WINDOW).enumerate()

    def shuffled(window: tf.Tensor, block: tuple) -> tuple:
        order = tf.random.experimental.stateless_shuffle(
            tf.range(tf.shape(block[0])[0]), seed=tf.stack([epoch_seed, window])
        )
        return tuple(tf.gather(part, order) for part in block)

    return windows.map(shuffled).unbatch()


def parse_record(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(encoded image, int64 label) of a tf.train.Example in the TF model garden's ImageNet layout."""
    parsed = tf.io.parse_single_example(record, FEATURES)
    return parsed[IMAGE_KEY], parsed[LABEL_KEY]


def _checked_labels(classes: int):
    """A map over batches of (images, int64 labels, shards, positions) -> (images, int32 labels)
    that fails on the first label outside 0..classes-1, naming its shard and record (for
    data_errors to report): never cast first, where 2**40 would wrap to a valid 0."""

    def check(images: tf.Tensor, labels: tf.Tensor, shards: tf.Tensor, positions: tf.Tensor):
        bad = (labels < 0) | (labels >= classes)
        first = tf.argmax(tf.cast(bad, tf.int32))
        where = tf.strings.join(
            [
                LABEL_MARK,
                shards[first],
                ": record ",
                tf.strings.as_string(positions[first]),
                " has label ",
                tf.strings.as_string(labels[first]),
                LABEL_MARK,
            ]
        )
        with tf.control_dependencies([tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [where])]):
            return tf.identity(images), tf.cast(labels, tf.int32)

    return check


DECODING = re.compile(r"Decode\w*|ExtractJpegShape|decompression bomb")


@contextlib.contextmanager
def data_errors(classes: int) -> Iterator[None]:
    """Report, as one line, a TFRecord label out of range (from _checked_labels, naming the shard
    and the record) and an image that failed to decode in a --strict stream (which otherwise
    skips it)."""
    try:
        yield
    except tf.errors.InvalidArgumentError as exc:
        text = str(exc)
        found = re.search(f"{LABEL_MARK}(.*?){LABEL_MARK}", text, re.DOTALL)
        if found is not None:
            raise RescompileError(
                f"{printable(found[1])}, outside 0..{classes - 1} (the model has {classes} classes)"
            ) from None
        if "IteratorGetNext" in text and DECODING.search(text):
            detail = text.split("}} ", 1)[-1].splitlines()[0][:200]
            raise RescompileError(
                f"--strict: an image failed to decode ({printable(detail)}); without --strict it is skipped"
            ) from None
        raise


def check_records(split: RecordSplit, option: str) -> None:
    """Every shard's first record has the two features (one line naming the file and the key)."""
    for shard, kind in zip(split.shards, split.compressions, strict=True):
        try:
            first, *_ = next(iter(_shard_records(shard, kind).take(1)))
            example = tf.train.Example.FromString(first.numpy())
        except Exception as exc:
            message = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise RescompileError(
                f"{option} {shard}: not a TFRecord of tf.train.Example ({message})"
            ) from None
        for key, kind in ((IMAGE_KEY, "bytes_list"), (LABEL_KEY, "int64_list")):
            feature = example.features.feature
            if key not in feature or feature[key].WhichOneof("kind") != kind:
                found = ", ".join(sorted(feature)) or "none"
                raise RescompileError(
                    f"{option} {shard}: records lack the {kind.split('_')[0]} feature {key!r}"
                    f" (found: {found})"
                )


def evaluation_stream(
    split: Split, transform, batch: int, *, classes: int, strict: bool = False
) -> tf.data.Dataset:
    """Every example of a split, in order, through `transform`, batched; an image that fails to
    decode is skipped, as in training (with `strict`, it stops the stream). A TFRecord label
    outside 0..classes-1 fails it: data_errors reports where."""
    if isinstance(split, FileSplit):
        read = _file_examples(split)
        examples = tf.data.Dataset.range(len(split)).map(
            lambda i: transform(*read(i)), num_parallel_calls=tf.data.AUTOTUNE
        )
        if not strict:
            examples = examples.ignore_errors(log_warning=True)
    else:
        records = tf.data.Dataset.from_tensor_slices((list(split.shards), list(split.compressions))).flat_map(
            _shard_records
        )
        examples = records.map(
            lambda record, *where: (*transform(*parse_record(record)), *where),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        if not strict:
            examples = examples.ignore_errors(log_warning=True)
        return examples.batch(batch).map(_checked_labels(classes)).prefetch(tf.data.AUTOTUNE)
    return examples.batch(batch).prefetch(tf.data.AUTOTUNE)


def split_scores(
    model,
    split: Split,
    normalization: Preprocessing,
    *,
    size: int,
    ten_crop: bool = False,
    batch: int = EVAL_BATCH,
):
    """(scores (N, classes), labels (N,)) of every example of a split, streamed: the central crop,
    or with `ten_crop` the softmax averaged over the four corner crops, the center crop and their
    mirror images (He et al. 2015, Sec. 3.4); `batch` images (crops with `ten_crop`) at a time."""
    import numpy as np

    views, classes = 10 if ten_crop else 1, int(model.output_shape[-1])
    transform = ten_crop_transform(normalization, size) if ten_crop else eval_transform(normalization, size)
    scores, labels = [], []
    with data_errors(classes):
        for images, truth in evaluation_stream(split, transform, max(1, batch // views), classes=classes):
            count = int(truth.shape[0])
            predicted = model.predict_on_batch(tf.reshape(images, [count * views, size, size, 3]))
            scores.append(np.asarray(predicted, np.float32).reshape(count, views, -1).mean(axis=1))
            labels.append(truth.numpy())
    return np.concatenate(scores), np.concatenate(labels)
