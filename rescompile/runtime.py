"""onnxruntime serving: sessions with a chosen provider, prediction and benchmarking."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rescompile.errors import RescompileError

PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def choose_providers(requested: str) -> list[str]:
    """Provider list for `auto`, `cuda` or `cpu`; asking for cuda where it is absent is an error."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if requested == "auto":
        return [PROVIDERS["cuda"], PROVIDERS["cpu"]] if PROVIDERS["cuda"] in available else [PROVIDERS["cpu"]]
    if requested not in PROVIDERS:
        raise RescompileError(f"--provider must be auto, cuda or cpu, got {requested!r}")
    if PROVIDERS[requested] not in available:
        have = ", ".join(available)
        raise RescompileError(
            f"--provider {requested}: {PROVIDERS[requested]} is not available (have: {have}); "
            "install the gpu extra, and see `rescompile doctor`"
        )
    return [PROVIDERS[requested]]


def open_session(path: Path, provider: str = "auto", threads: int = 0):
    """An InferenceSession on the chosen provider, with a clear error for bad files."""
    import onnxruntime as ort

    if not path.is_file():
        raise RescompileError(f"{path}: file not found")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=choose_providers(provider))
    except RescompileError:
        raise
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RescompileError(f"{path}: not a loadable ONNX model ({first_line})") from None


def metadata(session) -> dict:
    """The model's metadata: spec name, input size, preprocessing, class names..."""
    props = dict(session.get_modelmeta().custom_metadata_map)
    for key in ("preprocess", "class_names"):
        if key in props:
            props[key] = json.loads(props[key])
    return props


@dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image."""

    image: str
    classes: list[tuple[int, str, float]]


def top_k(probabilities: np.ndarray, names: list[str], images: list[str], k: int) -> list[Prediction]:
    """The k most probable classes of each image, with names where the model has them."""
    results = []
    for image, row in zip(images, probabilities, strict=True):
        best = np.argsort(-row)[:k]
        labelled = [(int(i), names[i] if i < len(names) else str(i), float(row[i])) for i in best]
        results.append(Prediction(image, labelled))
    return results


@dataclass(frozen=True)
class BenchRow:
    """Throughput and latency at one batch size."""

    batch: int
    images_per_second: float
    p50_ms: float
    p99_ms: float
    runs: int


def bench_session(
    run, input_shape: tuple[int, ...], batch: int, seconds: float, warmup: int, min_runs: int = 10
) -> BenchRow:
    """Time `run(x)` on random batches: warm-up, then at least `seconds` and `min_runs` runs."""
    x = np.random.default_rng(0).uniform(0, 1, (batch, *input_shape)).astype(np.float32)
    for _ in range(warmup):
        run(x)
    latencies = []
    start = time.perf_counter()
    while len(latencies) < min_runs or time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        run(x)
        latencies.append(time.perf_counter() - begin)
    median = float(np.median(latencies))
    return BenchRow(
        batch, batch / median, 1000 * median, 1000 * float(np.percentile(latencies, 99)), len(latencies)
    )
