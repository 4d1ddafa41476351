"""This CPU's float32 peaks, measured: a numpy matmul and a pure-FMA loop (benchmarks/fma_peak.c)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

FMA_SOURCE = Path(__file__).parent / "fma_peak.c"


def matmul_gflops(repeats: int = 5) -> float:
    """Float32 4096x4096 numpy matmul throughput, median of several runs."""
    a = np.random.default_rng(0).standard_normal((4096, 4096), dtype=np.float32)
    a @ a
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * 4096**3 / float(np.median(times)) / 1e9


def fma_gflops(repeats: int = 3) -> float | None:
    """Float32 FMA peak on all cores (AVX2 FMA), median of several runs; None without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        binary = Path(scratch) / "fma_peak"
        built = subprocess.run(
            [compiler, "-O3", "-mavx2", "-mfma", "-pthread", str(FMA_SOURCE), "-o", str(binary)],
            capture_output=True,
        )
        if built.returncode != 0:
            return None
        runs = [
            float(subprocess.run([binary, str(os.cpu_count())], capture_output=True, text=True).stdout)
            for _ in range(repeats)
        ]
    return float(np.median(runs))
