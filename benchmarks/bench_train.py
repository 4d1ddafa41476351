"""Training throughput, side by side: CIFAR ResNet-20, batch 128, SGD, same synthetic data.

port:       the Keras CIFAR example as a user ports it to Keras 3: numpy arrays into model.fit,
            shifts and flips as keras.layers.RandomTranslation / RandomFlip in front of the model
ours:       rescompile's tf.data pipeline (stateless pad-crop + flip, parallel map, prefetch) + fit,
            as `rescompile train --precision float32 --no-jit` runs it
ours-xla:   the same with `--jit` (the training step XLA-compiled)
ours-bf16:  the same with `--precision mixed_bfloat16`
ours-fp16:  the same with `--precision mixed_float16`
model-only: the model on batches already in memory, no augmentation: the ceiling for any pipeline
arrays-tf:  the model on numpy arrays through model.fit, no augmentation, on TensorFlow
arrays-torch: the same on KERAS_BACKEND=torch (Keras 3 runs the generated module as a torch module;
            left out where torch is not installed)

Each variant runs in its own process (a second model trained in one process runs slower, which
would favour whichever goes first); the order rotates between rounds and img/s is the median over
rounds of each run's median epoch (the first epoch, which traces, is not timed).

Run: python benchmarks/bench_train.py [--images N] [--epochs E] [--rounds R]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
from peak import fma_gflops
from results import record

from rescompile.analysis.analyze import analyze
from rescompile.inputs.augment import Augment
from rescompile.inputs.tfdata import array_loader, fit_normalization, training_dataset
from rescompile.spec.preprocessing import Preprocessing
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


def compiled(model, jit: bool = False):
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit,
    )
    return model


def images_per_second(model, epochs: int, images_per_epoch: int, jit: bool = False, **data) -> float:
    """Median training img/s over epochs 2..N of `model.fit(**data)` (the first epoch traces)."""
    timer = EpochTimer()
    compiled(model, jit).fit(epochs=epochs, callbacks=[timer], verbose=0, **data)
    return images_per_epoch / float(np.median(timer.seconds[1:]))


def from_dataset(model, dataset, epochs: int, images: int, jit: bool = False) -> float:
    """img/s of training on an endless dataset of full batches, `images` per epoch."""
    steps = images // BATCH
    return images_per_second(
        model, epochs, steps * BATCH, jit, x=dataset, steps_per_epoch=steps, shuffle=False
    )


def ours(x: np.ndarray, y: np.ndarray, epochs: int, precision: str, jit: bool) -> float:
    """img/s of rescompile's pipeline in PRECISION, XLA-compiled with JIT: each row states both, as
    `rescompile train` would otherwise pick them for the machine."""
    keras.mixed_precision.set_global_policy(precision)
    _, model = generated_model("specs/cifar/resnet20.yaml")
    normalization = fit_normalization(x, "per-pixel-mean", SPEC_PREPROCESS)
    load = array_loader(x, y, Augment(pad_crop=4, flip=True), normalization=normalization)
    data = training_dataset(len(x), load, BATCH, seed=0, first_epoch=0)
    return from_dataset(model, data, epochs, len(x), jit)


def model_only(x: np.ndarray, y: np.ndarray, epochs: int) -> float:
    import tensorflow as tf

    _, model = generated_model("specs/cifar/resnet20.yaml")
    batches = tf.data.Dataset.from_tensor_slices((x.astype("float32") / 255, y)).batch(BATCH).cache()
    return from_dataset(model, batches.repeat().prefetch(4), epochs, len(x))


def on_arrays(x: np.ndarray, y: np.ndarray, epochs: int) -> float:
    """The model on in-memory arrays through model.fit, no augmentation: the same code on every
    Keras backend, so the arrays rows compare backends alone."""
    _, model = generated_model("specs/cifar/resnet20.yaml")
    return images_per_second(model, epochs, len(x), x=x.astype("float32") / 255, y=y, batch_size=BATCH)


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
    return images_per_second(model, epochs, len(x), x=x_float, y=y, batch_size=BATCH, shuffle=True)


SPEC_PREPROCESS = Preprocessing(color="RGB", scale=1 / 255, mean="per-pixel", std=[1.0, 1.0, 1.0])
VARIANTS = {
    "port": ("Keras example ported to Keras 3 (numpy + RandomTranslation/RandomFlip)", keras_example_port),
    "ours": (
        "rescompile tf.data pipeline, float32",
        lambda x, y, epochs: ours(x, y, epochs, "float32", jit=False),
    ),
    "ours-xla": (
        "rescompile tf.data pipeline, --jit (XLA)",
        lambda x, y, epochs: ours(x, y, epochs, "float32", jit=True),
    ),
    "ours-bf16": (
        "rescompile tf.data pipeline, --precision mixed_bfloat16",
        lambda x, y, epochs: ours(x, y, epochs, "mixed_bfloat16", jit=False),
    ),
    "ours-fp16": (
        "rescompile tf.data pipeline, --precision mixed_float16",
        lambda x, y, epochs: ours(x, y, epochs, "mixed_float16", jit=False),
    ),
    "model-only": ("model alone on in-memory batches, no augmentation (ceiling)", model_only),
    "arrays-tf": ("model alone on numpy arrays, model.fit, TensorFlow backend", on_arrays),
    "arrays-torch": ("model alone on numpy arrays, model.fit, KERAS_BACKEND=torch", on_arrays),
}
BACKENDS = {"arrays-torch": "torch"}
"""The Keras backend of a variant's process (TensorFlow where not named)."""


def available(name: str) -> bool:
    """Whether the variant's Keras backend is installed."""
    return importlib.util.find_spec(BACKENDS.get(name, "tensorflow")) is not None


def run_variant(name: str, images: int, epochs: int) -> float:
    """img/s of one variant, measured in a fresh process."""
    argv = [sys.executable, __file__, "--variant", name, "--images", str(images), "--epochs", str(epochs)]
    env = {**os.environ, "KERAS_BACKEND": BACKENDS.get(name, "tensorflow")}
    done = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True, env=env)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=5120)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variant", choices=VARIANTS, help="measure one variant here and print its img/s")
    args = parser.parse_args()
    if args.variant:
        x, y = colour_images(args.images, seed=0)
        print(VARIANTS[args.variant][1](x, y, args.epochs))
        return
    names = [name for name in VARIANTS if available(name)]
    speeds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            print(f"  round {round_index + 1}/{args.rounds}, {name}:", file=sys.stderr, flush=True)
            speeds[name].append(run_variant(name, args.images, args.epochs))
    medians = {name: float(np.median(values)) for name, values in speeds.items()}
    port = medians["port"]
    peak = fma_gflops()
    # a training step costs ~3 forward passes (forward, input gradients, weight gradients)
    gflop_per_image = 3 * 2 * analyze("specs/cifar/resnet20.yaml").cost.macs / 1e9
    body = (
        f"CIFAR ResNet-20, batch {BATCH}, {args.images} synthetic 32x32 images; each variant in its "
        f"own process, order rotated, median over {args.rounds} rounds of the median of epochs "
        f"2..{args.epochs}.\n\n"
        f"Training costs ~{gflop_per_image:.3f} GFLOP/image (3 x 2 x the forward multiply-adds); FMA peak"
        f" {peak or 'n/a'} GFLOP/s.\n\n"
        "| variant | training img/s | runs | vs port | GFLOP/s | of FMA peak |\n"
        "|---|---:|---|---:|---:|---:|\n"
        + "".join(
            f"| {VARIANTS[name][0]} | {medians[name]:.1f} | {', '.join(f'{v:.0f}' for v in speeds[name])} "
            f"| {medians[name] / port:.2f}x | {medians[name] * gflop_per_image:.1f} "
            f"| {medians[name] * gflop_per_image / peak:.0%} |\n"
            if peak
            else f"| {VARIANTS[name][0]} | {medians[name]:.1f} | - | {medians[name] / port:.2f}x | - | - |\n"
            for name in names
        )
        + (
            "\nKeras fit on arrays, torch backend / TensorFlow:"
            f" **{medians['arrays-torch'] / medians['arrays-tf']:.2f}x**."
            if "arrays-torch" in medians
            else "\nNo torch backend row: torch is not installed."
        )
        + f"\nRatio ours / port: **{medians['ours'] / port:.2f}x** (goal ≥ 2x: "
        f"{'met' if medians['ours'] >= 2 * port else 'not met'}); the ceiling for any input pipeline "
        f"with this model is {medians['model-only'] / port:.2f}x."
    )
    print(body)
    record(
        "Training throughput: our pipeline vs the Keras example's", "python benchmarks/bench_train.py", body
    )


if __name__ == "__main__":
    main()
