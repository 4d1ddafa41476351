"""Hostile inputs: each gives one RescompileError line (CLI: exit 2), no traceback, no hang, and
nothing half-written. Images, ONNX metadata and inputs, YAML specs, CIFAR data, full disks."""

from __future__ import annotations

import errno
import io
import os
import pickle
import random
import resource
import subprocess
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from rescompile.analysis.analyze import analyze
from rescompile.errors import RescompileError, SpecError
from rescompile.fileio import remove_stale_temporaries, write_atomic, write_text_atomic
from rescompile.inputs.datasets import load_cifar, parse_cifar_batch
from rescompile.inputs.images import read_image
from rescompile.serve.runtime import input_geometry, metadata, open_session, run_session
from rescompile.spec.yamlsrc import MAX_BYTES
from tests.synthetic import write_cifar_batch, write_cifar_tarball

CORPUS = Path("tests/hostile")
EXPECTED = dict(line.split("\t", 1) for line in (CORPUS / "EXPECTED.tsv").read_text().splitlines())
NOT_ERRORS = {"README.md", "EXPECTED.tsv", "grey16.png"}


def _memory_limit() -> None:
    """For CLI runs that would read /dev/zero without the fix: fail, do not eat the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rescompile", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_memory_limit,
    )


def assert_one_line_exit_2(done: subprocess.CompletedProcess, message: str | None = None) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    if message is not None:
        assert lines[0] == f"error: {message}"


def assert_one_line(error: BaseException) -> None:
    assert "\n" not in str(error) and len(str(error)) < 400, str(error)


# --- images ---------------------------------------------------------------------------------


def test_corpus_is_fully_described() -> None:
    files = {p.name for p in CORPUS.iterdir()}
    assert files - NOT_ERRORS == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_image_corpus_exact_error(name: str) -> None:
    with pytest.raises(RescompileError) as caught:
        read_image(CORPUS / name, 16)
    message, expected = str(caught.value), EXPECTED[name]
    assert_one_line(caught.value)
    if expected.endswith("(*)"):
        assert message.startswith(expected[:-2]) and message.endswith(")"), message
    else:
        assert message == expected


def test_grey16_is_scaled_not_clipped() -> None:
    image = read_image(CORPUS / "grey16.png", 16)
    expected = np.arange(256, dtype=np.float32).reshape(16, 16)  # 257 * i / 257
    assert image.shape == (16, 16, 3)
    for channel in range(3):
        np.testing.assert_allclose(image[..., channel], expected, atol=1e-3)
    resized = read_image(CORPUS / "grey16.png", 8)
    assert resized.min() >= 0 and 200 < resized.max() <= 255
    assert (resized < 250).mean() > 0.9  # convert("RGB") clipped all but the first pixel to 255


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "LA"])
def test_ordinary_modes_read_as_before(tmp_path: Path, mode: str) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    original = Image.fromarray(pixels).convert(mode)
    path = tmp_path / f"{mode}.png"
    original.save(path)
    expected = np.asarray(original.convert("RGB").resize((8, 8), Image.Resampling.BILINEAR), np.float32)
    np.testing.assert_array_equal(read_image(path, 8), expected)


def test_fifo_and_device_images_are_refused_unread(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.png"
    zero.symlink_to("/dev/zero")
    for path in (fifo, zero, tmp_path):
        with pytest.raises(RescompileError, match="not a regular file"):
            read_image(path, 8)


def test_corrupted_images_raise_only_our_error(tmp_path: Path) -> None:
    rng = random.Random(0)
    pixels = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    sources = []
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, fmt)
        sources.append(buffer.getvalue())
    path = tmp_path / "fuzz.img"
    for index in range(600):
        data = bytearray(sources[index % len(sources)])
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(min(len(data), 160))] = rng.randrange(256)
        if index % 3 == 0:
            data = data[: rng.randrange(1, len(data))]
        path.write_bytes(bytes(data))
        try:
            read_image(path, 8)
        except RescompileError as error:
            assert_one_line(error)


# --- ONNX metadata and inputs ---------------------------------------------------------------

GOOD_META = {
    "input_size": "8",
    "input_channels": "3",
    "layout": "nhwc",
    "preprocess": '{"color": "RGB", "scale": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1]}',
    "class_names": '["a", "b", "c"]',
}


def onnx_model(
    path: Path,
    shape: list | None = None,
    props: dict | None = None,
    elem: int = TensorProto.FLOAT,
    inputs: int = 1,
) -> Path:
    """An Identity graph with the given input shape and metadata_props: a model from anywhere."""
    names = ["input", *(f"extra{i}" for i in range(1, inputs))]
    values = [helper.make_tensor_value_info(n, elem, shape or ["batch", 8, 8, 3]) for n in names]
    output = helper.make_tensor_value_info("output", elem, None)
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "g", values, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, GOOD_META if props is None else props)
    onnx.save(model, path)
    return path


def _meta(path: Path) -> dict:
    return metadata(open_session(path, "cpu"))


def _geometry(path: Path, rgb: bool = False):
    session = open_session(path, "cpu")
    return input_geometry(session, metadata(session), rgb=rgb)


BAD_METADATA = [
    (
        {"preprocess": "{bad"},
        "metadata preprocess: not valid JSON (Expecting property name enclosed in double quotes)",
    ),
    ({"class_names": "[1, 2"}, "metadata class_names: not valid JSON (Expecting ',' delimiter)"),
    ({"class_names": '{"a": 1}'}, "metadata class_names: expected a list of strings, got {'a': 1}"),
    ({"input_size": "30000"}, "metadata input_size: expected an integer from 1 to 4096, got '30000'"),
    ({"input_size": "0"}, "metadata input_size: expected an integer from 1 to 4096, got '0'"),
    ({"input_size": "-8"}, "metadata input_size: expected an integer from 1 to 4096, got '-8'"),
    ({"input_size": "8.5"}, "metadata input_size: expected an integer from 1 to 4096, got '8.5'"),
    ({"input_channels": "many"}, "metadata input_channels: expected an integer from 1 to 64, got 'many'"),
    ({"layout": "nwhc"}, "metadata layout: expected nhwc or nchw, got 'nwhc'"),
    (
        {"preprocess": '{"scale": NaN}'},
        "metadata preprocess.scale: expected a finite number above 0, got nan",
    ),
    (
        {"preprocess": '{"scale": 1e999}'},
        "metadata preprocess.scale: expected a finite number above 0, got inf",
    ),
    (
        {"preprocess": '{"mean": [1, 2]}'},
        "metadata preprocess.mean: expected 1 or 3 values (one per input channel), got 2",
    ),
    (
        {"preprocess": '{"mean": [1, "2", 3]}'},
        "metadata preprocess.mean: expected finite numbers, got [1, '2', 3]",
    ),
    (
        {"preprocess": '{"mean": [1, Infinity, 3]}'},
        "metadata preprocess.mean: expected finite numbers, got [1, inf, 3]",
    ),
    (
        {"preprocess": '{"std": [1, 0, 1]}'},
        "metadata preprocess.std: expected finite numbers above 0, got [1, 0, 1]",
    ),
    ({"preprocess": '{"std": true}'}, "metadata preprocess.std: expected finite numbers above 0, got True"),
    ({"preprocess": '{"color": "CMYK"}'}, "metadata preprocess.color: expected RGB or BGR, got 'CMYK'"),
    (
        {"preprocess": '{"colour": "RGB"}'},
        "metadata preprocess: unknown key 'colour'; expected color, scale, mean, std, crop",
    ),
    ({"preprocess": "[1, 2]"}, "metadata preprocess: expected a JSON object, got [1, 2]"),
    (
        {"input_size": "8", "preprocess": '{"mean": ' + str(np.zeros((4, 4, 3)).tolist()) + "}"},
        "metadata preprocess.mean: shape (4, 4, 3) does not broadcast to an image (8, 8, 3)",
    ),
]


@pytest.mark.parametrize(("props", "message"), BAD_METADATA)
def test_bad_metadata_is_one_line(tmp_path: Path, props: dict, message: str) -> None:
    path = onnx_model(tmp_path / "model.onnx", props=props)
    with pytest.raises(RescompileError) as caught:
        _meta(path)
    assert str(caught.value) == f"{path}: {message}"


def test_deeply_nested_json_metadata(tmp_path: Path) -> None:
    path = onnx_model(tmp_path / "model.onnx", props={"class_names": "[" * 100_000})
    with pytest.raises(RescompileError, match=r"metadata class_names: not valid JSON") as caught:
        _meta(path)
    assert_one_line(caught.value)


def test_loading_a_keras_model_leaves_the_recursion_limit_as_it_was(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    from rescompile.keras_backend.model_file import load_keras_model
    from tests.keras_helpers import generated_model

    _, model = generated_model("specs/cifar/resnet20.yaml")
    model.save(tmp_path / "m.keras")
    before = sys.getrecursionlimit()
    load_keras_model(tmp_path / "m.keras")
    assert sys.getrecursionlimit() == before  # raised only while loading: deep JSON still raises
    test_deeply_nested_json_metadata(tmp_path)


def test_good_metadata_is_parsed(tmp_path: Path) -> None:
    per_pixel = {
        "input_size": "8",
        "preprocess": '{"mean": ' + str(np.ones((8, 8, 3)).tolist()) + ', "std": [1]}',
    }
    assert _meta(onnx_model(tmp_path / "pixel.onnx", props=per_pixel))["input_size"] == 8
    meta = _meta(onnx_model(tmp_path / "model.onnx"))
    assert meta["input_size"] == 8 and meta["input_channels"] == 3
    assert meta["class_names"] == ["a", "b", "c"] and meta["preprocess"].std == [1, 1, 1]
    assert _meta(onnx_model(tmp_path / "bare.onnx", props={})) == {}


BAD_INPUTS = [
    (
        dict(shape=["batch", "h", "w", 3], props={}),
        "input 'input' has a symbolic height or width ([batch, h, w, 3])"
        " and the metadata gives no input_size",
    ),
    (
        dict(shape=["batch", 8, 8, "c"], props={}),
        "input 'input' has a symbolic channel count ([batch, 8, 8, c])"
        " and the metadata gives no input_channels",
    ),
    (
        dict(elem=TensorProto.INT64),
        "input 'input' is tensor(int64), expected a float32 image tensor (tensor(float))",
    ),
    (
        dict(elem=TensorProto.FLOAT16),
        "input 'input' is tensor(float16), expected a float32 image tensor (tensor(float))",
    ),
    (
        dict(shape=["batch", 3]),
        "input 'input' has shape [batch, 3], expected 4 dimensions (batch, height, width, channels)",
    ),
    (dict(shape=["batch", 8, 4, 3], props={}), "input 'input' is 8x4; rescompile feeds square images"),
    (
        dict(shape=["batch", 30000, 30000, 3], props={}),
        "input 'input' is 30000x30000, expected a size from 1 to 4096",
    ),
    (dict(shape=["batch", 16, 16, 3]), "input 'input' is 16x16 but the metadata says input_size 8"),
    (dict(inputs=2), "the model has 2 inputs ('input', 'extra1'); expected one image input"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_INPUTS)
def test_foreign_inputs_are_one_line(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = onnx_model(tmp_path / "model.onnx", **kwargs)
    with pytest.raises(RescompileError) as caught:
        _geometry(path)
    assert str(caught.value) == f"{path}: {message}"


def test_input_geometry_of_good_and_foreign_models(tmp_path: Path) -> None:
    ours = _geometry(onnx_model(tmp_path / "ours.onnx"), rgb=True)
    assert (ours.name, ours.size, ours.channels, ours.layout, ours.batch) == ("input", 8, 3, "nhwc", None)
    assert ours.sample_shape == (8, 8, 3)
    torch_like = _geometry(onnx_model(tmp_path / "nchw.onnx", shape=[1, 3, 224, 224], props={}))
    assert (torch_like.size, torch_like.layout, torch_like.batch, torch_like.sample_shape) == (
        224,
        "nchw",
        1,
        (3, 224, 224),
    )
    dynamic = _geometry(
        onnx_model(tmp_path / "dyn.onnx", shape=["n", 3, "h", "w"], props={"input_size": "32"})
    )
    assert (dynamic.size, dynamic.layout, dynamic.channels) == (32, "nchw", 3)
    grey = onnx_model(tmp_path / "grey.onnx", shape=["batch", 8, 8, 1], props={})
    assert _geometry(grey).channels == 1
    with pytest.raises(RescompileError, match=r"has 1 channel; images are read as RGB \(3 channels\)"):
        _geometry(grey, rgb=True)


def test_inference_failure_is_one_line(tmp_path: Path) -> None:
    path = onnx_model(tmp_path / "model.onnx")
    session = open_session(path, "cpu")
    with pytest.raises(RescompileError, match=rf"^{path}: inference failed \(.*Invalid rank") as caught:
        run_session(session, {"input": np.zeros((2, 8), np.float32)})
    assert_one_line(caught.value)
    assert run_session(session, {"input": np.ones((1, 8, 8, 3), np.float32)})[0].shape == (1, 8, 8, 3)


def test_predict_cli_refuses_hostile_models_and_images(tmp_path: Path) -> None:
    """End to end through the CLI (each `predict` imports Keras: ~10 s, so only two runs; the
    functions' tests above cover the other cases)."""
    bad_json = onnx_model(tmp_path / "bad.onnx", props={**GOOD_META, "preprocess": "{bad"})
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    assert_one_line_exit_2(
        cli("predict", str(bad_json), str(CORPUS / "grey16.png")),
        f"{bad_json}: metadata preprocess: not valid JSON"
        " (Expecting property name enclosed in double quotes)",
    )
    good = onnx_model(tmp_path / "good.onnx")
    done = cli("predict", str(good), str(CORPUS / "grey16.png"), str(fifo), timeout=90)
    assert_one_line_exit_2(done, f"{fifo}: not a regular file")


def test_predict_prints_hostile_class_and_file_names_one_line_each(tmp_path: Path) -> None:
    """A model's class names and an image's file name are shown with their control characters
    escaped: no terminal escape sequence runs, no name splits into two lines."""
    from typer.testing import CliRunner

    from rescompile.cli import app
    from tests.onnx_helpers import export_spec

    hostile = [f"\x1b]0;pwned\x07class{i}\nfake line" for i in range(10)]
    model = tmp_path / "model.onnx"
    export_spec("specs/cifar/resnet20.yaml", model, class_names=hostile)
    image = tmp_path / "cat\x1b[2J.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(image)
    done = CliRunner().invoke(app, ["predict", str(model), str(image), "--top-k", "3"])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert len(lines) == 4 and "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert lines[0] == str(image).replace("\x1b", "\\x1b")
    assert all("\\x1b]0;pwned\\x07class" in line and "\\nfake line" in line for line in lines[1:])


# --- YAML specs -----------------------------------------------------------------------------

SPEC_BODY = Path("tests/bad_specs/missing_name.yaml").read_text()  # a valid spec but for its name


def _spec_error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as caught:
        analyze(path)
    assert_one_line(caught.value)
    return caught.value


def test_extends_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").symlink_to("b.yaml")
    (tmp_path / "b.yaml").symlink_to("a.yaml")
    spec = tmp_path / "spec.yaml"
    spec.write_text("extends: a.yaml\nname: tiny\n")
    error = _spec_error(spec)
    assert str(error).endswith("spec.yaml:1: extends: cannot resolve 'a.yaml' (symlink loop)")


@pytest.mark.parametrize("kind", ["dev_zero", "fifo"])
def test_check_never_reads_unbounded_input(tmp_path: Path, kind: str) -> None:
    spec = tmp_path / "spec.yaml"
    if kind == "fifo":
        os.mkfifo(spec)
    else:
        spec.symlink_to("/dev/zero")
    done = cli("check", str(spec), timeout=60)
    assert_one_line_exit_2(done)
    assert done.stderr.endswith(": not a regular file\n")
    base = tmp_path / "child.yaml"
    base.write_text("extends: spec.yaml\nname: tiny\n")
    assert str(_spec_error(base)).endswith(": not a regular file")


def test_spec_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    spec = tmp_path / "huge.yaml"
    with spec.open("wb") as handle:
        handle.truncate(MAX_BYTES + 1)  # sparse: no time or disk spent
    assert str(_spec_error(spec)).endswith(
        f"huge.yaml: file too large ({MAX_BYTES + 1} bytes, at most {MAX_BYTES})"
    )


def test_long_key_is_cut_in_the_message(tmp_path: Path) -> None:
    spec = tmp_path / "key.yaml"
    spec.write_text(f'"{"k" * 500}": 1\n' + SPEC_BODY)
    message = str(_spec_error(spec))
    assert message.endswith(f"key.yaml:1: key of 500 characters is too long (at most 100): '{'k' * 76}...")


def test_control_characters_in_a_file_name_stay_on_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "two\nlines\x1b[31m.yaml"
    spec.write_text(SPEC_BODY)
    message = str(_spec_error(spec))
    assert "two\\nlines\\x1b[31m.yaml:1: name: required field is missing" in message


def test_mangled_bytes_raise_only_spec_errors(tmp_path: Path) -> None:
    source = Path("specs/cifar/resnet20.yaml")
    original = (source.parent / "_base.yaml").read_bytes() + b"\n" + source.read_bytes()
    original = b"\n".join(line for line in original.splitlines() if not line.startswith(b"extends"))
    rng = random.Random(0)
    spec = tmp_path / "mangled.yaml"
    specials = [b"\x00", b"\x07", b"\xff", b"\xc3", b"[" * 200, b"&a", b"*a", b"\t", b"\xe2\x80\xa8"]
    for _ in range(150):
        data = bytearray(original)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data))
            data[at:at] = rng.choice(specials)
        spec.write_bytes(bytes(data[: rng.randrange(1, len(data) + 1)]))
        try:
            analyze(spec)
        except RescompileError as error:
            assert_one_line(error)


# --- CIFAR data -----------------------------------------------------------------------------


def test_non_utf8_label_names_are_replaced(tmp_path: Path) -> None:
    images = np.zeros((4, 32, 32, 3), np.uint8)
    labels = np.array([0, 1, 2, 1])
    for name in ("data_batch_1", "test_batch"):
        write_cifar_batch(tmp_path / name, images, labels)
    names = [b"\xff\xfeplane", b"car", *(f"c{i}".encode() for i in range(2, 10))]
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    dataset = load_cifar(tmp_path)
    assert dataset.class_names[:2] == ["\ufffd\ufffdplane", "car"]


def _corrupt_gzip_tarball(path: Path) -> Path:
    """A .tar.gz whose deflate stream turns invalid (zlib.error) after its first 90 kB."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, blob in (
            ("data_batch_1", random.Random(0).randbytes(100_000)),
            ("test_batch", b"0" * 4096),
        ):
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = deflate.compress(buffer.getvalue()[:90_000]) + deflate.flush(zlib.Z_FULL_FLUSH) + b"\xff" * 32
    path.write_bytes(bytes.fromhex("1f8b08000000000000ff") + body)
    return path


def test_broken_cifar_tarballs_are_one_line(tmp_path: Path) -> None:
    corrupt = _corrupt_gzip_tarball(tmp_path / "corrupt.tar.gz")
    with pytest.raises(RescompileError) as caught:
        load_cifar(corrupt)
    assert str(caught.value) == (
        f"--data {corrupt}: not a readable CIFAR tarball"
        " (Error -3 while decompressing data: invalid block type)"
    )
    garbled = tmp_path / "garbled.tar.gz"
    garbled.write_bytes(bytes.fromhex("1f8b08000000000000ff") + b"\xff" * 64)
    with pytest.raises(RescompileError) as caught:
        load_cifar(garbled)
    assert str(caught.value) == (
        f"--data {garbled}: not a readable CIFAR tarball"
        " (Error -3 while decompressing data: invalid block type)"
    )
    unknown = tmp_path / "unknown.tar.gz"
    unknown.write_bytes(b"hello world" * 100)
    with pytest.raises(RescompileError) as caught:
        load_cifar(unknown)
    assert str(caught.value) == (
        f"--data {unknown}: not a readable CIFAR tarball (not a tar, tar.gz, tar.bz2 or tar.xz archive)"
    )
    whole = write_cifar_tarball(tmp_path / "whole.tar.gz", train=50, test=20).read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    for fraction in (0.01, 0.5, 0.97):
        truncated.write_bytes(whole[: int(len(whole) * fraction)])
        with pytest.raises(RescompileError, match="not a readable CIFAR tarball") as caught:
            load_cifar(truncated)
        assert_one_line(caught.value)


def test_hostile_pickles_are_one_line() -> None:
    valid = pickle.dumps({b"labels": [1, 2], b"data": np.zeros((2, 3072), np.uint8)})
    cases = [b"\x80\x04\x95" + b"\xff" * 8, b"\x80\x68", valid[: len(valid) // 2]]
    rng = random.Random(0)
    for _ in range(400):
        data = bytearray(valid)
        data[rng.randrange(len(data))] = rng.randrange(256)
        cases.append(bytes(data))
    for raw in cases:
        try:
            parse_cifar_batch(raw, "batch")
        except RescompileError as error:
            assert_one_line(error)


# --- full disks and killed writes -----------------------------------------------------------


def test_full_disk_gives_one_line_and_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_text("old")

    def writer(tmp: Path) -> None:
        tmp.write_bytes(b"half a mod")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(RescompileError) as caught:
        write_atomic(target, writer, suffix=".onnx")
    assert str(caught.value) == f"cannot write {target}: No space left on device"
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_full_disk_in_write_text_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    target.write_text('{"epoch": 3}')

    def no_space(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", no_space)
    with pytest.raises(RescompileError, match=rf"^cannot write {target}: No space left on device$"):
        write_text_atomic(target, '{"epoch": 4}')
    monkeypatch.undo()
    assert target.read_text() == '{"epoch": 3}'
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_remove_stale_temporaries(tmp_path: Path) -> None:
    stale = [
        Path(tempfile.mkstemp(dir=tmp_path, prefix=".model.keras.", suffix=suffix)[1])
        for suffix in (".keras", ".tmp")
    ]
    keep = [
        tmp_path / name for name in ("model.keras", ".model.keras.bak", ".other.keras.abcd1234.tmp", "notes")
    ]
    for path in keep:
        path.write_text("keep")
    (tmp_path / ".model.keras.abcd1234.d").mkdir()  # not a file: left alone
    removed = remove_stale_temporaries(tmp_path, "model.keras")
    assert sorted(removed) == sorted(stale)
    assert all(path.exists() for path in keep)
    assert remove_stale_temporaries(tmp_path / "missing", "model.keras") == []
