"""The one home of numpy <-> torch image conversion.

The library's images are RGB float32 HWC arrays in [0, 1]; models take NCHW float tensors. These two functions
are the only place where the axes move, so every stage (training previews, the latent tools, the course's
model, the merge predictor) converts the same way.
"""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(images: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """(N, H, W, C) float images -> (N, C, H, W) contiguous float32 tensor on ``device`` (values unchanged)."""
    batch = torch.from_numpy(np.ascontiguousarray(np.asarray(images, np.float32))).permute(0, 3, 1, 2)
    return batch.contiguous().to(device)


def to_images(batch: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) tensor -> (N, H, W, C) float32 numpy, clamped to [0, 1] (detached, on the CPU)."""
    return batch.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
