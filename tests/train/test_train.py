"""Training end to end on generated data: loaders, augmentation, recipes, resume, NaN, distribution."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rescompile.errors import RescompileError
from rescompile.inputs.augment import Augment, Erasing
from rescompile.inputs.datasets import load_cifar, load_dataset
from rescompile.inputs.sources import open_source
from rescompile.train.recipe import load_recipe
from tests.run_helpers import interrupt_after_first_epoch
from tests.synthetic import colour_images, write_cifar_batch, write_cifar_tarball

tf = pytest.importorskip("tensorflow")


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rescompile", *args], capture_output=True, text=True, **kwargs
    )


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    return write_cifar_tarball(tmp_path_factory.mktemp("cifar") / "cifar-10-python.tar.gz", 600, 200)


def test_cifar_tarball_and_folder_load_through_the_real_loader(tarball: Path, tmp_path: Path) -> None:
    data = load_cifar(tarball)
    assert data.x_train.shape == (600, 32, 32, 3) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (200, 32, 32, 3) and data.class_names[3] == "colour3"
    expected, labels = colour_images(800, seed=0)
    assert np.array_equal(data.x_train, expected[:600]) and np.array_equal(data.y_test, labels[600:])
    import tarfile

    with tarfile.open(tarball) as archive:
        archive.extractall(tmp_path, filter="data")
    folder = load_dataset(str(tmp_path))
    assert np.array_equal(folder.x_train, data.x_train)


def test_bad_data_is_a_clear_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.tar.gz"
    corrupt.write_bytes(b"\x1f\x8b" + os.urandom(200))
    with pytest.raises(RescompileError, match="not a readable CIFAR tarball"):
        load_cifar(corrupt)
    with pytest.raises(RescompileError, match="no such file or folder"):
        load_cifar(tmp_path / "missing")
    (tmp_path / "images" / "cats").mkdir(parents=True)
    (tmp_path / "images" / "dogs").mkdir()
    Image.fromarray(colour_images(1)[0][0]).save(tmp_path / "images" / "cats" / "a.png")
    with pytest.raises(RescompileError, match="class folder 'dogs' has no PNG or JPEG images"):
        open_source(str(tmp_path / "images"), None, 2, seed=0, strict=False)
    folder = tmp_path / "bad_labels"
    folder.mkdir()
    images, labels = colour_images(20)
    labels[3] = 12
    for index in range(1, 6):
        write_cifar_batch(folder / f"data_batch_{index}", images, labels)
    write_cifar_batch(folder / "test_batch", images, labels % 10)
    with pytest.raises(RescompileError, match=r"train labels out of range 0..9: \[12\]"):
        load_cifar(folder)
    done = cli("train", "specs/cifar/resnet20.yaml", "--data", str(corrupt), "--out", str(tmp_path / "run"))
    assert done.returncode == 2 and done.stderr.startswith("error: --data") and "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "state.json").exists()


def _augment(config: Augment, image: np.ndarray, seed: int) -> np.ndarray:
    from rescompile.inputs.tfdata import augment_fn
    from rescompile.spec.preprocessing import Preprocessing

    identity = Preprocessing(mean=[0.0], std=[1.0])
    out, _ = augment_fn(config, identity, training=True)(
        tf.constant(image), tf.constant(0), tf.constant([seed, 0])
    )
    return out.numpy()


def test_pad_crop_and_flip_shift_the_image_and_are_deterministic() -> None:
    image = np.random.default_rng(0).integers(1, 255, (32, 32, 3)).astype(np.uint8)
    config = Augment(pad_crop=4, flip=True)
    outputs = [_augment(config, image, seed) for seed in range(20)]
    assert np.array_equal(outputs[0], _augment(config, image, 0))
    for out in outputs:
        found = False
        for flipped in (image, image[:, ::-1]):
            padded = np.pad(flipped.astype(np.float32), ((4, 4), (4, 4), (0, 0)))
            found |= any(
                np.array_equal(out, padded[dy : dy + 32, dx : dx + 32]) for dy in range(9) for dx in range(9)
            )
        assert found
    assert len({out.tobytes() for out in outputs}) > 10


def test_random_erasing_respects_its_parameters() -> None:
    image = np.full((32, 32, 3), 7, np.uint8)
    config = Augment(erasing=Erasing(p=0.5, area=[0.1, 0.2], aspect=[0.5, 2.0]))
    fractions = []
    for seed in range(200):
        erased = (_augment(config, image, seed) != 7).any(axis=2)
        fractions.append(erased.mean())
        if erased.any():
            rows, cols = np.nonzero(erased)
            assert erased[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all(), "one rectangle"
    applied = [f for f in fractions if f > 0]
    assert 0.35 < len(applied) / len(fractions) < 0.65
    assert min(applied) >= 0.07 and max(applied) <= 0.25


def test_recipes_and_schedules() -> None:
    from rescompile.train.schedule import make_schedule

    paper = load_recipe("paper")
    schedule = make_schedule(paper, steps_per_epoch=351, total_steps=64000)
    lrs = [float(schedule(step)) for step in (0, 31999, 32000, 47999, 48000)]
    assert np.allclose(lrs, [0.1, 0.1, 0.01, 0.01, 0.001])
    assert (paper.batch_size, paper.steps, paper.validation, paper.augment.pad_crop) == (128, 64000, 5000, 4)
    example = load_recipe("keras-example", ["epochs=50"])
    schedule = make_schedule(example, steps_per_epoch=100, total_steps=20000)
    assert np.allclose([float(schedule(s)) for s in (7999, 8000, 12000, 18000)], [1e-3, 1e-4, 1e-5, 5e-7])
    assert example.epochs == 50 and example.plateau.patience == 5
    fast = load_recipe("fast")
    schedule = make_schedule(fast, steps_per_epoch=100, total_steps=3000)
    assert float(schedule(450)) == pytest.approx(0.4) and float(schedule(3000)) == pytest.approx(
        0.0, abs=1e-6
    )
    warm = make_schedule(load_recipe("paper-warmup"), 351, 64000)
    assert float(warm(100)) == pytest.approx(0.01) and float(warm(400)) == pytest.approx(0.1)
    with pytest.raises(RescompileError, match=r"optimizer\.lrr"):
        load_recipe("paper", ["optimizer.lrr=1"])


def _train_args(tarball: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "specs/cifar/resnet20.yaml",
        "--data",
        str(tarball),
        "--out",
        str(out),
        "--recipe",
        "fast",
        "--batch-size",
        "64",
        "--set",
        "validation=100",
        "--set",
        "optimizer.lr=0.05",
        "--precision",
        "float32",
        *extra,
    ]


@pytest.mark.slow  # 128 s on 2 cores: the default run stays under 20 minutes
def test_a_run_interrupted_by_ctrl_c_resumes_from_its_directory_alone_and_learns(
    tarball: Path, tmp_path: Path
) -> None:
    from rescompile.train.run_dir import read_recipe, read_state, read_summary

    run = tmp_path / "run"
    status, stderr = interrupt_after_first_epoch(_train_args(tarball, run, "--epochs", "3"), run)
    assert status == 130, stderr[-2000:]
    state = read_state(run)
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: interrupted; the last checkpoint (epoch {state.epoch}, step ")
    assert last.endswith(
        f"continue with `rescompile train --resume --out {run}` (the interrupted epoch restarts)"
    )
    assert state.data == str(tarball.resolve()) and state.seed == 0 and (run / "spec.json").is_file()
    assert read_recipe(run).epochs == 3
    refused = {
        "--data": ("--data", str(tmp_path)),
        "recipe": ("--epochs", "2"),
        "SPEC": ("specs/cifar/resnet32.yaml",),
    }
    for fragment, extra in refused.items():
        done = cli("train", "--resume", "--out", str(run), *extra)
        assert done.returncode == 2 and fragment in done.stderr and len(done.stderr.splitlines()) == 1, (
            done.stderr
        )
    elsewhere = tmp_path / "elsewhere"  # no specs/ here: the run's spec.json and recorded data serve
    elsewhere.mkdir()
    done = cli("train", "--resume", "--out", str(run), cwd=elsewhere)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(
        f"training cifar_resnet20 ({run / 'spec.json'}) on cifar10, recipe fast, into {run},"
        f" resuming after epoch {state.epoch}"
    )
    summary = read_summary(run)
    assert summary.test_accuracy > 0.3, "well above chance (0.1) on colour classes"
    assert summary.epochs == 3 and summary.steps == 3 * (500 // 64)
    assert summary.data == state.data and summary.recipe == "fast"
    for name in ("metrics.csv", "model.keras", "model.onnx", "loss.png", "accuracy.png", "lr.png"):
        assert (run / name).stat().st_size > 0, name
    events = list((run / "logs").rglob("events.out.tfevents.*"))
    assert {path.parent.name for path in events} >= {"train", "validation"}, "TensorBoard logs"
    assert Image.open(run / "loss.png").format == "PNG"
    evaluated = cli("evaluate", str(run), "--data", str(tarball))
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"accuracy {summary.test_accuracy:.2%}" in evaluated.stdout
    assert (run / "confusion.png").exists()


@pytest.mark.slow  # 80 s on 2 cores; CI runs it with -m slow
def test_sigkill_mid_epoch_then_resume_continues_at_the_right_step(tarball: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "rescompile", *_train_args(tarball, run, "--epochs", "4")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline:
        state = run / "state.json"
        if state.exists() and json.loads(state.read_text())["epoch"] >= 2:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = json.loads((run / "state.json").read_text())["epoch"]
    assert 2 <= killed_at < 4
    done = cli("train", "--resume", "--out", str(run))  # the run's own spec, data and recipe
    assert done.returncode == 0, done.stderr[-2000:]
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    steps_per_epoch = 500 // 64
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [int(r["step"]) for r in rows] == [steps_per_epoch * e for e in (1, 2, 3, 4)]
    lrs = [float(r["lr"]) for r in rows]
    assert lrs == sorted(lrs, reverse=True), "one-cycle keeps decaying across the resume"
    assert json.loads((run / "summary.json").read_text())["steps"] == 4 * steps_per_epoch


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(
    tarball: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    explode = ["--set", "schedule.kind=piecewise", "--set", "schedule.unit=epochs"]
    explode += ["--set", "schedule.boundaries=[1]", "--set", "schedule.factors=[1.0e+12]"]
    done = cli(*_train_args(tarball, run, "--epochs", "3", *explode))
    assert done.returncode == 2
    assert "loss became NaN" in done.stderr and "last good checkpoint (epoch 1)" in done.stderr
    assert json.loads((run / "state.json").read_text())["epoch"] == 1
    assert (run / "checkpoint.keras").exists()


@pytest.mark.slow  # 130 s on 2 cores; CI runs it with -m slow
def test_mirrored_on_two_cpu_devices_matches_single_device(tarball: Path, tmp_path: Path) -> None:
    losses = {}
    for name, extra in (("single", []), ("mirrored", ["--distribute", "mirrored", "--cpu-devices", "2"])):
        run = tmp_path / name
        done = cli(*_train_args(tarball, run, "--epochs", "2", "--set", "augment.erasing=null", *extra))
        assert done.returncode == 0, done.stderr[-2000:]
        with (run / "metrics.csv").open() as handle:
            losses[name] = [float(r["loss"]) for r in csv.DictReader(handle)]
        summary = json.loads((run / "summary.json").read_text())
        assert (summary["distribute"], summary["replicas"]) == ((extra[1], 2) if extra else (None, 1))
    # Same global batch, same data order; per-replica BatchNorm statistics differ, so within noise.
    assert np.allclose(losses["single"], losses["mirrored"], rtol=0.25), losses


def test_keras_datasets_fallback_shapes_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    from rescompile.inputs.datasets import load_keras_cifar

    images, labels = colour_images(30)
    fake = ((images[:20], labels[:20, None]), (images[20:], labels[20:, None]))  # keras gives (N, 1) labels
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: fake)
    data = load_dataset(None)
    assert data.y_train.shape == (20,) and data.class_names[0] == "airplane" and len(data.x_test) == 10

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(RescompileError, match=r"cannot fetch CIFAR-10 through keras\.datasets"):
        load_keras_cifar()


@pytest.mark.slow  # 46 s on 2 cores; CI runs it with -m slow
def test_multiworker_strategy_as_a_single_worker(tarball: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = cli(*_train_args(tarball, run, "--epochs", "1", "--distribute", "multiworker"))
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["distribute"], summary["replicas"]) == ("multiworker", 1)
