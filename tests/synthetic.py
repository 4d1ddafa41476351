"""Small learnable image data the tests generate themselves (no downloads)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

# One colour per class, far apart in RGB, so a few epochs learn the task.
PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [128, 128, 128],
        [0, 0, 0],
    ],
    dtype=np.float32,
)


def colour_images(n: int, seed: int = 0, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """`n` uint8 images (N, size, size, 3): a class colour plus noise and a random dark square."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = PALETTE[labels][:, None, None, :] + rng.normal(0, 25, (n, size, size, 3))
    for image in images:
        top, left = rng.integers(0, size // 2, 2)
        image[top : top + size // 4, left : left + size // 4] *= 0.3
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_cifar_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """Write images in CIFAR-10's python format (a pickled dict of bytes keys)."""
    batch = {
        b"batch_label": b"synthetic",
        b"labels": [int(label) for label in labels],
        b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
        b"filenames": [f"img{i}.png".encode() for i in range(len(images))],
    }
    with path.open("wb") as handle:
        pickle.dump(batch, handle)
    return path


def write_cifar_tarball(path: Path, train: int = 400, test: int = 100, seed: int = 0) -> Path:
    """A CIFAR-10-format .tar.gz (cifar-10-batches-py/: 5 data batches, test_batch, batches.meta)."""
    import tarfile
    import tempfile

    images, labels = colour_images(train + test, seed=seed)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "cifar-10-batches-py"
        folder.mkdir()
        parts = np.array_split(np.arange(train), 5)
        for index, part in enumerate(parts, start=1):
            write_cifar_batch(folder / f"data_batch_{index}", images[part], labels[part])
        write_cifar_batch(folder / "test_batch", images[train:], labels[train:])
        names = [f"colour{i}".encode() for i in range(10)]
        with (folder / "batches.meta").open("wb") as handle:
            pickle.dump({b"label_names": names, b"num_vis": 3072}, handle)
        with tarfile.open(path, "w:gz") as archive:
            archive.add(folder, arcname="cifar-10-batches-py")
    return path


def write_image_folder(
    root: Path,
    count: int,
    size: tuple[int, int] = (48, 40),
    seed: int = 0,
    suffix: str = ".jpg",
    classes: int = 10,
) -> Path:
    """`count` colour images (width, height = size) in one sub-folder per class (class0..),
    as JPEG or PNG; the class colour is learnable at any crop."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, count)
    for index, label in enumerate(labels):
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = PALETTE[label] + rng.normal(0, 20, (size[1], size[0], 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            folder / f"{index:05d}{suffix}", quality=90
        )
    for label in range(classes):
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
    return root
