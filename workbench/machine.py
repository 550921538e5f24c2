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


def cpu_generation(vendor: str, family: int | None, model: int | None) -> str:
    """The x86 core generation for a vendor id, family and model, where the model name alone does not say it.

    Virtual machines often report a bare "AMD EPYC"; the family tells Zen 4 (double-pumped 256-bit AVX-512) from
    Zen 5 (full 512-bit datapath, twice the fp32 peak per core), which changes what a conv-bound step can reach.
    "" when unknown (Intel's family 6 spans fifteen years of cores: its model name is specific enough).
    """
    if vendor != "AuthenticAMD" or family is None or model is None:
        return ""
    if family == 0x17:
        return "Zen 2" if model >= 0x30 else "Zen/Zen+"
    if family == 0x19:
        zen4 = 0x10 <= model <= 0x1F or 0x60 <= model <= 0x7F or 0xA0 <= model <= 0xAF
        return "Zen 4" if zen4 else "Zen 3"
    if family == 0x1A:
        return "Zen 5"
    return ""


@dataclass(frozen=True)
class Machine:
    cpu_model: str
    cores: int
    flags: tuple[str, ...]
    gpu: str  # "" when no CUDA device is visible
    generation: str = ""  # e.g. "AMD family 26 model 2 (Zen 5)"; "" when /proc/cpuinfo does not say

    @property
    def native_bf16(self) -> bool:
        """True when the CPU computes bf16 in hardware (AVX-512 BF16 or AMX); elsewhere bf16 is emulated."""
        return "bf16" in native_formats(self.flags)


def _cpuinfo(text: str | None = None) -> tuple[str, tuple[str, ...], str]:
    """Model name, speed flags and generation (see :func:`cpu_generation`) from ``/proc/cpuinfo``'s text."""
    if text is None:
        path = Path("/proc/cpuinfo")
        text = path.read_text(errors="replace") if path.exists() else ""
    model, flags = platform.processor() or platform.machine(), ()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model in ("", platform.machine(), platform.processor()):
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            present = set(value.split())
            flags = tuple(f for f in SPEED_FLAGS if f in present)
        elif key in ("vendor_id", "cpu family", "model") and key not in fields:
            fields[key] = value.strip()
    generation = ""
    try:
        family, number = int(fields["cpu family"]), int(fields["model"])
    except (KeyError, ValueError):
        pass
    else:
        vendor = fields.get("vendor_id", "")
        name = cpu_generation(vendor, family, number)
        short = {"AuthenticAMD": "AMD", "GenuineIntel": "Intel"}.get(vendor, vendor)
        generation = f"{short} family {family} model {number}" + (f" ({name})" if name else "")
    return model, flags, generation


def describe_machine(cuda: bool = True) -> Machine:
    """The machine this process runs on. ``cuda=False`` skips importing torch (for light callers)."""
    model, flags, generation = _cpuinfo()
    gpu = ""
    if cuda:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Machine(cpu_model=model, cores=cores, flags=flags, gpu=gpu, generation=generation)


def machine_line(machine: Machine | None = None) -> str:
    """One line for a benchmark's header, with the load average (other work on the machine skews timings)."""
    m = machine or describe_machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = f"; GPU {m.gpu}" if m.gpu else "; no GPU"
    flags = " ".join(m.flags) or "none of " + "/".join(SPEED_FLAGS[:3])
    native = "native" if m.native_bf16 else "emulated"
    cpu = f"{m.cpu_model} [{m.generation}]" if m.generation else m.cpu_model
    return f"machine: {cpu}, {m.cores} cores usable, flags {flags} (bf16 {native}){gpu}; load average {load:.1f}"
