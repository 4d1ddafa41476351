"""`rescompile doctor`: what is installed for inference and training, and whether it fits."""

from __future__ import annotations

import importlib.metadata as metadata

from rescompile.errors import KerasMissing

INSTALL_ONE = "pip install 'rescompile[cpu]' (or 'rescompile[gpu]' on an NVIDIA GPU)"
GPU_INSTALL = "pip install 'rescompile[gpu]' (after `pip uninstall -y onnxruntime onnxruntime-gpu`)"


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def report() -> list[tuple[str, str, bool]]:
    """(topic, finding, healthy) rows."""
    import platform

    from rescompile import __version__

    rows: list[tuple[str, str, bool]] = [
        ("rescompile", f"{__version__} on Python {platform.python_version()}", True)
    ]
    ort_packages = {name: _version(name) for name in ("onnxruntime", "onnxruntime-gpu")}
    installed = {name: version for name, version in ort_packages.items() if version}
    both = len(installed) == 2
    finding = ", ".join(f"{name} {version}" for name, version in installed.items()) or "none"
    if both:
        finding += (
            " — both installed: they share the onnxruntime module and it silently falls back to the CPU;"
            f" `pip uninstall -y onnxruntime onnxruntime-gpu`, then {INSTALL_ONE}"
        )
    elif not installed:
        finding += f" (predict, bench and evaluate on .onnx need one: {INSTALL_ONE})"
    rows.append(("onnxruntime packages", finding, bool(installed) and not both))
    ort_cuda = None
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
        rows.append(("onnxruntime providers", ", ".join(providers), True))
        build = ort.get_build_info() if hasattr(ort, "get_build_info") else ""
        cuda = getattr(ort, "cuda_version", "") or "none"
        rows.append(("onnxruntime build", f"{build}; CUDA {cuda}".strip("; "), True))
        if "CUDAExecutionProvider" in providers:
            rows.append(_cuda_libraries(cuda))
            ort_cuda = cuda
    except ImportError as exc:
        rows.append(("onnxruntime providers", f"cannot import onnxruntime: {exc}", False))
    rows.append(_cpu())
    tensorflow_rows, tf_cuda = _tensorflow()
    rows.extend(tensorflow_rows)
    if ort_cuda and tf_cuda:
        rows.append(cuda_pairing(ort_cuda, tf_cuda))
    return rows


def cuda_pairing(ort_cuda: str, tf_cuda: str) -> tuple[str, str, bool]:
    """Whether onnxruntime-gpu and TensorFlow were built for the same CUDA major version: one
    process (train's ONNX export and checks, doctor) loads one CUDA runtime, and pip installs
    each its own libraries (onnxruntime-gpu 1.27+ is built for CUDA 13, TensorFlow's [and-cuda]
    for CUDA 12)."""
    ort_major, tf_major = ort_cuda.split(".")[0], tf_cuda.split(".")[0]
    if ort_major == tf_major:
        return ("CUDA pairing", f"onnxruntime-gpu and TensorFlow both use CUDA {tf_major}", True)
    return (
        "CUDA pairing",
        f"onnxruntime-gpu is built for CUDA {ort_cuda}, TensorFlow for CUDA {tf_cuda}: they need"
        f" different CUDA libraries; the working pair is onnxruntime-gpu 1.22-1.26 (CUDA 12) with"
        f" tensorflow[and-cuda] (CUDA 12): {GPU_INSTALL}",
        False,
    )


def _cpu() -> tuple[str, str, bool]:
    """The CPU's INT8 flags (VNNI or not) and whether `export --int8` pays on it."""
    from rescompile.cpu import cpu_info, int8_note

    info = cpu_info()
    return ("CPU", f"{info.describe()}; {int8_note(info)}", True)


def _cuda_libraries(wheel_cuda: str) -> tuple[str, str, bool]:
    """Whether the CUDA runtime the GPU wheel was built for can be loaded."""
    import ctypes

    major = wheel_cuda.split(".")[0]
    cudnn_major = 9 if major.isdigit() and int(major) >= 12 else 8
    for name in (f"libcudart.so.{major}", "libcudart.so"):
        try:
            ctypes.CDLL(name)
            if not _loads(f"libcudnn.so.{cudnn_major}"):
                return (
                    "CUDA libraries",
                    f"{name} found (wheel wants CUDA {wheel_cuda}), but cuDNN {cudnn_major} not found:"
                    f" the CUDA provider will fail; {GPU_INSTALL} brings it",
                    False,
                )
            return (
                "CUDA libraries",
                f"{name} found (wheel wants CUDA {wheel_cuda}); cuDNN {cudnn_major} found",
                True,
            )
        except OSError:
            continue
    return ("CUDA libraries", f"libcudart for CUDA {wheel_cuda} not found: CUDA provider will fail", False)


def _loads(library: str) -> bool:
    import ctypes

    try:
        ctypes.CDLL(library)
        return True
    except OSError:
        return False


def _tensorflow() -> tuple[list[tuple[str, str, bool]], str | None]:
    """TensorFlow's rows, and the CUDA version it was built for (None: none, or not installed)."""
    try:
        import keras
        import tensorflow as tf
    except KerasMissing:  # the base install: ONNX serving and the compiler, no training
        return [
            ("keras", "not installed (build/train/export need: pip install 'rescompile[keras]')", True)
        ], None
    except ImportError as exc:
        return [("keras", f"cannot import: {exc}", False)], None
    info = tf.sysconfig.get_build_info()
    gpus = tf.config.list_physical_devices("GPU")
    built = f"built for CUDA {info.get('cuda_version', '-')}, cuDNN {info.get('cudnn_version', '-')}"
    from rescompile.train.compute import resolve_precision

    precision, why = resolve_precision("auto", None, resume=False)
    return [
        ("keras backend", f"keras {keras.__version__}, backend {keras.backend.backend()}", True),
        ("tensorflow", f"{tf.__version__} ({built})", True),
        ("tensorflow GPUs", ", ".join(g.name for g in gpus) or "none (training runs on the CPU)", True),
        ("train --precision auto", f"{precision}: {why}", True),
    ], info.get("cuda_version")
