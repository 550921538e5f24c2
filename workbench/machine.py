"""What machine a benchmark ran on: CPU model, cores, the ISA flags that decide speed, GPU model.

Speed figures mean nothing without the machine: an AVX-512 BF16 Xeon trains in bf16 twice as fast as in fp32,
an AVX2-only EPYC emulates bf16 and runs it 14-17x slower. Every benchmark prints :func:`machine_line` first.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

# The flags (as /proc/cpuinfo spells them) that change which kernels torch and TensorFlow can use.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
               "amx_fp16", "amx_int8")


def native_formats(flags: set[str] | tuple[str, ...]) -> set[str]:
    """Half-precision formats a CPU with these flags computes in hardware: "bf16" (AVX512-BF16 or AMX-BF16),
    "fp16" (AVX512-FP16 or AMX-FP16). Without them torch emulates the format, converting to and from fp32."""
    flags = set(flags)
    out = set()
    if flags & {"avx512_bf16", "amx_bf16"}:
        out.add("bf16")
    if flags & {"avx512_fp16", "amx_fp16"}:
        out.add("fp16")
    return out


@dataclass(frozen=True)
class Machine:
    cpu_model: str
    cores: int
    flags: tuple[str, ...]
    gpu: str  # "" when no CUDA device is visible

    @property
    def native_bf16(self) -> bool:
        """True when the CPU computes bf16 in hardware (AVX-512 BF16 or AMX); elsewhere bf16 is emulated."""
        return "bf16" in native_formats(self.flags)


def _cpuinfo() -> tuple[str, tuple[str, ...]]:
    path = Path("/proc/cpuinfo")
    model, flags = platform.processor() or platform.machine(), ()
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                present = set(value.split())
                flags = tuple(f for f in SPEED_FLAGS if f in present)
    return model, flags


def describe_machine(cuda: bool = True) -> Machine:
    """The machine this process runs on. ``cuda=False`` skips importing torch (for light callers)."""
    model, flags = _cpuinfo()
    gpu = ""
    if cuda:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Machine(cpu_model=model, cores=cores, flags=flags, gpu=gpu)


def machine_line(machine: Machine | None = None) -> str:
    """One line for a benchmark's header, with the load average (other work on the machine skews timings)."""
    m = machine or describe_machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = f"; GPU {m.gpu}" if m.gpu else "; no GPU"
    flags = " ".join(m.flags) or "none of " + "/".join(SPEED_FLAGS[:3])
    native = "native" if m.native_bf16 else "emulated"
    return f"machine: {m.cpu_model}, {m.cores} cores usable, flags {flags} (bf16 {native}){gpu}; load average {load:.1f}"
