"""The course's tiny face-swap autoencoder: one shared encoder, one decoder per identity, nothing else.

Notebook 3 trains it in a minute on a CPU (:func:`workbench.course.train_tiny_autoencoder`) to show the idea
behind DF/LIAE before the real architectures (:mod:`workbench.models.df`, :mod:`workbench.models.liae`).
"""

from __future__ import annotations

import torch
from torch import nn


def _down(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 5, 2, 2), nn.LeakyReLU(0.1))


def _up(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout * 4, 3, 1, 1), nn.LeakyReLU(0.1), nn.PixelShuffle(2))


class TinySwapAutoencoder(nn.Module):
    """The face-swap idea at its smallest: ONE shared encoder, one decoder per identity.

    ``encode(x) -> z`` maps any face to a ``code_dims`` vector; ``decode(z, "src"|"dst")`` draws that code as
    the source or the destination person. Training only ever decodes src codes with the src decoder and dst
    codes with the dst decoder; the swap is decoding a dst code with the src decoder.

    Args:
        resolution: face side in pixels (a multiple of 8, at least 16).
        code_dims: size of the latent code (the bottleneck).
        width: channels of the first convolution (doubled at each of the 3 downscales).

    Shapes: faces are (B, 3, R, R) float in [0, 1]; codes (B, code_dims).
    """

    def __init__(self, resolution: int = 32, code_dims: int = 64, width: int = 32):
        super().__init__()
        if resolution % 8 or resolution < 16:
            raise ValueError(f"resolution must be a multiple of 8 and >= 16, got {resolution}")
        self.resolution, self.code_dims = int(resolution), int(code_dims)
        r = resolution // 8
        c = width * 4
        self.encoder = nn.Sequential(_down(3, width), _down(width, width * 2), _down(width * 2, c), nn.Flatten(),
                                     nn.Linear(c * r * r, code_dims))
        self.decoders = nn.ModuleDict({name: self._decoder(c, r, width) for name in ("src", "dst")})

    def _decoder(self, c: int, r: int, width: int) -> nn.Module:
        return nn.Sequential(nn.Linear(self.code_dims, c * r * r), nn.Unflatten(1, (c, r, r)), _up(c, width * 2),
                             _up(width * 2, width), _up(width, width // 2), nn.Conv2d(width // 2, 3, 3, 1, 1),
                             nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, code_dims)

    def decode(self, z: torch.Tensor, identity: str) -> torch.Tensor:
        return self.decoders[identity](z)  # (B, 3, R, R)

    def forward(self, x: torch.Tensor, identity: str) -> torch.Tensor:
        return self.decode(self.encode(x), identity)
