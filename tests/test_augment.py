"""Tests for workbench.augment: DFL's warp statistics, geometry, determinism, colour jitter and transfer."""

from __future__ import annotations

import dataclasses
import math
import time

import cv2
import numpy as np
import pytest
import torch

from workbench.augment import (
    AugmentOptions,
    WarpParams,
    apply_affine,
    apply_warp,
    augment_batch,
    color_transfer_batch,
    elastic_displacement,
    hsv_to_rgb,
    random_hsv,
    rgb_to_hsv,
    sample_warp_params,
    warp_grid_preview,
)
from workbench.errors import ConfigError
from workbench.train.step import downscale_for_progressive


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_faces(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random RGB images in [0, 1] (low-frequency noise, so interpolation error stays small)."""
    g = gen(seed)
    coarse = torch.rand(batch, 3, 6, 6, generator=g)
    return torch.nn.functional.interpolate(
        coarse, size=(size, size), mode="bicubic", align_corners=False
    ).clamp(0, 1)


def blob(size: int, x: float, y: float, sigma: float = 1.5) -> torch.Tensor:
    """(1, 1, S, S) Gaussian dot centred at pixel (x, y)."""
    coords = torch.arange(size, dtype=torch.float32)
    gx = torch.exp(-((coords - x) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((coords - y) ** 2) / (2 * sigma**2))
    return (gy[:, None] * gx[None, :])[None, None]


def centroid(image: torch.Tensor) -> tuple[float, float]:
    img = image[0, 0].double()
    coords = torch.arange(img.shape[-1], dtype=torch.float64)
    total = img.sum()
    return float((img.sum(0) * coords).sum() / total), float((img.sum(1) * coords).sum() / total)


def params_with(batch: int, size: int, **changes) -> WarpParams:
    base = WarpParams.identity(batch, size)
    changes = {k: torch.as_tensor(v, dtype=getattr(base, k).dtype) for k, v in changes.items()}
    return dataclasses.replace(base, **changes)


# ----------------------------------------------------------------------------------------------------------
# options


def test_options_defaults_validation_and_round_trip():
    opts = AugmentOptions()
    assert opts.rotation_range == (-10.0, 10.0)
    assert opts.scale_range == (-0.15, 0.15)
    assert opts.shift_range == (-0.05, 0.05)
    assert opts.flip_probability == 0.4 and opts.random_warp and opts.ct_mode == "none"
    for f in dataclasses.fields(AugmentOptions):
        assert AugmentOptions.help(f.name)
    assert AugmentOptions.from_dict(opts.to_dict()) == opts
    assert AugmentOptions(rotation_range=[-5, 5]).rotation_range == (-5.0, 5.0)  # lists from JSON are fine
    for bad in (
        {"rotation_range": (10, -10)},
        {"scale_range": (1.5, 0.1)},
        {"flip_probability": 1.5},
        {"ct_mode": "bogus"},
        {"random_hsv_power": -0.1},
        {"interpolation": "lanczos"},
    ):
        with pytest.raises(ConfigError):
            AugmentOptions(**bad)
    with pytest.raises(ConfigError):
        AugmentOptions.from_dict({"rotation": 3})


# ----------------------------------------------------------------------------------------------------------
# parameter statistics (constants.md §6)


def test_warp_parameter_statistics_match_dfl():
    n, size = 20000, 128
    p = sample_warp_params(n, size, AugmentOptions(), gen(1))
    tol = 4.0 / math.sqrt(n)  # ~4 standard errors of a unit-variance mean

    rot = p.rotation.double()
    assert rot.min() >= -10 and rot.max() <= 10
    assert abs(rot.mean()) < 20 / math.sqrt(12) * tol
    assert rot.std().item() == pytest.approx(20 / math.sqrt(12), rel=0.02)

    lo, hi = 1 / 1.15, 1.15  # U(1/(1-s0), 1+s1) with s0 = -0.15, s1 = 0.15: U(0.8696, 1.15)
    sc = p.scale.double()
    assert sc.min() >= lo - 1e-6 and sc.max() <= hi + 1e-6
    assert sc.min() < lo + 0.001 and sc.max() > hi - 0.001
    assert sc.mean().item() == pytest.approx((lo + hi) / 2, abs=(hi - lo) * tol)
    assert sc.std().item() == pytest.approx((hi - lo) / math.sqrt(12), rel=0.02)

    sh = p.shift.double()
    assert sh.abs().max() <= 0.05 + 1e-7
    assert sh.std(0).tolist() == pytest.approx([0.1 / math.sqrt(12)] * 2, rel=0.02)
    assert sh.mean(0).abs().max() < 0.1 * tol
    assert abs(np.corrcoef(sh[:, 0].numpy(), sh[:, 1].numpy())[0, 1]) < 0.03  # x and y drawn separately

    assert p.flip.double().mean().item() == pytest.approx(0.4, abs=0.02)

    cells = [64, 32, 16]
    counts = [(p.cell_size == c).sum().item() for c in cells]
    assert sum(counts) == n
    for c in counts:
        assert c / n == pytest.approx(1 / 3, abs=0.02)

    for c in cells:
        sel = p.cell_size == c
        k = size // c + 1
        block = p.grid_offsets[sel]
        interior = block[:, :, 1 : k - 1, 1 : k - 1]
        assert (interior.std() / c).item() == pytest.approx(0.24, rel=0.03)
        assert interior.mean().abs().item() / c < 0.01
        border = block.clone()
        border[:, :, 1 : k - 1, 1 : k - 1] = 0
        assert border.abs().max().item() == 0.0  # border points and padding never move


def test_switches_and_small_faces():
    base = sample_warp_params(500, 96, AugmentOptions(), gen(3))
    off = sample_warp_params(500, 96, AugmentOptions(random_warp=False, flip=False), gen(3))
    assert off.grid_offsets.abs().max() == 0 and not off.flip.any()
    torch.testing.assert_close(off.rotation, base.rotation)  # the affine draws do not depend on the switches
    torch.testing.assert_close(off.shift, base.shift)
    assert set((96 // base.cell_size).tolist()) == {2, 4, 8}

    small = sample_warp_params(300, 32, AugmentOptions(), gen(4))
    assert small.warp_size == 64 and set(small.cell_size.tolist()) == {32, 16, 8}  # DFL warps < 64 px at 64


# ----------------------------------------------------------------------------------------------------------
# geometry


def test_pixel_matrix_is_dfl_rmat_and_matches_cv2_warp_affine():
    size = 96
    p = sample_warp_params(4, size, AugmentOptions(flip=False), gen(5))
    img = smooth_faces(4, size, seed=5)
    out = apply_affine(img, p)
    for i in range(4):
        rmat = cv2.getRotationMatrix2D((size // 2, size // 2), float(p.rotation[i]), float(p.scale[i]))
        rmat[:, 2] += (float(p.shift[i, 0]) * size, float(p.shift[i, 1]) * size)
        np.testing.assert_allclose(p.pixel_matrix()[i].numpy(), rmat, atol=1e-5)
        src = img[i].permute(1, 2, 0).numpy()
        ref = cv2.warpAffine(src, rmat, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        diff = np.abs(out[i].permute(1, 2, 0).numpy() - ref)
        assert diff.max() < 0.02, diff.max()  # cv2 quantises coordinates to 1/32 px
        assert diff.mean() < 0.002


@pytest.mark.parametrize(
    "changes, dot, expected",
    [
        # 90° counter-clockwise about (32, 32): (x, y) -> (y, 64 - x)
        ({"rotation": [90.0]}, (48.0, 32.0), (32.0, 16.0)),
        ({"shift": [[0.1, -0.05]]}, (30.0, 30.0), (36.4, 26.8)),  # content moves by (tx·w, ty·w)
        ({"flip": [True]}, (10.0, 20.0), (53.0, 20.0)),  # x -> w - 1 - x
        ({"scale": [1.15]}, (42.0, 22.0), (32 + 10 * 1.15, 32 - 10 * 1.15)),  # zoom about (32, 32)
    ],
)
def test_known_affine_moves_a_dot(changes, dot, expected):
    size = 64
    p = params_with(1, size, **changes)
    img = blob(size, *dot)
    for mode in ("bilinear", "bicubic"):
        out = apply_affine(img, p, border="zeros", mode=mode)
        cx, cy = centroid(out.clamp_min(0))
        assert cx == pytest.approx(expected[0], abs=0.3) and cy == pytest.approx(expected[1], abs=0.3)
        peak = int(out[0, 0].argmax())
        assert abs(peak % size - expected[0]) <= 1 and abs(peak // size - expected[1]) <= 1


def _dfl_map(offsets: np.ndarray, w: int, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """DFL gen_warp_params' remap grids for given (2, k, k) coarse offsets (core/imagelib/warp.py)."""
    k = w // cell + 1
    grid = np.linspace(0, w, k)
    mapx = np.broadcast_to(grid, (k, k)).copy() + offsets[0]
    mapy = np.broadcast_to(grid, (k, k)).T.copy() + offsets[1]
    half = cell // 2
    mapx = cv2.resize(mapx, (w + cell,) * 2)[half:-half, half:-half]
    mapy = cv2.resize(mapy, (w + cell,) * 2)[half:-half, half:-half]
    # an odd cell leaves w + 1 pixels; DFL's warpAffine to (w, w) then uses the top-left w x w
    return mapx[:w, :w], mapy[:w, :w]


def test_elastic_field_matches_dfl_construction():
    """Our dense field is DFL's cv2.resize/crop remap grid minus DFL's own zero-offset grid."""
    for size in (64, 128, 96, 100):
        p = sample_warp_params(6, size, AugmentOptions(), gen(size))
        field = elastic_displacement(p).numpy()  # (B, S, S, 2)
        for i in range(6):
            cell = int(p.cell_size[i])
            k = size // cell + 1
            offsets = p.grid_offsets[i, :, :k, :k].double().numpy()
            dfl_x, dfl_y = _dfl_map(offsets, size, cell)
            id_x, id_y = _dfl_map(np.zeros_like(offsets), size, cell)
            np.testing.assert_allclose(field[i, ..., 0], dfl_x - id_x, atol=2e-3)
            np.testing.assert_allclose(field[i, ..., 1], dfl_y - id_y, atol=2e-3)
            if size % 8 == 0:  # DFL's zero-offset grid samples p + 0.5: the half-pixel shift we leave out
                np.testing.assert_allclose(id_x - np.arange(size)[None, :], 0.5, atol=1e-6)
                np.testing.assert_allclose(id_y - np.arange(size)[:, None], 0.5, atol=1e-6)


def test_zero_offsets_and_identity_affine_are_the_identity():
    img = smooth_faces(3, 64)
    ident = WarpParams.identity(3, 64)
    for mode in ("bilinear", "bicubic"):
        torch.testing.assert_close(apply_warp(img, ident, mode=mode), img, atol=1e-5, rtol=0)
        torch.testing.assert_close(apply_affine(img, ident, mode=mode), img, atol=1e-5, rtol=0)
    # elastic offsets zeroed: apply_warp reduces to apply_affine
    p = sample_warp_params(3, 64, AugmentOptions(), gen(7))
    torch.testing.assert_close(apply_warp(img, p.affine_only()), apply_affine(img, p), atol=1e-5, rtol=0)
    assert (apply_warp(img, p) - apply_affine(img, p)).abs().max() > 0.05


def test_warped_vs_target_with_and_without_random_warp():
    img = smooth_faces(8, 64, seed=2)
    on = augment_batch(img, None, AugmentOptions(), gen(11))
    off = augment_batch(img, None, AugmentOptions(random_warp=False), gen(11))
    assert (on.warped - on.target).abs().mean() > 0.01
    torch.testing.assert_close(off.warped, off.target)
    torch.testing.assert_close(off.target, on.target)  # same seed, same affine + flip
    torch.testing.assert_close(on.target, apply_affine(img, on.params).clamp(0, 1))
    torch.testing.assert_close(on.warped, apply_warp(img, on.params).clamp(0, 1))


def test_target_and_masks_share_the_affine():
    size = 64
    g = gen(12)
    # a pattern on a black background, so the zero mask border and the replicate image border agree
    pattern = smooth_faces(6, size, seed=12) * blob(size, 32, 32, sigma=12)
    pattern[..., :2, :] = 0
    pattern[..., -2:, :] = 0
    pattern[..., :, :2] = 0
    pattern[..., :, -2:] = 0
    images = pattern.expand(-1, 3, -1, -1).contiguous()
    masks = {"full_face": pattern[:, 0].clone(), "eyes_mouth": pattern[:, :1].clone()}
    before = {k: v.clone() for k, v in masks.items()}
    out = augment_batch(images, masks, AugmentOptions(interpolation="bilinear"), g)
    assert out.target_masks["full_face"].shape == (6, size, size)  # shapes kept, (B,H,W) stays (B,H,W)
    assert out.target_masks["eyes_mouth"].shape == (6, 1, size, size)
    torch.testing.assert_close(out.target_masks["full_face"], out.target[:, 0], atol=1e-5, rtol=0)
    for k in masks:
        torch.testing.assert_close(masks[k], before[k])  # inputs untouched
        assert out.target_masks[k].min() >= 0 and out.target_masks[k].max() <= 1
    # the mask lines up with the target, not with the elastically warped input
    err_target = (out.target_masks["full_face"] - out.target[:, 0]).abs().mean()
    err_warped = (out.target_masks["full_face"] - out.warped[:, 0]).abs().mean()
    assert err_warped > 10 * err_target + 1e-4


def test_masks_stay_in_unit_range_at_any_resolution():
    images = smooth_faces(4, 64, seed=3)
    hard = (torch.rand(4, 1, 32, 32, generator=gen(3)) > 0.5).float()
    out = augment_batch(images, {"hard": hard}, AugmentOptions(), gen(13))
    m = out.target_masks["hard"]
    assert m.shape == hard.shape and m.min() >= 0 and m.max() <= 1
    assert out.warped.min() >= 0 and out.warped.max() <= 1 and out.target.min() >= 0 and out.target.max() <= 1


def test_determinism_and_purity():
    images = smooth_faces(4, 64, seed=4)
    refs = smooth_faces(4, 48, seed=5)
    masks = {"m": torch.rand(4, 64, 64, generator=gen(6))}
    saved = images.clone()
    opts = AugmentOptions(random_hsv_power=0.1, ct_mode="rct")
    a = augment_batch(images, masks, opts, gen(21), references=refs)
    b = augment_batch(images, masks, opts, gen(21), references=refs)
    c = augment_batch(images, masks, opts, gen(22), references=refs)
    assert torch.equal(a.warped, b.warped) and torch.equal(a.target, b.target)
    assert torch.equal(a.target_masks["m"], b.target_masks["m"])
    assert not torch.equal(a.warped, c.warped)
    assert torch.equal(images, saved)
    with pytest.raises(ConfigError):
        augment_batch(images, None, AugmentOptions(ct_mode="rct"), gen(0))


def test_input_validation():
    with pytest.raises(ValueError):
        augment_batch(torch.rand(3, 64, 64), None, AugmentOptions(), gen())
    with pytest.raises(TypeError):
        apply_affine(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), WarpParams.identity(1, 8))
    with pytest.raises(ValueError):
        apply_warp(torch.rand(2, 3, 16, 16), WarpParams.identity(3, 16))
    with pytest.raises(ValueError):
        augment_batch(torch.rand(2, 3, 16, 16), {"m": torch.rand(3, 16, 16)}, AugmentOptions(), gen())


# ----------------------------------------------------------------------------------------------------------
# colour


def test_hsv_matches_opencv_and_round_trips():
    img = torch.rand(2, 3, 16, 16, generator=gen(30))
    hsv = rgb_to_hsv(img)
    ref = cv2.cvtColor(img[0].permute(1, 2, 0).numpy(), cv2.COLOR_RGB2HSV)
    dh = np.abs(hsv[0, 0].numpy() - ref[..., 0])
    assert np.minimum(dh, 360 - dh).max() < 0.05
    np.testing.assert_allclose(hsv[0, 1:].permute(1, 2, 0).numpy(), ref[..., 1:], atol=1e-5)
    torch.testing.assert_close(hsv_to_rgb(hsv), img, atol=1e-5, rtol=0)


def test_random_hsv_keeps_range_and_shifts_hue():
    img = smooth_faces(16, 32, seed=31) * 0.8 + 0.1
    out = random_hsv(img, 0.3, gen(32))
    assert out.shape == img.shape and out.min() >= 0 and out.max() <= 1
    hsv_in, hsv_out = rgb_to_hsv(img), rgb_to_hsv(out)
    dh = (hsv_out[:, 0] - hsv_in[:, 0]) % 360
    dh = torch.minimum(dh, 360 - dh)[(hsv_in[:, 1] > 0.1) & (hsv_out[:, 1] > 0.1)]  # hue is defined
    assert dh.mean() > 5  # hue moved (±54° max at power 0.3)
    assert dh.max() <= 54 + 1
    torch.testing.assert_close(random_hsv(img, 0.0, gen(0)), img)
    assert torch.equal(random_hsv(img, 0.3, gen(5)), random_hsv(img, 0.3, gen(5)))


def _lab_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from workbench.color import rgb_to_lab_torch

    lab = rgb_to_lab_torch(x).flatten(2)
    return lab.mean(-1), lab.std(-1, correction=0)


def test_rct_batched_matches_reference_lab_statistics():
    faces = smooth_faces(6, 64, seed=34) * 0.6 + 0.2
    refs = (smooth_faces(6, 48, seed=35) * 0.5 + torch.tensor([0.4, 0.2, 0.1])[None, :, None, None]).clamp(
        0, 1
    )
    out = color_transfer_batch(faces, refs, "rct")
    assert out.shape == faces.shape and out.min() >= 0 and out.max() <= 1
    m_out, s_out = _lab_stats(out)
    m_ref, s_ref = _lab_stats(refs)
    torch.testing.assert_close(m_out, m_ref, atol=0.5, rtol=0)
    torch.testing.assert_close(s_out, s_ref, atol=0.5, rtol=0.05)
    # per-sample: batching gives the same answer as one face at a time
    torch.testing.assert_close(color_transfer_batch(faces[2:3], refs[2:3], "rct"), out[2:3])


@pytest.mark.parametrize("mode", ["lct", "mkl"])
def test_linear_transfers_match_reference_covariance(mode):
    faces = smooth_faces(4, 48, seed=36) * 0.5 + 0.25
    refs = smooth_faces(4, 40, seed=37) * 0.4 + 0.3
    out = color_transfer_batch(faces, refs, mode)
    flat_o, flat_r = out.flatten(2).double(), refs.flatten(2).double()
    torch.testing.assert_close(flat_o.mean(-1), flat_r.mean(-1), atol=2e-3, rtol=0)
    cov_o = torch.stack([torch.cov(x) for x in flat_o])
    cov_r = torch.stack([torch.cov(x) for x in flat_r])
    torch.testing.assert_close(cov_o, cov_r, atol=2e-4, rtol=0.03)


def test_mkl_matches_dfl_numpy_formula():
    faces = smooth_faces(1, 32, seed=38)
    refs = smooth_faces(1, 32, seed=39)
    x0 = faces[0].permute(1, 2, 0).reshape(-1, 3).double().numpy()
    x1 = refs[0].permute(1, 2, 0).reshape(-1, 3).double().numpy()
    eps = np.finfo(float).eps
    da2, ua = np.linalg.eig(np.cov(x0.T))
    da = np.diag(np.sqrt(da2.clip(eps, None)))
    c = da @ ua.T @ np.cov(x1.T) @ ua @ da
    dc2, uc = np.linalg.eig(c)
    dc = np.diag(np.sqrt(dc2.clip(eps, None)))
    da_inv = np.diag(1.0 / np.diag(da))
    t = ua @ da_inv @ uc @ dc @ uc.T @ da_inv @ ua.T
    expected = np.clip((x0 - x0.mean(0)) @ t + x1.mean(0), 0, 1).reshape(32, 32, 3)
    out = color_transfer_batch(faces, refs, "mkl")[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize("mode", ["idt", "sot"])
def test_random_transfers_fall_back_to_workbench_color(mode):
    faces = smooth_faces(2, 32, seed=40)
    refs = smooth_faces(2, 32, seed=41)
    a = color_transfer_batch(faces, refs, mode, gen(1))
    assert a.shape == faces.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, color_transfer_batch(faces, refs, mode, gen(1)))
    assert (a - faces).abs().mean() > 0.01


# ----------------------------------------------------------------------------------------------------------
# helpers and speed


def test_downscale_for_progressive():
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2).float().expand(2, 3, 64, 64)
    out = downscale_for_progressive(checker, 16)
    assert out.shape == checker.shape
    assert out.std() < 0.01 and out.mean().item() == pytest.approx(0.5, abs=1e-3)  # fine detail gone
    smooth = smooth_faces(2, 64)
    assert (downscale_for_progressive(smooth, 32) - smooth).abs().max() < 0.05
    full = downscale_for_progressive(smooth, 64)
    torch.testing.assert_close(full, smooth)
    assert full is not smooth


def test_warp_grid_preview():
    p = sample_warp_params(3, 128, AugmentOptions(), gen(50))
    pic = warp_grid_preview(p, 1)
    assert pic.shape == (128, 128, 3) and pic.dtype == np.float32
    assert pic.min() >= 0 and pic.max() <= 1
    plain = warp_grid_preview(p, 1, elastic=False, affine=False)
    assert np.abs(pic - plain).mean() > 0.01
    # with no deformation, the red grid sits exactly on the grey one
    assert np.abs(plain[..., 0] - plain[..., 1]).max() > 0.5  # red lines are drawn
    with pytest.raises(IndexError):
        warp_grid_preview(p, 3)


def test_augment_batch_runtime_sanity():
    images = smooth_faces(8, 128)
    masks = {"full_face": torch.rand(8, 1, 128, 128), "eyes_mouth": torch.rand(8, 1, 128, 128)}
    opts = AugmentOptions()
    g = gen(60)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: a stable number on a shared, busy CPU
    try:
        augment_batch(images, masks, opts, g)  # warm-up
        times = []
        for _ in range(5):
            start = time.perf_counter()
            augment_batch(images, masks, opts, g)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    best = min(times)
    median = sorted(times)[2]
    print(f"augment_batch B=8 128px, 1 CPU thread: best {best * 1e3:.1f} ms, median {median * 1e3:.1f} ms")
    assert best < 1.0
