"""GZIP-compressed TFRecord shards: detected from their first bytes, counted without TensorFlow,
read by tf.data beside plain shards of the same split, checked for their features, and damaged
ones refused in one line naming the file."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rescompile.errors import RescompileError
from rescompile.inputs.sources import open_source
from rescompile.inputs.tfrecord import compression, count_records
from rescompile.spec.preprocessing import Preprocessing
from tests.synthetic import PALETTE

CLASSES = 1000  # labels are the records' ids, unique within the data


def write_shard(path: Path, ids: range, gzip: bool, image_key: str = "image/encoded") -> Path:
    """A TFRecord shard of tiny JPEGs in the TF model garden's layout, each labelled with its id."""
    tf = pytest.importorskip("tensorflow")
    with tf.io.TFRecordWriter(str(path), options="GZIP" if gzip else None) as writer:
        for i in ids:
            encoded = io.BytesIO()
            Image.new("RGB", (12, 10), tuple(int(c) for c in PALETTE[i % 10])).save(encoded, format="JPEG")
            feature = {
                image_key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded.getvalue()])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return path


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """train-*: 2 plain and 2 GZIP shards (ids 0-47); validation-*: one of each (ids 100-121)."""
    for shard, gzip in enumerate((False, True, True, False)):
        write_shard(tmp_path / f"train-{shard:05d}-of-00004", range(12 * shard, 12 * shard + 12), gzip)
    write_shard(tmp_path / "validation-00000-of-00002", range(100, 110), gzip=True)
    write_shard(tmp_path / "validation-00001-of-00002", range(110, 122), gzip=False)
    return tmp_path


def test_plain_and_gzip_shards_are_told_apart_by_their_bytes_and_counted(mixed: Path) -> None:
    plain, packed = mixed / "train-00000-of-00004", mixed / "train-00001-of-00004"
    assert packed.read_bytes()[:2] == b"\x1f\x8b" and plain.read_bytes()[:2] != b"\x1f\x8b"
    assert (compression(plain), compression(packed)) == ("", "GZIP")
    assert count_records(plain) == count_records(packed) == 12
    assert count_records(mixed / "validation-00000-of-00002") == 10
    # a plain record 0x8b1f bytes long starts with the gzip magic: its header's checksum says plain
    look_alike = mixed / "other" / "look-alike.tfrecord"
    look_alike.parent.mkdir()
    tf = pytest.importorskip("tensorflow")
    with tf.io.TFRecordWriter(str(look_alike)) as writer:
        writer.write(b"x" * 0x8B1F)
        writer.write(b"y")
    assert look_alike.read_bytes()[:2] == b"\x1f\x8b"
    assert compression(look_alike) == "" and count_records(look_alike) == 2
    source = open_source(str(mixed), None, CLASSES, seed=0, strict=False)
    assert (len(source.train), len(source.test)) == (48, 22)


def test_a_mixed_split_streams_every_record_exactly_once(mixed: Path) -> None:
    pytest.importorskip("tensorflow")
    from rescompile.inputs.tfdata import Shard
    from rescompile.train.inputs import open_inputs
    from rescompile.train.recipe import load_recipe

    recipe = load_recipe("imagenet-goyal", ["batch_size=8"])
    inputs = open_inputs(
        str(mixed / "train-*"),
        None,
        CLASSES,
        recipe=recipe,
        seed=0,
        spec=Preprocessing(),
        size=16,
        strict=False,
    )
    tested = np.concatenate([labels.numpy() for _, labels in inputs.test(5)])
    assert tested.tolist() == list(range(100, 122))  # in shard order, nothing lost or repeated
    epoch = np.concatenate([labels.numpy() for _, labels in inputs.training(recipe, 3, 0, Shard()).take(6)])
    assert sorted(epoch.tolist()) == list(range(48))
    workers = [  # two workers, each reading its own shards: a plain and a GZIP one
        np.concatenate([y.numpy() for _, y in inputs.training(recipe, 3, 0, Shard(i, 2)).take(6)])
        for i in range(2)
    ]
    assert sorted(workers[0].tolist()) == [*range(0, 12), *range(24, 36)]  # shards 0 and 2
    assert sorted(workers[1].tolist()) == [*range(12, 24), *range(36, 48)]  # shards 1 and 3


def test_a_gzip_shard_without_the_image_feature_is_one_line_naming_it(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from rescompile.train.inputs import open_inputs
    from rescompile.train.recipe import load_recipe

    write_shard(tmp_path / "train-00000-of-00001", range(4), gzip=True, image_key="image/jpeg")
    write_shard(tmp_path / "validation-00000-of-00001", range(4), gzip=True)
    with pytest.raises(RescompileError) as error:
        open_inputs(
            str(tmp_path),
            None,
            CLASSES,
            recipe=load_recipe("imagenet-goyal"),
            seed=0,
            spec=Preprocessing(),
            size=16,
            strict=False,
        )
    message = str(error.value)
    assert "train-00000-of-00001: records lack the bytes feature 'image/encoded'" in message
    assert "\n" not in message


def test_truncated_gzip_and_zlib_shards_are_one_line_errors_naming_them(mixed: Path) -> None:
    whole = (mixed / "train-00001-of-00004").read_bytes()
    bad = mixed / "bad"
    bad.mkdir()
    for cut in (len(whole) // 2, len(whole) - 3, 5):
        truncated = bad / "train-00000-of-00001"
        truncated.write_bytes(whole[:cut])
        with pytest.raises(RescompileError) as error:
            open_source(str(bad / "train-*"), str(mixed / "validation-*"), CLASSES, seed=0, strict=False)
        assert str(error.value) == f"{truncated}: truncated GZIP TFRecord (the stream ends early)"
    tf = pytest.importorskip("tensorflow")
    zlib_shard = bad / "train-00000-of-00001"
    with tf.io.TFRecordWriter(str(zlib_shard), options="ZLIB") as writer:
        writer.write(b"record")
    with pytest.raises(RescompileError, match=r"^\S*train-00000-of-00001: a ZLIB-compressed TFRecord"):
        count_records(zlib_shard)


def test_the_tfrecord_reader_does_not_import_tensorflow() -> None:
    code = (
        "import sys, rescompile.inputs.tfrecord, rescompile.inputs.sources;"
        " print('tensorflow' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert done.stdout.strip() == "False"


def test_evaluate_names_a_shard_without_the_image_feature(tmp_path: Path) -> None:
    """`evaluate` checks the shards it is given as `train` does, before any scoring."""
    pytest.importorskip("keras")
    from typer.testing import CliRunner

    from rescompile.cli import app

    runner = CliRunner()
    built = runner.invoke(app, ["build", "resnet18", "--input-size", "32", "--out", str(tmp_path)])
    assert built.exit_code == 0, built.output
    shard = write_shard(tmp_path / "validation-00000-of-00001", range(4), gzip=True, image_key="image/jpeg")
    done = runner.invoke(
        app, ["evaluate", str(tmp_path / "resnet18.keras"), "--data", str(tmp_path / "validation-*")]
    )
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(shard) in lines[0] and "'image/encoded'" in lines[0], done.stderr
    assert not (tmp_path / "confusion.png").exists()
