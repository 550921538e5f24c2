"""Where training runs: the torch device (:func:`resolve_device`) and this process's place in a
torch.distributed job (:class:`DistContext`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from ..errors import TrainingError

if TYPE_CHECKING:
    pass


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
