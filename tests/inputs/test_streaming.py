"""Streamed input: image folders (split detection, damaged files), TFRecord shards, ImageNet crops,
exact per-epoch batches, worker shards, and the ImageNet recipes' schedule and initialisation."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rescompile.errors import RescompileError
from rescompile.inputs.sources import evaluation_split, image_is_complete, open_source
from rescompile.inputs.tfrecord import count_records
from rescompile.spec.preprocessing import Preprocessing
from tests.synthetic import PALETTE, write_image_folder

tf = pytest.importorskip("tensorflow")

from rescompile.inputs import crops, streaming  # noqa: E402
from rescompile.inputs.augment import Crop  # noqa: E402
from rescompile.inputs.tfdata import Shard  # noqa: E402
from rescompile.train.inputs import open_inputs  # noqa: E402
from rescompile.train.recipe import load_recipe  # noqa: E402

IDENTITY = Preprocessing(mean=[0.0], std=[1.0])


def _run(recipe, size: int) -> dict:
    """open_inputs' keywords for a run of `recipe` at `size`, seed 0, the default preprocessing."""
    return {"recipe": recipe, "seed": 0, "spec": Preprocessing(), "size": size, "strict": False}


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory) -> Path:
    """train/ (120 JPEGs) and val/ (40) of 10 classes, 48 x 40 pixels."""
    root = tmp_path_factory.mktemp("imagenet")
    write_image_folder(root / "train", 120, seed=1)
    write_image_folder(root / "val", 40, seed=2)
    return root


def write_records(
    folder: Path, prefix: str, shards: int, per_shard: int, seed: int = 0, keys=None
) -> list[Path]:
    """TFRecord shards of tf.train.Example in the TF model garden's layout."""
    rng = np.random.default_rng(seed)
    paths = []
    for shard in range(shards):
        path = folder / f"{prefix}-{shard:05d}-of-{shards:05d}"
        with tf.io.TFRecordWriter(str(path)) as writer:
            for _ in range(per_shard):
                label = int(rng.integers(0, 10))
                pixels = np.clip(PALETTE[label] + rng.normal(0, 20, (40, 48, 3)), 0, 255).astype(np.uint8)
                encoded = io.BytesIO()
                Image.fromarray(pixels).save(encoded, format="JPEG")
                feature = {
                    (keys or {}).get("image", "image/encoded"): tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[encoded.getvalue()])
                    ),
                    "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                }
                writer.write(
                    tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
                )
        paths.append(path)
    return paths


def test_train_and_val_folders_are_splits_and_a_plain_folder_is_split_at_random(imagenet_like: Path) -> None:
    source = open_source(str(imagenet_like), None, 10, seed=0, strict=False)
    assert len(source.train) == 120 and len(source.test) == 40 and "splits found" in source.note
    assert source.class_names == [f"class{i}" for i in range(10)]
    assert all("/val/" in f for f in source.test.files)
    plain = open_source(str(imagenet_like / "train"), None, 10, seed=3, strict=False)
    assert (len(plain.train), len(plain.test)) == (96, 24) and "seeded split" in plain.note
    assert not set(plain.train.files) & set(plain.test.files)
    assert (
        open_source(str(imagenet_like / "train"), None, 10, seed=3, strict=False).test.files
        == plain.test.files
    )
    separate = open_source(str(imagenet_like / "train"), str(imagenet_like / "val"), 10, seed=0, strict=False)
    assert len(separate.train) == 120 and len(separate.test) == 40
    split, names, what = evaluation_split(str(imagenet_like))
    assert len(split) == 40 and names == source.class_names and what.endswith("val")


def test_bad_folders_are_one_line_errors(imagenet_like: Path, tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "b").mkdir()
    (tmp_path / "val" / "a").mkdir(parents=True)
    (tmp_path / "val" / "c").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "a" / "x.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "b" / "x.png")
    with pytest.raises(
        RescompileError, match=r"class folders differ from the training split's \(missing \['b'\]"
    ):
        open_source(str(tmp_path), None, 2, seed=0, strict=False)
    (tmp_path / "val" / "c").rename(tmp_path / "val" / "b")
    with pytest.raises(RescompileError, match="the split is empty"):
        open_source(str(tmp_path), None, 2, seed=0, strict=False)


def test_truncated_images_are_skipped_and_counted_or_refused_with_strict(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", 60, seed=4)
    first = sorted((root / "class3").glob("*.jpg"))[0]
    first.write_bytes(first.read_bytes()[:300])  # a download cut short
    (root / "class5" / "notes.png").write_bytes(b"not an image")
    assert not image_is_complete(str(first)) and image_is_complete(str(sorted(root.rglob("*.jpg"))[-1]))
    source = open_source(str(root), None, 10, seed=0, strict=False)
    assert sorted(source.skipped) == sorted([str(first), str(root / "class5" / "notes.png")])
    assert len(source.train) + len(source.test) == 60 - 1
    with pytest.raises(RescompileError, match=r"--strict: .*(00|notes).* is truncated .*\(1 such files\)"):
        open_source(str(root), None, 10, seed=0, strict=True)


def test_jpeg_crops_decode_only_the_window_and_match_a_full_decode(imagenet_like: Path) -> None:
    encoded = tf.io.read_file(str(sorted(imagenet_like.rglob("*.jpg"))[0]))
    full = tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_FAST").numpy()
    window = tf.constant([5, 7, 20, 30])
    cropped = crops.decode_window(encoded, lambda shape: window).numpy()
    assert cropped.shape == (20, 30, 3)
    assert np.abs(cropped.astype(int) - full[5:25, 7:37].astype(int)).max() <= 2  # iDCT of partial blocks
    png = io.BytesIO()
    Image.fromarray(full).save(png, format="PNG")
    assert np.array_equal(
        crops.decode_window(tf.constant(png.getvalue()), lambda shape: window).numpy(), full[5:25, 7:37]
    )


@pytest.mark.parametrize("shape", [(375, 500), (500, 333), (40, 48), (7, 300)])
def test_random_resized_and_scale_jitter_windows_obey_their_ranges(shape: tuple[int, int]) -> None:
    height, width = shape
    crop = Crop()
    areas, ratios = [], []
    image = tf.constant([height, width, 3])
    resized = tf.function(lambda seed: crops.random_resized_window(image, crop, seed))  # traced once
    jitter = tf.function(lambda seed: crops.scale_jitter_window(image, Crop(kind="scale-jitter"), seed))
    for index in range(200):
        top, left, h, w = resized(tf.constant([index, 1])).numpy()
        assert top >= 0 and top + h <= height and left >= 0 and left + w <= width and h > 0 and w > 0
        areas.append(h * w / (height * width))
        ratios.append(w / h)
        top, left, h, w = jitter(tf.constant([index, 2])).numpy()
        assert h == w and top + h <= height and left + w <= width
        assert round(min(shape) * 224 / 480) - 1 <= h <= round(min(shape) * 224 / 256) + 1
    if min(shape) > 100:  # large images: the draws fit, in the stated ranges
        assert min(areas) > 0.07 and max(areas) <= 1.0 and max(areas) - min(areas) > 0.5
        assert min(ratios) > 0.74 and max(ratios) < 1.35


def test_center_crop_in_tf_data_matches_the_one_predict_uses(imagenet_like: Path) -> None:
    from rescompile.inputs.images import read_image

    path = sorted(imagenet_like.rglob("*.jpg"))[0]
    image = read_image(path, 32, crop=0.875)
    config = Preprocessing(mean=[0.0], std=[1.0], crop=0.875)
    streamed, _ = streaming.eval_transform(config, 32)(tf.io.read_file(str(path)), tf.constant(0))
    assert np.abs(streamed.numpy() - image).mean() < 2.5  # two decoders and two resamplers, one window


def test_ten_crops_are_corners_center_and_their_mirrors(imagenet_like: Path) -> None:
    path = str(sorted(imagenet_like.rglob("*.jpg"))[0])
    views, _ = streaming.ten_crop_transform(IDENTITY.model_copy(update={"crop": 0.5}), 20)(
        tf.io.read_file(path), tf.constant(0)
    )
    full = tf.io.decode_image(tf.io.read_file(path), channels=3).numpy().astype(np.float32)
    assert views.shape == (10, 20, 20, 3)
    assert np.allclose(views[0], full[:20, :20], atol=1e-3) and np.allclose(
        views[3], full[20:40, 28:48], atol=1e-3
    )
    assert np.allclose(views[4], full[10:30, 14:34], atol=1e-3)
    assert np.allclose(views[5:].numpy(), views[:5].numpy()[:, :, ::-1], atol=1e-6)


def _labels_of(dataset, steps: int) -> np.ndarray:
    return np.stack([labels.numpy() for _, labels in dataset.take(steps)])


def test_streamed_epochs_are_exact_on_resume_and_worker_shards_make_the_global_batch(
    imagenet_like: Path,
) -> None:
    recipe = load_recipe("imagenet-goyal", ["batch_size=16"])
    source = open_source(str(imagenet_like), None, 10, seed=0, strict=False)
    size = 24

    def stream(first_epoch: int, shard: Shard | None = None):
        return streaming.streamed_training(
            source.train,
            recipe.augment,
            IDENTITY,
            size=size,
            global_batch=recipe.batch_size,
            seed=5,
            first_epoch=first_epoch,
            shard=shard or Shard(),
            strict=False,
            classes=10,
        )

    steps = 120 // 16
    run = list(stream(0).take(2 * steps))
    resumed = list(stream(1).take(steps))
    for (x, y), (x2, y2) in zip(run[steps:], resumed, strict=True):
        assert np.array_equal(y, y2) and np.array_equal(x, x2)  # pixels too: augmentation is stateless
    assert not np.array_equal(run[0][1], run[steps][1])  # a new order each epoch
    halves = [list(stream(0, Shard(i, 2)).take(steps)) for i in range(2)]
    for step in range(steps):
        together = np.concatenate([halves[0][step][0], halves[1][step][0]])
        alone = run[step][0].numpy()
        assert {a.tobytes() for a in together} == {a.tobytes() for a in alone}
    seen = np.concatenate([np.concatenate([h[s][1] for h in halves]) for s in range(steps)])
    assert len(seen) == steps * 16


def test_tfrecord_shards_are_counted_read_and_checked(tmp_path: Path) -> None:
    write_records(tmp_path, "train", 3, 20, seed=1)
    write_records(tmp_path, "validation", 2, 10, seed=2)
    assert count_records(tmp_path / "train-00001-of-00003") == 20
    source = open_source(str(tmp_path), None, 10, seed=0, strict=False)
    assert (len(source.train), len(source.test), len(source.train.shards)) == (60, 20, 3)
    recipe = load_recipe("imagenet-goyal", ["batch_size=10"])
    inputs = open_inputs(str(tmp_path / "train-*"), None, 10, **_run(recipe, 24))
    tf.random.set_seed(1)  # a global seed set (as train sets one) must not matter
    batches = list(inputs.training(recipe, 0, 0, Shard()).take(7))
    assert all(x.shape == (10, 24, 24, 3) for x, _ in batches[:6])
    again = list(inputs.training(recipe, 0, 0, Shard()).take(7))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    resumed = list(inputs.training(recipe, 0, 1, Shard()).take(6))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(batches[6:], resumed[:1], strict=True))
    epoch0 = np.concatenate([y for _, y in batches[:6]])
    epoch1 = np.concatenate([y for _, y in resumed])
    assert sorted(epoch0) == sorted(epoch1) and not np.array_equal(epoch0, epoch1)  # same images, new order
    assert sum(int(y.shape[0]) for _, y in inputs.test(8)) == 20
    truncated = tmp_path / "bad" / "train-00000-of-00001"
    truncated.parent.mkdir()
    truncated.write_bytes((tmp_path / "train-00000-of-00003").read_bytes()[:-7])
    with pytest.raises(RescompileError, match="truncated TFRecord"):
        count_records(truncated)
    other = tmp_path / "other"
    other.mkdir()
    write_records(other, "train", 1, 3, keys={"image": "image/jpeg"})
    write_records(other, "validation", 1, 3)
    with pytest.raises(
        RescompileError, match=r"train-00000-of-00001: records lack the bytes feature 'image/encoded'"
    ):
        open_inputs(str(other), None, 10, **_run(recipe, 24))
    with pytest.raises(RescompileError, match="TFRecord data cannot hold out"):
        open_inputs(str(tmp_path), None, 10, **_run(load_recipe("paper"), 24))


def test_imagenet_recipes_schedule_and_zero_init() -> None:
    import keras

    from rescompile.keras_backend.model import zero_init_residual
    from rescompile.train.schedule import make_schedule
    from tests.keras_helpers import generated_model

    goyal = load_recipe("imagenet-goyal", ["batch_size=1024"])
    schedule = make_schedule(goyal, steps_per_epoch=100, total_steps=9000)
    lr = [float(schedule(step)) for step in (0, 250, 500, 2999, 3000, 6000, 8000)]
    assert lr == pytest.approx([0.1, 0.25, 0.4, 0.4, 0.04, 0.004, 0.0004])  # 0.1 x 1024/256 = 0.4
    cosine = make_schedule(load_recipe("imagenet-cosine"), steps_per_epoch=100, total_steps=12000)
    assert float(cosine(500)) == pytest.approx(0.1) and float(cosine(12000)) == pytest.approx(0.0, abs=1e-7)
    for name in ("imagenet-paper", "imagenet-goyal", "imagenet-cosine"):
        assert load_recipe(name).validation == 0
    analysis, model = generated_model("specs/resnet18.yaml", 64)
    assert zero_init_residual(model, analysis.graph) == 8
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    outputs = [
        model.get_layer(name).output
        for name in ("conv2_x_block1_out", "conv2_x_block2_add", "conv3_x_block2_add")
    ]
    block_input, block_sum, later_sum = keras.Model(model.input, outputs)(x)
    assert np.allclose(block_sum, block_input, atol=1e-5)  # the block starts as its shortcut
    assert float(np.abs(later_sum).max()) > 0
    preact_analysis, preact = generated_model("specs/cifar/preact_resnet164.yaml")
    with pytest.raises(RescompileError, match="not a BatchNorm"):
        zero_init_residual(preact, preact_analysis.graph)


@pytest.mark.slow
def test_train_on_an_image_folder_then_evaluate_every_image_with_ten_crops(
    imagenet_like: Path, tmp_path: Path
) -> None:
    import json

    from tests.train.test_train import cli

    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "val"):
        (data / split).symlink_to(imagenet_like / split)
    run = tmp_path / "run"
    args = ["specs/cifar/resnet20.yaml", "--data", str(data), "--out", str(run), "--no-tensorboard"]
    args += ["--precision", "float32"]
    sets = ["batch_size=16", "epochs=1", "evaluation.ten_crop=true", "evaluation.crop_fraction=0.9"]
    done = cli("train", *args, "--recipe", "imagenet-goyal", *(a for s in sets for a in ("--set", s)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "splits found: train/ (120 images), val/ (40 images)" in done.stdout
    assert "zero-initialised the last BatchNorm of 9 blocks" in done.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert 0 <= summary["test_top5"] <= 1 and len(summary["ten_crop"]) == 2 and summary["dataset"] == "data"
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "top5" in header and "val_top5" in header
    assert json.loads((run / "preprocess.json").read_text())["crop"] == 0.9
    scored = cli("evaluate", str(run), "--data", str(data))
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert "on 40 images of" in scored.stdout and "top-5" in scored.stdout
    ten = cli("evaluate", str(run), "--data", str(data), "--ten-crop")
    assert ten.returncode == 0 and f"{summary['ten_crop'][0]:.2%}" in ten.stdout, (
        ten.stdout + ten.stderr[-2000:]
    )
    every = cli("evaluate", str(run), "--data", str(imagenet_like / "train"))
    assert "on 120 images of" in every.stdout, every.stderr[-2000:]  # a class folder: all of it, not a fifth


def test_a_damaged_image_named_with_control_characters_is_one_line_with_strict(tmp_path: Path) -> None:
    from tests.train.test_train import cli

    root = write_image_folder(tmp_path / "data", 30, seed=5)
    bad = root / "class1" / "cut\nshort\x1b[31m.jpg"
    bad.write_bytes(sorted(root.rglob("*.jpg"))[0].read_bytes()[:200])
    run = tmp_path / "run"
    done = cli("train", "specs/cifar/resnet20.yaml", "--data", str(root), "--strict", "--out", str(run))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "cut\\nshort\\x1b[31m.jpg is truncated" in done.stderr, (
        done.stderr
    )
    assert not run.exists()  # refused before anything is written


def test_decompression_bombs_and_fifos_are_refused_not_decoded_or_waited_on(tmp_path: Path) -> None:
    small = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 10, 10)).save(small, format="JPEG")
    jpeg = bytearray(small.getvalue())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") * 2  # the header claims 30000 x 30000
    png = io.BytesIO()
    Image.new("RGB", (16, 12)).save(png, format="PNG")
    png_bytes = bytearray(png.getvalue())
    png_bytes[16:24] = (30000).to_bytes(4, "big") * 2
    for encoded in (bytes(jpeg), bytes(png_bytes)):
        with pytest.raises(tf.errors.InvalidArgumentError, match="decompression bomb"):
            crops.decode_window(tf.constant(encoded), crops.whole_window)
    root = write_image_folder(tmp_path / "data", 30, seed=6)
    os.mkfifo(root / "class2" / "pipe.jpg")
    source = open_source(str(root), None, 10, seed=0, strict=False)
    assert source.skipped == [str(root / "class2" / "pipe.jpg")]
