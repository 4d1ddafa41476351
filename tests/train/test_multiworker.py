"""Two `rescompile train --distribute multiworker` processes on 127.0.0.1 (CPU): both finish, only
the chief writes the run directory, the weights match one process splitting the same global batch
over two logical CPUs (MirroredStrategy: the same per-replica batches), and a job killed after its
first checkpoint resumes on both workers to the weights of the uninterrupted job."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import write_image_folder

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def train_args(data: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "rescompile", "train", "specs/cifar/resnet20.yaml", "--data", str(data),
        "--epochs", "2", "--batch-size", "32", "--set", "validation=0", "--out", str(out), "--no-tensorboard",
        "--precision", "float32",
    ]  # fmt: skip


def start_workers(*args: str) -> list[subprocess.Popen]:
    """Two workers of one job on free local ports, each running `args`."""
    cluster = [f"127.0.0.1:{port}" for port in free_ports(2)]
    workers = []
    for index in range(2):
        config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "CUDA_VISIBLE_DEVICES": ""}
        workers.append(
            subprocess.Popen(
                [*args, "--distribute", "multiworker"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return workers


def finished(workers: list[subprocess.Popen]) -> list[str]:
    """The workers' standard outputs, once both have succeeded."""
    outputs = [worker.communicate(timeout=900) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
    return [out for out, _ in outputs]


def largest_difference(a: Path, b: Path) -> float:
    """The largest difference between two saved models' trainable tensors, relative to each
    tensor's largest magnitude (at least 1)."""
    import keras

    first, second = keras.saving.load_model(a), keras.saving.load_model(b)
    assert len(first.trainable_weights) == len(second.trainable_weights) == 59  # 19 convs, 19 BNs, dense
    return max(
        float(np.abs(x.numpy() - y.numpy()).max() / max(float(np.abs(y.numpy()).max()), 1.0))
        for x, y in zip(first.trainable_weights, second.trainable_weights, strict=True)
    )


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """(data, run directory, both workers' outputs) of an uninterrupted two-worker job."""
    root = tmp_path_factory.mktemp("multiworker")
    data = root / "data"
    write_image_folder(data / "train", 128, seed=1)
    write_image_folder(data / "val", 32, seed=2)
    run = root / "run"
    return data, run, finished(start_workers(*train_args(data, run)))


def test_two_workers_train_as_one_process_over_two_replicas(job, tmp_path: Path) -> None:
    data, run, outputs = job
    summaries = [json.loads(out[out.index("{") :]) for out in outputs]
    assert summaries[0]["replicas"] == 2 and summaries[0]["steps"] == summaries[1]["steps"] == 8
    assert summaries[0]["test_accuracy"] == summaries[1]["test_accuracy"]
    written = {p.name for p in run.iterdir()}
    assert {
        "summary.json",
        "model.keras",
        "model.onnx",
        "checkpoint.keras",
        "state.json",
        "metrics.csv",
    } <= written
    assert len((run / "metrics.csv").read_text().splitlines()) == 3  # one writer: header + 2 epochs
    single = tmp_path / "single"
    done = subprocess.run(
        [*train_args(data, single), "--distribute", "mirrored", "--cpu-devices", "2"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert largest_difference(run / "model.keras", single / "model.keras") <= 1e-4


def test_a_killed_job_resumes_on_both_workers_to_the_same_weights(job, tmp_path: Path) -> None:
    data, run, _ = job
    killed = tmp_path / "killed"
    workers = start_workers(*train_args(data, killed))
    deadline = time.monotonic() + 600
    while not (killed / "state.json").exists() and time.monotonic() < deadline:
        assert all(worker.poll() is None for worker in workers), "a worker ended before its first checkpoint"
        time.sleep(0.2)
    for worker in workers:
        worker.kill()
        worker.communicate()
    assert json.loads((killed / "state.json").read_text())["epoch"] == 1
    finished(start_workers(*train_args(data, killed), "--resume"))
    assert len((killed / "metrics.csv").read_text().splitlines()) == 3
    assert largest_difference(killed / "model.keras", run / "model.keras") <= 1e-5
