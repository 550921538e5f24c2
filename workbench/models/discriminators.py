"""Discriminators used by SAEHD's optional adversarial terms.

- `UNetPatchDiscriminator` (``gan_power > 0``; DFL ``core/leras/models/PatchDiscriminator.py``, after
  Schönfeld et al. 2020, "A U-Net Based Discriminator for GANs"): judges src->src reconstructions against the
  real src faces. It returns a *centre* logit map (the bottom of the U, one logit per patch of about
  ``gan_patch_size`` pixels) and a *per-pixel* logit map at full resolution.
- `CodeDiscriminator` (``true_face_power > 0``, DF only; DFL ``CodeDiscriminator.py``): judges the inter code,
  pushing src codes to look like dst codes so the shared code carries less identity.

Weights are glorot-uniform with zero biases, as every DFL layer.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.models.blocks import glorot_init_, same_padding

__all__ = ["CodeDiscriminator", "UNetPatchDiscriminator", "find_archi", "receptive_field"]


def receptive_field(layers: list[tuple[int, int]]) -> int:
    """Receptive field (pixels) of a stack of ``(kernel, stride)`` convs (DFL ``calc_receptive_field_size``)."""
    rf, total_stride = 0, 1
    for i, (k, s) in enumerate(layers):
        rf = k if i == 0 else rf + (k - 1) * total_stride
        total_stride *= s
    return rf


def find_archi(target_patch_size: int, max_layers: int = 9) -> list[tuple[int, int]]:
    """The 3x3 conv stack (first stride 2, then 1 or 2) whose receptive field is nearest ``target_patch_size``.

    Same search as DFL's ``UNetPatchDiscriminator.find_archi``: for each receptive field keep the stack with the
    fewest layers, and among those the most downsampling; ties between two fields pick the smaller.

    Example:
        >>> find_archi(16)
        [(3, 2), (3, 2), (3, 2)]
    """
    best: dict[int, tuple[int, int, list[tuple[int, int]]]] = {}
    for n_layers in range(1, max_layers + 1):
        for val in range((1 << (n_layers - 1)) - 1, -1, -1):  # every stride pattern of the n-1 later layers
            layers = [(3, 2)] + [(3, 2 if val & (1 << i) else 1) for i in range(n_layers - 1)]
            sum_st = sum(s for _, s in layers)
            rf = receptive_field(layers)
            old = best.get(rf)
            if old is None or n_layers < old[0] or (n_layers == old[0] and sum_st > old[1]):
                best[rf] = (n_layers, sum_st, layers)
    keys = sorted(best)
    nearest = keys[int(np.abs(np.array(keys) - target_patch_size).argmin())]
    return best[nearest][2]


class UNetPatchDiscriminator(nn.Module):
    """U-Net patch discriminator: image (B, in_ch, H, W) -> (centre logits (B, 1, h, w), pixel logits (B, 1, H, W)).

    Args:
        patch_size: wanted receptive field of the centre logits (SAEHD ``gan_patch_size``, default res // 8).
        in_ch: image channels.
        base_ch: channels of the first level (SAEHD ``gan_dims``, default 16); level i has min(base·2^i, 512).
    """

    def __init__(self, patch_size: int, in_ch: int = 3, base_ch: int = 16):
        super().__init__()
        self.layers = find_archi(patch_size)
        n = len(self.layers)
        # level_chs[i] for i = -1..n-1 stored at index i + 1
        chs = [min(base_ch * (2**i), 512) for i in range(n + 1)]
        self.in_conv = nn.Conv2d(in_ch, chs[0], 1)
        self.convs = nn.ModuleList()
        ups: list[nn.Module] = []
        for i, (k, s) in enumerate(self.layers):
            self.convs.append(nn.Conv2d(chs[i], chs[i + 1], k, stride=s, padding=same_padding(k)))
            up_in = chs[i + 1] * (
                2 if i != n - 1 else 1
            )  # deeper levels receive [skip, upsampled] concatenated
            ups.insert(0, nn.ConvTranspose2d(up_in, chs[i], k, stride=s, padding=same_padding(k)))
        self.upconvs = nn.ModuleList(ups)
        self.out_conv = nn.Conv2d(chs[0] * 2, 1, 1)
        self.center_out = nn.Conv2d(chs[n], 1, 1)
        self.center_conv = nn.Conv2d(chs[n], chs[n], 1)
        glorot_init_(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.leaky_relu(self.in_conv(x), 0.2)  # (B, base, H, W)
        skips = []
        for conv in self.convs:
            skips.insert(0, x)
            x = F.leaky_relu(conv(x), 0.2)  # stride 2 levels halve the side (ceil)
        center = self.center_out(x)  # (B, 1, h, w): one logit per patch
        x = F.leaky_relu(self.center_conv(x), 0.2)
        for upconv, skip in zip(self.upconvs, skips):
            # output_size picks the output padding so odd sides come back exactly (TF SAME transpose semantics)
            x = F.leaky_relu(upconv(x, output_size=list(skip.shape[-2:])), 0.2)
            x = torch.cat([skip, x], 1)
        return center, self.out_conv(x)  # (B, 1, h, w), (B, 1, H, W)


class CodeDiscriminator(nn.Module):
    """TrueFace code discriminator: code (B, in_ch, r, r) -> logits (B, 1, h, w).

    ``1 + code_res // 8`` stride-2 convs (kernel 4, then 3; channels ch·min(2^i, 8)), leaky-ReLU 0.1, then a
    1x1 conv to one logit map. DFL builds it with ``in_ch = ae_dims`` and ``code_res`` = the inter output side
    (``DF.code_shape``).
    """

    def __init__(self, in_ch: int, code_res: int, ch: int = 256):
        super().__init__()
        n_down = 1 + code_res // 8
        convs = []
        prev = in_ch
        for i in range(n_down):
            cur = ch * min(2**i, 8)
            k = 4 if i == 0 else 3
            convs.append(nn.Conv2d(prev, cur, k, stride=2, padding=same_padding(k)))  # k4: pad 2 as DFL
            prev = cur
        self.convs = nn.ModuleList(convs)
        self.out_conv = nn.Conv2d(prev, 1, 1)
        glorot_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
        return self.out_conv(x)
