"""Inference side by side, in one process: onnxruntime on our export vs the same Keras model
called directly (TensorFlow backend) vs onnxruntime on keras' own `model.export(format="onnx")`
(tf2onnx), plus INT8, export times, and achieved GFLOP/s against this CPU's measured float32
peaks (a numpy matmul and a pure-FMA loop).

Run: python benchmarks/bench_inference.py [--seconds S]   (keras' own export needs `pip install
tf2onnx`; without it that comparison says n/a)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from peak import fma_gflops, matmul_gflops
from results import record

from rescompile.cpu import cpu_info, int8_note
from rescompile.keras_backend.weights import weight_store
from rescompile.onnx_backend.emit import ExportOptions, export_onnx
from rescompile.onnx_backend.quantize import quantize
from rescompile.serve.runtime import bench_session
from tests.keras_helpers import generated_model, randomize_batchnorm
from tests.synthetic import colour_images

EXPORT_RUNS = 3


def ort_runner(path: Path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def keras_export(model, path: Path) -> tuple[float | None, str]:
    """Median seconds of keras' own ONNX export (tf2onnx under the hood), or None and why not."""
    if importlib.util.find_spec("tf2onnx") is None:
        return None, "tf2onnx not installed"
    seconds = []
    for _ in range(EXPORT_RUNS):
        start = time.perf_counter()
        try:
            model.export(str(path), format="onnx", verbose=False)
        except Exception as exc:  # recorded, not fatal: the comparison says n/a
            print(f"keras export failed: {exc}", file=sys.stderr)
            return None, f"its export failed: {type(exc).__name__}"
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), ""


def our_export(analysis, model, path: Path, **options) -> float:
    import onnx

    start = time.perf_counter()
    onnx.save(
        export_onnx(analysis.network, weight_store(model, analysis.graph), ExportOptions(**options)),
        path,
    )
    return time.perf_counter() - start


def measure(label: str, run, shape, batch: int, seconds: float) -> float:
    row = bench_session(run, shape, batch, seconds=seconds, warmup=2, min_runs=5)
    print(
        f"  {label:<34} batch {batch:>3}: {row.images_per_second:8.1f} img/s ({row.runs} runs)",
        file=sys.stderr,
    )
    return row.images_per_second


def trained_resnet20(folder: Path):
    """CIFAR ResNet-20 trained briefly on colour classes, so INT8 top-1 agreement means something."""
    import keras

    analysis, model = generated_model("specs/cifar/resnet20.yaml")
    config = analysis.spec.preprocess
    images, labels = colour_images(1024, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(config.normalize(images.astype("float32")), labels, epochs=3, batch_size=64, verbose=0)
    return analysis, model, config, images


FAMILY = (
    ("ResNeXt-50 32x4d 224px", "specs/resnext50_32x4d.yaml"),
    ("SE-ResNet-50 224px", "specs/seresnet50.yaml"),
)


def engine_rows(name: str, engines: list, macs: int, seconds: float) -> list[tuple]:
    """(model, batch, engine, img/s, GFLOP/s) of every engine at batch 1 and 32, 224 px."""
    rows = []
    for batch in (1, 32):
        for label, run in engines:
            speed = measure(f"{name}: {label}", run, (224, 224, 3), batch, seconds)
            rows.append((name, batch, label, speed, 2 * macs * speed / 1e9))
    return rows


def find_row(rows: list[tuple], model_name: str, batch: int, engine: str = "Keras") -> tuple:
    """The row of a model, batch size and engine (its label's start); by default the Keras row, the
    baseline the other engines are compared with."""
    return next(row for row in rows if row[:2] == (model_name, batch) and row[2].startswith(engine))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    gflops, fma = matmul_gflops(), fma_gflops()
    cpu = cpu_info()
    print(f"CPU: {cpu.describe()}", file=sys.stderr)
    print(
        f"float32 peaks: numpy matmul {gflops:.1f} GFLOP/s, FMA loop {fma or 'n/a'} GFLOP/s", file=sys.stderr
    )
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        analysis, model = generated_model("specs/keras/resnet50.yaml")
        randomize_batchnorm(model)
        ours, theirs, int8 = folder / "ours.onnx", folder / "keras.onnx", folder / "int8.onnx"
        our_seconds = statistics.median(our_export(analysis, model, ours) for _ in range(EXPORT_RUNS))
        their_seconds, why_not = keras_export(model, theirs)
        calibration = np.random.default_rng(3).uniform(0, 255, (64, 224, 224, 3)).astype(np.float32)
        quantize(ours, int8, calibration, preprocessing=analysis.spec.preprocess)
        theirs_text = (
            f"{their_seconds:.1f} s (ratio {our_seconds / their_seconds:.3f}; goal ≤ 0.1)"
            if their_seconds is not None
            else f"n/a ({why_not})"
        )
        notes.append(
            f"Export time, ResNet-50, median of {EXPORT_RUNS}: ours {our_seconds:.2f} s, "
            f"keras' own {theirs_text}."
        )
        engines = [("Keras model(x), TF backend", lambda x: model(x, training=False))]
        engines.append(("onnxruntime, our export", ort_runner(ours)))
        if theirs.exists():
            engines.append(("onnxruntime, keras' own export", ort_runner(theirs)))
        engines.append(("onnxruntime, our INT8 export", ort_runner(int8)))
        rows += engine_rows("ResNet-50 224px", engines, analysis.cost.macs, args.seconds)
        for name, spec in FAMILY:  # grouped convolutions and SE gates: where runtimes are weakest
            family, family_model = generated_model(spec)
            randomize_batchnorm(family_model)
            path = folder / f"{family.spec.name}.onnx"
            our_export(family, family_model, path)
            family_engines = [
                ("Keras model(x), TF backend", lambda x, m=family_model: m(x, training=False)),
                ("onnxruntime, our export", ort_runner(path)),
            ]
            rows += engine_rows(name, family_engines, family.cost.macs, args.seconds)
        small, small_model, config, images = trained_resnet20(folder)
        small_ours, small_int8 = folder / "r20.onnx", folder / "r20_int8.onnx"
        our_export(small, small_model, small_ours)
        quantize(small_ours, small_int8, images[:512].astype(np.float32), preprocessing=config)
        held_out, _ = colour_images(1000, seed=9)
        x = config.normalize(held_out.astype(np.float32))
        agree = float(
            (ort_runner(small_ours)(x)[0].argmax(1) == ort_runner(small_int8)(x)[0].argmax(1)).mean()
        )
        notes.append(
            f"INT8 top-1 agreement with fp32, CIFAR ResNet-20, 1000 held-out images: {agree:.1%}"
            " (goal ≥ 99%)."
        )
        notes.append(
            "INT8 rows: `rescompile.onnx_backend.quantize.quantize()` format (QDQ, U8S8,"
            f" per-channel weights with reduce_range). CPU: {cpu.describe()}. {int8_note(cpu)}."
        )
        small_engines = [
            ("Keras model(x), TF backend", lambda x: small_model(x, training=False)),
            ("onnxruntime, our export", ort_runner(small_ours)),
            ("onnxruntime, our INT8 export", ort_runner(small_int8)),
        ]
        small_macs = small.cost.macs
        for label, run in small_engines:
            speed = measure(label, run, (32, 32, 3), 128, args.seconds)
            rows.append(("CIFAR ResNet-20 32px", 128, label, speed, 2 * small_macs * speed / 1e9))
    keras_b32 = find_row(rows, "ResNet-50 224px", 32)[4]
    if fma:
        notes.append(
            f"2x Keras at ResNet-50 batch 32 needs {2 * keras_b32:.0f} GFLOP/s: {2 * keras_b32 / fma:.0%} "
            "of the FMA peak."
        )
        grouped = find_row(rows, "ResNeXt-50 32x4d 224px", 32, "onnxruntime, our export")[4]
        plain = find_row(rows, "ResNet-50 224px", 32, "onnxruntime, our export")[4]
        notes.append(
            f"Grouped vs plain convolutions, onnxruntime (our export) at batch 32: ResNeXt-50 32x4d "
            f"{grouped / fma:.0%} of the FMA peak, ResNet-50 {plain / fma:.0%} (the grouped network at "
            f"{grouped / plain:.2f}x the plain one's efficiency)."
        )
    body = "| model | batch | engine | img/s | GFLOP/s | of matmul | of FMA peak | vs Keras |\n"
    body += "|---|---:|---|---:|---:|---:|---:|---:|\n"
    for model_name, batch, label, speed, achieved in rows:
        keras_speed = find_row(rows, model_name, batch)[3]
        body += (
            f"| {model_name} | {batch} | {label} | {speed:.1f} | {achieved:.1f} | {achieved / gflops:.0%} "
            f"| {f'{achieved / fma:.0%}' if fma else 'n/a'} | {speed / keras_speed:.2f}x |\n"
        )
    body += (
        f"\nIn the same run: float32 4096x4096 numpy matmul {gflops:.1f} GFLOP/s; float32 FMA peak "
        f"(benchmarks/fma_peak.c, all cores) {f'{fma:.1f} GFLOP/s' if fma else 'n/a (no C compiler)'}.\n\n"
    ) + "\n".join(f"- {note}" for note in notes)
    print(body)
    record(
        "Inference: onnxruntime vs Keras vs keras' own ONNX export",
        "python benchmarks/bench_inference.py",
        body,
    )


if __name__ == "__main__":
    main()
