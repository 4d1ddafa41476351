"""Serving through onnxruntime: export CLI, INT8, predict, bench, providers, doctor, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from rescompile import __version__
from rescompile.cpu import cpu_info
from rescompile.keras_backend.build import build_spec
from rescompile.keras_backend.model_file import model_record, save_model
from rescompile.serve.runtime import choose_providers
from rescompile.train.compute import auto_precision
from tests.synthetic import colour_images, write_cifar_batch

keras = pytest.importorskip("keras")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rescompile", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A CIFAR ResNet-20 trained briefly on colour classes, saved as .keras, plus data files."""
    folder = tmp_path_factory.mktemp("serving")
    keras.utils.set_random_seed(0)
    result = build_spec(Path("specs/cifar/resnet20.yaml"), folder)
    model = result.model
    images, labels = colour_images(640, seed=0)
    config = result.analysis.spec.preprocess
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(config.normalize(images.astype("float32")), labels, epochs=3, batch_size=64, verbose=0)
    save_model(model, result.model_path, model_record(result.analysis))
    held_out, held_labels = colour_images(300, seed=1)
    return {
        "folder": folder,
        "keras": result.model_path,
        "calibration": write_cifar_batch(folder / "data_batch_1", images[:256], labels[:256]),
        "held_out": held_out,
        "held_labels": held_labels,
        "config": config,
        "model": model,
    }


def test_export_cli_from_keras_then_int8_agrees_with_fp32(trained: dict) -> None:
    fp32, int8 = trained["folder"] / "r20.onnx", trained["folder"] / "r20_int8.onnx"
    names = trained["folder"] / "names.txt"
    names.write_text("\n".join(f"colour{i}" for i in range(10)))
    done = cli("export", str(trained["keras"]), "-o", str(fp32), "--class-names", str(names))
    assert done.returncode == 0, done.stderr
    done = cli(
        "export",
        str(trained["keras"]),
        "-o",
        str(int8),
        "--int8",
        "--calibration",
        str(trained["calibration"]),
    )
    assert done.returncode == 0, done.stderr
    x = trained["config"].normalize(trained["held_out"].astype("float32"))
    p32 = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    session8 = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    assert any(node.op_type == "QuantizeLinear" for node in _graph(int8).node)
    # The format quantize() chose: uint8 activations, int8 weights in 7 bits (reduce_range), so that
    # AVX2 / AVX-512 CPUs without VNNI (VPMADDUBSW, 16-bit pair sums) cannot saturate; stem float32.
    activations, weights, float_weights = _quantized_tensors(int8)
    assert activations and {zero_point.dtype for zero_point in activations} == {np.dtype(np.uint8)}
    assert weights and {w.dtype for w in weights} == {np.dtype(np.int8)}
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= 64, "weights not 7-bit"
    assert float_weights == [True] + [False] * (len(float_weights) - 1), "only the stem conv is float"
    p8 = session8.run(None, {"input": x})[0]
    # The same file with onnxruntime's exact U8U8 kernels forced on x86 (a no-op elsewhere). On AVX2
    # the outputs were identical with 7-bit weights and 0.02-0.95 apart with 8-bit ones (saturation);
    # the 2/256 allowance (softmax output steps) is for requantization rounding on unobserved CPUs.
    options = ort.SessionOptions()
    options.add_session_config_entry("session.x64quantprecision", "1")
    exact = ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    drift = np.abs(exact.run(None, {"input": x})[0] - p8).max()
    assert drift <= 2 / 256, f"INT8 kernels saturated on {cpu_info().describe()}: {drift:.3f}"
    keras_probabilities = trained["model"].predict(x, verbose=0)
    assert np.abs(p32 - keras_probabilities).max() < 1e-4
    assert (p32.argmax(1) == trained["held_labels"]).mean() > 0.5, "the model learnt the colours"
    agreement = (p8.argmax(1) == p32.argmax(1)).mean()
    assert agreement >= 0.95, f"INT8 agrees with fp32 on {agreement:.1%} on {cpu_info().describe()}"


def _quantized_tensors(path: Path) -> tuple[list[np.ndarray], list[np.ndarray], list[bool]]:
    """Zero points of the activations' QuantizeLinear nodes, the quantized weights (conv, Gemm), and
    for each Conv in graph order whether it reads float32 weights (not quantized)."""
    from onnx import numpy_helper

    graph = _graph(path)
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    float_weights = [
        node.input[1] in constants and constants[node.input[1]].dtype == np.float32 for node in convs
    ]
    activations = [
        constants[node.input[2]]
        for node in graph.node
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in constants
    ]
    dequantized = [node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"]
    weights = [constants[name] for name in dequantized if name in constants and constants[name].ndim >= 2]
    return activations, weights, float_weights


def _graph(path: Path):
    import onnx

    return onnx.load(str(path)).graph


def test_predict_reads_converts_and_names(trained: dict, tmp_path: Path) -> None:
    fp32 = trained["folder"] / "r20.onnx"
    if not fp32.exists():
        assert cli("export", str(trained["keras"]), "-o", str(fp32)).returncode == 0
    images, _ = colour_images(3, seed=5, size=48)  # another size: resized on reading
    paths = []
    for index, image in enumerate(images):
        path = tmp_path / f"img{index}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    Image.fromarray(images[0]).convert("L").save(tmp_path / "grey.png")
    Image.fromarray(images[0]).convert("RGBA").save(tmp_path / "alpha.png")
    paths += [tmp_path / "grey.png", tmp_path / "alpha.png"]
    done = cli("predict", str(fp32), *map(str, paths), "--top-k", "3", "--json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [len(r["top"]) for r in results] == [3] * 5
    assert all(abs(sum(t["p"] for t in r["top"]) - 1) < 1.0 + 1e-6 for r in results)
    keras_done = cli("predict", str(trained["keras"]), str(paths[0]), "--json")
    assert json.loads(keras_done.stdout)[0]["top"][0]["class"] == results[0]["top"][0]["class"]


def test_bench_reports_each_batch_size(trained: dict) -> None:
    fp32 = trained["folder"] / "bench.onnx"
    assert cli("export", str(trained["keras"]), "-o", str(fp32)).returncode == 0
    done = cli("bench", str(fp32), "--batch-size", "1,4", "--seconds", "0.2", "--provider", "cpu")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "4"]
    assert all(float(row.split("|")[2]) > 0 for row in rows)
    done = cli(
        "bench", str(fp32), "--batch-size", "2", "--seconds", "0.1", "--provider", "cpu", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["provider"] == "CPUExecutionProvider" and [r["batch"] for r in report["rows"]] == [2]
    row = report["rows"][0]
    assert row["runs"] >= 10 and row["p99_ms"] >= row["p50_ms"] > 0
    assert abs(row["images_per_second"] - 2 * 1000 / row["p50_ms"]) < 1e-6 * row["images_per_second"]


def test_bad_inputs_exit_2(tmp_path: Path, trained: dict) -> None:
    truncated = tmp_path / "truncated.onnx"
    fp32 = trained["folder"] / "bench.onnx"
    truncated.write_bytes((fp32 if fp32.exists() else trained["keras"]).read_bytes()[:500])
    not_image = tmp_path / "not_image.png"
    not_image.write_text("hello")
    cases = [
        cli("bench", str(truncated)),
        cli("predict", str(trained["keras"]).replace(".keras", ".onnx"), str(not_image)),
        cli("predict", str(fp32), str(not_image)),
        cli("export", str(tmp_path / "missing.keras"), "-o", str(tmp_path / "x.onnx")),
        cli("bench", str(fp32), "--provider", "tpu"),
    ]
    for done in cases:
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().startswith("error: ") and "Traceback" not in done.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_cuda_where_absent_is_a_clear_error() -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    from rescompile.errors import RescompileError

    with pytest.raises(RescompileError, match="CUDAExecutionProvider is not available"):
        choose_providers("cuda")
    assert choose_providers("auto") == ["CPUExecutionProvider"]


def test_doctor_reports_packages_providers_and_backend() -> None:
    done = cli("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "onnxruntime packages: onnxruntime" in done.stdout
    assert f"rescompile: {__version__} on Python 3." in done.stdout
    assert "CPUExecutionProvider" in done.stdout and "backend tensorflow" in done.stdout
    expected, _ = auto_precision(cpu_info(), None)  # no GPU on the machines tests run on
    assert f"train --precision auto: {expected}: " in done.stdout


def test_build_with_onnx_writes_both(tmp_path: Path) -> None:
    done = cli("build", "specs/cifar/resnet20.yaml", "--out", str(tmp_path), "--onnx")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cifar_resnet20.keras").is_file() and (tmp_path / "cifar_resnet20.onnx").is_file()
    assert "✓ Keras count_params() 271,098" in done.stdout
