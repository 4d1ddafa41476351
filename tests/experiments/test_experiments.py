"""Experiments end to end on tiny generated data: degradation, gradient flow, reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from rescompile.experiments.gradients import profile_spec
from rescompile.spec import load_spec
from tests.synthetic import write_cifar_tarball

pytest.importorskip("tensorflow")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rescompile", *args], capture_output=True, text=True)


def test_backprop_signal_vanishes_in_a_deep_plain_net_without_bn_but_not_in_its_residual_twin() -> None:
    # Glorot initialisation (Keras' default), no BatchNorm: what He init and BN were invented to fix.
    options = {"batchnorm": False, "initializer": "glorot_uniform"}
    plain = profile_spec(load_spec("specs/plain/plain56.yaml"), options)
    residual = profile_spec(load_spec("specs/cifar/resnet56.yaml"), options)
    assert len(plain.layers) == 56 and plain.layers[0] == "conv1_conv" and plain.layers[-1] == "predictions"
    assert plain.signal_first_to_last < 1e-6, plain.signal_first_to_last
    assert residual.signal_first_to_last > 1e-1, residual.signal_first_to_last
    assert all(n > 0 for n in plain.kernel_norms)


def test_gradients_command_writes_its_figure_and_data(tmp_path: Path) -> None:
    done = cli(
        "experiment", "gradients", "specs/cifar/resnet20.yaml", "--no-batchnorm", "specs/plain/plain20.yaml",
        "--initializer", "glorot_uniform", "--out", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((tmp_path / "gradients.json").read_text())
    assert [d["network"] for d in data] == [
        "cifar_resnet20",
        "cifar_plain20_batchnorm_false_initializer_glorot_uniform",
    ]
    assert all(len(d["signal_norms"]) == len(d["layers"]) == 20 for d in data)
    assert Image.open(tmp_path / "gradients.png").format == "PNG"


def test_degradation_refuses_to_reuse_runs_made_with_other_settings(tmp_path: Path) -> None:
    from rescompile.train.recipe import load_recipe
    from rescompile.train.run_dir import RECIPE, RunState, write_state

    tarball = write_cifar_tarball(tmp_path / "cifar.tar.gz", 64, 16)
    out = tmp_path / "degradation"
    earlier = out / "plain20"  # what `--epochs 1` left behind
    earlier.mkdir(parents=True)
    write_state(earlier, RunState(seed=0, epoch=1, step=4, data=str(tarball.resolve())))
    recipe = load_recipe("fast", ["epochs=1", "steps=null", "batch_size=16"]).model_copy(
        update={"validation": 0}
    )
    (earlier / RECIPE).write_text(recipe.model_dump_json())
    base = ("experiment", "degradation", "--depths", "20,32", "--recipe", "fast", "--out", str(out))
    for extra, fragment in (
        (("--data", str(tarball), "--epochs", "2", "--batch-size", "16"), "other settings (epochs)"),
        (("--data", str(tarball), "--epochs", "1", "--batch-size", "32"), "other settings (batch_size)"),
        (("--data", str(tmp_path), "--epochs", "1", "--batch-size", "16"), "other settings (data"),
        (
            ("--data", str(tarball), "--epochs", "1", "--batch-size", "16", "--precision", "mixed_float16"),
            "other settings (precision (float32))",
        ),
        (("--data", str(tarball), "--epochs", "1", "--batch-size", "16", "--seed", "3"), "(seed (0))"),
    ):
        done = cli(*base, *extra)
        assert done.returncode == 2, done.stderr[-2000:]
        assert fragment in done.stderr and "--force" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not (out / "results.json").exists()


@pytest.mark.slow  # 160 s on 2 cores: four networks trained; CI runs it with -m slow
def test_degradation_command_trains_twins_and_report_reads_results(tmp_path: Path) -> None:
    tarball = write_cifar_tarball(tmp_path / "cifar.tar.gz", 256, 64)
    out = tmp_path / "degradation"
    done = cli(
        "experiment", "degradation", "--depths", "20,32", "--data", str(tarball), "--epochs", "1",
        "--set", "batch_size=64", "--set", "steps=null", "--recipe", "fast", "--out", str(out),
        "--precision", "float32",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((out / "results.json").read_text())
    assert {(r["kind"], r["depth"]) for r in result["runs"]} == {
        ("plain", 20), ("residual", 20), ("plain", 32), ("residual", 32)
    }  # fmt: skip
    for run in result["runs"]:
        assert len(run["iterations"]) == len(run["train_error"]) == len(run["test_error"]) == 1
        assert 0 <= run["final_test_error"] <= 1
    assert isinstance(result["deeper_plain_trains_worse"], bool)
    figure = Image.open(out / "degradation.png")
    assert figure.format == "PNG" and figure.size[0] > figure.size[1]
    report = cli("report", str(out), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr[-2000:]
    rows = [line for line in report.stdout.splitlines() if line.startswith("| ") and "cifar_" in line]
    assert len(rows) == 4 and "91.25%" in report.stdout  # the paper's ResNet-20 accuracy alongside
    assert Image.open(tmp_path / "report" / "curves.png").format == "PNG"


def test_report_shows_the_paper_only_for_runs_on_its_dataset_from_any_directory(tmp_path: Path) -> None:
    from rescompile.spec import load_spec
    from rescompile.train.run_dir import METRIC_FIELDS, MetricsRow, RunSummary, write_metrics, write_summary

    expect = load_spec("specs/cifar/resnet20.yaml").expect
    assert expect.test_error_on("cifar10") == 8.75
    assert expect.test_error_on("digits") is None and expect.test_error_on("imagenet") is None
    for name, dataset in (("on_cifar", "cifar10"), ("on_folder", "digits")):
        run = tmp_path / name
        run.mkdir()
        summary = RunSummary(
            spec="cifar_resnet20", dataset=dataset, paper_test_error=expect.test_error_on(dataset),
            epochs=1, steps=10, test_accuracy=0.5, best_val_accuracy=0.5, wall_seconds=60.0,
            images_per_second=100.0, params=272_474, macs=40_551_232, precision="float32",
            distribute=None, replicas=1, recipe="fast",
        )  # fmt: skip
        write_summary(run, summary)
        write_metrics(run / "metrics.csv", [MetricsRow(*(1 for _ in METRIC_FIELDS))])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "rescompile", "report", "../on_cifar", "../on_folder", "--out", "."],
        cwd=elsewhere, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("| on_")}
    assert "91.25%" in rows["on_cifar"] and "91.25%" not in rows["on_folder"]
