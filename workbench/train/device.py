"""Where training runs: the torch device (:func:`resolve_device`), the number format it trains in
(:func:`resolve_precision`), the CPU allocator's set-up (:func:`keep_freed_cpu_memory`) and this process's place
in a torch.distributed job (:class:`DistContext`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import TrainingError
from ..machine import describe_machine, native_formats


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:LOCAL_RANK when CUDA is available, else mps, else cpu; checks an explicit device exists."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(f"device {name} was asked for but CUDA is not available here",
                                hint="use --device cpu (or auto)")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise TrainingError("device mps was asked for but is not available", hint="use --device cpu (or auto)")
    return device


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_cpu_memory() -> bool:
    """Let glibc keep freed memory for the next training step instead of returning it to the system.

    A CPU training step allocates and frees the same few hundred MB of activations and gradients every time.
    With glibc's defaults every block above its (adaptive) mmap threshold, and the heap's freed top, go back to
    the kernel and come back as fresh pages, so each step pays hundreds of thousands of page faults (measured:
    720k -> 290k faults and ~8 % less CPU per Quick96 step). Blocks up to 32 MB (glibc's maximum threshold) now
    stay in the heap and the heap is not trimmed below 1 GB. Returns False where this is not glibc (macOS,
    Windows, musl): nothing changes there. Memory is not lost: the process reuses it.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20) and mallopt(_M_TRIM_THRESHOLD, 1 << 30)
                and mallopt(_M_TOP_PAD, 64 << 20))


def resolve_precision(precision: str, device: torch.device,
                      flags: set[str] | None = None) -> tuple[str, str | None]:
    """The number format a run really trains in, and a note for the user (or None).

    ``auto`` never picks a format the device only emulates: bf16 on CUDA GPUs that support it and on CPUs
    that compute it natively (AVX512-BF16 or AMX: on an EPYC with AVX512-BF16 a Quick96 step costs
    ~1.5x less CPU time in bf16, the tiny preset's ~1.3x less), else fp32.
    An explicit ``bf16``/``fp16`` on a CPU that emulates it (e.g. AVX2 only: bf16 training measured 14-17x
    slower than fp32) is honoured with a warning. ``flags``: the CPU's flags (default: this machine's).
    """
    if flags is None:
        flags = set(describe_machine(cuda=False).flags) if device.type == "cpu" else set()
    native = native_formats(flags)
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16", None
        if device.type == "cpu" and "bf16" in native:
            return "bf16", None
        return "fp32", None
    if precision in ("bf16", "fp16") and device.type == "cpu" and precision not in native:
        note = (f"warning: this CPU has no {precision} instructions, so {precision} training is emulated and "
                "several times slower than fp32 (measured 14-17x for bf16 on an AVX2-only CPU); "
                "use --precision auto or fp32")
        import warnings

        warnings.warn(note, RuntimeWarning, stacklevel=3)
        return precision, note
    return precision, None


@dataclass(frozen=True)
class DistContext:
    """This process's place in a torch.distributed job (world 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device_name: str = "auto") -> DistContext:
        """Read RANK/WORLD_SIZE/LOCAL_RANK (set by torchrun) and join the process group if needed.

        Backend: NCCL when training on CUDA, gloo otherwise (so the same code path runs on CPU).
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            use_cuda = torch.cuda.is_available() and (device_name == "auto" or device_name.startswith("cuda"))
            backend = "nccl" if use_cuda else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(local_rank % torch.cuda.device_count())
            import datetime

            # generous timeout: a paused run keeps its ranks waiting in a collective
            dist.init_process_group(backend, timeout=datetime.timedelta(hours=12))
        return cls(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank)
