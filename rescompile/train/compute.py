"""The compute settings `train` uses when not told: mixed precision where the hardware computes the
narrow type natively, XLA where Keras enables it.

- float16 on GPUs with tensor cores (compute capability 7.0 and up);
- bfloat16 on CPUs with native bfloat16 instructions (AMX-BF16, AVX-512 BF16): elsewhere it is
  emulated, 0.18x float32 on an AVX2 EPYC (benchmarks/RESULTS.md, training throughput);
- float32 everywhere else;
- XLA: Keras' own "auto" (on GPUs without a distribution strategy; off on CPUs, where it measured
  1.03x float32's speed on that EPYC, before its compile time).
"""

from __future__ import annotations

from rescompile.cpu import CpuInfo, cpu_info
from rescompile.errors import RescompileError
from rescompile.options import Precision

TENSOR_CORES = (7, 0)
"""The first CUDA compute capability with float16 tensor cores (Volta)."""


def auto_precision(cpu: CpuInfo, gpu_capability: tuple[int, int] | None) -> tuple[Precision, str]:
    """The fastest correct precision for this machine, and why (one phrase)."""
    if gpu_capability is not None:
        version = ".".join(map(str, gpu_capability))
        if gpu_capability >= TENSOR_CORES:
            return "mixed_float16", f"a GPU of compute capability {version} has float16 tensor cores"
        return "float32", f"a GPU of compute capability {version} has no float16 tensor cores"
    if cpu.amx_bf16 or cpu.avx512_bf16:
        unit = "AMX" if cpu.amx_bf16 else "AVX-512 BF16"
        return "mixed_bfloat16", f"{cpu.model} computes bfloat16 natively ({unit})"
    return "float32", f"{cpu.model} has no native bfloat16 (it would be emulated, slower)"


def gpu_capability() -> tuple[int, int] | None:
    """The compute capability of TensorFlow's first GPU (None: no GPU, or not reported)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
    return tuple(capability) if capability else None  # type: ignore[return-value]


def resolve_precision(requested: str, recorded: Precision | None, resume: bool) -> tuple[Precision, str]:
    """The precision a run trains in: a resumed run keeps its own (an explicit other value is an
    error); `auto` picks for this machine."""
    if resume and recorded is None:  # recorded before rescompile chose per machine: float32 then
        return ("float32", "the run's own") if requested == "auto" else (requested, "as asked")  # type: ignore[return-value]
    if resume:
        if requested not in ("auto", recorded):
            raise RescompileError(
                f"--resume: the run trains in {recorded}, not --precision {requested}; drop --precision"
            )
        return recorded, "the run's own"
    if requested != "auto":
        return requested, "as asked"  # type: ignore[return-value]
    return auto_precision(cpu_info(), gpu_capability())
