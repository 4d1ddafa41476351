"""Training throughput, side by side in one process: CIFAR ResNet-20, batch 128, SGD.

ours:    rescompile's tf.data pipeline (stateless pad-crop + flip, parallel map, prefetch) + fit
port:    the Keras CIFAR example as a user ports it to Keras 3: numpy arrays into model.fit, shifts
         and flips as keras.layers.RandomTranslation / RandomFlip in front of the model
Both train the same generated model on the same synthetic CIFAR-shaped data (no downloads);
img/s is the median over the timed epochs (the first, which traces, is not timed).

Run: python benchmarks/bench_train.py [--images N] [--epochs E]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
from results import record

from rescompile.pipeline import fit_normalization, training_dataset
from rescompile.recipe import Augment
from tests.keras_helpers import generated_model
from tests.synthetic import colour_images

BATCH = 128


class EpochTimer(keras.callbacks.Callback):
    """Seconds per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self.started)
        print(f"    epoch {epoch + 1}: {self.seconds[-1]:.1f} s", file=sys.stderr, flush=True)


def compiled(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def ours(x: np.ndarray, y: np.ndarray, epochs: int, spec_preprocess: dict) -> float:
    _, model = generated_model("specs/cifar/resnet20.yaml")
    normalization = fit_normalization(x, "per-pixel-mean", spec_preprocess)
    data = training_dataset(x, y, BATCH, Augment(pad_crop=4, flip=True), normalization, seed=0, first_epoch=0)
    timer = EpochTimer()
    compiled(model).fit(data, epochs=epochs, steps_per_epoch=len(x) // BATCH, callbacks=[timer], verbose=0)
    return len(x) // BATCH * BATCH / float(np.median(timer.seconds[1:]))


def keras_example_port(x: np.ndarray, y: np.ndarray, epochs: int) -> float:
    _, backbone = generated_model("specs/cifar/resnet20.yaml")
    x_float = x.astype("float32") / 255
    x_float -= x_float.mean(axis=0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest"),
            keras.layers.RandomFlip("horizontal"),
            backbone,
        ]
    )
    timer = EpochTimer()
    compiled(model).fit(
        x_float, y, batch_size=BATCH, epochs=epochs, shuffle=True, callbacks=[timer], verbose=0
    )
    return len(x) / float(np.median(timer.seconds[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=5120)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    x, y = colour_images(args.images, seed=0)
    spec_preprocess = {"color": "RGB", "scale": 1 / 255, "mean": "per-pixel", "std": [1.0, 1.0, 1.0]}
    print("  ours:", file=sys.stderr)
    ours_speed = ours(x, y, args.epochs, spec_preprocess)
    print("  Keras example port:", file=sys.stderr)
    port_speed = keras_example_port(x, y, args.epochs)
    ratio = ours_speed / port_speed
    body = (
        f"CIFAR ResNet-20, batch {BATCH}, {args.images} synthetic 32x32 images, "
        f"median of epochs 2..{args.epochs}.\n\n"
        "| pipeline | training img/s |\n|---|---:|\n"
        f"| rescompile tf.data (pad-crop + flip, stateless, parallel, prefetch) | {ours_speed:.1f} |\n"
        f"| Keras example ported to Keras 3 (numpy + RandomTranslation/RandomFlip) | {port_speed:.1f} |\n\n"
        f"Ratio ours / port: **{ratio:.2f}x** (goal ≥ 2x: {'met' if ratio >= 2 else 'not met'})."
    )
    print(body)
    record(
        "Training throughput: our pipeline vs the Keras example's", "python benchmarks/bench_train.py", body
    )


if __name__ == "__main__":
    main()
