"""Two `rescompile train --distribute multiworker` processes on 127.0.0.1 (CPU): both finish, only
the chief writes the run directory, and the weights match one process splitting the same global
batch over two logical CPUs (MirroredStrategy: the same per-replica batches)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
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
    ]  # fmt: skip


def test_two_workers_train_as_one_process_over_two_replicas(tmp_path: Path) -> None:
    import keras

    data = tmp_path / "data"
    write_image_folder(data / "train", 128, seed=1)
    write_image_folder(data / "val", 32, seed=2)
    run = tmp_path / "run"
    cluster = [f"127.0.0.1:{port}" for port in free_ports(2)]
    workers = []
    for index in range(2):
        config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "CUDA_VISIBLE_DEVICES": ""}
        workers.append(
            subprocess.Popen(
                [*train_args(data, run), "--distribute", "multiworker"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [worker.communicate(timeout=900) for worker in workers]
    for worker, (_out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
    summaries = [json.loads(out[out.index("{") :]) for out, _ in outputs]
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
    chief = keras.saving.load_model(run / "model.keras")
    alone = keras.saving.load_model(single / "model.keras")
    worst = 0.0
    for a, b in zip(chief.trainable_weights, alone.trainable_weights, strict=True):
        worst = max(
            worst, float(np.abs(a.numpy() - b.numpy()).max() / max(float(np.abs(b.numpy()).max()), 1.0))
        )
    assert len(alone.trainable_weights) == 59 and worst <= 1e-4, worst  # 19 convs, 19 BNs (x2), dense (x2)
    moved = [float(np.abs(w.numpy()).max()) for w in alone.trainable_weights if "kernel" in w.path]
    assert min(moved) > 0
