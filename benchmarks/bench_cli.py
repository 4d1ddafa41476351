"""Command-line start-up, side by side in one run: `--help` of every command, and `predict`/`bench`
on an ONNX model (which must never import TensorFlow) against `predict` on the same model's
.keras file (which needs it). Goal: `--help` of any command < 1 s.

Run: python benchmarks/bench_cli.py [--runs N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from results import record
from timing import median, time_process, timing_table

COMMANDS = ["check", "table", "diff", "list", "schema", "generate", "build", "export", "predict", "bench"]
COMMANDS += ["train", "evaluate", "report", "doctor", "experiment degradation", "experiment gradients"]
CLI = [sys.executable, "-m", "rescompile"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = [
        (f"`rescompile {name} --help`", time_process([*CLI, *name.split(), "--help"], args.runs, name))
        for name in COMMANDS
    ]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        time_process([*CLI, "build", "specs/cifar/resnet20.yaml", "--onnx", "--out", str(folder)], 1, "build")
        image = folder / "x.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(image)
        onnx_model, keras_model = folder / "cifar_resnet20.onnx", folder / "cifar_resnet20.keras"
        for label, argv in (
            ("`predict` on .onnx (no TensorFlow)", [*CLI, "predict", str(onnx_model), str(image)]),
            ("`predict` on .keras (TensorFlow)", [*CLI, "predict", str(keras_model), str(image)]),
            ("`bench --seconds 0.1` on .onnx", [*CLI, "bench", str(onnx_model), "--seconds", "0.1"]),
        ):
            rows.append((label, time_process(argv, args.runs, label)))
    slowest = max(rows[: len(COMMANDS)], key=lambda row: median(row[1]))
    body = timing_table(rows) + (
        f"\nSlowest `--help`: {slowest[0]}, median {median(slowest[1]):.2f} s (goal < 1 s). `predict` on the"
        f" ONNX file {median(rows[-3][1]) / median(rows[-2][1]):.2f}x the time of the same prediction"
        " through the .keras file.\n"
    )
    print(body)
    record("CLI start-up", "python benchmarks/bench_cli.py", body)


if __name__ == "__main__":
    main()
