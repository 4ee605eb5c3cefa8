"""What ran a run, for its summary: the device's name and the CPU's fingerprint.

The same seed gives the same numbers on the same machine only: float32 kernels, and so a run's last
bits, depend on torch's version and CPU capability and on the CPU's vendor and instruction sets
(MKL and oneDNN pick kernels by vendor and by flags). An Intel and an AMD machine that both report
AVX512 part from round 3 of a micro run (``tests/deepfl/test_golden_run.py``), so a cell records
:func:`cpu_fingerprint` beside its numbers.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

# CPU flags that can change which float32 kernels torch (ATen, oneDNN, MKL) picks
KERNEL_ISA_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
)
CPUINFO = Path("/proc/cpuinfo")


def device_name(device: torch.device) -> str:
    """The GPU's name (``torch.cuda.get_device_name``) on CUDA, else the CPU's architecture and
    core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine() or 'cpu'} CPU, {os.cpu_count()} cores"


def cpuinfo_field(name: str, cpuinfo: Path = CPUINFO) -> str | None:
    """The value of the first ``name : value`` line of ``cpuinfo`` (None where the file or the
    field is missing, e.g. off Linux)."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_fingerprint(cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """torch's version and CPU capability (``torch.backends.cpu.get_cpu_capability``), the CPU's
    vendor and model name, and which of :data:`KERNEL_ISA_FLAGS` it has (from ``cpuinfo``; the
    platform's machine and processor strings and no flags where it cannot be read)."""
    flags = set((cpuinfo_field("flags", cpuinfo) or "").split())
    return {
        "torch_version": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_vendor": cpuinfo_field("vendor_id", cpuinfo) or platform.machine(),
        "cpu_model": cpuinfo_field("model name", cpuinfo) or platform.processor(),
        "cpu_isa_flags": sorted(flags.intersection(KERNEL_ISA_FLAGS)),
    }
