"""The compute settings `train` picks when not told (rescompile/train/compute.py), per machine kind."""

from __future__ import annotations

import pytest

from rescompile.cpu import parse_cpuinfo
from rescompile.errors import RescompileError
from rescompile.train import compute
from rescompile.train.compute import auto_precision, resolve_precision
from tests.serve.test_cpu import CASCADE_LAKE, GRAVITON3, SAPPHIRE_RAPIDS, SKYLAKE_X, ZEN3_AVX2

ZEN4 = """\
processor\t: 0
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512vl avx512_vnni avx512_bf16
"""


@pytest.mark.parametrize(
    "cpuinfo, expected",
    [
        (ZEN3_AVX2, "float32"),  # bfloat16 emulated: 0.18x float32 measured there
        (SKYLAKE_X, "float32"),
        (CASCADE_LAKE, "float32"),  # VNNI is int8, not bfloat16
        (GRAVITON3, "float32"),
        ("", "float32"),  # flags unknown
        (ZEN4, "mixed_bfloat16"),  # AVX-512 BF16
        (SAPPHIRE_RAPIDS, "mixed_bfloat16"),  # AMX-BF16
    ],
    ids=["zen3-avx2", "skylake-x", "cascade-lake", "graviton3", "unknown", "zen4", "sapphire-rapids"],
)
def test_cpu_training_uses_bfloat16_only_where_the_cpu_computes_it(cpuinfo: str, expected: str) -> None:
    precision, why = auto_precision(parse_cpuinfo(cpuinfo), None)
    assert precision == expected
    assert ("natively" in why) == (expected == "mixed_bfloat16") and "\n" not in why


@pytest.mark.parametrize(
    "capability, expected", [((8, 0), "mixed_float16"), ((7, 0), "mixed_float16"), ((6, 1), "float32")]
)
def test_gpus_use_float16_where_they_have_tensor_cores(capability: tuple[int, int], expected: str) -> None:
    precision, why = auto_precision(parse_cpuinfo(SAPPHIRE_RAPIDS), capability)  # the GPU decides
    assert precision == expected and ".".join(map(str, capability)) in why


def test_a_resumed_run_keeps_its_precision_and_refuses_another(monkeypatch) -> None:
    monkeypatch.setattr(compute, "gpu_capability", lambda: pytest.fail("a resumed run asks no device"))
    assert resolve_precision("auto", "mixed_bfloat16", resume=True)[0] == "mixed_bfloat16"
    assert resolve_precision("mixed_bfloat16", "mixed_bfloat16", resume=True)[0] == "mixed_bfloat16"
    with pytest.raises(RescompileError, match="trains in float32, not --precision mixed_float16"):
        resolve_precision("mixed_float16", "float32", resume=True)
    assert resolve_precision("mixed_float16", None, resume=False) == ("mixed_float16", "as asked")


def test_auto_asks_the_cpu_and_the_gpu(monkeypatch) -> None:
    monkeypatch.setattr(compute, "gpu_capability", lambda: (9, 0))
    assert resolve_precision("auto", None, resume=False)[0] == "mixed_float16"
    monkeypatch.setattr(compute, "gpu_capability", lambda: None)
    monkeypatch.setattr(compute, "cpu_info", lambda: parse_cpuinfo(ZEN4))
    assert resolve_precision("auto", None, resume=False)[0] == "mixed_bfloat16"
