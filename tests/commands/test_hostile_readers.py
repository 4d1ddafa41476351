"""Every reader of a user file bounded (issue 19): hostile .keras archives, compressed data and
TFRecords give one line and exit 2, in bounded memory and time. Bombs are built by streaming
zeros at run time, never stored."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from rescompile.errors import RescompileError
from rescompile.inputs.datasets import BATCH_BYTES, MAX_ARCHIVE_BYTES, MAX_ARCHIVE_MEMBERS, load_cifar
from rescompile.inputs.tfrecord import GZIP_FLOOR, MAX_GZIP_EXPANSION, count_records
from rescompile.keras_backend.archive import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_DEPTH,
    MAX_LAYERS,
    RECURSION_PER_LAYER,
    keras_load_recursion_limit,
)
from tests.commands.test_hostile_inputs import CORPUS, assert_one_line_exit_2, onnx_model

MiB = 2**20


_MEASURED = (
    "import os, resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(os.environ['PEAK_FILE'], 'w').write(str(peak))\n"
    "sys.exit(code)\n"
)


def cli_peak(*args: str, timeout: float = 180) -> tuple[subprocess.CompletedProcess, int]:
    """Run the CLI in a child process: its result and its own peak RSS (bytes), measured by a
    wrapper process whose only child it is (this process's RUSAGE_CHILDREN would hold the
    largest peak of every child any earlier test ran)."""
    with tempfile.TemporaryDirectory() as scratch:
        peak_file = Path(scratch) / "peak"
        done = subprocess.run(
            [sys.executable, "-c", _MEASURED, sys.executable, "-m", "rescompile", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PEAK_FILE": str(peak_file)},
        )
        return done, int(peak_file.read_text()) * 1024


def keras_zip(path: Path, config: str | bytes, **members: bytes) -> Path:
    """A .keras-shaped zip archive: config.json, metadata.json, weights and any extra members."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", config)
        archive.writestr("metadata.json", '{"keras_version": "3.0.0"}')
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def functional(layers: int) -> str:
    """A functional model config with `layers` layers (only their count matters here)."""
    entries = [{"class_name": "ReLU", "name": f"relu{i}", "config": {}} for i in range(layers)]
    return json.dumps({"class_name": "Functional", "config": {"name": "m", "layers": entries}})


def refused(path: Path) -> str:
    with pytest.raises(RescompileError) as caught:
        keras_load_recursion_limit(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message[len(f"{path}: ") :]


# --- class 1: .keras nesting, layer count, names, truncation --------------------------------


def test_recursion_limit_follows_the_layers_in_the_file(tmp_path: Path) -> None:
    default = sys.getrecursionlimit()
    assert keras_load_recursion_limit(keras_zip(tmp_path / "small.keras", functional(3))) == default
    deep = keras_load_recursion_limit(keras_zip(tmp_path / "deep.keras", functional(4208)))
    assert deep == RECURSION_PER_LAYER * 4208
    nested = {"class_name": "Functional", "config": {"layers": [json.loads(functional(100)), {}]}}
    limit = keras_load_recursion_limit(keras_zip(tmp_path / "nested.keras", json.dumps(nested)))
    assert limit == max(default, RECURSION_PER_LAYER * 102)
    assert sys.getrecursionlimit() == default


def test_deeply_nested_and_oversized_configs_are_one_line(tmp_path: Path) -> None:
    deep = keras_zip(tmp_path / "deep.keras", '{"config": ' + "[" * 99_000 + "]" * 99_000 + "}")
    assert refused(deep) == f"config.json nests deeper than {MAX_CONFIG_DEPTH} levels"
    many = keras_zip(tmp_path / "many.keras", functional(MAX_LAYERS + 1))
    assert (
        refused(many)
        == f"config.json describes {MAX_LAYERS + 1:,} layers, more than 5,000 (ResNet-1202 has 4,208)"
    )
    big = keras_zip(tmp_path / "big.keras", b" " * (MAX_CONFIG_BYTES + 10))
    assert refused(big) == f"config.json is larger than {MAX_CONFIG_BYTES:,} bytes, more than a Keras config"
    assert refused(keras_zip(tmp_path / "list.keras", "[1, 2]")) == "config.json is not a Keras model config"
    assert refused(keras_zip(tmp_path / "bad.keras", "{oops")).startswith("config.json is not valid JSON (")


def test_truncated_and_foreign_archives_are_one_line(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    whole = keras_zip(tmp_path / "whole.keras", functional(3)).read_bytes()
    cut = tmp_path / "cut.keras"
    cut.write_bytes(whole[: len(whole) // 2])
    assert refused(cut) == "not a readable .keras file (truncated, or not a zip archive)"
    assert refused(tmp_path / "missing.keras") == "file not found"
    assert refused(tmp_path) == "not a regular file"
    for name in ("../evil.txt", "/etc/evil", "assets/../../evil", "..\\evil", "C:evil"):
        path = keras_zip(tmp_path / "escape.keras", functional(3), **{name: b"x"})
        assert refused(path) == f"archive member '{name}' points outside the archive"
    with zipfile.ZipFile(tmp_path / "bare.keras", "w") as archive:
        archive.writestr("model.weights.h5", b"")
    assert refused(tmp_path / "bare.keras") == "no config.json in the archive (not a Keras model file)"
    assert capfd.readouterr().err == ""  # no zipfile warnings


def test_deep_config_through_the_cli_is_one_line_not_a_crash(tmp_path: Path) -> None:
    """Loading under a raised recursion limit once turned this file into SIGSEGV (exit 139)."""
    deep = keras_zip(tmp_path / "deep.keras", '{"config": ' + "[" * 99_000 + "]" * 99_000 + "}")
    done, _ = cli_peak("predict", str(deep), str(CORPUS / "grey16.png"))
    assert_one_line_exit_2(done, f"{deep}: config.json nests deeper than {MAX_CONFIG_DEPTH} levels")
    escape = keras_zip(tmp_path / "escape.keras", functional(3), **{"../evil.txt": b"x"})
    done, _ = cli_peak("export", str(escape), "-o", str(tmp_path / "out.onnx"))
    assert_one_line_exit_2(done, f"{escape}: archive member '../evil.txt' points outside the archive")
    assert not (tmp_path / "out.onnx").exists() and not (tmp_path.parent / "evil.txt").exists()


def test_a_real_model_loads_under_the_limit_its_layers_need(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    from rescompile.keras_backend.model_file import load_keras_model
    from tests.keras_helpers import generated_model

    _, model = generated_model("specs/cifar/resnet20.yaml")
    model.save(tmp_path / "m.keras")
    limit = keras_load_recursion_limit(tmp_path / "m.keras")
    assert limit == max(sys.getrecursionlimit(), RECURSION_PER_LAYER * len(model.layers))
    assert len(load_keras_model(tmp_path / "m.keras").layers) == len(model.layers)


# --- class 2: decompression budgets -----------------------------------------------------------


def zero_member(archive: zipfile.ZipFile, name: str, size: int) -> None:
    """A member of `size` zero bytes, deflated as it streams (never held in memory)."""
    block, info = bytes(MiB), zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with archive.open(info, "w", force_zip64=True) as member:
        for _ in range(size // MiB):
            member.write(block)


@pytest.mark.slow
def test_keras_config_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """1 GiB of zeros deflated into ~1 MB: refused from the declared sizes, never inflated."""
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        zero_member(archive, "config.json", 1024 * MiB)
        archive.writestr("model.weights.h5", b"")
    assert bomb.stat().st_size < 4 * MiB
    done, peak = cli_peak("predict", str(bomb), str(CORPUS / "grey16.png"))
    assert_one_line_exit_2(done)
    assert "refusing a possible decompression bomb" in done.stderr
    assert peak < 1024 * MiB, peak


def zero_tarball(path: Path, members: dict[str, int]) -> Path:
    """A .tar.gz of zero-filled members (name -> size), streamed from /dev/zero."""
    with tarfile.open(path, "w:gz", compresslevel=1) as archive, open("/dev/zero", "rb") as zeros:
        for name, size in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = size
            archive.addfile(info, zeros)
    return path


def test_cifar_members_are_bounded_by_what_a_cifar_member_holds(tmp_path: Path) -> None:
    big = zero_tarball(tmp_path / "big.tar.gz", {"batches.meta": 100, "data_batch_1": BATCH_BYTES + 1})
    with pytest.raises(RescompileError) as caught:
        load_cifar(big)
    assert str(caught.value) == (
        f"--data {big}: cifar-10-batches-py/data_batch_1 has {BATCH_BYTES + 1:,} bytes,"
        f" more than a CIFAR data_batch_1 member ({BATCH_BYTES:,})"
    )
    twice = tmp_path / "twice.tar.gz"
    with tarfile.open(twice, "w:gz") as archive:
        for _ in range(2):
            info = tarfile.TarInfo("test_batch")
            info.size = 0
            archive.addfile(info, io.BytesIO())
    with pytest.raises(RescompileError, match=r": test_batch appears twice in the archive$"):
        load_cifar(twice)
    many = tmp_path / "many.tar"
    with tarfile.open(many, "w") as archive:
        for index in range(MAX_ARCHIVE_MEMBERS + 1):
            archive.addfile(tarfile.TarInfo(f"x{index}"), io.BytesIO())
    with pytest.raises(
        RescompileError, match=rf": more than {MAX_ARCHIVE_MEMBERS} members, more than a CIFAR"
    ):
        load_cifar(many)
    folder = tmp_path / "folder"
    folder.mkdir()
    with (folder / "test_batch").open("wb") as handle:
        handle.truncate(BATCH_BYTES + 1)  # sparse
    with pytest.raises(
        RescompileError, match=r"test_batch: 33,554,433 bytes, more than a CIFAR test_batch member"
    ):
        load_cifar(folder)


@pytest.mark.slow
def test_cifar_zero_bomb_is_refused_in_bounded_memory_and_the_run_dir_untouched(tmp_path: Path) -> None:
    """Members of a plausible size each, 600 MiB of zeros in all (~0.6 MB): refused once the
    stream passes what a CIFAR archive decompresses to, without holding it."""
    sizes = {f"junk{i}": 100 * MiB for i in range(6)}
    bomb = zero_tarball(tmp_path / "bomb.tar.gz", {**sizes, "data_batch_1": BATCH_BYTES})
    run = tmp_path / "run"
    done, peak = cli_peak("train", "specs/cifar/resnet20.yaml", "--out", str(run), "--data", str(bomb))
    assert_one_line_exit_2(
        done,
        f"--data {bomb}: decompresses to more than {MAX_ARCHIVE_BYTES:,} bytes, more than a CIFAR archive",
    )
    assert peak < 1536 * MiB, peak
    assert not run.exists()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum, bit by bit (an independent reference to the reader's table)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 * (crc & 1))
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def framed(data: bytes) -> bytes:
    """One TFRecord record: length, its masked CRC, the data, the data's masked CRC."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def gzip_shard(path: Path, chunk: bytes, repeats: int) -> Path:
    """A GZIP TFRecord shard holding `chunk` `repeats` times, compressed as it is written."""
    with gzip.open(path, "wb") as stream:
        for _ in range(repeats):
            stream.write(chunk)
    return path


def test_reference_crc32c_is_the_castagnoli_checksum() -> None:
    crc = masked_crc32c(b"123456789") - 0xA282EAD8 & 0xFFFFFFFF
    assert ((crc << 15) | (crc >> 17)) & 0xFFFFFFFF == 0xE3069283  # the CRC-32C check value


def test_gzip_tfrecords_of_zeros_or_empty_records_are_refused_at_once(tmp_path: Path) -> None:
    zeros = gzip_shard(tmp_path / "zeros", bytes(MiB), 64)  # was 4 M "records" of length 0
    with pytest.raises(RescompileError) as caught:
        count_records(zeros)
    assert str(caught.value) == (
        f"{zeros}: not a TFRecord file, or damaged (record 0: its length's checksum does not match)"
    )
    plain = tmp_path / "plain"
    plain.write_bytes(framed(b"image") + bytes(64))
    with pytest.raises(RescompileError, match=r"\(record 1: its length's checksum does not match\)$"):
        count_records(plain)
    empty = gzip_shard(tmp_path / "empty", framed(b"") * 1000, 1)
    with pytest.raises(RescompileError) as caught:
        count_records(empty)
    assert str(caught.value) == f"{empty}: record 0 is empty (a record holds an encoded image)"
    good = gzip_shard(tmp_path / "good", framed(b"x" * 100) * 7, 3)
    assert count_records(good) == 21


def test_gzip_tfrecord_amplification_is_refused_within_its_budget(tmp_path: Path) -> None:
    """Well-framed records of zeros: 116 MB decompressed from ~0.4 MB, refused once the count
    passes what a shard of that size can hold."""
    block = framed(bytes(100)) * 9000  # ~1 MB
    bomb = gzip_shard(tmp_path / "train-00000-of-00001", block, 112)
    budget = GZIP_FLOOR + MAX_GZIP_EXPANSION * bomb.stat().st_size
    assert len(block) * 112 > 2 * budget
    with pytest.raises(RescompileError) as caught:
        count_records(bomb)
    assert str(caught.value) == (
        f"{bomb}: decompresses to more than {budget:,} bytes ({MAX_GZIP_EXPANSION}x its size"
        f" and {GZIP_FLOOR // MiB} MiB), more than a TFRecord shard holds"
    )


@pytest.mark.slow
def test_gzip_tfrecord_bomb_through_train_is_one_line_without_a_hang(tmp_path: Path) -> None:
    """A 2 MB shard of zeros once counted as ~134 M empty records for minutes."""
    data = tmp_path / "data"
    data.mkdir()
    gzip_shard(data / "train-00000-of-00001", bytes(MiB), 2048)
    gzip_shard(data / "validation-00000-of-00001", framed(b"x" * 100), 1)
    run = tmp_path / "run"
    done, _ = cli_peak(
        "train", "specs/cifar/resnet20.yaml", "--out", str(run), "--data", str(data), timeout=120
    )
    assert_one_line_exit_2(done)
    assert "train-00000-of-00001: not a TFRecord file, or damaged (record 0:" in done.stderr
    assert not run.exists()


# --- class 4: TFRecord labels range-checked ---------------------------------------------------


def labelled_shard(path: Path, labels: list[int]) -> Path:
    """A plain TFRecord shard of 12x10 JPEGs in the TF model garden's layout, with these labels."""
    tf = pytest.importorskip("tensorflow")
    with tf.io.TFRecordWriter(str(path)) as writer:
        for label in labels:
            encoded = io.BytesIO()
            Image.new("RGB", (12, 10), (200, 30, 30)).save(encoded, format="JPEG")
            feature = {
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded.getvalue()])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return path


@pytest.mark.parametrize("bad", [-1, 10, 2**40])
def test_tfrecord_labels_out_of_range_stop_training_and_evaluation(tmp_path: Path, bad: int) -> None:
    tf = pytest.importorskip("tensorflow")
    from rescompile.inputs import streaming
    from rescompile.inputs.sources import RecordSplit, open_source
    from rescompile.inputs.tfdata import Shard
    from rescompile.spec.preprocessing import Preprocessing
    from rescompile.train.recipe import load_recipe

    labelled_shard(tmp_path / "train-00000-of-00002", list(range(10)) * 2)
    shard = labelled_shard(tmp_path / "train-00001-of-00002", [1, 2, 3, bad, 4, 5, 6, 7, 8, 9] * 2)
    labelled_shard(tmp_path / "validation-00000-of-00001", [0, 1, 2, bad])
    source = open_source(str(tmp_path), None, 10, seed=0, strict=False)
    identity = Preprocessing(mean=[0.0], std=[1.0])
    recipe = load_recipe("imagenet-goyal", ["batch_size=8"])
    training = streaming.streamed_training(
        source.train,
        recipe.augment,
        identity,
        size=16,
        global_batch=recipe.batch_size,
        seed=0,
        first_epoch=0,
        shard=Shard(),
        strict=False,
        classes=10,
    )
    with pytest.raises(RescompileError) as caught, streaming.data_errors(10):
        list(training.take(5))  # an epoch: every record
    assert str(caught.value) == f"{shard}: record 3 has label {bad}, outside 0..9 (the model has 10 classes)"
    transform = streaming.eval_transform(identity, 16)
    with pytest.raises(RescompileError) as caught, streaming.data_errors(10):
        list(streaming.evaluation_stream(source.test, transform, 3, classes=10))
    assert str(caught.value) == (
        f"{tmp_path / 'validation-00000-of-00001'}: record 3 has label {bad}, outside 0..9"
        " (the model has 10 classes)"
    )
    clean = RecordSplit((str(tmp_path / "train-00000-of-00002"),), (20,), ("",))
    labels = [y for _, y in streaming.evaluation_stream(clean, transform, 8, classes=10)]
    assert all(y.dtype == tf.int32 for y in labels)
    assert np.concatenate(labels).tolist() == list(range(10)) * 2


def evaluate_resnet18(folder: Path, classes: int, data: Path):
    """`rescompile evaluate` (in process) of a ResNet-18 for 32x32 images and `classes` classes,
    built into `folder`."""
    pytest.importorskip("keras")
    from typer.testing import CliRunner

    from rescompile.cli import app

    runner = CliRunner()
    args = ["build", "resnet18", "--input-size", "32", "--classes", str(classes), "--out", str(folder)]
    built = runner.invoke(app, args)
    assert built.exit_code == 0, built.output
    return runner.invoke(app, ["evaluate", str(folder / "resnet18.keras"), "--data", str(data)])


def test_evaluate_refuses_a_label_past_the_models_classes(tmp_path: Path) -> None:
    shard = labelled_shard(tmp_path / "validation-00000-of-00001", [0, 9, 10, 3])
    done = evaluate_resnet18(tmp_path, 10, tmp_path / "validation-*")
    assert done.exit_code == 2, done.output
    assert done.stderr.strip().splitlines() == [
        f"error: {shard}: record 2 has label 10, outside 0..9 (the model has 10 classes)"
    ]
    assert not (tmp_path / "confusion.png").exists()


# --- class 7: recursion on user-shaped structures ---------------------------------------------


def gemm_model(path: Path, nodes: list) -> Path:
    """input (1, 4) -> Gemm with a 4x3 weight -> `nodes` (which end in `output`)."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])
    weight = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    gemm = helper.make_node("Gemm", ["input", "w"], ["g"], name="gemm")
    graph = helper.make_graph([gemm, *nodes], "g", [x], [y], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_recount_walks_a_long_identity_chain_and_refuses_a_cycle(tmp_path: Path) -> None:
    from rescompile.onnx_backend.recount import recount

    chain = [helper.make_node("Identity", [f"t{i}" if i else "g"], [f"t{i + 1}"]) for i in range(5000)]
    long = gemm_model(tmp_path / "long.onnx", [*chain, helper.make_node("Relu", ["t5000"], ["output"])])
    short = gemm_model(tmp_path / "short.onnx", [helper.make_node("Relu", ["g"], ["output"])])
    assert recount(long).cost == recount(short).cost  # Gemm + Relu: one layer, through the chain
    cycle = [
        helper.make_node("QuantizeLinear", ["c2", "g"], ["c1"], name="q"),
        helper.make_node("DequantizeLinear", ["c1", "g"], ["c2"], name="d"),
        helper.make_node("Relu", ["c2"], ["output"]),
    ]
    path = gemm_model(tmp_path / "cycle.onnx", cycle)
    with pytest.raises(RescompileError) as caught:
        recount(path)
    assert str(caught.value) == (
        f"{path}: QuantizeLinear q reads c2 before any node computes it"
        " (the graph is not in topological order, or has a cycle)"
    )


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        (
            "a." * 5000 + "b=1",
            "--set " + "a." * 30 + "...: 5001 levels of keys; recipe fields nest at most 8",
        ),
        ("augment=" + "[" * 5000, "--set augment: the value nests more than 8 levels"),
        ("augment.crop=" + "{a: " * 3000, "--set augment.crop: the value nests more than 8 levels"),
    ],
)
def test_set_keys_and_values_are_bounded_in_depth(assignment: str, message: str) -> None:
    from rescompile.train.recipe import load_recipe

    with pytest.raises(RescompileError) as caught:
        load_recipe("paper", [assignment])
    assert str(caught.value) == message
    assert load_recipe("paper", ["augment.erasing={p: 0.5}"]).augment.erasing.p == 0.5


# --- class 5: records that disagree with their model -----------------------------------------


def tiny_keras(path: Path, **record: object) -> Path:
    """An 8x8x3 -> 3-class Keras model saved with a record as a hostile file would carry it
    (written as JSON, unchecked; fields overridden by `record`)."""
    keras = pytest.importorskip("keras")

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)), name="tiny")
    model.save(path)
    fields = {"spec": {}, "input_size": 8, "channels": 3, "classes": 3, **record}
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("rescompile.json", json.dumps(fields))
    return path


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"classes": 5}, "its record says 5 classes, but the model's classifier has 3"),
        ({"input_size": 16}, "its record says the input is (16, 16, 3), but the model takes (8, 8, 3)"),
        (
            {"channels": 1, "preprocess": {"mean": [0], "std": [1]}},
            "its record says the input is (8, 8, 1), but the model takes (8, 8, 3)",
        ),
        (
            {"preprocess": {"mean": np.zeros((4, 4, 3)).tolist()}},
            "damaged rescompile record (record: Value error,"
            " preprocess.mean has shape (4, 4, 3); the input image is (8, 8, 3))",
        ),
        (
            {"preprocess": {"std": [1, 2]}},  # neither 1, 3 (RGB) nor one per channel
            "damaged rescompile record (record: Value error, preprocess.std has 2 values for 3 channels)",
        ),
        (
            {"preprocess": {"mean": [[[1, 2, 3]], [[1, 2]]]}},
            "damaged rescompile record (record: Value error, preprocess.mean is a ragged array)",
        ),
        (
            {"class_names": ["a", "b"]},
            "damaged rescompile record (record: Value error, 2 class names for 3 classes)",
        ),
    ],
)
def test_a_record_that_disagrees_with_its_model_is_one_line(
    tmp_path: Path, record: dict, message: str
) -> None:
    from rescompile.keras_backend.model_file import analysis_for_model, load_keras_model

    path = tiny_keras(tmp_path / "tiny.keras", **record)
    model = load_keras_model(path)
    with pytest.raises(RescompileError) as caught:
        analysis_for_model(model, path, None)
    assert str(caught.value) == f"{path}: {message}"


def test_predict_and_export_refuse_a_record_claiming_more_classes(tmp_path: Path) -> None:
    path = tiny_keras(tmp_path / "tiny.keras", classes=1000)
    message = f"{path}: its record says 1000 classes, but the model's classifier has 3"
    assert_one_line_exit_2(cli_peak("predict", str(path), str(CORPUS / "grey16.png"))[0], message)
    out = tmp_path / "tiny.onnx"
    assert_one_line_exit_2(cli_peak("export", str(path), "-o", str(out))[0], message)
    assert not out.exists()


# --- class 6: resources sized from a graph ----------------------------------------------------


def test_footprint_counts_the_tensors_alive_at_once(tmp_path: Path) -> None:
    from rescompile.serve.footprint import footprint

    image = 64 * 64 * 3 * 4  # bytes of one float32 sample
    identity = onnx_model(tmp_path / "identity.onnx", shape=["batch", 64, 64, 3])
    assert footprint(identity, (64, 64, 3)) == (0, 2 * image)  # input and output
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "h", "w", 3])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    relus = [helper.make_node("Relu", [f"t{i}" if i else "input"], [f"t{i + 1}"]) for i in range(9)]
    graph = helper.make_graph([*relus, helper.make_node("Relu", ["t9"], ["output"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "chain.onnx")
    # ten nodes in a row: each frees its input once it has run, so two tensors at most are alive
    assert footprint(tmp_path / "chain.onnx", (64, 64, 3)) == (0, 2 * image)


def test_bench_and_predict_refuse_a_batch_that_cannot_fit(tmp_path: Path) -> None:
    """A 1 KB graph with a fixed 4096x4096 input once used 17.7 GB at --batch-size 1,8."""
    from rescompile.analysis.memory import available_bytes

    big = onnx_model(tmp_path / "big.onnx", shape=["batch", 4096, 4096, 3], props={})
    done, peak = cli_peak("bench", str(big), "--batch-size", "1,4096", "--provider", "cpu")
    assert_one_line_exit_2(done)
    per_image = 2 * 4096 * 4096 * 3 * 4
    line = done.stderr.strip()
    assert (
        f"{big}: a batch of 4096 needs about " in line
        and f"({per_image:,} bytes of tensors per image" in line
    )
    fits = int(re.search(r"--batch-size (\d+) fits$", line)[1])
    assert 1 <= fits * per_image <= available_bytes() * 1.2 < 4096 * per_image
    assert peak < 1024 * MiB, peak
    many = [str(CORPUS / "grey16.png")] * 4096
    done, _ = cli_peak("predict", str(big), *many, "--provider", "cpu")
    assert_one_line_exit_2(done)
    assert re.search(r"; pass at most \d+ images at once$", done.stderr.strip())


# --- class 8: resume trusts only what agrees with the run's own files ------------------------


@pytest.mark.slow  # trains one short epoch (~1 minute on 2 cores)
def test_resume_checks_state_json_against_the_run_and_leaves_a_finished_run_alone(tmp_path: Path) -> None:
    from tests.synthetic import write_cifar_tarball, write_image_folder

    tarball = write_cifar_tarball(tmp_path / "cifar-10-python.tar.gz", train=128, test=32)
    run = tmp_path / "run"
    args = ["--data", str(tarball), "--recipe", "fast", "--batch-size", "32", "--epochs", "1"]
    trained, _ = cli_peak(
        "train", "specs/cifar/resnet20.yaml", "--out", str(run), *args, "--set", "validation=0"
    )
    assert trained.returncode == 0, trained.stderr[-2000:]

    def refused_untouched(message: str) -> None:
        before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
        assert_one_line_exit_2(cli_peak("train", "--resume", "--out", str(run))[0], message)
        assert {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before

    refused_untouched(
        f"--resume: {run} has finished (epoch 1, step {128 // 32}; see {run / 'summary.json'}): nothing to"
        f" resume; `rescompile evaluate {run} --data ...` scores it again, a new --out trains anew"
    )
    (run / "summary.json").unlink()  # as if killed before the summary: resumable, if state.json is true
    state = json.loads((run / "state.json").read_text())
    (run / "state.json").write_text(json.dumps({**state, "epoch": 1000, "step": 10**9}))
    refused_untouched(
        f"--resume: {run / 'state.json'} says epoch 1000, step 1000000000, past the end of the run's recipe"
        f" (epoch 1, step {128 // 32}); start a new run"
    )
    folder = write_image_folder(tmp_path / "three", 120, size=(32, 32), classes=3)
    (run / "state.json").write_text(json.dumps({**state, "data": str(folder), "classes": 3}))
    refused_untouched(
        f"--resume: {run / 'checkpoint.keras'} classifies 10 classes, but the run's data ({folder}) has 3;"
        " start a new run"
    )


# --- class 3: every image stream skips and counts bad files ------------------------------------


def corrupt_mid_file_png(path: Path) -> Path:
    """A 64x64 noise PNG with bytes in the middle of its image data overwritten: its signature,
    header and IEND are intact, so only decoding finds the damage."""
    pixels = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\x00" * 64
    path.write_bytes(bytes(data))
    return path


def test_bombs_and_mid_file_damage_are_skipped_by_every_stream_or_fail_strict_in_one_line(
    tmp_path: Path,
) -> None:
    pytest.importorskip("tensorflow")
    from rescompile.inputs import streaming
    from rescompile.inputs.sources import open_source
    from rescompile.spec.preprocessing import Preprocessing
    from rescompile.train.inputs import open_inputs
    from rescompile.train.recipe import load_recipe
    from tests.synthetic import write_image_folder

    root = write_image_folder(tmp_path / "data", 60, size=(40, 40), classes=3)
    for label in range(3):
        (root / f"class{label}" / "bomb.png").write_bytes((CORPUS / "bomb.png").read_bytes())
        corrupt_mid_file_png(root / f"class{label}" / "zz_corrupt.png")
    source = open_source(str(root), None, 3, seed=0, strict=False)
    assert sorted(Path(p).name for p in source.skipped) == ["bomb.png"] * 3  # found from headers
    recipe = load_recipe("fast", ["batch_size=8", "validation=0"])  # normalize: per-channel (a sample)
    inputs = open_inputs(
        str(root), None, 3, recipe=recipe, seed=0, spec=Preprocessing(), size=32, strict=False
    )
    transform = streaming.eval_transform(inputs.normalization, 32)
    decoded = sum(int(y.shape[0]) for _, y in inputs.test(8))  # the test stream, as training's
    decoded += sum(
        int(y.shape[0]) for _, y in streaming.evaluation_stream(inputs.train, transform, 8, classes=3)
    )
    assert decoded == len(inputs.train) + len(inputs.source.test) - 3  # the three corrupt files
    strict = streaming.evaluation_stream(inputs.train, transform, 64, classes=3, strict=True)
    with pytest.raises(RescompileError) as caught, streaming.data_errors(3):
        list(strict)
    assert str(caught.value).startswith("--strict: an image failed to decode (Invalid PNG data")
    assert str(caught.value).endswith("); without --strict it is skipped")
    with pytest.raises(RescompileError) as caught:
        open_source(str(root), None, 3, seed=0, strict=True)
    assert str(caught.value).startswith(
        "--strict: "
    ) and "bomb.png is truncated or not a PNG/JPEG image, or claims more than 89,478,485 pixels" in str(
        caught.value
    )


def test_evaluate_skips_and_counts_bombs_and_damaged_images(tmp_path: Path) -> None:
    from tests.synthetic import write_image_folder

    root = write_image_folder(tmp_path / "data", 12, size=(40, 40), classes=3)
    (root / "class0" / "bomb.png").write_bytes((CORPUS / "bomb.png").read_bytes())
    corrupt_mid_file_png(root / "class1" / "corrupt.png")
    done = evaluate_resnet18(tmp_path, 3, root)
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines()[0].endswith(
        f"on 12 images of {root} (1 unreadable images skipped) (1 images failed to decode and were skipped)"
    )


# --- class 9: TF_CONFIG naming unreachable workers ---------------------------------------------


def tf_config(cluster: list[str], index: int) -> dict[str, str]:
    config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
    return {**os.environ, "TF_CONFIG": json.dumps(config), "CUDA_VISIBLE_DEVICES": ""}


def test_tasks_wait_for_each_other_then_go_on(tmp_path: Path) -> None:
    from tests.train.test_multiworker import free_ports

    cluster = [f"127.0.0.1:{port}" for port in free_ports(2)]
    code = "from rescompile.train.cluster import wait_for_cluster; wait_for_cluster(60); print('ready')"
    first = subprocess.Popen(
        [sys.executable, "-c", code], env=tf_config(cluster, 0), stdout=subprocess.PIPE, text=True
    )
    second = subprocess.run(
        [sys.executable, "-c", code], env=tf_config(cluster, 1), capture_output=True, text=True, timeout=90
    )
    assert second.returncode == 0 and second.stdout.splitlines()[-1] == "ready", second.stderr
    assert first.communicate(timeout=90)[0].splitlines()[-1] == "ready"


def test_an_unreachable_worker_is_one_line_after_the_timeout(tmp_path: Path) -> None:
    from tests.train.test_multiworker import free_ports

    cluster = [f"127.0.0.1:{port}" for port in free_ports(2)]
    run = tmp_path / "run"
    args = ["train", "specs/cifar/resnet20.yaml", "--out", str(run), "--distribute", "multiworker"]
    done = subprocess.run(
        [sys.executable, "-m", "rescompile", *args, "--worker-timeout", "2"],
        env=tf_config(cluster, 0),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_exit_2(
        done,
        f"--distribute multiworker: {cluster[1]} not reachable after 2 s (--worker-timeout);"
        " start every task of TF_CONFIG or check its addresses",
    )
    assert done.stdout.splitlines() == [
        f"waiting up to 2 s (--worker-timeout) for the other tasks of TF_CONFIG: {cluster[1]}"
    ]
    assert not run.exists()


def test_train_strict_stops_on_a_damaged_image_in_one_line_before_writing_the_run(tmp_path: Path) -> None:
    """The normalisation sample decodes the training images before the run directory exists."""
    from tests.synthetic import write_image_folder

    root = tmp_path / "data"
    write_image_folder(root / "train", 40, size=(40, 40), classes=2)
    write_image_folder(root / "val", 10, size=(40, 40), classes=2)
    corrupt_mid_file_png(root / "train" / "class0" / "corrupt.png")
    run = tmp_path / "run"
    args = ["train", "specs/cifar/resnet20.yaml", "--out", str(run), "--data", str(root), "--recipe", "fast"]
    done, _ = cli_peak(*args, "--batch-size", "8", "--set", "validation=0", "--strict")
    # TensorFlow's own log of the failed decode can reach stderr as the process ends (known gap)
    from rescompile.quiet import NATIVE_LOG_LINE

    kept = [
        line
        for line in done.stderr.splitlines(keepends=True)
        if not NATIVE_LOG_LINE.match(line.encode()) and not line.startswith("\t [[{{")
    ]
    done = subprocess.CompletedProcess(done.args, done.returncode, done.stdout, "".join(kept))
    assert_one_line_exit_2(done)
    assert done.stderr.startswith("error: --strict: an image failed to decode (Invalid PNG data")
    assert not run.exists()


def test_resume_from_a_deeply_nested_checkpoint_is_one_line(tmp_path: Path) -> None:
    """`train --resume` loads checkpoint.keras: a hostile one is refused as export's and predict's are."""
    from rescompile.spec import load_spec
    from rescompile.train.recipe import load_recipe
    from rescompile.train.run_dir import write_spec
    from tests.synthetic import write_cifar_tarball

    tarball = write_cifar_tarball(tmp_path / "cifar-10-python.tar.gz", train=64, test=16)
    run = tmp_path / "run"
    run.mkdir()
    write_spec(run, load_spec(Path("specs/cifar/resnet20.yaml")).model_dump(mode="json"))
    (run / "recipe.json").write_text(load_recipe("fast", ["batch_size=16", "validation=0"]).model_dump_json())
    (run / "state.json").write_text(json.dumps({"seed": 0, "epoch": 1, "step": 4, "data": str(tarball)}))
    keras_zip(run / "checkpoint.keras", '{"config": ' + "[" * 99_000 + "]" * 99_000 + "}")
    done, _ = cli_peak("train", "--resume", "--out", str(run))
    assert_one_line_exit_2(
        done,
        f"--resume: {run / 'checkpoint.keras'}: config.json nests deeper than 200 levels; start a new run",
    )
