"""SAEHD's training losses as pure torch functions (DFL ``models/Model_SAEHD/Model.py``, ``core/leras/ops``).

Every loss returns a **per-sample** tensor of shape (B,), as DFL does; the trainer sums the terms and averages
over the batch. Images are (B, C, H, W) in [0, 1]; masks (B, 1, H, W) in [0, 1]. DSSIM and the Gaussian
helpers compute in float32 whatever the input dtype (DFL casts too), so they are safe under bf16/fp16 autocast.

How SAEHD combines them, per identity (src: src->src vs target src; dst: dst->dst vs target dst)::

    m_b  = blurred_mask(target_mask, res)                      # 1 inside and on the edge, ramps to 0 outside
    loss = reconstruction_loss(pred * m_b, target * m_b, res)  # masked training (always for full face)
         + mask_loss(pred_mask, target_mask)                   # 10 * MSE on the unblurred mask
         + eyes_mouth_loss(pred, target, em_mask)              # optional, 300 * L1 on eyes and mouth
    src side also: style_loss(...) (face_style_power) and background_style_loss(...) (bg_style_power)
    GAN: gan_d_loss / gan_g_loss on (centre, pixel) logits of UNetPatchDiscriminator; TrueFace on the code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "background_style_loss",
    "bce_with_logits",
    "blur_out_mask",
    "blurred_mask",
    "dssim",
    "dssim_kernel_sizes",
    "eyes_mouth_loss",
    "gan_d_loss",
    "gan_g_loss",
    "gaussian_blur",
    "gaussian_kernel_size",
    "mask_loss",
    "psnr_metric",
    "reconstruction_loss",
    "ssim_metric",
    "style_loss",
    "total_variation",
]


def _check_pair(a: torch.Tensor, b: torch.Tensor, name: str) -> None:
    if a.ndim != 4 or a.shape != b.shape:
        raise ValueError(
            f"{name}: expected two (B, C, H, W) tensors of the same shape, got {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )


def _float(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _separable_filter(x: torch.Tensor, k1d: torch.Tensor, padding: int) -> torch.Tensor:
    """Depthwise 2-D filter with the outer product of ``k1d`` (zero padding), done as two 1-D passes."""
    c = x.shape[1]
    k = k1d.numel()
    kh = k1d.view(1, 1, 1, k).expand(c, 1, 1, k)
    kv = k1d.view(1, 1, k, 1).expand(c, 1, k, 1)
    x = F.conv2d(x, kh, padding=(0, padding), groups=c)
    return F.conv2d(x, kv, padding=(padding, 0), groups=c)


# ---- Gaussian blur and masks --------------------------------------------------------------------------------
def gaussian_kernel_size(sigma: float) -> int:
    """DFL's blur kernel size: ``max(3, int(4 * sigma))``, made odd (sigma 4 -> 17)."""
    k = max(3, int(4 * sigma))
    return k + 1 if k % 2 == 0 else k


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur with DFL's kernel size (`gaussian_kernel_size`) and zero padding; shape preserved.

    Zero padding darkens the border, which is what DFL does (it matters for `blurred_mask` near the edge).
    Computed in float32 and returned in that dtype.
    """
    if x.ndim != 4:
        raise ValueError(f"gaussian_blur: expected (B, C, H, W), got {tuple(x.shape)}")
    if sigma <= 0:
        raise ValueError(f"gaussian_blur: sigma must be > 0, got {sigma}")
    x = _float(x)
    k = gaussian_kernel_size(sigma)
    t = torch.arange(k, dtype=x.dtype, device=x.device) - float(k // 2)
    k1d = torch.exp(-(t * t) / (2.0 * sigma * sigma))
    return _separable_filter(x, k1d / k1d.sum(), k // 2)


def blurred_mask(mask: torch.Tensor, resolution: int) -> torch.Tensor:
    """SAEHD's loss mask: ``clip(blur(mask, max(1, res // 32)), 0, 0.5) * 2``.

    1 inside the face and on its (smooth) edge, ramping to 0 just outside, so the loss also covers the border.
    Only sharp convex corners (sharper than a face outline) dip below 1.
    """
    return torch.clamp(gaussian_blur(mask, max(1, resolution // 32)), 0.0, 0.5) * 2.0


def blur_out_mask(images: torch.Tensor, masks: torch.Tensor, resolution: int) -> torch.Tensor:
    """SAEHD ``blur_out_mask``: replace everything outside the mask by a normalised Gaussian fill of the inside.

    ``out = T·m + blur(T·(1-m)) / (1 - blur(m)) · (1-m)`` with sigma = res / 128 (0 divisors become 1), so the
    background no longer carries detail the model would waste capacity on.
    """
    images, masks = _float(images), _float(masks)
    sigma = resolution / 128
    anti = 1.0 - masks
    x = gaussian_blur(images * anti, sigma)
    y = 1.0 - gaussian_blur(masks, sigma)
    y = torch.where(y == 0, torch.ones_like(y), y)
    return images * masks + (x / y) * anti


# ---- SSIM family --------------------------------------------------------------------------------------------
def dssim_kernel_sizes(resolution: int) -> tuple[int, int]:
    """SAEHD DSSIM window sizes: ``(int(res / 11.6), int(res / 23.2))``; the second is used only at res >= 256.

    64 -> (5, 2), 96 -> (8, 4), 128 -> (11, 5), 256 -> (22, 11), 512 -> (44, 22).
    """
    return int(resolution / 11.6), int(resolution / 23.2)


def _ssim_per_sample(
    a: torch.Tensor,
    b: torch.Tensor,
    kernel_size: int,
    max_val: float,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean SSIM per sample, DFL's formula: Gaussian window (softmax of -x²/2σ²), VALID padding."""
    a, b = _float(a), _float(b)
    kernel_size = max(1, int(kernel_size))
    if kernel_size > min(a.shape[-2:]):
        raise ValueError(f"SSIM window {kernel_size} is larger than the image {tuple(a.shape[-2:])}")
    t = torch.arange(kernel_size, dtype=a.dtype, device=a.device) - (kernel_size - 1) / 2.0
    k1d = torch.softmax(-(t * t) / (2.0 * sigma * sigma), 0)  # 2-D softmax of a separable sum = outer product
    c = a.shape[1]
    stats = _separable_filter(torch.cat([a, b, a * a + b * b, a * b], 1), k1d, 0)  # (B, 4C, H', W') VALID
    mu_a, mu_b, sq_sum, ab = stats.split(c, 1)
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    num0 = mu_a * mu_b * 2.0
    den0 = mu_a * mu_a + mu_b * mu_b
    luminance = (num0 + c1) / (den0 + c1)
    cs = (ab * 2.0 - num0 + c2) / (sq_sum - den0 + c2)
    return (luminance * cs).mean(dim=(1, 2, 3))  # DFL: mean over H, W per channel, then over channels


def dssim(pred: torch.Tensor, target: torch.Tensor, kernel_size: int, max_val: float = 1.0) -> torch.Tensor:
    """Structural dissimilarity ``(1 - SSIM) / 2`` per sample (B,), DFL ``nn.dssim``.

    Gaussian window sigma 1.5 of side ``kernel_size``, k1 0.01, k2 0.03, VALID padding; averaged over
    channels and positions. 0 for identical images, at most 1.
    """
    _check_pair(pred, target, "dssim")
    return (1.0 - _ssim_per_sample(pred, target, kernel_size, max_val)) / 2.0


def ssim_metric(pred: torch.Tensor, target: torch.Tensor, max_val: float = 1.0) -> torch.Tensor:
    """Standard SSIM (11x11 Gaussian window, sigma 1.5, VALID) per sample (B,), for held-out evaluation."""
    _check_pair(pred, target, "ssim_metric")
    return _ssim_per_sample(pred, target, 11, max_val)


def psnr_metric(pred: torch.Tensor, target: torch.Tensor, max_val: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per sample (B,); identical images give 100 dB (MSE floored at 1e-10)."""
    _check_pair(pred, target, "psnr_metric")
    mse = ((_float(pred) - _float(target)) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
    return 10.0 * torch.log10(max_val**2 / mse)


# ---- SAEHD loss terms ---------------------------------------------------------------------------------------
def reconstruction_loss(
    pred: torch.Tensor, target: torch.Tensor, resolution: int, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """SAEHD image loss per sample (B,).

    res < 256: ``10·DSSIM(k1) + 10·MSE``; res >= 256: ``5·DSSIM(k1) + 5·DSSIM(k2) + 10·MSE`` with
    ``(k1, k2) = dssim_kernel_sizes(res)``. If ``mask`` (B, 1, H, W) is given (normally `blurred_mask`), both
    images are multiplied by it first (masked training).
    """
    _check_pair(pred, target, "reconstruction_loss")
    if mask is not None:
        pred, target = pred * mask, target * mask
    k1, k2 = dssim_kernel_sizes(resolution)
    if resolution < 256:
        loss = 10.0 * dssim(pred, target, k1)
    else:
        loss = 5.0 * dssim(pred, target, k1) + 5.0 * dssim(pred, target, k2)
    return loss + 10.0 * ((_float(pred) - _float(target)) ** 2).mean(dim=(1, 2, 3))


def eyes_mouth_loss(pred: torch.Tensor, target: torch.Tensor, eyes_mouth_mask: torch.Tensor) -> torch.Tensor:
    """``eyes_mouth_prio``: ``300 · mean|target·m - pred·m|`` per sample, m the eyes+mouth mask (B, 1, H, W)."""
    _check_pair(pred, target, "eyes_mouth_loss")
    m = _float(eyes_mouth_mask)
    return 300.0 * (_float(target) * m - _float(pred) * m).abs().mean(dim=(1, 2, 3))


def mask_loss(pred_mask: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """Learned-mask loss: ``10 · MSE`` per sample against the (unblurred) target mask."""
    _check_pair(pred_mask, target_mask, "mask_loss")
    return 10.0 * ((_float(target_mask) - _float(pred_mask)) ** 2).mean(dim=(1, 2, 3))


def _check_power(power: float, name: str) -> None:
    if not 0.0 <= power <= 1.0:
        raise ValueError(
            f"{name}: power is the SAEHD option divided by 100 and must lie in [0, 1], got {power}"
        )


def style_loss(pred: torch.Tensor, target: torch.Tensor, resolution: int, power: float) -> torch.Tensor:
    """SAEHD face style loss per sample: per-channel mean and std matching after a Gaussian blur.

    Both inputs are blurred with sigma ``res // 8`` (skipped when 0); then
    ``10000 · power / C · Σ_c [(μ_p - μ_t)² + (σ_p - σ_t)²]`` with ``σ = sqrt(var + 1e-5)`` (population variance).
    SAEHD feeds swap·swap-mask (from a stop-gradient code) and target-dst·dst-mask.

    Args:
        power: ``face_style_power / 100``, in [0, 1].
    """
    _check_pair(pred, target, "style_loss")
    _check_power(power, "style_loss")
    pred, target = _float(pred), _float(target)
    if resolution // 8 > 0:
        pred, target = gaussian_blur(pred, resolution // 8), gaussian_blur(target, resolution // 8)
    p_var, p_mean = torch.var_mean(pred, dim=(2, 3), unbiased=False)
    t_var, t_mean = torch.var_mean(target, dim=(2, 3), unbiased=False)
    p_std, t_std = torch.sqrt(p_var + 1e-5), torch.sqrt(t_var + 1e-5)
    per_sample = ((p_mean - t_mean) ** 2).sum(1) + ((p_std - t_std) ** 2).sum(1)
    return per_sample * (10000.0 * power / pred.shape[1])


def background_style_loss(
    swap: torch.Tensor,
    target_dst: torch.Tensor,
    dst_mask: torch.Tensor,
    resolution: int,
    power: float,
    mask_is_blurred: bool = False,
) -> torch.Tensor:
    """SAEHD background style loss per sample: ``10·power·(DSSIM(k1) + MSE)`` between swap and dst *outside* the face.

    Both images are multiplied by ``1 - blurred_mask(dst_mask)``. This uses the **dst** mask on purpose: DFL HEAD
    overwrites its style mask with the blurred *src* target mask before this term (a bug: the src face outline
    has nothing to do with the dst frame), so this function deliberately differs from DFL there.

    Args:
        dst_mask: the target dst mask (B, 1, H, W); pass ``mask_is_blurred=True`` if it is already `blurred_mask`.
        power: ``bg_style_power / 100``, in [0, 1].
    """
    _check_pair(swap, target_dst, "background_style_loss")
    _check_power(power, "background_style_loss")
    m = _float(dst_mask) if mask_is_blurred else blurred_mask(dst_mask, resolution)
    anti = 1.0 - m
    a, b = _float(swap) * anti, _float(target_dst) * anti
    k1, _ = dssim_kernel_sizes(resolution)
    return 10.0 * power * (dssim(a, b, k1) + ((a - b) ** 2).mean(dim=(1, 2, 3)))


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Squared total variation per sample (DFL ``total_variation_mse``): Σ of squared neighbour differences."""
    if images.ndim != 4:
        raise ValueError(f"total_variation: expected (B, C, H, W), got {tuple(images.shape)}")
    x = _float(images)
    dh = x[:, :, 1:, :] - x[:, :, :-1, :]
    dw = x[:, :, :, 1:] - x[:, :, :, :-1]
    return (dh * dh).sum(dim=(1, 2, 3)) + (dw * dw).sum(dim=(1, 2, 3))


# ---- adversarial helpers ------------------------------------------------------------------------------------
Logits = torch.Tensor | Sequence[torch.Tensor]


def _as_list(x: Logits) -> list[torch.Tensor]:
    return [x] if isinstance(x, torch.Tensor) else list(x)


def bce_with_logits(logits: torch.Tensor, target: float) -> torch.Tensor:
    """DFL ``DLoss``: mean sigmoid cross-entropy against a constant label, per sample (B,)."""
    logits = _float(logits)
    labels = torch.full_like(logits, float(target))
    loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return loss.flatten(1).mean(1)


def gan_d_loss(real_logits: Logits, fake_logits: Logits) -> torch.Tensor:
    """Discriminator loss per sample: Σ over outputs of ``½·[BCE(real, 1) + BCE(fake, 0)]``.

    Pass the (centre, pixel) tuples of `UNetPatchDiscriminator`, or single tensors (TrueFace: real = dst codes,
    fake = src codes).
    """
    real, fake = _as_list(real_logits), _as_list(fake_logits)
    if len(real) != len(fake):
        raise ValueError("gan_d_loss: real and fake must have the same number of outputs")
    return sum(0.5 * (bce_with_logits(r, 1.0) + bce_with_logits(f, 0.0)) for r, f in zip(real, fake))


def gan_g_loss(fake_logits: Logits) -> torch.Tensor:
    """Generator loss per sample: Σ over outputs of ``BCE(fake, 1)``; SAEHD multiplies it by gan_power
    (TrueFace: by true_face_power, on D(src code))."""
    return sum(bce_with_logits(f, 1.0) for f in _as_list(fake_logits))
