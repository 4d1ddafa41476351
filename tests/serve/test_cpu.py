"""CPU flags from /proc/cpuinfo text, and the INT8 note they lead to."""

from __future__ import annotations

from rescompile.cpu import CpuInfo, cpu_info, int8_note, parse_cpuinfo

# Trimmed /proc/cpuinfo entries (two processors each; only the first is read).
ZEN3_AVX2 = """\
processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7763 64-Core Processor
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni vaes vpclmulqdq

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7763 64-Core Processor
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni vaes vpclmulqdq
"""

SAPPHIRE_RAPIDS = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_vnni avx_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""

CASCADE_LAKE = """\
processor\t: 0
model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz
flags\t\t: fpu sse2 avx avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni
"""

SKYLAKE_X = """\
processor\t: 0
model name\t: Intel(R) Xeon(R) Gold 5118 CPU @ 2.30GHz
flags\t\t: fpu sse2 avx avx2 avx512f avx512dq avx512bw avx512vl
"""

GRAVITON3 = """\
processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm asimddp sve
CPU implementer\t: 0x41
"""


def test_avx2_only_cpu() -> None:
    info = parse_cpuinfo(ZEN3_AVX2)
    assert info == CpuInfo(model="AMD EPYC 7763 64-Core Processor", avx2=True)
    assert not info.vnni
    assert info.describe() == "AMD EPYC 7763 64-Core Processor: avx2 (no VNNI)"


def test_sapphire_rapids_has_every_flag() -> None:
    info = parse_cpuinfo(SAPPHIRE_RAPIDS)
    assert info.model == "Intel(R) Xeon(R) Platinum 8480+"
    flags = (info.avx2, info.avx512f, info.avx512_vnni, info.avx_vnni, info.avx512_bf16, info.amx)
    assert flags == (True,) * 6
    assert info.vnni and "(no VNNI)" not in info.describe()


def test_avx512_without_vnni_is_not_vnni() -> None:
    info = parse_cpuinfo(SKYLAKE_X)
    assert info.avx512f and not info.avx512_vnni and not info.vnni


def test_int8_note_differs_for_vnni_and_avx2() -> None:
    vnni, avx2 = int8_note(parse_cpuinfo(CASCADE_LAKE)), int8_note(parse_cpuinfo(ZEN3_AVX2))
    assert vnni != avx2
    assert "pays here" in vnni and "VNNI" in vnni
    assert "modestly" in avx2 and "AVX2" in avx2 and "no VNNI" in avx2
    assert int8_note(parse_cpuinfo(SKYLAKE_X)) == avx2  # AVX-512 without VNNI: same U8S8 kernels
    assert "\n" not in vnni + avx2


def test_arm_and_unknown() -> None:
    arm = parse_cpuinfo(GRAVITON3)
    assert arm.arm_dotprod and not arm.avx2 and arm.flags_known
    assert "dot-product" in int8_note(arm)
    unknown = parse_cpuinfo("")
    assert not unknown.flags_known and unknown.model
    assert "unknown" in int8_note(unknown)


def test_this_machine_reads() -> None:
    info = cpu_info()
    assert info.model and int8_note(info)
