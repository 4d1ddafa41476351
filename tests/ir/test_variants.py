"""Spec-language variants outside the library: deep stem, other input channels, CIFAR-100, precision."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rescompile.analysis.analyze import analyze
from rescompile.inputs.datasets import load_cifar
from rescompile.ir.target import Target
from tests.synthetic import colour_images, write_cifar_batch, write_cifar_tarball

DEEP_STEM = """\
name: resnet50_deep_stem
source: ResNet-D style deep stem (three 3x3 convs) on a single-channel input
input: {size: 224, channels: 1}
stem:
  - {conv: [3, 32], stride: 2}
  - {conv: [3, 32]}
  - {conv: [3, 64]}
  - {maxpool: 3, stride: 2}
stages:
  - {name: conv2, output: 56, block: [[1, 64], [3, 64], [1, 256]], repeat: 3}
  - {name: conv3, output: 28, block: [[1, 128], [3, 128], [1, 512]], repeat: 4}
  - {name: conv4, output: 14, block: [[1, 256], [3, 256], [1, 1024]], repeat: 6}
  - {name: conv5, output: 7, block: [[1, 512], [3, 512], [1, 2048]], repeat: 3}
head: {pool: avg, classes: 1000}
preprocess: {mean: [0.5], std: [0.25]}
outputs: [C3, C4, C5]
"""


def test_deep_stem_on_one_channel_counts_its_three_convs(tmp_path: Path) -> None:
    spec = tmp_path / "deep.yaml"
    spec.write_text(DEEP_STEM)
    deep, paper = analyze(spec), analyze("specs/resnet50.yaml", Target(outputs=("C3", "C4", "C5")))
    stem_params = (3 * 3 * 1 * 32 + 64) + (3 * 3 * 32 * 32 + 64) + (3 * 3 * 32 * 64 + 128)
    paper_stem = 7 * 7 * 3 * 64 + 128
    assert deep.cost.params - paper.cost.params == stem_params - paper_stem
    assert [n.name for n in deep.graph.nodes if n.stage == "stem"][:4] == [
        "conv1_conv",
        "conv1_bn",
        "conv1_relu",
        "conv1_2_conv",
    ]
    assert deep.graph.outputs["C5"] == "conv5_block3_out"
    assert deep.cost.depth == 51, "3 stem convs and 48 in blocks; the features model has no fc"
    assert not any(n.stage == "head" for n in deep.graph.nodes)


def test_cifar100_python_archive(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    images, labels = colour_images(50, seed=2)
    fine = (labels * 10 + 3) % 100
    write_cifar_batch(folder / "train", images, fine)
    write_cifar_batch(folder / "test", images[:10], fine[:10])
    data = load_cifar(folder, classes=100)
    assert data.classes == 100 and data.y_train.max() < 100 and len(data.x_test) == 10


@pytest.mark.slow  # 70 s: bfloat16 is emulated on CPUs without AVX512_BF16; CI runs it with -m slow
@pytest.mark.parametrize("precision", ["mixed_bfloat16"])
def test_mixed_precision_and_xla_train(precision: str, tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    tarball = write_cifar_tarball(tmp_path / "cifar.tar.gz", 256, 64)
    run = tmp_path / "run"
    args = [
        "train",
        "specs/cifar/resnet20.yaml",
        "--data",
        str(tarball),
        "--out",
        str(run),
        "--recipe",
        "fast",
    ]
    args += [
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--set",
        "validation=64",
        "--precision",
        precision,
        "--jit",
    ]
    done = subprocess.run([sys.executable, "-m", "rescompile", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["precision"] == precision and np.isfinite(summary["test_accuracy"])
    import onnx

    assert onnx.load(str(run / "model.onnx")).graph.initializer[0].data_type == onnx.TensorProto.FLOAT
