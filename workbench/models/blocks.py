"""Shared building blocks of DeepFaceLab's DF and LIAE autoencoders (`core/leras/archis/DeepFakeArchi.py`).

Only the primitives live here; each architecture (``df.py``, ``liae.py``) wires them in its own file.

Conventions that match DFL exactly:

- Convolutions with DFL's ``padding='SAME'`` pad symmetrically by ``((k - 1) * dilation + 1) // 2`` and then run a
  VALID convolution (leras ``Conv2D``). For the stride-2 kernel-5 Downscale that is ``padding=2`` on every side,
  so the output side is ``ceil(H / 2)``, exactly as in DFL. (TensorFlow's own ``'SAME'`` would pad 1 before and
  2 after on even inputs; DFL does not use it, so there is no asymmetry to reproduce.)
- `depth_to_space` uses TensorFlow's channel order (DCR: the channel index is ``(i * r + j) * C + c``), which is
  what DFL's ``nn.depth_to_space`` computes. ``torch.nn.functional.pixel_shuffle`` uses CRD
  (``c * r * r + i * r + j``). For a model trained from scratch the two differ only by a permutation of the
  preceding conv's output channels, but in the ``d`` head (four convs concatenated, one 1x1 and three 3x3) the
  order decides which conv draws which sub-pixel, and DFL weights can only be ported with the DCR order.
- Weights: glorot-uniform (TF default) for every conv and dense layer, biases zero (`glorot_init_`).
- Activation: leaky-ReLU 0.1 (0.2 inside residual blocks), or x·cos(x) everywhere with the ``c`` letter.
- Flatten/reshape use the channel-first order (DFL's ``nn.flatten``/``nn.reshape_4D`` in NCHW), so a flat code
  is ``(C, H, W)``-ordered as torch's ``flatten(1)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Decoder",
    "Downscale",
    "Encoder",
    "Inter",
    "ResidualBlock",
    "Upscale",
    "act",
    "depth_to_space",
    "glorot_init_",
    "pixel_norm",
    "same_padding",
]


def act(x: torch.Tensor, slope: float = 0.1, cos: bool = False) -> torch.Tensor:
    """DFL's activation: ``leaky_relu(x, slope)``, or ``x * cos(x)`` when the archi has the ``c`` letter."""
    if cos:
        return x * torch.cos(x)
    return F.leaky_relu(x, slope)


def pixel_norm(x: torch.Tensor, dim: int = -1, eps: float = 1e-6) -> torch.Tensor:
    """``x / sqrt(mean(x**2, dim) + eps)`` (DFL ``nn.pixel_norm``; the ``u`` letter applies it to the flat code).

    Computed in float32 even under fp16 autocast: with eps 1e-6 the backward of rsqrt reaches ~1e5-1e6,
    beyond fp16's 65504, and would turn every gradient into NaN.
    """
    dtype = x.dtype
    x32 = x.float()
    return (x32 * torch.rsqrt(torch.mean(x32 * x32, dim=dim, keepdim=True) + eps)).to(dtype)


def depth_to_space(x: torch.Tensor, block: int = 2) -> torch.Tensor:
    """TensorFlow/DFL depth_to_space (DCR order): (B, r*r*C, H, W) -> (B, C, r*H, r*W).

    Output pixel ``(h*r + i, w*r + j)`` of channel ``c`` is input channel ``(i*r + j)*C + c`` at ``(h, w)``.
    This is *not* ``F.pixel_shuffle`` (CRD order); see the module docstring.
    """
    b, ch, h, w = x.shape
    c = ch // (block * block)
    x = x.reshape(b, block, block, c, h, w)  # (B, i, j, C, H, W)
    x = x.permute(0, 3, 4, 1, 5, 2)  # (B, C, H, i, W, j)
    return x.reshape(b, c, h * block, w * block)


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """DFL's symmetric 'SAME' padding: ``((k - 1) * dilation + 1) // 2`` pixels on every side."""
    return ((kernel_size - 1) * dilation + 1) // 2


@torch.no_grad()
def glorot_init_(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Glorot-uniform weights and zero biases for every conv / transposed conv / dense layer inside ``module``.

    This is TensorFlow's default initialiser, which DFL uses (its "CA" init is disabled). Returns ``module``.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


class Downscale(nn.Module):
    """Conv k5 stride 2 (symmetric padding 2) + activation: (B, in, H, W) -> (B, out, ceil(H/2), ceil(W/2))."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 5, cos_act: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size, stride=2, padding=same_padding(kernel_size))
        self.cos_act = cos_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return act(self.conv1(x), 0.1, self.cos_act)  # (B, out, H/2, W/2)


class Upscale(nn.Module):
    """Conv k3 to 4·out channels + activation + depth_to_space(2): (B, in, H, W) -> (B, out, 2H, 2W)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, cos_act: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch * 4, kernel_size, padding=same_padding(kernel_size))
        self.cos_act = cos_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = act(self.conv1(x), 0.1, self.cos_act)  # (B, 4*out, H, W)
        return depth_to_space(x, 2)  # (B, out, 2H, 2W)


class ResidualBlock(nn.Module):
    """conv3 -> lrelu 0.2 -> conv3 -> lrelu 0.2 (x + input); shape preserved."""

    def __init__(self, ch: int, kernel_size: int = 3, cos_act: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, kernel_size, padding=same_padding(kernel_size))
        self.conv2 = nn.Conv2d(ch, ch, kernel_size, padding=same_padding(kernel_size))
        self.cos_act = cos_act

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = act(self.conv1(inp), 0.2, self.cos_act)  # (B, ch, H, W)
        x = self.conv2(x)
        return act(inp + x, 0.2, self.cos_act)  # (B, ch, H, W)


class Encoder(nn.Module):
    """Image -> flat code.

    Default: 4 Downscales with e·{1, 2, 4, 8} channels -> (B, 8e, res/16, res/16), flattened.
    ``t``: Down(e), Res(e), Down(2e), Down(4e), Down(8e), Down(8e), Res(8e) -> (B, 8e, res/32, res/32), flattened.
    ``u``: the flat vector is pixel-normalised.
    """

    def __init__(
        self,
        in_ch: int,
        e_ch: int,
        *,
        t_variant: bool = False,
        use_pixel_norm: bool = False,
        cos_act: bool = False,
    ):
        super().__init__()
        self.t_variant = t_variant
        self.use_pixel_norm = use_pixel_norm
        if t_variant:
            self.down1 = Downscale(in_ch, e_ch, cos_act=cos_act)
            self.res1 = ResidualBlock(e_ch, cos_act=cos_act)
            self.down2 = Downscale(e_ch, e_ch * 2, cos_act=cos_act)
            self.down3 = Downscale(e_ch * 2, e_ch * 4, cos_act=cos_act)
            self.down4 = Downscale(e_ch * 4, e_ch * 8, cos_act=cos_act)
            self.down5 = Downscale(e_ch * 8, e_ch * 8, cos_act=cos_act)
            self.res5 = ResidualBlock(e_ch * 8, cos_act=cos_act)
        else:
            chs = [e_ch * min(2**i, 8) for i in range(4)]  # e, 2e, 4e, 8e
            self.downs = nn.Sequential(
                *[Downscale(a, b, cos_act=cos_act) for a, b in zip([in_ch, *chs[:-1]], chs)]
            )
        self.out_ch = e_ch * 8

    def out_res(self, resolution: int) -> int:
        """Spatial side of the output map before flattening."""
        return resolution // (32 if self.t_variant else 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.t_variant:
            x = self.res1(self.down1(x))  # (B, e, res/2, res/2)
            x = self.down4(self.down3(self.down2(x)))  # (B, 8e, res/16, res/16)
            x = self.res5(self.down5(x))  # (B, 8e, res/32, res/32)
        else:
            x = self.downs(x)  # (B, 8e, res/16, res/16)
        x = x.flatten(1)  # (B, 8e * r * r), channel-first order like DFL's nn.flatten
        if self.use_pixel_norm:
            x = pixel_norm(x, dim=-1)
        return x


class Inter(nn.Module):
    """Flat code -> Dense(ae_ch) [the bottleneck] -> Dense(R·R·ae_out) -> (B, ae_out, R, R) -> Upscale (not with 't').

    No activation after the dense layers (as in DFL). Output side ``2R`` (``R`` with ``upscale=False``).
    """

    def __init__(
        self,
        in_features: int,
        ae_ch: int,
        ae_out_ch: int,
        dense_res: int,
        *,
        upscale: bool = True,
        cos_act: bool = False,
    ):
        super().__init__()
        self.dense_res = dense_res
        self.ae_out_ch = ae_out_ch
        self.dense1 = nn.Linear(in_features, ae_ch)
        self.dense2 = nn.Linear(ae_ch, dense_res * dense_res * ae_out_ch)
        self.upscale1 = Upscale(ae_out_ch, ae_out_ch, cos_act=cos_act) if upscale else None
        self.out_ch = ae_out_ch
        self.out_res = dense_res * 2 if upscale else dense_res

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_features) -> (B, ae_ch): the narrowest vector of the autoencoder."""
        return self.dense1(x)

    def expand(self, z: torch.Tensor) -> torch.Tensor:
        """(B, ae_ch) bottleneck -> (B, ae_out, out_res, out_res) code map."""
        r = self.dense_res
        x = self.dense2(z).reshape(-1, self.ae_out_ch, r, r)  # (B, ae_out, R, R), DFL reshape_4D order
        if self.upscale1 is not None:
            x = self.upscale1(x)  # (B, ae_out, 2R, 2R)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.bottleneck(x))


class Decoder(nn.Module):
    """Code map -> (image (B, 3, res, res) in [0, 1], mask (B, 1, res, res) in [0, 1]).

    Image path: Upscale(in -> 8d)+Res, Upscale(8d -> 4d)+Res, Upscale(4d -> 2d)+Res
    (``t``: 8d, 8d, 4d, 2d with a Res after each), then sigmoid(conv1x1(2d -> 3)); with ``d``: four convs
    (one 1x1, three 3x3, each 2d -> 3) concatenated to 12 channels, depth_to_space(2), sigmoid.
    Mask path: Upscales 8m, 4m, 2m (``t``: 8m, 8m, 4m, 2m), plus Upscale(2m -> m) with ``d``, then
    sigmoid(conv1x1 -> 1).
    """

    def __init__(
        self,
        in_ch: int,
        d_ch: int,
        d_mask_ch: int,
        *,
        t_variant: bool = False,
        d_variant: bool = False,
        cos_act: bool = False,
    ):
        super().__init__()
        self.d_variant = d_variant
        img_chs = [d_ch * 8, d_ch * 8, d_ch * 4, d_ch * 2] if t_variant else [d_ch * 8, d_ch * 4, d_ch * 2]
        mask_chs = (
            [d_mask_ch * 8, d_mask_ch * 8, d_mask_ch * 4, d_mask_ch * 2]
            if t_variant
            else [d_mask_ch * 8, d_mask_ch * 4, d_mask_ch * 2]
        )
        if d_variant:
            mask_chs.append(d_mask_ch)
        self.upscales = nn.ModuleList(
            Upscale(a, b, cos_act=cos_act) for a, b in zip([in_ch, *img_chs[:-1]], img_chs)
        )
        self.res = nn.ModuleList(ResidualBlock(c, cos_act=cos_act) for c in img_chs)
        self.upscalems = nn.ModuleList(
            Upscale(a, b, cos_act=cos_act) for a, b in zip([in_ch, *mask_chs[:-1]], mask_chs)
        )
        self.out_conv = nn.Conv2d(d_ch * 2, 3, 1)
        if d_variant:
            self.out_conv1 = nn.Conv2d(d_ch * 2, 3, 3, padding=1)
            self.out_conv2 = nn.Conv2d(d_ch * 2, 3, 3, padding=1)
            self.out_conv3 = nn.Conv2d(d_ch * 2, 3, 3, padding=1)
        self.out_convm = nn.Conv2d(mask_chs[-1], 1, 1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = z  # (B, in, r, r)
        for up, res in zip(self.upscales, self.res):
            x = res(up(x))  # side doubles each stage: (B, 2d, 8r, 8r) after 3 stages (16r with 't')
        if self.d_variant:
            x = torch.cat([self.out_conv(x), self.out_conv1(x), self.out_conv2(x), self.out_conv3(x)], dim=1)
            x = torch.sigmoid(depth_to_space(x, 2))  # (B, 12, h, w) -> (B, 3, 2h, 2w)
        else:
            x = torch.sigmoid(self.out_conv(x))  # (B, 3, h, w)
        return x, self.mask(z)

    def mask(self, z: torch.Tensor) -> torch.Tensor:
        """Only the mask path (B, 1, res, res): the merger needs the dst decoder's mask, not its image."""
        m = z
        for up in self.upscalems:
            m = up(m)  # (B, m_ch, ..) doubling each stage
        return torch.sigmoid(self.out_convm(m))
