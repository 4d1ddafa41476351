"""Model files carry their spec, classifier and preprocessing: a trained run's per-pixel mean and
class count reach every consumer (predict, export, INT8 calibration), from any directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from rescompile.spec.artifact import read_keras_record
from tests.numerics import assert_close_to_scale
from tests.synthetic import colour_images

keras = pytest.importorskip("keras")
ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rescompile", *args], capture_output=True, text=True, cwd=cwd
    )


def onnx_meta(path: Path) -> dict:
    return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """ResNet-20 trained one epoch on an image folder of 3 classes (the spec has 10)."""
    root = tmp_path_factory.mktemp("record")
    images, labels = colour_images(240, seed=3)
    labels = labels % 3
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / "data" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index}.png")
    run_dir = root / "run"
    done = cli(
        "train", "specs/cifar/resnet20.yaml", "--data", str(root / "data"), "--out", str(run_dir),
        "--recipe", "paper", "--epochs", "1", "--batch-size", "32", "--set", "validation=20",
        "--precision", "float32",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    probes = [root / "data" / f"class{k}" / name for k in range(3) for name in sorted(
        p.name for p in (root / "data" / f"class{k}").iterdir())[:2]]  # fmt: skip
    return {"root": root, "run": run_dir, "probes": probes, "stdout": done.stdout}


def test_trained_model_records_the_data_classes_and_the_run_mean(run: dict) -> None:
    record = read_keras_record(run["run"] / "model.keras")
    assert record is not None and record.classes == 3
    assert record.class_names == ["class0", "class1", "class2"]
    mean = np.asarray(record.preprocess.mean)
    assert mean.shape == (32, 32, 3) and 0.1 < mean.mean() < 0.9, "the per-pixel mean of the run, scaled"
    session_meta = onnx_meta(run["run"] / "model.onnx")
    assert json.loads(session_meta["preprocess"])["mean"] == record.preprocess.mean
    assert (
        onnx.load(str(run["run"] / "model.onnx")).graph.output[0].type.tensor_type.shape.dim[1].dim_value == 3
    )


def test_the_run_records_its_precision_and_a_resume_keeps_it(run: dict) -> None:
    state = run["run"] / "state.json"
    assert json.loads(state.read_text())["precision"] == "float32"
    assert "; float32 (as asked)" in run["stdout"]
    before = state.read_bytes()
    refused = cli("train", "--resume", "--out", str(run["run"]), "--precision", "mixed_float16")
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()  # this run has finished: it is refused before any option
    assert len(lines) == 1 and lines[0].startswith(f"error: --resume: {run['run']} has finished"), lines
    assert state.read_bytes() == before


def test_keras_and_onnx_of_a_run_predict_alike_from_another_directory(run: dict, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    exported = elsewhere / "again.onnx"
    done = cli("export", str(run["run"] / "model.keras"), "-o", str(exported), cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert json.loads(onnx_meta(exported)["preprocess"]) == json.loads(
        onnx_meta(run["run"] / "model.onnx")["preprocess"]
    )
    answers = []
    for model in (run["run"] / "model.keras", run["run"] / "model.onnx", exported):
        done = cli("predict", str(model), *map(str, run["probes"]), "--json", "--top-k", "3", cwd=elsewhere)
        assert done.returncode == 0, done.stderr
        answers.append(json.loads(done.stdout))
    for keras_result, *onnx_results in zip(*answers, strict=True):
        keras_p = {t["class"]: t["p"] for t in keras_result["top"]}
        for other in onnx_results:
            assert other["top"][0]["name"] == keras_result["top"][0]["name"]
            assert all(abs(keras_p[t["class"]] - t["p"]) < 1e-4 for t in other["top"])


def test_int8_calibrates_with_the_run_preprocessing(run: dict, monkeypatch, tmp_path: Path) -> None:
    from rescompile.commands.export import export_int8
    from rescompile.inputs.calibration import calibration_images
    from rescompile.onnx_backend import quantize
    from rescompile.onnx_backend.emit import ExportOptions

    seen = {}

    def capture(model_path, output, calibration, *, preprocessing):
        seen["preprocessing"] = preprocessing
        Path(output).write_bytes(Path(model_path).read_bytes())

    def images(size: int):
        return calibration_images(run["probes"][0].parent, size, 8)

    monkeypatch.setattr(quantize, "quantize", capture)
    export_int8(run["run"] / "model.keras", tmp_path / "q.onnx", ExportOptions(), calibration=images)
    record = read_keras_record(run["run"] / "model.keras")
    assert seen["preprocessing"] == record.preprocess


@pytest.mark.slow  # 26 s; the class-names test also builds with --classes; CI runs it with -m slow
def test_build_classes_override_reaches_ir_keras_and_onnx(tmp_path: Path) -> None:
    done = cli("build", "specs/cifar/resnet20.yaml", "--classes", "3", "--onnx", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "not compared" in done.stdout and "✗" not in done.stdout
    assert "✓ Keras count_params() 270,643 (IR: 270,643)" in done.stdout
    model = onnx.load(str(tmp_path / "cifar_resnet20.onnx"))
    assert model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 3
    assert read_keras_record(tmp_path / "cifar_resnet20.keras").classes == 3
    again = cli("export", str(tmp_path / "cifar_resnet20.keras"), "-o", str(tmp_path / "again.onnx"))
    assert again.returncode == 0, again.stderr


@pytest.mark.slow  # 40 s on 2 cores: the default run stays under 20 minutes
def test_imagenet_specs_carry_the_class_names_into_keras_onnx_and_predict(tmp_path: Path) -> None:
    names = (ROOT / "rescompile/spec/imagenet_classes.txt").read_text().splitlines()
    assert len(names) == 1000 and names[281] == "n02123045 tabby" and names[0] == "n01440764 tench"
    out = tmp_path / "onnx"
    done = cli("build", "resnet18", "--onnx", "--out", str(out), "--input-size", "64")
    assert done.returncode == 0, done.stderr[-2000:]
    record = read_keras_record(out / "resnet18.keras")
    assert record.class_names[281] == "tabby" and len(record.class_names) == 1000
    image = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(image)
    readable = {name.split(" ", 1)[1] for name in names}
    for model in (out / "resnet18.onnx", out / "resnet18.keras"):
        done = cli("predict", str(model), str(image), "--json", "--top-k", "3")
        assert done.returncode == 0, done.stderr[-2000:]
        top = json.loads(done.stdout)[0]["top"]
        assert all(t["name"] in readable and t["name"] == record.class_names[t["class"]] for t in top)
    retrained = cli(
        "build", "resnet18", "--classes", "5", "--input-size", "64", "--out", str(tmp_path / "five")
    )
    assert retrained.returncode == 0, retrained.stderr[-2000:]
    assert read_keras_record(tmp_path / "five" / "resnet18.keras").class_names == []


def test_stage_outputs_build_and_export(tmp_path: Path) -> None:
    import onnxruntime as ort

    done = cli("build", "specs/cifar/resnet20.yaml", "--outputs", "C3,C4", "--onnx", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "✗" not in done.stdout
    session = ort.InferenceSession(str(tmp_path / "cifar_resnet20.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    onnx_features = session.run(None, {"input": x})
    model = keras.saving.load_model(tmp_path / "cifar_resnet20.keras")
    keras_features = model.predict(x, verbose=0)
    for ours, theirs in zip(onnx_features, keras_features, strict=True):
        assert_close_to_scale(ours, theirs.transpose(0, 3, 1, 2))
    again = cli("export", str(tmp_path / "cifar_resnet20.keras"), "-o", str(tmp_path / "again.onnx"))
    assert again.returncode == 0, again.stderr


def test_keras_file_loads_with_plain_keras_in_a_python_without_rescompile(tmp_path: Path) -> None:
    """The .keras file carries its resolved spec, loads with plain Keras; a copy re-saved by plain
    Keras has no record, so export refuses to guess and takes --spec (a library name) instead."""
    import onnxruntime as ort

    from rescompile.spec.loader import load_spec

    assert cli("build", "specs/cifar/resnet20.yaml", "--out", str(tmp_path)).returncode == 0
    built = tmp_path / "cifar_resnet20.keras"
    spec = load_spec(ROOT / "specs/cifar/resnet20.yaml").model_dump(mode="json")
    assert read_keras_record(built).spec == spec
    resaved = tmp_path / "resaved.keras"
    code = (
        "import sys, keras; sys.modules['rescompile'] = None; "
        f"m = keras.saving.load_model({str(built)!r}); print(m.count_params()); m.save({str(resaved)!r})"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("271098")
    assert read_keras_record(resaved) is None

    onnx_path = tmp_path / "resaved.onnx"
    refused = cli("export", str(resaved), "-o", str(onnx_path), cwd=tmp_path)
    assert refused.returncode == 2 and "pass --spec" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not onnx_path.exists()
    done = cli("export", str(resaved), "-o", str(onnx_path), "--spec", "cifar/resnet20", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(onnx_meta(onnx_path)["rescompile"])["spec"] == spec
    x = np.random.default_rng(1).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    expected = keras.saving.load_model(built).predict(x, verbose=0)
    np.testing.assert_allclose(session.run(None, {"input": x})[0], expected, atol=1e-5)
