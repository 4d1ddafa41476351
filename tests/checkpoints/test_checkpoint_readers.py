"""PyTorch checkpoints without torch: the safetensors and `.pth` readers (bounded, refusing any code
in a pickle), the IR-derived torchvision/timm names, and the reduced reference models exported to
ONNX from their checkpoints alone (no Keras) against torch's own logits."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rescompile.analysis.analyze import analyze
from rescompile.checkpoints.naming import NamingError, detect, node_params
from rescompile.checkpoints.preprocess import IMAGENET, checkpoint_preprocess
from rescompile.checkpoints.state_dict import read_state_dict
from rescompile.checkpoints.torch_weights import read_torch_weights
from rescompile.errors import RescompileError
from rescompile.ir.lower import lower
from rescompile.onnx_backend.emit import ExportOptions, export_onnx
from rescompile.spec import load_spec
from tests.checkpoint_helpers import FIXTURES, MODELS, fixture_state, write_safetensors, write_torch_zip
from tests.numerics import assert_close_to_scale

REFS = np.load(FIXTURES / "refs.npz")
FULL_SIZE = json.loads(gzip.decompress((FIXTURES / "full_size_keys.json.gz").read_bytes()))
"""Per library spec, the state-dict shapes of the torchvision/timm network it loads checkpoints of."""


@pytest.mark.parametrize("spec", sorted(FULL_SIZE))
def test_each_library_spec_names_every_tensor_of_its_reference_checkpoint(spec: str) -> None:
    """The IR of the full-size library spec gives exactly the keys and shapes of the published
    network's state dict (its BatchNorm step counters aside): nothing missing, nothing extra."""
    reference = FULL_SIZE[spec]
    graph = lower(load_spec(Path("specs") / f"{spec}.yaml"))
    named = {p.key: list(p.shape) for node in node_params(graph, reference["library"]) for p in node.params}
    shapes = {
        key: shape for key, shape in reference["shapes"].items() if not key.endswith("num_batches_tracked")
    }
    assert named == shapes
    assert detect(list(reference["shapes"])) == reference["library"]


def test_the_pth_file_and_the_safetensors_file_hold_the_same_tensors() -> None:
    from_pth = read_state_dict(FIXTURES / "tv_resnet_basic.pth")
    from_safetensors = fixture_state("tv_resnet_basic")
    assert from_pth.keys() == from_safetensors.keys() and len(from_pth) == 80
    for key, array in from_safetensors.items():
        assert from_pth[key].dtype == array.dtype and np.array_equal(from_pth[key], array), key


@pytest.mark.parametrize("name", MODELS)
def test_each_reference_checkpoint_exported_to_onnx_gives_torchs_logits(name: str) -> None:
    """The IR-derived names and layouts, proved without Keras: the checkpoint's tensors go straight
    to the ONNX emitter (BN folded) and onnxruntime reproduces torch's outputs."""
    analysis = analyze(FIXTURES / f"{name}.yaml")
    weights = read_torch_weights(FIXTURES / f"{name}.safetensors", analysis.graph)
    exported = export_onnx(analysis.network, weights, ExportOptions())
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    assert_close_to_scale(session.run(None, {"input": REFS["input"]})[0], REFS[name], relative=1e-5)


@pytest.mark.parametrize("position", ["pre", "post"])
def test_a_gate_where_timms_is_not_is_refused(position: str) -> None:
    """Weightless differences load silently unless refused: an SE gate elsewhere is one."""
    spec = load_spec(FIXTURES / "timm_seresnet.yaml")
    se = spec.options.se.model_copy(update={"position": position})
    moved = spec.model_copy(update={"options": spec.options.model_copy(update={"se": se})})
    assert node_params(lower(spec), "timm")
    with pytest.raises(
        NamingError, match=r"conv2_x_block1_se of timm_seresnet does not \(options.se.position"
    ):
        node_params(lower(moved), "timm")


@pytest.mark.parametrize(
    ("name", "convention"),
    [(name, "timm" if name.startswith("timm") else "torchvision") for name in MODELS],
)
def test_the_naming_convention_is_detected_from_the_keys(name: str, convention: str) -> None:
    assert detect(list(fixture_state(name))) == convention


def test_a_module_prefix_from_data_parallel_is_dropped(tmp_path: Path) -> None:
    state = fixture_state("tv_resnet_basic")
    path = write_safetensors(tmp_path / "dp.safetensors", {f"module.{k}": v for k, v in state.items()})
    assert read_state_dict(path).keys() == state.keys()


def test_half_and_bfloat16_tensors_widen_exactly_to_float32(tmp_path: Path) -> None:
    values = np.array([1.5, -2.25, 3.0e-3, 65504.0], dtype=np.float32)
    bfloat16_bits = (values.view(np.uint32) >> 16).astype(np.uint16)  # truncated to bfloat16
    path = write_safetensors(
        tmp_path / "half.safetensors", {"h": values.astype(np.float16), "b": bfloat16_bits}
    )
    read = read_state_dict(path)
    assert read["h"].dtype == np.float16 and np.array_equal(
        read["h"].astype(np.float32), values.astype(np.float16)
    )
    assert read["b"].dtype == np.float32 and np.array_equal(
        read["b"], (values.view(np.uint32) >> 16 << 16).view(np.float32)
    )


def _header_file(path: Path, header: bytes, data: bytes = b"", length: int | None = None) -> Path:
    path.write_bytes((len(header) if length is None else length).to_bytes(8, "little") + header + data)
    return path


@pytest.mark.parametrize(
    ("header", "data", "length", "says"),
    [
        (b"{}", b"", 10**12, "header length"),
        (b"not json", b"", None, "header is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, b"", None, "header is not JSON"),
        (b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}', b"\0" * 8, None, "do not hold"),
        (b'{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}', b"\0" * 16, None, "do not hold"),
        (
            b'{"w": {"dtype": "C64", "shape": [2], "data_offsets": [0, 16]}}',
            b"\0" * 16,
            None,
            "unknown dtype",
        ),
        (b'{"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}', b"\0" * 16, None, "bad shape"),
        (b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 0]}}', b"\0" * 16, None, "do not hold"),
    ],
)
def test_a_damaged_safetensors_file_is_one_line_naming_it(
    header: bytes, data: bytes, length: int | None, says: str, tmp_path: Path
) -> None:
    path = _header_file(tmp_path / "bad.safetensors", header, data, length)
    with pytest.raises(RescompileError) as error:
        read_state_dict(path)
    message = str(error.value)
    assert message.startswith(f"{path}: not a readable safetensors file: ") and says in message
    assert "\n" not in message and len(message) < 400


class _Payload:
    """What an attacker pickles: unpickling it would run a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_pth_whose_pickle_would_run_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = pickle.dumps({"conv1.weight": _Payload(f"touch {marker}")}, protocol=2)
    path = write_torch_zip(tmp_path / "evil.pth", payload)
    with pytest.raises(RescompileError) as error:
        read_state_dict(path)
    assert (
        str(error.value)
        == f"{path}: not a readable torch.save file: the pickle calls {os.system.__module__}.system"
    )
    assert not marker.exists()


@pytest.mark.parametrize(
    ("pickle_bytes", "says"),
    [
        (b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1;\x85R.", "the pickle calls builtins.eval"),
        (
            b"\x80\x02ctorch._utils\n_rebuild_parameter\n)R.",
            "the pickle calls torch._utils._rebuild_parameter",
        ),
        (b"\x80\x02ctorch\nFloatStorage\n)R.", "cannot read its pickle"),  # a storage type is no callable
        (b"\x80\x02X\x01\x00\x00\x00a\x94Q.", "an unknown persistent record"),
        (b"\x80\x02}q\x00.", "holds no state dict of tensors"),
        (b"\x80\x02\x8c", "cannot read its pickle"),  # truncated
    ],
)
def test_a_pth_with_anything_but_tensors_and_dicts_is_refused(
    pickle_bytes: bytes, says: str, tmp_path: Path
) -> None:
    path = write_torch_zip(tmp_path / "odd.pth", pickle_bytes)
    with pytest.raises(RescompileError) as error:
        read_state_dict(path)
    assert str(error.value).startswith(f"{path}: not a readable torch.save file: ") and says in str(
        error.value
    )


def _tensor_pickle(numel: int, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    """A one-tensor state dict {"w": tensor} in the opcodes torch.save writes: GLOBALs for the
    rebuild function and the storage type, the storage as a persistent id."""

    def text(value: str) -> bytes:
        return b"X" + len(value).to_bytes(4, "little") + value.encode()

    def integer(value: int) -> bytes:
        return b"J" + value.to_bytes(4, "little", signed=True)

    def numbers(values: tuple[int, ...]) -> bytes:
        return b"(" + b"".join(integer(v) for v in values) + b"t"

    storage = (
        b"(" + text("storage") + b"ctorch\nFloatStorage\n" + text("0") + text("cpu") + integer(numel) + b"tQ"
    )
    arguments = b"(" + storage + integer(offset) + numbers(size) + numbers(stride) + b"\x89N" + b"t"
    return b"\x80\x02}" + text("w") + b"ctorch._utils\n_rebuild_tensor_v2\n" + arguments + b"Rs."


def _one_tensor(tmp_path: Path, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> Path:
    storage = np.arange(6, dtype="<f4").tobytes()
    return write_torch_zip(tmp_path / "view.pth", _tensor_pickle(6, offset, size, stride), {"0": storage})


def test_a_tensor_is_its_strided_view_of_the_storage(tmp_path: Path) -> None:
    read = read_state_dict(_one_tensor(tmp_path, 0, (3, 2), (1, 3)))
    assert np.array_equal(read["w"], np.arange(6, dtype=np.float32).reshape(2, 3).T)
    assert np.array_equal(read_state_dict(_one_tensor(tmp_path, 2, (2, 2), (2, 1)))["w"], [[2, 3], [4, 5]])


@pytest.mark.parametrize(
    ("offset", "size", "stride", "says"),
    [
        (0, (3, 3), (3, 1), "reaching past its storage of 6"),
        (5, (2,), (1,), "reaching past its storage of 6"),
        (-1, (2,), (1,), "a bad offset or strides"),
        (0, (2, 2), (1,), "a bad offset or strides"),
        (0, (2, -2), (1, 1), "bad shape"),
    ],
)
def test_a_tensor_outside_its_storage_is_refused(
    offset: int, size: tuple[int, ...], stride: tuple[int, ...], says: str, tmp_path: Path
) -> None:
    with pytest.raises(RescompileError, match=says):
        read_state_dict(_one_tensor(tmp_path, offset, size, stride))


@pytest.mark.parametrize(  # BUILD with (None, slot state), or with a dict state
    ("state", "says"),
    [
        (b"N}", "the pickle sets attributes of a tensor or storage"),
        (b"}", r"cannot read its pickle \(AttributeError\)"),
    ],
)
def test_a_pickle_that_sets_attributes_of_a_tensor_is_refused(
    state: bytes, says: str, tmp_path: Path
) -> None:
    base = _tensor_pickle(6, 0, (2,), (1,))
    assert base.endswith(b"Rs.")
    attribute = b"X\x05\x00\x00\x00valueX\x01\x00\x00\x00xs"  # {"value": "x"}
    build = state + attribute + (b"\x86b" if state == b"N}" else b"b")
    path = write_torch_zip(tmp_path / "build.pth", base[:-2] + build + b"s.", {"0": bytes(24)})
    with pytest.raises(RescompileError, match=r"not a readable torch\.save file: " + says):
        read_state_dict(path)


def test_a_storage_shorter_than_its_tensor_or_compressed_is_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(FIXTURES / "tv_resnet_basic.pth") as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    short = tmp_path / "short.pth"
    with zipfile.ZipFile(short, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data[:-4] if name.endswith("/data/0") else data)
    with pytest.raises(RescompileError, match="data/0 holds 37628 bytes, not 37632"):
        read_state_dict(short)
    squeezed = tmp_path / "deflated.pth"
    with zipfile.ZipFile(squeezed, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(RescompileError, match="is compressed"):
        read_state_dict(squeezed)


def test_a_storage_claiming_more_bytes_than_the_file_holds_is_refused_before_reading(tmp_path: Path) -> None:
    """The zip's directory says how large a member is: a lie is found before it is allocated."""
    claimed = 0x1FFFFFFF * 4  # 2 GiB of float32, as the pickle and the directory both say
    path = write_torch_zip(tmp_path / "liar.pth", _tensor_pickle(0x1FFFFFFF, 0, (1,), (1,)), {"0": b"\0" * 8})
    raw = bytearray(path.read_bytes())
    entry = raw.index(b"PK\x01\x02", raw.index(b"PK\x01\x02") + 4)  # the directory entry of data/0
    raw[entry + 20 : entry + 28] = claimed.to_bytes(4, "little") * 2  # compressed and uncompressed sizes
    path.write_bytes(bytes(raw))
    with pytest.raises(
        RescompileError, match=f"archive/data/0 claims {claimed} bytes, more than it can hold"
    ):
        read_state_dict(path)


def test_a_pickle_that_is_no_zip_is_refused_unread(tmp_path: Path) -> None:
    """PyTorch before 1.6 wrote bare pickles: they are never unpickled."""
    marker = tmp_path / "ran"
    path = tmp_path / "legacy.pth"
    path.write_bytes(pickle.dumps(_Payload(f"touch {marker}")))
    with pytest.raises(RescompileError, match=r"not a zip file \(torch.save's format since PyTorch 1.6\)"):
        read_state_dict(path)
    assert not marker.exists()


def test_imagenet_preprocessing_travels_with_a_checkpoint_and_a_timm_config_gives_its_crop(
    tmp_path: Path,
) -> None:
    assert checkpoint_preprocess("w.h5") is None and checkpoint_preprocess(None) is None
    weights = tmp_path / "model.safetensors"
    assert checkpoint_preprocess(weights) == IMAGENET
    config = {
        "architecture": "resnet50d",
        "pretrained_cfg": {"crop_pct": 0.95, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    expected = IMAGENET.model_copy(update={"crop": 0.95, "mean": [0.5] * 3, "std": [0.5] * 3})
    assert checkpoint_preprocess(weights) == expected
    config["pretrained_cfg"] = {"crop_pct": 7, "std": [0, 1, 1]}  # nonsense is ignored
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert checkpoint_preprocess(weights) == IMAGENET
