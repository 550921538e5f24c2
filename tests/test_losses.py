"""Tests for workbench.losses (values against numpy references and DFL's constants)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workbench import losses as L


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def square_mask(n: int, res: int, lo: int, hi: int) -> torch.Tensor:
    m = torch.zeros(n, 1, res, res)
    m[:, :, lo:hi, lo:hi] = 1.0
    return m


def dssim_numpy_reference(a: np.ndarray, b: np.ndarray, kernel_size: int, max_val: float = 1.0) -> float:
    """Straightforward loop DSSIM of two (H, W, C) arrays: Gaussian window sigma 1.5, VALID, k1 .01, k2 .03."""
    t = np.arange(kernel_size) - (kernel_size - 1) / 2.0
    g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * 1.5**2))
    g /= g.sum()
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    h, w, ch = a.shape
    vals = []
    for c in range(ch):
        for i in range(h - kernel_size + 1):
            for j in range(w - kernel_size + 1):
                pa = a[i : i + kernel_size, j : j + kernel_size, c]
                pb = b[i : i + kernel_size, j : j + kernel_size, c]
                ma, mb = (g * pa).sum(), (g * pb).sum()
                va, vb = (g * pa * pa).sum() - ma * ma, (g * pb * pb).sum() - mb * mb
                cov = (g * pa * pb).sum() - ma * mb
                vals.append((2 * ma * mb + c1) / (ma * ma + mb * mb + c1) * (2 * cov + c2) / (va + vb + c2))
    return float((1.0 - np.mean(vals)) / 2.0)


# ---- Gaussian blur / masks ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sigma, k", [(0.5, 3), (1, 5), (2, 9), (3, 13), (4, 17), (8, 33), (16, 65), (1.25, 5)]
)
def test_gaussian_kernel_size_matches_dfl(sigma, k):
    assert L.gaussian_kernel_size(sigma) == k


def test_gaussian_blur_equals_direct_2d_conv_with_zero_padding():
    x = rand(2, 3, 20, 20)
    sigma = 2.0
    k = L.gaussian_kernel_size(sigma)
    t = np.arange(k) - k // 2
    g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma**2))
    g = torch.tensor(g / g.sum(), dtype=torch.float32)
    ref = F.conv2d(x, g.expand(3, 1, k, k), padding=k // 2, groups=3)
    torch.testing.assert_close(L.gaussian_blur(x, sigma), ref, atol=1e-5, rtol=1e-5)


def test_blurred_mask_is_one_inside_and_zero_far_outside():
    res = 64
    m = square_mask(1, res, 16, 48)
    mb = L.blurred_mask(m, res)  # sigma 2, kernel 9
    assert torch.all(mb[:, :, 20:44, 16:48] == 1.0)  # inside and on the straight edges
    assert torch.all(mb[:, :, 16:48, 20:44] == 1.0)
    assert 0.5 < mb[0, 0, 16, 16] < 1.0  # a convex 90-degree corner dips below 1
    assert torch.all(mb[:, :, :8, :] == 0.0)
    ring = mb[0, 0, 16:48, 12]  # just outside the left edge: ramps down
    assert 0 < ring.mean() < 1


# ---- DSSIM --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "res, k1, k2",
    [
        (64, 5, 2),
        (96, 8, 4),
        (128, 11, 5),
        (160, 13, 6),
        (192, 16, 8),
        (224, 19, 9),
        (256, 22, 11),
        (320, 27, 13),
        (384, 33, 16),
        (448, 38, 19),
        (512, 44, 22),
        (640, 55, 27),
    ],
)
def test_dssim_kernel_sizes_table(res, k1, k2):
    assert L.dssim_kernel_sizes(res) == (k1, k2)


def test_dssim_identical_is_zero():
    x = rand(3, 3, 24, 24)
    torch.testing.assert_close(L.dssim(x, x.clone(), 11), torch.zeros(3), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kernel_size, side", [(5, 16), (11, 20), (2, 10)])
def test_dssim_matches_numpy_reference(kernel_size, side):
    a, b = rand(2, 3, side, side, seed=1), rand(2, 3, side, side, seed=2)
    b = 0.5 * a + 0.5 * b  # correlated, so SSIM is away from 0
    got = L.dssim(a, b, kernel_size)
    for i in range(2):
        ref = dssim_numpy_reference(
            a[i].permute(1, 2, 0).double().numpy(), b[i].permute(1, 2, 0).double().numpy(), kernel_size
        )
        assert got[i].item() == pytest.approx(ref, abs=2e-6)
    assert got.shape == (2,)


def test_dssim_errors_and_bf16():
    a = rand(1, 3, 8, 8)
    with pytest.raises(ValueError):
        L.dssim(a, a, 11)  # window larger than the image
    with pytest.raises(ValueError):
        L.dssim(a, rand(1, 3, 9, 9), 3)
    out = L.dssim(a.bfloat16(), rand(1, 3, 8, 8, seed=3).bfloat16(), 5)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_ssim_and_psnr_metrics():
    x = rand(2, 3, 32, 32)
    torch.testing.assert_close(L.ssim_metric(x, x), torch.ones(2))
    y = (x + 0.1).clamp(0, 1)
    assert (L.ssim_metric(x, y) < 1).all()
    z = x + 0.1  # MSE 0.01 -> 20 dB
    torch.testing.assert_close(L.psnr_metric(x, z), torch.full((2,), 20.0), atol=1e-3, rtol=0)
    assert L.psnr_metric(x, x)[0].item() == pytest.approx(100.0)


# ---- SAEHD terms --------------------------------------------------------------------------------------------
def test_reconstruction_loss_weights():
    p, t = rand(2, 3, 64, 64, seed=1), rand(2, 3, 64, 64, seed=2)
    mse = ((p - t) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(L.reconstruction_loss(p, t, 64), 10 * L.dssim(p, t, 5) + 10 * mse)
    # res >= 256 uses two windows at weight 5 each (checked on a 64-px image with the 256 kernel sizes)
    p2, t2 = rand(1, 3, 64, 64, seed=3), rand(1, 3, 64, 64, seed=4)
    expected = 5 * L.dssim(p2, t2, 22) + 5 * L.dssim(p2, t2, 11) + 10 * ((p2 - t2) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(L.reconstruction_loss(p2, t2, 256), expected)
    m = square_mask(2, 64, 8, 56)
    torch.testing.assert_close(
        L.reconstruction_loss(p, t, 64, mask=m), L.reconstruction_loss(p * m, t * m, 64)
    )
    assert torch.allclose(L.reconstruction_loss(t, t, 64), torch.zeros(2), atol=1e-6)


def test_eyes_mouth_and_mask_loss_values():
    p, t = torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)
    m = square_mask(1, 8, 0, 4)  # a quarter of the pixels
    assert L.eyes_mouth_loss(p, t, m).item() == pytest.approx(300 * 0.25)
    assert L.mask_loss(torch.zeros(1, 1, 8, 8), m).item() == pytest.approx(10 * 0.25)


def test_style_loss_known_value():
    # res 4 -> blur radius 4 // 8 = 0: no blur. Constant images: only the mean term, 3 channels * 0.3^2
    p, t = torch.full((1, 3, 4, 4), 0.5), torch.full((1, 3, 4, 4), 0.2)
    assert L.style_loss(p, t, 4, power=0.1).item() == pytest.approx(10000 * 0.1 / 3 * 3 * 0.09, rel=1e-5)
    assert L.style_loss(t, t, 4, power=0.1).item() == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError):
        L.style_loss(p, t, 4, power=10)  # must be the option / 100


def test_background_style_loss_uses_the_dst_mask():
    res = 64
    dst = rand(1, 3, res, res, seed=1)
    dst_mask = square_mask(1, res, 8, 56)
    inside_only = dst.clone()
    inside_only[:, :, 20:44, 20:44] = rand(1, 3, 24, 24, seed=2)  # differs only well inside the dst mask
    assert L.background_style_loss(inside_only, dst, dst_mask, res, 0.5).item() == pytest.approx(
        0.0, abs=1e-6
    )
    outside = dst.clone()
    outside[:, :, :6, :] = 1 - outside[:, :, :6, :]
    assert L.background_style_loss(outside, dst, dst_mask, res, 0.5).item() > 0
    mb = L.blurred_mask(dst_mask, res)
    torch.testing.assert_close(
        L.background_style_loss(outside, dst, mb, res, 0.5, mask_is_blurred=True),
        L.background_style_loss(outside, dst, dst_mask, res, 0.5),
    )


def test_blur_out_mask_keeps_inside_and_fills_outside():
    res = 64
    x = rand(2, 3, res, res)
    m = square_mask(2, res, 16, 48)
    out = L.blur_out_mask(x, m, res)
    torch.testing.assert_close(out[:, :, 16:48, 16:48], x[:, :, 16:48, 16:48])
    assert torch.isfinite(out).all()
    assert out[:, :, :4, :].std() < x[:, :, :4, :].std()  # the background lost its detail
    torch.testing.assert_close(L.blur_out_mask(x, torch.ones_like(m), res), x)


def test_total_variation_value():
    x = torch.zeros(1, 1, 4, 4)
    x[:, :, :, 2:] = 1.0  # one vertical step of height 4
    assert L.total_variation(x).item() == pytest.approx(4.0)
    assert L.total_variation(torch.ones(2, 3, 5, 5)).tolist() == [0.0, 0.0]


def test_gan_helpers():
    zero = torch.zeros(2, 1, 3, 3)
    torch.testing.assert_close(L.bce_with_logits(zero, 1.0), torch.full((2,), math.log(2)))
    d = L.gan_d_loss((zero, zero), (zero, zero))  # two outputs: 2 * 0.5 * (ln2 + ln2)
    torch.testing.assert_close(d, torch.full((2,), 2 * math.log(2)))
    torch.testing.assert_close(L.gan_g_loss(zero), torch.full((2,), math.log(2)))
    big = torch.full((2, 1, 2, 2), 20.0)
    assert L.gan_d_loss(big, -big).max() < 1e-6 and L.gan_g_loss([big, big]).max() < 1e-6


LOSS_CASES = {
    "dssim": lambda p, t, m: L.dssim(p, t, 5),
    "reconstruction": lambda p, t, m: L.reconstruction_loss(p, t, 32, mask=L.blurred_mask(m, 32)),
    "eyes_mouth": lambda p, t, m: L.eyes_mouth_loss(p, t, m),
    "mask": lambda p, t, m: L.mask_loss(p[:, :1], m),
    "style": lambda p, t, m: L.style_loss(p * m, t * m, 32, 0.1),
    "background_style": lambda p, t, m: L.background_style_loss(p, t, m, 32, 0.1),
    "total_variation": lambda p, t, m: L.total_variation(p),
    "psnr": lambda p, t, m: -L.psnr_metric(p, t),
    "ssim": lambda p, t, m: -L.ssim_metric(p, t),
    "gan_g": lambda p, t, m: L.gan_g_loss(p - 0.5),
}


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_each_loss_responds_to_its_input_and_has_gradients(name):
    fn = LOSS_CASES[name]
    t = rand(2, 3, 32, 32, seed=1)
    m = square_mask(2, 32, 4, 28)
    p = rand(2, 3, 32, 32, seed=2).requires_grad_(True)
    loss = fn(p, t, m)
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    loss.sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    with torch.no_grad():
        p2 = p.detach().clone()
        p2[:, :, :, :16] = 1 - p2[:, :, :, :16]  # changes pixels inside and outside the mask
        assert not torch.allclose(fn(p2, t, m), loss.detach())
