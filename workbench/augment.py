"""Training-sample augmentation, batched in torch on the training device.

DFL (``samplelib/SampleProcessor.py``, ``core/imagelib/warp.py``) augments every sample with numpy/OpenCV
in CPU worker processes, which often leaves the GPU waiting. Here the same recipe runs on a whole
``(B, C, H, W)`` batch with ``F.affine_grid``/``F.grid_sample`` on whatever device the batch lives on.

The recipe (reference constants.md §6), one random draw per sample driving every output of that sample:

* affine: rotation U(-10, 10) degrees about pixel (w//2, w//2), scale U(1/(1-s0), 1+s1) = U(1/1.15, 1.15)
  for SAEHD's ``scale_range=(-0.15, 0.15)``, shift U(-0.05, 0.05)·w on each axis; then a horizontal flip with
  probability 0.4 (DFL's ``randint(10) < 4``);
* elastic ("random warp"): a coarse grid with cell = one of {w/2, w/4, w/8}; interior grid points move by
  N(0,1)·0.24·cell; the coarse offsets are bilinearly upsampled to (w+cell) and cropped by cell/2 on each
  side;
* the network input gets elastic + affine + flip; the target image and the masks get the same affine + flip
  without the elastic warp, so the model must learn to undo the warp;
* colour: ``ct_mode`` recolours input and target toward a reference face (via ``workbench.color``); the
  random HSV jitter goes to the input only, as in SAEHD.

Differences from DFL, on purpose:

* elastic, affine and flip are composed into one sampling grid, so the input is interpolated once, not twice;
* DFL builds its remap grid with ``linspace(0, w, n)``, which samples every pixel at ``p + 0.5 + d(p)``: a
  constant half-pixel shift of the input relative to the target. We use the exact identity, ``p + d(p)``;
* images under 64 px: DFL resizes them to 64, warps and resizes back. We draw the parameters for 64 px and
  apply them directly at the image's own resolution (the maths is in normalised coordinates);
* masks are resampled bilinearly (DFL: bicubic then clip), so they stay inside [0, 1] by construction.

Every function is pure: inputs are never modified, and all randomness comes from the ``torch.Generator``
passed in; draws happen on the generator's device (a CUDA generator keeps everything on the GPU).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from workbench.errors import ConfigError

__all__ = [
    "CT_MODES",
    "ELASTIC_SIGMA",
    "MIN_WARP_SIZE",
    "AugmentOptions",
    "AugmentedBatch",
    "WarpParams",
    "apply_affine",
    "apply_warp",
    "augment_batch",
    "color_transfer_batch",
    "elastic_displacement",
    "hsv_to_rgb",
    "random_hsv",
    "rgb_to_hsv",
    "sample_warp_params",
    "warp_grid_preview",
]

CT_MODES = ("none", "rct", "lct", "mkl", "idt", "sot")
ELASTIC_SIGMA = 0.24  # interior grid offsets are N(0,1)·ELASTIC_SIGMA·cell (DFL gen_warp_params)
CELL_DIVISORS = (2, 4, 8)  # cell = w // divisor, chosen uniformly per sample
MIN_WARP_SIZE = 64  # DFL processes faces under 64 px at 64 for the warp

CtMode = Literal["none", "rct", "lct", "mkl", "idt", "sot"]
Interpolation = Literal["bicubic", "bilinear"]
Border = Literal["replicate", "zeros"]


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class AugmentOptions:
    """Sample augmentation options, DFL SAEHD defaults. ``AugmentOptions.help(name)`` gives a field's help."""

    random_warp: bool = _help(
        "elastic grid warp on the network input only (DFL random_warp; off when pretraining)", True
    )
    rotation_range: tuple[float, float] = _help(
        "rotation U(lo, hi) in degrees, counter-clockwise", (-10.0, 10.0)
    )
    scale_range: tuple[float, float] = _help(
        "(s0, s1): scale ~ U(1/(1-s0), 1+s1); SAEHD ±0.15 gives U(0.870, 1.15)", (-0.15, 0.15)
    )
    shift_range: tuple[float, float] = _help(
        "shift U(lo, hi)·width, drawn separately for x and y", (-0.05, 0.05)
    )
    flip: bool = _help(
        "random horizontal flip (DFL random_dst_flip default y, random_src_flip default n)", True
    )
    flip_probability: float = _help("chance of a flip when flip is on (DFL randint(10) < 4 = 0.4)", 0.4)
    random_hsv_power: float = _help(
        "hue ±max(1,int(180·a))°, S and V +(U-0.5)·a on the input only; DFL 0..0.3", 0.0
    )
    ct_mode: CtMode = _help(
        "colour transfer of each face toward a reference face: none rct lct mkl idt sot", "none"
    )
    interpolation: Interpolation = _help(
        "image resampling: bicubic (DFL INTER_CUBIC) or bilinear (faster)", "bicubic"
    )

    def __post_init__(self) -> None:
        for name in ("rotation_range", "scale_range", "shift_range"):
            value = getattr(self, name)
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{name} must be a pair of numbers, got {value!r}", hint="e.g. (-10, 10)"
                ) from None
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ConfigError(f"{name} must be a finite (lo, hi) pair with lo <= hi, got {value!r}")
            object.__setattr__(self, name, (lo, hi))
        rot_lo, rot_hi = self.rotation_range
        if rot_lo < -180 or rot_hi > 180:
            raise ConfigError(f"rotation_range must lie in [-180, 180] degrees, got {self.rotation_range}")
        s0, s1 = self.scale_range
        if not (-1.0 < s0 < 1.0 and s1 > -1.0 and 1.0 / (1.0 - s0) <= 1.0 + s1):
            raise ConfigError(
                f"scale_range {self.scale_range} gives an empty or negative scale interval U(1/(1-s0), 1+s1)",
                hint="use e.g. (-0.15, 0.15)",
            )
        if not (-1.0 <= self.shift_range[0] and self.shift_range[1] <= 1.0):
            raise ConfigError(
                f"shift_range must lie in [-1, 1] (fractions of the width), got {self.shift_range}"
            )
        if not 0.0 <= float(self.flip_probability) <= 1.0:
            raise ConfigError(f"flip_probability must be in [0, 1], got {self.flip_probability}")
        if not 0.0 <= float(self.random_hsv_power) <= 1.0:
            raise ConfigError(
                f"random_hsv_power must be in [0, 1], got {self.random_hsv_power}", hint="DFL offers 0..0.3"
            )
        if self.ct_mode not in CT_MODES:
            raise ConfigError(f"ct_mode must be one of {', '.join(CT_MODES)}, got {self.ct_mode!r}")
        if self.interpolation not in ("bicubic", "bilinear"):
            raise ConfigError(f"interpolation must be 'bicubic' or 'bilinear', got {self.interpolation!r}")

    @classmethod
    def help(cls, name: str) -> str:
        """One-line help text for option ``name``."""
        for f in fields(cls):
            if f.name == name:
                return str(f.metadata["help"])
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugmentOptions:
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown augmentation option(s): {', '.join(unknown)}",
                hint=f"known options: {', '.join(sorted(known))}",
            )
        return cls(**dict(data))


@dataclass(frozen=True, eq=False)
class WarpParams:
    """Per-sample random geometry for a batch (the torch form of DFL's ``gen_warp_params``).

    Attributes:
        size: face resolution the parameters were drawn for (DFL's ``w``).
        warp_size: ``max(size, 64)``; the pixel units below (cell sizes, offsets, rotation centre) refer
            to it.
        rotation: ``(B,)`` degrees, counter-clockwise on screen, about pixel ``(warp_size//2, warp_size//2)``.
        scale: ``(B,)`` zoom factor (> 1 magnifies).
        shift: ``(B, 2)`` ``(tx, ty)`` as fractions of the width (positive moves the content right/down).
        flip: ``(B,)`` bool, horizontal flip applied after the affine.
        cell_size: ``(B,)`` int64 elastic grid cell in pixels, one of warp_size // {2, 4, 8}.
        grid_offsets: ``(B, 2, G, G)`` float32 ``(dx, dy)`` pixel offsets of the coarse grid points.
            Sample ``i`` uses the top-left ``n_i x n_i`` block, ``n_i = warp_size // cell_size[i] + 1``;
            its border points are 0.
    """

    size: int
    warp_size: int
    rotation: Tensor
    scale: Tensor
    shift: Tensor
    flip: Tensor
    cell_size: Tensor
    grid_offsets: Tensor

    @property
    def batch_size(self) -> int:
        return int(self.rotation.shape[0])

    @property
    def device(self) -> torch.device:
        return self.rotation.device

    @property
    def grid_points(self) -> Tensor:
        """``(B,)`` int64 number of coarse grid points per axis, ``warp_size // cell + 1``."""
        return self.warp_size // self.cell_size + 1

    @classmethod
    def identity(cls, batch: int, size: int, device: torch.device | str = "cpu") -> WarpParams:
        """Parameters that change nothing (no rotation/scale/shift/flip, zero elastic offsets)."""
        warp_size = max(int(size), MIN_WARP_SIZE)
        cell = warp_size // CELL_DIVISORS[-1]
        g = warp_size // cell + 1
        return cls(
            size=int(size),
            warp_size=warp_size,
            rotation=torch.zeros(batch, device=device),
            scale=torch.ones(batch, device=device),
            shift=torch.zeros(batch, 2, device=device),
            flip=torch.zeros(batch, dtype=torch.bool, device=device),
            cell_size=torch.full((batch,), cell, dtype=torch.int64, device=device),
            grid_offsets=torch.zeros(batch, 2, g, g, device=device),
        )

    def to(self, device: torch.device | str) -> WarpParams:
        """The same parameters on another device."""
        tensors = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if f.name not in ("size", "warp_size")
        }
        return replace(self, **tensors)

    def select(self, index: int | slice | Tensor) -> WarpParams:
        """Parameters of a subset of the batch (an index keeps a batch of one)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        tensors = {
            f.name: getattr(self, f.name)[index] for f in fields(self) if f.name not in ("size", "warp_size")
        }
        return replace(self, **tensors)

    def affine_only(self) -> WarpParams:
        """The same affine + flip with the elastic offsets zeroed (what the target and masks get)."""
        return replace(self, grid_offsets=torch.zeros_like(self.grid_offsets))

    def elastic_only(self) -> WarpParams:
        """The same elastic field with the affine and flip removed (for teaching pictures)."""
        return replace(
            self,
            rotation=torch.zeros_like(self.rotation),
            scale=torch.ones_like(self.scale),
            shift=torch.zeros_like(self.shift),
            flip=torch.zeros_like(self.flip),
        )

    def pixel_matrix(self) -> Tensor:
        """``(B, 2, 3)`` float64 forward affine in warp_size pixels, exactly DFL's ``rmat``.

        ``cv2.getRotationMatrix2D((w//2, w//2), rotation, scale)`` plus ``(tx·w, ty·w)`` in the last column;
        ``cv2.warpAffine(img, rmat, (w, w))`` gives the affine part of the warp (flip not included).
        """
        w = self.warp_size
        c = float(w // 2)
        rad = torch.deg2rad(self.rotation.double())
        a = self.scale.double() * torch.cos(rad)
        b = self.scale.double() * torch.sin(rad)
        shift = self.shift.double() * w
        row0 = torch.stack([a, b, (1 - a) * c - b * c + shift[:, 0]], dim=-1)
        row1 = torch.stack([-b, a, b * c + (1 - a) * c + shift[:, 1]], dim=-1)
        return torch.stack([row0, row1], dim=1)

    def theta(self) -> Tensor:
        """``(B, 2, 3)`` float64 matrix for ``F.affine_grid`` (align_corners=False), flip included."""
        w = self.warp_size
        batch = self.batch_size
        fwd = torch.zeros(batch, 3, 3, dtype=torch.float64, device=self.device)
        fwd[:, :2] = self.pixel_matrix()
        fwd[:, 2, 2] = 1.0
        # pixel centre x -> normalised u = (2x + 1)/w - 1 (align_corners=False)
        norm = torch.tensor(
            [[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / w, 1.0 / w - 1.0], [0.0, 0.0, 1.0]],
            dtype=torch.float64,
            device=self.device,
        )
        theta = norm @ torch.linalg.inv(fwd) @ torch.linalg.inv(norm)
        # the flip happens after the affine: output u -> -u before the inverse affine
        sign = torch.where(self.flip, -1.0, 1.0).to(torch.float64)
        theta = theta[:, :2].clone()
        theta[:, :, 0] = theta[:, :, 0] * sign[:, None]
        return theta


@dataclass(frozen=True, eq=False)
class AugmentedBatch:
    """Output of :func:`augment_batch`.

    Attributes:
        warped: ``(B, C, H, W)`` network input: (colour transfer, HSV jitter,) elastic warp, affine, flip.
        target: ``(B, C, H, W)`` reconstruction target: (colour transfer,) the same affine and flip, no
            elastic warp.
        target_masks: the masks with the target's geometry, same keys and shapes as given.
        params: the geometry drawn for this batch.
    """

    warped: Tensor
    target: Tensor
    target_masks: dict[str, Tensor]
    params: WarpParams


# ------------------------------------------------------------------------------------------------------------
# geometry


def sample_warp_params(
    batch: int,
    size: int,
    options: AugmentOptions,
    generator: torch.Generator,
    *,
    device: torch.device | str | None = None,
) -> WarpParams:
    """Draw DFL's per-sample warp parameters for a batch.

    Args:
        batch: number of samples B.
        size: face resolution w in pixels (faces under 64 px use a 64 px grid, as DFL).
        options: ranges and switches; with ``random_warp=False`` the elastic offsets are zero (the random
            numbers are still drawn, so the affine part does not depend on the switch).
        generator: the only source of randomness; draws happen on its device.
        device: where to put the result (default: the generator's device).

    Returns:
        WarpParams with rotation ~ U(rotation_range), scale ~ U(1/(1-s0), 1+s1), shift ~ U(shift_range)
        per axis, flip ~ Bernoulli(flip_probability) if options.flip, cell uniform over w//{2,4,8} and
        interior offsets N(0,1)·0.24·cell.
    """
    if batch < 0 or size < 2:
        raise ValueError(f"need batch >= 0 and size >= 2, got batch={batch}, size={size}")
    gdev = generator.device
    warp_size = max(int(size), MIN_WARP_SIZE)

    def uniform(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=generator, device=gdev)

    rotation = uniform(*options.rotation_range, batch)
    s0, s1 = options.scale_range
    scale = uniform(1.0 / (1.0 - s0), 1.0 + s1, batch)
    shift = uniform(*options.shift_range, batch, 2)
    flip = torch.rand(batch, generator=generator, device=gdev) < options.flip_probability
    if not options.flip:
        flip = torch.zeros_like(flip)

    cells = torch.tensor([warp_size // d for d in CELL_DIVISORS], dtype=torch.int64, device=gdev)
    cell_size = cells[torch.randint(0, len(CELL_DIVISORS), (batch,), generator=generator, device=gdev)]
    g = warp_size // (warp_size // CELL_DIVISORS[-1]) + 1  # grid points of the finest cell
    n = warp_size // cell_size + 1  # (B,) grid points per axis
    idx = torch.arange(g, device=gdev)
    interior_1d = (idx[None, :] >= 1) & (idx[None, :] <= (n[:, None] - 2))  # (B, G)
    interior = interior_1d[:, :, None] & interior_1d[:, None, :]  # (B, G, G)
    noise = torch.randn(batch, 2, g, g, generator=generator, device=gdev)
    sigma = (ELASTIC_SIGMA * cell_size.to(torch.float32))[:, None, None, None]
    grid_offsets = noise * sigma * interior[:, None].to(noise.dtype)
    if not options.random_warp:
        grid_offsets = torch.zeros_like(grid_offsets)

    params = WarpParams(
        size=int(size),
        warp_size=warp_size,
        rotation=rotation,
        scale=scale,
        shift=shift,
        flip=flip,
        cell_size=cell_size,
        grid_offsets=grid_offsets,
    )
    return params.to(device) if device is not None else params


def _check_images(images: Tensor, name: str = "images") -> None:
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor in [0, 1], got {images.dtype}")
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"{name} must be square face crops, got {images.shape[-2]}x{images.shape[-1]}")


def _check_batch(images: Tensor, params: WarpParams) -> None:
    if images.shape[0] != params.batch_size:
        raise ValueError(f"batch of {images.shape[0]} images but parameters for {params.batch_size} samples")


def _affine_grid(params: WarpParams, size: int) -> Tensor:
    """``(B, size, size, 2)`` float32 normalised sampling grid of the affine + flip."""
    theta = params.theta().to(torch.float32)
    return F.affine_grid(theta, [params.batch_size, 1, size, size], align_corners=False)


def _elastic_at(params: WarpParams, grid: Tensor) -> Tensor:
    """Elastic displacement (normalised units) at the normalised input positions ``grid`` ``(B, H, W, 2)``.

    DFL's dense map is ``cv2.resize(coarse, (w+cell, w+cell))`` cropped by cell//2. Bilinear resizing with
    half-pixel centres is itself a bilinear function of the coarse grid at coarse coordinate
    ``c = (p + cell//2 + 0.5)·n/(w+cell) - 0.5`` (clamped to the grid, like cv2/torch). We evaluate that
    function at each pixel's sampling position with one ``grid_sample`` over the zero-padded coarse grids,
    which handles every sample's cell size in a single vectorised call (no grouping by cell size).
    """
    w = params.warp_size
    g = params.grid_offsets.shape[-1]
    cell = params.cell_size.to(grid.dtype)[:, None, None, None]
    n = params.grid_points.to(grid.dtype)[:, None, None, None]
    pix = ((grid + 1.0) * w - 1.0) / 2.0  # warp_size pixels
    coarse = (pix + torch.div(cell, 2, rounding_mode="floor") + 0.5) * n / (w + cell) - 0.5
    coarse = torch.minimum(coarse.clamp_min(0.0), n - 1.0)
    coarse_norm = coarse * (2.0 / (g - 1)) - 1.0
    offsets = params.grid_offsets.to(grid.dtype)
    disp = F.grid_sample(offsets, coarse_norm, mode="bilinear", padding_mode="border", align_corners=True)
    return disp.permute(0, 2, 3, 1) * (2.0 / w)  # (B, H, W, 2) normalised


def elastic_displacement(params: WarpParams, size: int | None = None) -> Tensor:
    """The dense elastic field alone, ``(B, size, size, 2)`` float32 ``(dx, dy)`` in pixels of ``size``.

    ``warped(p) = image(p + d(p))`` for the elastic part (before the affine). Useful for quiver plots.
    """
    size = params.size if size is None else int(size)
    ident = _affine_grid(WarpParams.identity(params.batch_size, params.size, params.device), size)
    return _elastic_at(params, ident) * (size / 2.0)


def _sample(images: Tensor, grid: Tensor, mode: str, border: Border) -> Tensor:
    if border not in ("replicate", "zeros"):
        raise ValueError(f"border must be 'replicate' or 'zeros', got {border!r}")
    if mode not in ("bicubic", "bilinear", "nearest"):
        raise ValueError(f"mode must be 'bicubic', 'bilinear' or 'nearest', got {mode!r}")
    padding = "border" if border == "replicate" else "zeros"
    return F.grid_sample(images, grid.to(images.dtype), mode=mode, padding_mode=padding, align_corners=False)


def apply_affine(
    images: Tensor, params: WarpParams, border: Border = "replicate", mode: str = "bicubic"
) -> Tensor:
    """Apply each sample's affine (rotation, scale, shift) and flip, without the elastic warp.

    Args:
        images: ``(B, C, S, S)`` float tensor, any device; any square size S (the geometry is
            resolution-free).
        params: from :func:`sample_warp_params` for the same B.
        border: "replicate" (DFL BORDER_REPLICATE, for faces) or "zeros" (BORDER_CONSTANT, for masks).
        mode: "bicubic" (DFL INTER_CUBIC; may overshoot [0, 1] slightly), "bilinear" or "nearest".

    Returns:
        ``(B, C, S, S)`` tensor, same dtype and device; ``images`` is not modified.
    """
    _check_images(images)
    _check_batch(images, params)
    params = params.to(images.device)
    return _sample(images, _affine_grid(params, images.shape[-1]), mode, border)


def apply_warp(
    images: Tensor, params: WarpParams, border: Border = "replicate", mode: str = "bicubic"
) -> Tensor:
    """Elastic warp, then affine, then flip, composed into one resampling (the network-input geometry).

    Same arguments and result as :func:`apply_affine`.
    """
    _check_images(images)
    _check_batch(images, params)
    params = params.to(images.device)
    grid = _affine_grid(params, images.shape[-1])
    grid = grid + _elastic_at(params, grid)
    return _sample(images, grid, mode, border)


def _as_4d(mask: Tensor, name: str) -> Tensor:
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask {name!r} must be a torch.Tensor, got {type(mask).__name__}")
    if not mask.is_floating_point():
        raise TypeError(f"mask {name!r} must be a float tensor in [0, 1], got {mask.dtype}")
    if mask.ndim == 3:
        return mask[:, None]
    if mask.ndim == 4:
        return mask
    raise ValueError(f"mask {name!r} must have shape (B, H, W) or (B, C, H, W), got {tuple(mask.shape)}")


def augment_batch(
    images: Tensor,
    masks: Mapping[str, Tensor] | None,
    options: AugmentOptions,
    generator: torch.Generator,
    *,
    references: Tensor | None = None,
) -> AugmentedBatch:
    """DFL's training-sample augmentation for a whole batch, on the batch's device.

    Args:
        images: ``(B, 3, S, S)`` float32 RGB in [0, 1].
        masks: name -> ``(B, S', S')`` or ``(B, C, S', S')`` in [0, 1] (e.g. "full_face", "eyes_mouth");
            may be None or empty. Masks get the target's geometry with a zero border and bilinear resampling.
        options: the augmentation recipe.
        generator: the only source of randomness (same seed -> identical output).
        references: ``(B, 3, R, R)`` colour references, required when ``options.ct_mode != "none"``;
            ``references[i]`` is the reference for ``images[i]`` (DFL: a random dst face per src sample).

    Returns:
        AugmentedBatch: ``warped`` = elastic + affine + flip of the (colour-transferred, HSV-jittered) images,
        ``target`` = affine + flip of the (colour-transferred) images, ``target_masks``, ``params``.
        Images are clipped to [0, 1] after resampling, as DFL does.
    """
    _check_images(images)
    if images.shape[1] != 3 and (options.random_hsv_power > 0 or options.ct_mode != "none"):
        raise ValueError(f"colour augmentation needs RGB images (B, 3, H, W), got {tuple(images.shape)}")
    masks = dict(masks or {})
    batch, size = images.shape[0], images.shape[-1]
    four_d = {}
    for name, mask in masks.items():
        m = _as_4d(mask, name)
        if m.shape[0] != batch:
            raise ValueError(f"mask {name!r} has batch {m.shape[0]}, images have {batch}")
        four_d[name] = m

    # geometry first, so toggling colour options never changes the geometry drawn for a seed
    params = sample_warp_params(batch, size, options, generator).to(images.device)

    source = images
    if options.ct_mode != "none":
        if references is None:
            raise ConfigError(
                f"ct_mode={options.ct_mode!r} needs colour references",
                hint="pass references= (e.g. a shuffled batch of dst faces) or set ct_mode='none'",
            )
        source = color_transfer_batch(images, references, options.ct_mode, generator)
    net_input = source
    if options.random_hsv_power > 0:
        net_input = random_hsv(source, options.random_hsv_power, generator)

    mode = options.interpolation
    affine_grid = _affine_grid(params, size)
    if options.random_warp:
        input_grid = affine_grid + _elastic_at(params, affine_grid)
        warped = _sample(net_input, input_grid, mode, "replicate")
    else:
        warped = _sample(net_input, affine_grid, mode, "replicate")
    target = _sample(source, affine_grid, mode, "replicate")

    target_masks: dict[str, Tensor] = {}
    for name, m in four_d.items():
        grid = affine_grid if m.shape[-1] == size and m.shape[-2] == size else None
        if grid is None:
            _check_images(m, f"mask {name!r}")
            grid = _affine_grid(params, m.shape[-1])
        out = _sample(m.to(images.device), grid, "bilinear", "zeros").clamp(0.0, 1.0)
        target_masks[name] = out if masks[name].ndim == 4 else out[:, 0]

    return AugmentedBatch(
        warped=warped.clamp(0.0, 1.0), target=target.clamp(0.0, 1.0), target_masks=target_masks, params=params
    )


# ------------------------------------------------------------------------------------------------------------
# colour


def rgb_to_hsv(images: Tensor) -> Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] -> HSV: H in degrees [0, 360), S and V in [0, 1] (OpenCV floats)."""
    r, g, b = images.unbind(dim=-3)
    v, _ = images.max(dim=-3)
    mn, _ = images.min(dim=-3)
    delta = v - mn
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    safe = delta.clamp_min(1e-12)
    h = torch.where(v == r, (g - b) / safe, torch.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = torch.where(delta > 0, (h * 60.0) % 360.0, torch.zeros_like(h))
    return torch.stack([h, s, v], dim=-3)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = hsv.unbind(dim=-3)
    out = []
    for n in (5.0, 3.0, 1.0):  # R, G, B
        k = (n + h / 60.0) % 6.0
        out.append(v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out, dim=-3)


def random_hsv(images: Tensor, power: float, generator: torch.Generator) -> Tensor:
    """DFL's random HSV jitter, per sample.

    Hue moves by an integer U{-h..h} degrees with h = max(1, int(360·power·0.5)); saturation and value
    each get ``+ (U - 0.5)·power`` and are clipped to [0, 1].

    Args:
        images: ``(B, 3, H, W)`` RGB in [0, 1].
        power: DFL random_hsv_power ``a`` (0..0.3 in DFL); 0 returns a copy.
        generator: source of randomness (draws on its device).
    """
    _check_images(images)
    if power <= 0:
        return images.clone()
    batch = images.shape[0]
    gdev = generator.device
    h_amount = max(1, int(360 * power * 0.5))
    dh = torch.randint(-h_amount, h_amount + 1, (batch,), generator=generator, device=gdev).to(images.device)
    ds = ((torch.rand(batch, generator=generator, device=gdev) - 0.5) * power).to(images.device)
    dv = ((torch.rand(batch, generator=generator, device=gdev) - 0.5) * power).to(images.device)
    h, s, v = rgb_to_hsv(images.clamp(0.0, 1.0)).unbind(dim=1)
    h = (h + dh.to(h.dtype)[:, None, None]) % 360.0
    s = (s + ds.to(s.dtype)[:, None, None]).clamp(0.0, 1.0)
    v = (v + dv.to(v.dtype)[:, None, None]).clamp(0.0, 1.0)
    return hsv_to_rgb(torch.stack([h, s, v], dim=1)).clamp(0.0, 1.0)


def color_transfer_batch(
    images: Tensor, references: Tensor, mode: str, generator: torch.Generator | None = None
) -> Tensor:
    """Colour-transfer each face toward its reference (DFL training ``ct_mode``, unmasked).

    Args:
        images: ``(B, 3, H, W)`` RGB in [0, 1], the faces to recolour.
        references: ``(B, 3, R, R)`` RGB in [0, 1]; sizes may differ from ``images`` (only statistics are
            used).
        mode: "none" (copy); "rct" (Reinhard, Lab mean/std), "lct" (linear PCA) and "mkl"
            (Monge-Kantorovich) run batched on the images' device through ``workbench.color``'s
            ``rct_torch``/``lct_torch``/``mkl_torch``; "idt" and "sot" have no batched version and run per
            sample through ``workbench.color.TRANSFERS`` on the CPU, seeded from ``generator``.
        generator: needed for idt/sot only.

    Returns:
        ``(B, 3, H, W)`` in [0, 1], same device and dtype as ``images``.
    """
    _check_images(images)
    _check_images(references, "references")
    if references.shape[0] != images.shape[0] or references.shape[1] != 3 or images.shape[1] != 3:
        raise ValueError(
            f"need RGB images and one reference per image, got images {tuple(images.shape)} "
            f"and references {tuple(references.shape)}"
        )
    if mode not in CT_MODES:
        raise ConfigError(f"ct_mode must be one of {', '.join(CT_MODES)}, got {mode!r}")
    if mode == "none":
        return images.clone()
    from workbench import color  # local import: the colour module pulls in OpenCV

    references = references.to(device=images.device, dtype=images.dtype)
    batched = getattr(color, f"{mode}_torch", None)
    if batched is not None:
        return batched(images, references).to(images.dtype)
    if generator is None:
        raise ValueError(f"ct mode {mode!r} is random: pass a torch.Generator")
    fn = color.TRANSFERS[mode]
    seeds = torch.randint(0, 2**31 - 1, (images.shape[0],), generator=generator, device=generator.device)
    out = []
    for i, seed in enumerate(seeds.tolist()):
        face = images[i].detach().permute(1, 2, 0).cpu().numpy().astype(np.float32)
        ref = references[i].detach().permute(1, 2, 0).cpu().numpy().astype(np.float32)
        res = np.asarray(fn(face, ref, None, seed=int(seed)), dtype=np.float32)
        out.append(torch.from_numpy(np.ascontiguousarray(res)).permute(2, 0, 1))
    return torch.stack(out).to(device=images.device, dtype=images.dtype).clamp(0.0, 1.0)


# ------------------------------------------------------------------------------------------------------------
# teaching helper: the warp drawn on a grid


def _grid_image(size: int, spacing: int, thickness: int) -> Tensor:
    coords = torch.arange(size)
    on = ((coords + spacing // 2) % spacing) < thickness
    lines = (on[None, :] | on[:, None]).to(torch.float32)
    return lines[None, None]  # (1, 1, S, S)


def warp_grid_preview(
    params: WarpParams,
    index: int = 0,
    *,
    size: int | None = None,
    spacing: int | None = None,
    elastic: bool = True,
    affine: bool = True,
) -> np.ndarray:
    """Picture of one sample's warp: a regular grid (light grey) and the same grid deformed (red).

    The red lines show where the network input takes each grid line from; pixels that come from outside
    the face crop (filled by the replicate border) are tinted blue.

    Args:
        params: from :func:`sample_warp_params`.
        index: which sample of the batch.
        size: picture size (default ``params.size``).
        spacing: grid spacing in pixels (default size // 16).
        elastic: include the elastic part; affine: include the affine + flip part.

    Returns:
        ``(size, size, 3)`` float32 RGB in [0, 1].
    """
    if not 0 <= index < params.batch_size:
        raise IndexError(f"index {index} out of range for a batch of {params.batch_size}")
    size = params.size if size is None else int(size)
    spacing = max(4, size // 16) if spacing is None else int(spacing)
    thickness = max(1, size // 128)
    one = params.select(index).to("cpu")
    if not elastic:
        one = one.affine_only()
    if not affine:
        one = one.elastic_only()
    grid = _affine_grid(one, size)
    if elastic:
        grid = grid + _elastic_at(one, grid)
    lines = _grid_image(size, spacing, thickness)
    warped = F.grid_sample(lines, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0]
    outside = (grid[0].abs() > 1.0).any(dim=-1).to(torch.float32)
    base = lines[0, 0]
    rgb = torch.ones(3, size, size)
    rgb = rgb * (1.0 - 0.25 * base)  # original grid, light grey
    rgb = rgb * (1.0 - 0.15 * outside * torch.tensor([1.0, 0.6, 0.0])[:, None, None])  # outside: blue tint
    red = torch.tensor([0.85, 0.1, 0.1])[:, None, None]
    rgb = rgb * (1.0 - warped) + red * warped
    return rgb.clamp(0.0, 1.0).permute(1, 2, 0).numpy().astype(np.float32)
