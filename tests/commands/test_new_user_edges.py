"""What a new user meets first: commands take what README says they take, and a file of the wrong
kind is named for what it is, with what to do."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rescompile.errors import RescompileError
from rescompile.inputs.datasets import load_dataset


def cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rescompile", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def _complete(words: str, cwd: Path) -> list[str]:
    """What bash completion offers for the last word of `words` (click's completion protocol)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "_RESCOMPILE_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    done = cli(cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_spec_names_complete_in_the_shell(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("name: mine\n")
    (tmp_path / "notes.txt").write_text("")
    assert _complete("rescompile build resn", tmp_path)[:3] == ["resnet101", "resnet101_v1.5", "resnet152"]
    assert "resnet50" in _complete("rescompile build resn", tmp_path)
    assert _complete("rescompile train cifar/resnet2", tmp_path) == ["cifar/resnet20"]
    assert _complete("rescompile export keras/resnet50", tmp_path) == ["keras/resnet50", "keras/resnet50v2"]
    offered = _complete("rescompile experiment gradients m", tmp_path)
    assert "mine.yaml" in offered and "notes.txt" not in offered


def test_model_files_given_as_a_spec_or_as_onnx_say_what_they_are(tmp_path: Path) -> None:
    keras_file = tmp_path / "model.keras"
    with zipfile.ZipFile(keras_file, "w") as archive:
        archive.writestr("config.json", "{}")
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\x08\x07\x12\x04test")
    weights = tmp_path / "weights.h5"
    weights.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    for given, what, advice in (
        (keras_file, "a Keras model (.keras)", "export, predict and evaluate take it as MODEL"),
        (onnx_file, "an ONNX model", "predict, bench, evaluate and `table --from-onnx` take it"),
        (weights, "HDF5 weights", "build and train take it as --weights"),
    ):
        done = cli("build", str(given), "--out", str(tmp_path / "out"))
        assert done.returncode == 2
        assert done.stderr == f"error: {given} is {what}, not a spec (a YAML stage table): {advice}\n"
    assert not (tmp_path / "out").exists()
    for command in (("bench", str(keras_file)), ("table", "--from-onnx", str(keras_file))):
        done = cli(*command)
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
        assert f"{keras_file} is a Keras model (.keras), not an ONNX model: `rescompile export" in done.stderr


def test_a_folder_of_loose_images_is_named_as_such(tmp_path: Path) -> None:
    for index in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"img{index}.png")
    with pytest.raises(RescompileError, match=r"images \(img0.png, ...\) but no class folders"):
        load_dataset(str(tmp_path))


def test_experiment_gradients_takes_library_names(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    done = cli("experiment", "gradients", "cifar/resnet20", "--batch-size", "2", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("cifar_resnet20: backprop signal")
    done = cli("experiment", "gradients", "cifar/resnet21", "--out", str(tmp_path))
    assert done.returncode == 2 and "did you mean" in done.stderr and "'cifar/resnet20'" in done.stderr


def test_build_help_and_imagenet_weights_point_at_the_keras_specs(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    assert "rescompile build keras/resnet50 --weights imagenet" in cli("build", "--help").stdout
    done = cli("build", "cifar/resnet20", "--weights", "imagenet", "--out", str(tmp_path / "b"))
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert "--weights imagenet needs a keras.applications-faithful spec, not cifar_resnet20" in done.stderr
    assert "fit the specs under keras/, which use its layer names" in done.stderr
    assert "`rescompile build keras/resnet50 --weights imagenet`" in done.stderr
    assert not (tmp_path / "b").exists(), "a failed build leaves no empty folder"


NATIVE_LOGS = """
import os, sys
from rescompile.quiet import import_keras_quietly_when_needed
import_keras_quietly_when_needed(filter_logs=True)
import keras
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
os.write(2, b"E0000 00:00:1796273201.522811   24423 cuda_platform.cc:52] failed call to cuInit: UNKNOWN\\n")
os.write(2, b"I0000 00:00:1796273719.491153    6274 cpu_feature_guard.cc:210] This TensorFlow binary\\n")
os.write(2, b"2026-12-03 04:00:00.123456: I tensorflow/core/util/port.cc:153] oneDNN custom operations\\n")
print("error: kept", file=sys.stderr)
os.write(2, b"a native line that is not a log line\\n")
"""


def test_tensorflows_native_log_lines_never_reach_stderr() -> None:
    pytest.importorskip("keras")
    done = subprocess.run([sys.executable, "-c", NATIVE_LOGS], capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stderr == "error: kept\na native line that is not a log line\n"


def test_train_checks_data_before_importing_tensorflow(tmp_path: Path) -> None:
    from tests.commands.test_light_install import light

    for option in ("--data", "--val-data"):
        done = light(
            "train", "cifar/resnet20", option, str(tmp_path / "missing"), "--out", str(tmp_path / "r")
        )
        assert done.returncode == 2
        assert done.stderr.startswith(f"error: {option} {tmp_path / 'missing'}: no such file or folder\n")
        assert done.stderr.strip().endswith("loaded: []"), "said before TensorFlow is imported"
    done = light("train", "cifar/resnet20", "--data", str(tmp_path / "train-*"), "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "no TFRecord shards match" in done.stderr


def test_unknown_recipe_fields_blame_the_option_and_suggest() -> None:
    from rescompile.train.recipe import load_recipe

    with pytest.raises(RescompileError) as caught:
        load_recipe("paper", ["optimizer.lrr=0.1"])
    assert str(caught.value) == (
        "--set optimizer.lrr: unknown field (did you mean optimizer.lr?);"
        " optimizer has name, lr, momentum, nesterov, weight_decay, reference_batch"
    )
    with pytest.raises(RescompileError, match=r"^--set epoch: unknown field \(did you mean epochs\?\)"):
        load_recipe("paper", ["epoch=3"])


def test_degradation_needs_two_depths(tmp_path: Path) -> None:
    for depths in ("20", "56,56"):
        done = cli("experiment", "degradation", "--depths", depths, "--out", str(tmp_path / "d"))
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
        assert "the study compares a shallower and a deeper pair of twins; give two depths" in done.stderr
    assert not (tmp_path / "d").exists()


def test_help_shows_placeholders_not_python_types() -> None:
    env = {**os.environ, "COLUMNS": "200"}
    predict = cli("predict", "--help", env=env).stdout
    assert "Usage: rescompile predict [OPTIONS] MODEL IMAGES..." in predict and "<path>..." in predict
    train = cli("train", "--help", env=env).stdout
    assert "Usage: rescompile train [OPTIONS] [SPEC]" in train and "KEY=VALUE" in train
    assert "Usage: rescompile diff [OPTIONS] [OLD NEW | PATH...]" in cli("diff", "--help", env=env).stdout
    for text in (predict, train):
        assert "<bool>" not in text and "list[" not in text and "{" not in text
