"""XSegLite: a small U-Net face segmenter in DFL's XSeg style, sized for CPU training.

DFL's XSeg (``core/leras/models/XSeg.py``) is a 256 px U-Net with base 32 channels, conv→FRN→TLU blocks,
six BlurPool levels down to 4×4 and a dense 4096→512→4096 bottleneck: ~17.6M parameters, far too slow
to bootstrap on two CPU cores. XSegLite keeps the design and shrinks it:

* the same block: conv3×3 → Filter Response Normalisation → Thresholded Linear Unit (batch-independent,
  so batch size 1 at inference behaves exactly as in training);
* anti-aliased downsampling (2×2 average pool, the simplest BlurPool), levels ``channels`` (default
  8/16/32/64/96) at resolution 128 → 8 px, then a dense bottleneck on the 4×4 map for global context
  (the face outline needs the whole face, an occluder needs its surroundings);
* decoder: nearest ×2 upsampling + conv, concatenation with the encoder skip, two blocks; a 1×1 logit head;
* (``prior=True``, not in DFL) a learned per-pixel logit bias added to the head, initialised by the trainer
  to the logit of the mean training mask (:meth:`XSegLite.init_prior`). Aligned faces put the face in
  nearly the same place every time, so the net starts from the average face outline and only has to
  learn the deviations (this face's jaw and brows, the occluders): a short CPU bootstrap converges much
  faster. On the faces of unseen videos the mean outline alone scores IoU 0.87-0.91 against their hulls.
* (``hull_input=True``, not in DFL; the trainer's default) the face's own landmark hull as a fourth input
  channel, and ``hull_gain * (2 * hull - 1)`` added to the logits, so the net starts from *this* face's
  outline and learns only what to cut from it (occluders) or add to it (labelled forehead, hair). Every
  aligned face carries its landmarks, so the hull is there wherever a mask is wanted (apply, merge, the
  editor); without one (``hull=None``) the mean training hull stands in. A zero-label bootstrap learns the
  outline from the landmarks themselves and spends its few CPU minutes on the occluders: 15-minute
  bootstraps that had to infer the outline from pixels cut the cheeks and lips of faces they never saw.

At 128 px and the default channels it has 1.56M parameters and 0.27 GMAC per face (DFL: 17.6M at 256 px);
the trainer's default is 64 px (a quarter of the work per step; a perfect 64 px mask bilinearly resized to
256 px still scores IoU 0.99 against the 256 px truth). Input RGB in [0, 1], (N, 3, R, R);
output logits (N, 1, R, R) (``torch.sigmoid`` gives the mask).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workbench.errors import ConfigError


@dataclass(frozen=True)
class XSegConfig:
    """Architecture of :class:`XSegLite` (stored in every XSeg checkpoint)."""

    resolution: int = 128
    channels: tuple[int, ...] = (8, 16, 32, 64, 96)
    bottleneck: int = 256
    prior: bool = False
    hull_input: bool = False

    def __post_init__(self) -> None:
        levels = len(self.channels)
        if levels < 2 or any(c < 4 for c in self.channels):
            raise ConfigError(f"XSeg needs at least 2 levels of >= 4 channels, got {self.channels}")
        if self.resolution % (2 ** levels) or self.resolution < 2 ** levels * 2:
            raise ConfigError(f"XSeg resolution must be a multiple of {2 ** levels} (>= {2 ** (levels + 1)}), "
                              f"got {self.resolution}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> XSegConfig:
        return cls(int(data["resolution"]), tuple(int(c) for c in data["channels"]), int(data["bottleneck"]),
                   bool(data.get("prior", False)), bool(data.get("hull_input", False)))  # older checkpoints have neither


class FRN(nn.Module):
    """Filter Response Normalisation + TLU (Singh & Krishnan 2019), as DFL's XSeg blocks."""

    def __init__(self, ch: int, eps: float = 1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, ch, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, ch, 1, 1))
        self.tau = nn.Parameter(torch.zeros(1, ch, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nu2 = x.pow(2).mean(dim=(2, 3), keepdim=True)
        x = x * torch.rsqrt(nu2 + self.eps)
        # max(y, tau) written as relu(y - tau) + tau: the same function with a much cheaper backward on CPU
        return F.relu(self.gamma * x + self.beta - self.tau) + self.tau


class Block(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = FRN(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class XSegLite(nn.Module):
    """The segmentation U-Net; ``forward(images (N,3,R,R) in [0,1], hulls (N,1,R,R) | None) -> logits (N,1,R,R)``."""

    def __init__(self, config: XSegConfig = XSegConfig()):
        super().__init__()
        self.config = config
        ch = config.channels
        self.enc = nn.ModuleList()
        cin = 4 if config.hull_input else 3
        for c in ch:
            self.enc.append(nn.Sequential(Block(cin, c), Block(c, c)))
            cin = c
        side = config.resolution // 2 ** len(ch)
        self.side = side
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(ch[-1] * side * side, config.bottleneck),
                                   nn.LeakyReLU(0.1), nn.Linear(config.bottleneck, ch[-1] * side * side),
                                   nn.LeakyReLU(0.1))
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        below = ch[-1]
        for c in reversed(ch):
            self.up.append(Block(below, c))
            self.dec.append(nn.Sequential(Block(2 * c, c), Block(c, c)))
            below = c
        self.head = nn.Conv2d(ch[0], 1, 1)
        r = config.resolution
        self.prior = nn.Parameter(torch.zeros(1, 1, r, r)) if config.prior else None
        if config.hull_input:
            # logit +-4 (mask 0.98 / 0.02) from the hull at the start; learnable, so the net can trust it less
            self.hull_gain = nn.Parameter(torch.tensor(4.0))
            self.register_buffer("mean_hull", torch.zeros(1, 1, r, r))  # stands in when no hull is given

    @torch.no_grad()
    def init_prior(self, mean_mask: torch.Tensor, mean_hull: torch.Tensor | None = None, clamp: float = 0.02) -> None:
        """Set the prior to ``logit(mean_mask)`` ((R, R) or (1, 1, R, R) in [0, 1], clamped to avoid ±inf),
        and the stand-in hull (with ``hull_input``) to ``mean_hull >= 0.5`` (default: the mean mask's)."""
        if self.config.hull_input:
            mean = mean_mask if mean_hull is None else mean_hull
            self.mean_hull.copy_((mean.reshape(self.mean_hull.shape) >= 0.5).to(self.mean_hull))
        if self.prior is None:
            return
        p = mean_mask.reshape(self.prior.shape).to(self.prior).clamp(clamp, 1 - clamp)
        self.prior.copy_(torch.log(p / (1 - p)))

    def forward(self, x: torch.Tensor, hull: torch.Tensor | None = None) -> torch.Tensor:
        hull_bias = None
        if self.config.hull_input:
            hull = self.mean_hull.expand(x.shape[0], -1, -1, -1) if hull is None else hull.to(x)
            hull_bias = 2 * hull - 1
            x = torch.cat([x, hull_bias], dim=1)
        skips = []
        for level in self.enc:
            x = level(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = self.dense(x).view(x.shape[0], -1, self.side, self.side) + x
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = up(F.interpolate(x, scale_factor=2.0, mode="nearest"))
            x = dec(torch.cat([x, skip], dim=1))
        logits = self.head(x)
        if hull_bias is not None:
            logits = logits + self.hull_gain * hull_bias
        return logits if self.prior is None else logits + self.prior
