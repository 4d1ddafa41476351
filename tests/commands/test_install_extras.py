"""One onnxruntime per install: the `cpu` and `gpu` extras resolved by pip, a command needing
onnxruntime without it, and doctor's CUDA findings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rescompile import doctor
from tests.commands.test_light_install import WITHOUT_KERAS

ROOT = Path(__file__).resolve().parents[2]
WITHOUT_ONNXRUNTIME = WITHOUT_KERAS.replace('"jax"}', '"jax", "onnxruntime"}')


def test_without_onnxruntime_a_command_names_the_extras(tmp_path: Path) -> None:
    assert WITHOUT_ONNXRUNTIME != WITHOUT_KERAS
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not read")
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_ONNXRUNTIME, "bench", str(model)], capture_output=True, text=True
    )
    error = done.stderr.splitlines()[0]
    assert done.returncode == 2, done.stderr
    assert error.startswith("error: this command runs ONNX models on onnxruntime, which this install lacks")
    assert "pip install 'rescompile[cpu]' (or 'rescompile[gpu]'" in error
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_ONNXRUNTIME, "doctor"], capture_output=True, text=True
    )
    assert "BAD  onnxruntime providers: cannot import onnxruntime" in done.stdout  # (its metadata stays)
    assert done.returncode == 1


def test_doctor_says_which_cuda_pairing_works() -> None:
    _, finding, ok = doctor.cuda_pairing("13.0", "12.5.1")
    assert not ok and "built for CUDA 13.0, TensorFlow for CUDA 12.5.1" in finding
    assert "onnxruntime-gpu 1.22-1.26 (CUDA 12) with tensorflow[and-cuda]" in finding
    assert doctor.cuda_pairing("12.6", "12.5.1") == (
        "CUDA pairing",
        "onnxruntime-gpu and TensorFlow both use CUDA 12",
        True,
    )


def test_doctor_marks_a_missing_cudnn_as_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    def cdll(name: str):
        if name.startswith("libcudnn"):
            raise OSError(f"{name}: cannot open shared object file")
        return object()

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    _, finding, ok = doctor._cuda_libraries("12.6")
    assert not ok and "cuDNN 9 not found: the CUDA provider will fail" in finding
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())
    assert doctor._cuda_libraries("12.6")[2]


def _resolve(target: str) -> dict[str, str]:
    """{distribution: version} of what `pip install TARGET` would install into an empty venv."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q", "--report", "-",
         target],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        if re.search(
            r"connection|network|resolve host|No matching distribution|Could not find", done.stderr, re.I
        ):
            pytest.skip(f"the package index is unreachable: {done.stderr.strip().splitlines()[-1]}")
        raise AssertionError(done.stderr[-3000:])
    report = json.loads(done.stdout)
    return {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]}


@pytest.mark.slow  # pip resolves TensorFlow, JAX and the CUDA libraries from the index: about a minute each
@pytest.mark.parametrize(
    ("extras", "runtime"),
    [("", None), ("[cpu]", "onnxruntime"), ("[cpu,dev]", "onnxruntime"), ("[gpu]", "onnxruntime-gpu"),
     ("[gpu,dev]", "onnxruntime-gpu")],
)  # fmt: skip
def test_each_extra_resolves_to_exactly_one_onnxruntime(extras: str, runtime: str | None) -> None:
    installed = _resolve(f".{extras}")
    runtimes = {name for name in installed if name in ("onnxruntime", "onnxruntime-gpu")}
    assert runtimes == ({runtime} if runtime else set()), installed
    if runtime == "onnxruntime-gpu":
        major, minor = map(int, installed["onnxruntime-gpu"].split(".")[:2])
        assert (major, minor) < (1, 27), "1.27 and later are built for CUDA 13"
        cuda = {name for name in installed if name.startswith("nvidia-")}
        assert "nvidia-cudnn-cu12" in cuda and "nvidia-cuda-runtime-cu12" in cuda
        assert all(name.endswith("-cu12") for name in cuda), sorted(cuda)  # one CUDA: TensorFlow's 12
    if extras == "":
        assert "tensorflow" not in installed and "keras" not in installed
