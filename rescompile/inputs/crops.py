"""ImageNet geometry in tf.data: crop windows drawn statelessly from (seed, image shape), decoded
with `decode_and_crop_jpeg` (a crop never decodes the whole JPEG), resized to the input size.

A window is (top, left, height, width) in the source image's pixels:
- random-resized (Szegedy et al. 2015, as torchvision draws it): area in `scale` of the image,
  log-uniform aspect ratio in `ratio`, first of 10 draws that fits, else the central crop;
- scale jitter (He et al. 2015, Sec. 3.4): the shorter side resized to s in [256, 480], a random
  224 crop, i.e. a square of side shorter x 224 / s at a random place;
- center: the central square of side shorter x fraction (resize 256, crop 224: 0.875);
- ten-crop: the four corners and the center at that size, each also flipped.
"""

from __future__ import annotations

import math

import tensorflow as tf

from rescompile.inputs.augment import Crop
from rescompile.inputs.images import MAX_PIXELS

REFERENCE_CROP = 224.0
"""The crop size the scale-jitter range is stated for (He et al.: 224 out of 256..480)."""

# AlexNet's PCA colour augmentation (Krizhevsky et al. 2012, Sec. 4.1), on 0..1 RGB: ImageNet's
# eigenvalues and eigenvectors as fb.resnet.torch uses them (He et al.'s "standard color augmentation").
EIGENVALUES = (0.2175, 0.0188, 0.0045)
EIGENVECTORS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def _shorter(shape: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.minimum(shape[0], shape[1]), tf.float32)


def random_resized_window(shape: tf.Tensor, crop: Crop, seed: tf.Tensor, tries: int = 10) -> tf.Tensor:
    """torchvision's RandomResizedCrop window: area fraction in crop.scale, aspect ratio
    log-uniform in crop.ratio; the first of `tries` draws that fits, else the central crop."""
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    u = tf.random.stateless_uniform([tries, 4], seed=seed)
    area = height * width * (crop.scale[0] + (crop.scale[1] - crop.scale[0]) * u[:, 0])
    log_low, log_high = math.log(crop.ratio[0]), math.log(crop.ratio[1])
    aspect = tf.exp(log_low + (log_high - log_low) * u[:, 1])
    w = tf.round(tf.sqrt(area * aspect))
    h = tf.round(tf.sqrt(area / aspect))
    fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    chosen = tf.argmax(tf.cast(fits, tf.int32))
    top = tf.floor(u[chosen, 2] * (height - h[chosen] + 1))
    left = tf.floor(u[chosen, 3] * (width - w[chosen] + 1))
    drawn = tf.cast(tf.stack([top, left, h[chosen], w[chosen]]), tf.int32)
    return tf.where(tf.reduce_any(fits), drawn, _central_fallback(height, width, crop))


def _central_fallback(height: tf.Tensor, width: tf.Tensor, crop: Crop) -> tf.Tensor:
    """torchvision's fallback: the whole image, narrowed to the nearest allowed aspect ratio."""
    aspect = width / height
    w = tf.where(
        aspect < crop.ratio[0],
        width,
        tf.where(aspect > crop.ratio[1], tf.round(height * crop.ratio[1]), width),
    )
    h = tf.where(aspect < crop.ratio[0], tf.round(width / crop.ratio[0]), height)
    return tf.cast(tf.stack([tf.floor((height - h) / 2), tf.floor((width - w) / 2), h, w]), tf.int32)


def scale_jitter_window(shape: tf.Tensor, crop: Crop, seed: tf.Tensor) -> tf.Tensor:
    """He et al.'s scale augmentation: shorter side s uniform in crop.sizes, a random 224 crop."""
    u = tf.random.stateless_uniform([3], seed=seed)
    size = tf.floor(crop.sizes[0] + (crop.sizes[1] - crop.sizes[0] + 1) * u[0])
    side = tf.minimum(tf.round(_shorter(shape) * REFERENCE_CROP / size), _shorter(shape))
    top = tf.floor(u[1] * (tf.cast(shape[0], tf.float32) - side + 1))
    left = tf.floor(u[2] * (tf.cast(shape[1], tf.float32) - side + 1))
    return tf.cast(tf.stack([top, left, side, side]), tf.int32)


def center_window(shape: tf.Tensor, fraction: float) -> tf.Tensor:
    """The central square whose side is `fraction` of the shorter side."""
    side = tf.maximum(tf.round(_shorter(shape) * fraction), 1.0)
    top = tf.floor((tf.cast(shape[0], tf.float32) - side) / 2)
    left = tf.floor((tf.cast(shape[1], tf.float32) - side) / 2)
    return tf.cast(tf.stack([top, left, side, side]), tf.int32)


def whole_window(shape: tf.Tensor) -> tf.Tensor:
    """The whole image (resized without cropping, as `predict` reads one)."""
    return tf.stack([0, 0, tf.cast(shape[0], tf.int32), tf.cast(shape[1], tf.int32)])


def ten_crop_windows(shape: tf.Tensor, fraction: float) -> tf.Tensor:
    """(5, 4): the four corners and the center, squares of `fraction` of the shorter side."""
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    side = tf.maximum(tf.round(_shorter(shape) * fraction), 1.0)
    bottom, right = height - side, width - side
    tops = tf.stack([0.0, 0.0, bottom, bottom, tf.floor(bottom / 2)])
    lefts = tf.stack([0.0, right, 0.0, right, tf.floor(right / 2)])
    sides = tf.fill([5], side)
    return tf.cast(tf.stack([tops, lefts, sides, sides], axis=1), tf.int32)


def decode_window(encoded: tf.Tensor, window_of) -> tf.Tensor:
    """The uint8 RGB pixels of `window_of(shape)` in an encoded JPEG or PNG: a JPEG decodes only
    the window (`decode_and_crop_jpeg`), a PNG decodes whole and is sliced. An image whose header
    claims more than MAX_PIXELS is refused before decoding (an error tf.data skips or, with
    --strict, stops on), as `predict` refuses decompression bombs."""

    def jpeg() -> tf.Tensor:
        shape = tf.io.extract_jpeg_shape(encoded)
        with tf.control_dependencies([_not_a_bomb(shape)]):
            window = window_of(shape)
            return tf.io.decode_and_crop_jpeg(encoded, window, channels=3, dct_method="INTEGER_FAST")

    def png() -> tf.Tensor:
        with tf.control_dependencies([_not_a_bomb(_png_shape(encoded))]):
            return crop_window(tf.io.decode_png(encoded, channels=3), window_of)

    return tf.cond(tf.io.is_jpeg(encoded), jpeg, png)


def _png_shape(encoded: tf.Tensor) -> tf.Tensor:
    """(height, width) from a PNG's IHDR chunk (big-endian at bytes 16..23), without decoding."""
    header = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, 16, 8), tf.uint8), tf.int64)
    width = tf.reduce_sum(header[:4] * tf.constant([1 << 24, 1 << 16, 1 << 8, 1], tf.int64))
    height = tf.reduce_sum(header[4:] * tf.constant([1 << 24, 1 << 16, 1 << 8, 1], tf.int64))
    return tf.stack([height, width])


def _not_a_bomb(shape: tf.Tensor) -> tf.Operation:
    pixels = tf.cast(shape[0], tf.int64) * tf.cast(shape[1], tf.int64)
    return tf.debugging.assert_less_equal(
        pixels, tf.constant(MAX_PIXELS, tf.int64), message="image too large (a possible decompression bomb)"
    )


def crop_window(image: tf.Tensor, window_of) -> tf.Tensor:
    """The pixels of `window_of(shape)` in a decoded image."""
    window = window_of(tf.shape(image))
    return tf.slice(image, tf.stack([window[0], window[1], 0]), tf.stack([window[2], window[3], -1]))


def resize(image: tf.Tensor, size: int, antialias: bool = True) -> tf.Tensor:
    """Bilinear, float32 in [0, 255]; with antialiasing (as Pillow resizes for `predict`) for
    evaluation, without it (3x cheaper, as Keras' image loaders) for training crops."""
    resized = tf.image.resize(tf.cast(image, tf.float32), [size, size], antialias=antialias)
    return tf.clip_by_value(resized, 0.0, 255.0)


def lighting(image: tf.Tensor, std: float, seed: tf.Tensor) -> tf.Tensor:
    """AlexNet's PCA lighting noise: add eigvec @ (alpha * eigval), alpha ~ N(0, std), per image."""
    alpha = tf.random.stateless_normal([3], seed=seed, stddev=std)
    shift = tf.linalg.matvec(tf.constant(EIGENVECTORS), alpha * tf.constant(EIGENVALUES)) * 255.0
    return tf.clip_by_value(image + shift, 0.0, 255.0)
