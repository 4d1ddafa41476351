"""The input pipeline alone, side by side: a synthetic folder of 500x375 JPEGs (ImageNet's typical
size) read, decoded, cropped to 224, flipped and normalised, as training batches of 64.

ours:  rescompile's streamed pipeline (`rescompile train --data FOLDER`, recipe imagenet-goyal):
       file list, `decode_and_crop_jpeg` of a random-resized window, antialiased resize, flip,
       lighting noise, stateless per-example seeds, parallel map, prefetch
keras: keras.utils.image_dataset_from_directory at 256x256, then keras.layers.RandomCrop(224) and
       RandomFlip (what Keras offers for the same job), normalised, prefetch

Each variant runs in its own process, order rotated between rounds; img/s is the median over
rounds (the first 5 batches, which trace, are not timed). Peak RSS of our pipeline over one epoch
of 2,000 and of 20,000 images (hard links to the same pool of JPEGs) must stay flat.

Run: python benchmarks/bench_input.py [--images N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BATCH = 64
SIZE = 224
POOL = 200  # distinct JPEGs; the folder links to them


def make_folder(root: Path, images: int, classes: int = 10) -> Path:
    """`images` 500x375 JPEGs in `classes` class folders (hard links to a pool of distinct ones)."""
    from PIL import Image

    pool = root / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(POOL):
        path = pool / f"{index}.jpg"
        if not path.exists():
            pixels = rng.integers(0, 256, (375 // 25, 500 // 25, 3), dtype=np.uint8)
            Image.fromarray(pixels).resize((500, 375), Image.Resampling.BICUBIC).save(path, quality=90)
    folder = root / f"train{images}"
    if not folder.exists():
        for index in range(images):
            target = folder / f"class{index % classes}" / f"{index:06d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(pool / f"{index % POOL}.jpg", target)
    return folder


def ours(folder: Path):
    from rescompile.inputs.sources import open_source
    from rescompile.inputs.streaming import streamed_training
    from rescompile.inputs.tfdata import Shard
    from rescompile.spec.preprocessing import Preprocessing
    from rescompile.train.recipe import load_recipe

    recipe = load_recipe("imagenet-goyal", [f"batch_size={BATCH}"])
    source = open_source(str(folder), None, 10, seed=0, strict=False, test_fraction=0.01)
    normalization = Preprocessing(scale=1 / 255, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    training = streamed_training(
        source.train,
        recipe.augment,
        normalization.as_float32(),
        size=SIZE,
        global_batch=recipe.batch_size,
        seed=0,
        first_epoch=0,
        shard=Shard(),
        strict=False,
        classes=10,
    )
    return training, len(source.train)


def keras_directory(folder: Path):
    import keras
    import tensorflow as tf

    data = keras.utils.image_dataset_from_directory(
        folder, image_size=(256, 256), batch_size=BATCH, shuffle=True, seed=0, verbose=False
    )
    augment = keras.Sequential([keras.layers.RandomCrop(SIZE, SIZE), keras.layers.RandomFlip("horizontal")])
    mean, std = tf.constant([0.485, 0.456, 0.406]) * 255, tf.constant([0.229, 0.224, 0.225]) * 255
    data = data.map(
        lambda x, y: ((augment(x, training=True) - mean) / std, y), num_parallel_calls=tf.data.AUTOTUNE
    )
    return data.repeat().prefetch(tf.data.AUTOTUNE), len(data) * BATCH


VARIANTS = {
    "ours": (
        "rescompile streamed pipeline (decode_and_crop_jpeg, random-resized crop, flip, lighting)",
        ours,
    ),
    "keras": ("keras.utils.image_dataset_from_directory 256 + RandomCrop 224 + RandomFlip", keras_directory),
}


def measure(name: str, folder: Path, batches: int) -> tuple[float, float]:
    """(img/s after 5 warm-up batches, peak RSS in MiB) of iterating `batches` batches."""
    data, _ = VARIANTS[name][1](folder)
    iterator = iter(data)
    for _ in range(5):
        next(iterator)
    start = time.perf_counter()
    for index in range(batches):
        next(iterator)
        if index % 20 == 0:
            print(f"    {name}: batch {index}/{batches}", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    return batches * BATCH / seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(name: str, folder: Path, batches: int) -> tuple[float, float]:
    argv = [sys.executable, __file__, "--variant", name, "--folder", str(folder), "--batches", str(batches)]
    done = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True)
    speed, rss = done.stdout.strip().splitlines()[-1].split()
    return float(speed), float(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--batches", type=int, default=25)
    args = parser.parse_args()
    if args.variant:
        print(*measure(args.variant, args.folder, args.batches))
        return
    from results import record

    root = Path(tempfile.mkdtemp(prefix="bench_input_"))
    small, large = make_folder(root, args.images), make_folder(root, 10 * args.images)
    speeds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for round_index in range(args.rounds):
        for name in names[round_index % 2 :] + names[: round_index % 2]:
            print(f"  round {round_index + 1}/{args.rounds}, {name}:", file=sys.stderr, flush=True)
            speeds[name].append(run_variant(name, small, args.batches)[0])
    epoch = lambda images: int(images * 0.99) // BATCH  # noqa: E731 - one full epoch of ours
    _, rss_small = run_variant("ours", small, epoch(args.images) - 5)
    _, rss_large = run_variant("ours", large, epoch(10 * args.images) - 5)
    medians = {name: float(np.median(values)) for name, values in speeds.items()}
    ratio = medians["ours"] / medians["keras"]
    growth = rss_large / rss_small - 1
    body = (
        f"{args.images} synthetic 500x375 JPEGs in 10 class folders, batches of {BATCH} at {SIZE} px; "
        f"each variant in its own process, order rotated, median over {args.rounds} rounds of "
        f"{args.batches} batches after 5 warm-up batches.\n\n"
        "| pipeline | img/s | runs | vs keras |\n|---|---:|---|---:|\n"
        + "".join(
            f"| {VARIANTS[name][0]} | {medians[name]:.0f} | {', '.join(f'{v:.0f}' for v in speeds[name])} "
            f"| {medians[name] / medians['keras']:.2f}x |\n"
            for name in names
        )
        + f"\nRatio ours / keras: **{ratio:.2f}x** (goal ≥ 1.5x: {'met' if ratio >= 1.5 else 'not met'}).\n\n"
        f"Peak RSS over one epoch of ours: {rss_small:.0f} MiB at {args.images} images,"
        f" {rss_large:.0f} MiB at {10 * args.images} images: growth **{growth:+.1%}**"
        f" (goal < 10%: {'met' if growth < 0.1 else 'not met'})."
    )
    print(body)
    record(
        "Input pipeline: streamed image folders vs image_dataset_from_directory",
        "python benchmarks/bench_input.py",
        body,
    )


if __name__ == "__main__":
    main()
