"""deepfl.machine: what ran a run (device name, CPU fingerprint), read from /proc/cpuinfo-like
files."""

from __future__ import annotations

from pathlib import Path

import torch

from deepfl.machine import KERNEL_ISA_FLAGS, cpu_fingerprint, cpuinfo_field, device_name

CPUINFO_TWO_CORES = """\
processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse avx2 avx512f avx512_bf16 sha_ni
processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse avx2 avx512f avx512_bf16 sha_ni
"""


def test_cpuinfo_fields_are_read_from_the_first_processor(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO_TWO_CORES)
    assert cpuinfo_field("vendor_id", cpuinfo) == "AuthenticAMD"
    assert cpuinfo_field("model name", cpuinfo) == "AMD EPYC"
    assert cpuinfo_field("microcode", cpuinfo) is None
    assert cpuinfo_field("vendor_id", tmp_path / "missing") is None


def test_the_fingerprint_keeps_only_kernel_relevant_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO_TWO_CORES)
    fingerprint = cpu_fingerprint(cpuinfo)
    assert fingerprint["cpu_vendor"] == "AuthenticAMD" and fingerprint["cpu_model"] == "AMD EPYC"
    assert fingerprint["cpu_isa_flags"] == ["avx2", "avx512_bf16", "avx512f"]
    assert fingerprint["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert fingerprint["torch_version"] == torch.__version__


def test_without_cpuinfo_the_fingerprint_falls_back_to_the_platform(tmp_path: Path) -> None:
    fingerprint = cpu_fingerprint(tmp_path / "missing")
    assert fingerprint["cpu_isa_flags"] == [] and isinstance(fingerprint["cpu_vendor"], str)


def test_this_machine_fingerprint_and_device_name() -> None:
    fingerprint = cpu_fingerprint()
    assert set(fingerprint["cpu_isa_flags"]) <= set(KERNEL_ISA_FLAGS)
    assert fingerprint == cpu_fingerprint()
    assert device_name(torch.device("cpu")).endswith(" cores")
