"""What this CPU offers: its model and the x86 flags that decide whether INT8 inference and bfloat16
training pay.

onnxruntime's int8 kernels are fastest with VNNI (AVX-512 VNNI, AVX-VNNI) or AMX, which sum in 32
bits; on AVX2 alone its U8S8 kernels sum pairs of products in 16 bits (VPMADDUBSW), which is why
quantize() keeps weights to 7 bits, and gain less over float32. Linux reports the flags in
/proc/cpuinfo; elsewhere they are unknown.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name and the flags INT8 and bfloat16 speed depend on (False where unknown)."""

    model: str
    avx2: bool = False
    avx512f: bool = False
    avx512_vnni: bool = False
    avx_vnni: bool = False
    avx512_bf16: bool = False
    amx: bool = False
    amx_bf16: bool = False
    arm_dotprod: bool = False
    flags_known: bool = True

    @property
    def vnni(self) -> bool:
        """Exact, fast int8 dot products: AVX-512 VNNI, AVX-VNNI or AMX."""
        return self.avx512_vnni or self.avx_vnni or self.amx

    def describe(self) -> str:
        """One line: model name and the flags present, e.g. `AMD EPYC: avx2 (no VNNI)`."""
        if not self.flags_known:
            return f"{self.model}: flags unknown (no /proc/cpuinfo)"
        names = (
            "avx2",
            "avx512f",
            "avx512_vnni",
            "avx_vnni",
            "avx512_bf16",
            "amx",
            "amx_bf16",
            "arm_dotprod",
        )
        present = [name for name in names if getattr(self, name)]
        flags = " ".join(present) or "none of avx2/avx512/vnni/amx"
        return f"{self.model}: {flags}{'' if self.vnni or self.arm_dotprod else ' (no VNNI)'}"


def parse_cpuinfo(text: str) -> CpuInfo:
    """A CpuInfo from the text of /proc/cpuinfo (the first processor's entry is enough)."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:  # "Features" on ARM
            flags = set(value.split())
    return CpuInfo(
        model=model or platform.processor() or platform.machine() or "unknown CPU",
        avx2="avx2" in flags,
        avx512f="avx512f" in flags,
        avx512_vnni="avx512_vnni" in flags,
        avx_vnni="avx_vnni" in flags,
        avx512_bf16="avx512_bf16" in flags,
        amx=bool({"amx_int8", "amx_tile"} & flags),
        amx_bf16="amx_bf16" in flags,
        arm_dotprod="asimddp" in flags,
        flags_known=bool(flags),
    )


@functools.cache
def cpu_info() -> CpuInfo:
    """This machine's CPU; on systems without /proc/cpuinfo the flags are unknown (all False)."""
    try:
        return parse_cpuinfo(CPUINFO.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        name = platform.processor() or platform.machine() or "unknown CPU"
        return CpuInfo(model=name, flags_known=False)


def int8_note(info: CpuInfo | None = None) -> str:
    """One line: whether `export --int8` pays on this CPU, from rescompile's own measurements."""
    info = info or cpu_info()
    if not info.flags_known:
        return "INT8 speed-up unknown here (CPU flags unreadable); measure with `rescompile bench`"
    if info.avx512_vnni or info.amx:
        return (
            "INT8 pays here (AVX-512 VNNI: exact int8 dot products); measured 3.4x fp32 at ResNet-50"
            " batch 32 and 2.4x at ResNet-20 batch 128 on an AVX-512 VNNI CPU"
        )
    if info.avx_vnni:
        return "INT8 should pay here (AVX-VNNI: exact int8 dot products, 256-bit); not measured on one"
    if info.avx2:
        return AVX2_NOTE
    if info.arm_dotprod:
        return "INT8 should pay here (ARM dot-product instructions); not measured on one"
    return "INT8 not expected to pay here (no AVX2 or VNNI); float32 is the safe choice"


# Measured with quantize()'s format on an AVX2-only AMD EPYC (Zen 3, 2 vCPUs), onnxruntime 1.32, one
# thread, best of interleaved runs (issue #9); an earlier AVX2 machine measured 1.03x and 0.96x. The
# VNNI figures above predate reduce_range and the float32 stem (same kernels; not re-measured).
AVX2_NOTE = (
    "INT8 pays modestly here (AVX2, no VNNI): 1.9x fp32 at ResNet-50 batch 32 and 1.5x at ResNet-20"
    " batch 128 on an AVX2 EPYC (~1.0x on another AVX2 machine); VNNI CPUs get 2.4-3.4x"
)
