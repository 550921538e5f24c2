"""One SAEHD training step's maths: augmentation of both sides, the forward pass and the loss terms.

DFL reference §3.4-3.6. Per identity (src: src->src vs target src; dst: dst->dst vs target dst)::

    m_b  = blurred_mask(target_mask, res)
    loss = reconstruction_loss(pred·m_b, target·m_b, res)    # 10·DSSIM(k) + 10·MSE (two DSSIMs at res >= 256)
         + 300·L1 on eyes and mouth                          # eyes_mouth_prio
         + 10·MSE(pred_mask, target_mask)                    # the learned mask
    src also: face_style (swap from a stop-gradient code vs target dst, inside the dst mask),
              bg_style (swap vs target dst outside the *dst* mask; DFL used the src mask by mistake)
    G += gan_power·BCE(D(src->src)→real) [+ 1e-6·TV + 0.02·background MSE when masked]
    G += true_face_power·BCE(D_code(src code)→dst)            # DF only

The functions are pure (tensors in, tensors out); :mod:`workbench.train.trainer` owns the loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import losses as L
from ..augment import AugmentOptions, augment_batch
from .data import SideBatch


@dataclass
class SideTensors:
    """One side after augmentation: network input, target and target masks, all (B, C, R, R)."""

    warped: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor  # full-face (hull) mask, (B, 1, R, R)
    em_mask: torch.Tensor  # eyes/mouth mask, (B, 1, R, R)

    def slice(self, start: int, stop: int) -> SideTensors:
        return SideTensors(self.warped[start:stop], self.target[start:stop], self.mask[start:stop],
                           self.em_mask[start:stop])


def augment_options(options, side: str) -> AugmentOptions:
    """The :class:`AugmentOptions` of one side (hsv and ct only touch src, as DFL)."""
    flip = options.random_src_flip if side == "src" else options.random_dst_flip
    return AugmentOptions(
        random_warp=options.random_warp, flip=flip,
        random_hsv_power=options.random_hsv_power if side == "src" else 0.0,
        ct_mode=options.ct_mode if side == "src" else "none",
    )


def augment_side(batch: SideBatch, aug: AugmentOptions, generator: torch.Generator, *,
                 references: torch.Tensor | None = None, effective_res: int | None = None,
                 channels_last: bool = False) -> SideTensors:
    """Augment one side's batch on its device (warp, affine, flip, colour), then the progressive blur."""
    out = augment_batch(batch.images, batch.masks, aug, generator, references=references)
    warped, target = out.warped, out.target
    mask = out.target_masks["full_face"]
    em = out.target_masks["eyes_mouth"]
    # DFL renormalises the warped eyes/mouth mask by its maximum so its loss weight still peaks at 1
    em = em / em.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    if effective_res is not None and effective_res < warped.shape[-1]:
        warped = downscale_for_progressive(warped, effective_res)
        target = downscale_for_progressive(target, effective_res)
    if channels_last:
        warped = warped.contiguous(memory_format=torch.channels_last)
    return SideTensors(warped, target, mask, em)


def downscale_for_progressive(images: torch.Tensor, effective_res: int) -> torch.Tensor:
    """Blur a batch to an effective resolution for coarse-to-fine training (area down, bilinear up).

    Args:
        images: ``(B, C, H, W)``.
        effective_res: target width in pixels (height scaled to keep the aspect); ``>= W`` returns a copy.

    Returns:
        ``(B, C, H, W)`` with detail above ``effective_res`` removed.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if effective_res < 1:
        raise ValueError(f"effective_res must be >= 1, got {effective_res}")
    h, w = images.shape[-2:]
    if effective_res >= w:
        return images.clone()
    small_h = max(1, round(h * effective_res / w))
    small = F.interpolate(images, size=(small_h, effective_res), mode="area")
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def progressive_resolution(step: int, resolution: int, stage_steps: int) -> int:
    """Coarse-to-fine schedule: res/4 for ``stage_steps`` steps, then res/2, then the full resolution."""
    stage = min(2, step // max(1, stage_steps))
    return max(8, resolution >> (2 - stage))


class TrainForward(nn.Module):
    """The generator's training forward pass as one module (so DDP sees a single forward per step).

    Skips the swap decode when no loss needs it (DFL's TF graph prunes it the same way) and adds the
    stop-gradient swap for face_style and the codes for TrueFace on request.
    """

    def __init__(self, model: nn.Module, *, need_swap: bool, need_codes: bool, need_style_swap: bool):
        super().__init__()
        self.model = model
        self.need_swap = need_swap
        self.need_codes = need_codes
        self.need_style_swap = need_style_swap

    def forward(self, warped_src: torch.Tensor, warped_dst: torch.Tensor) -> dict[str, torch.Tensor]:
        model = self.model
        out = model(warped_src, warped_dst, return_codes=self.need_codes, with_swap=self.need_swap)
        if self.need_style_swap:
            with torch.no_grad():
                code = model.swap_code(warped_dst)
            out["src_dst_style"], _ = model.decode(code.detach(), "src")  # only the decoder learns the style
        return out


def _set_requires_grad(module: nn.Module | None, flag: bool) -> None:
    if module is not None:
        for p in module.parameters():
            p.requires_grad_(flag)


def generator_losses(out: dict[str, torch.Tensor], src: SideTensors, dst: SideTensors, options, *,
                     gan_d: nn.Module | None = None, code_d: nn.Module | None = None,
                     autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SAEHD's generator objective.

    Call it *outside* autocast: the loss maths (SSIM statistics, blurs) must run in float32, since
    autocast would run their convolutions in fp16, whose gradients overflow. ``autocast`` is applied to
    the discriminator forwards only.

    Returns:
        (scalar total loss, per-term batch means for logging: ``src``, ``dst`` and the optional terms).
    """
    res = options.resolution
    targets = {}
    blurred = {}
    for name, side in (("src", src), ("dst", dst)):
        target = side.target
        if options.blur_out_mask:
            target = L.blur_out_mask(target, side.mask, res)
        targets[name] = target
        blurred[name] = L.blurred_mask(side.mask, res)

    terms: dict[str, torch.Tensor] = {}
    side_loss = {}
    for name, side, pred, pred_mask in (("src", src, out["src_src"], out["src_src_mask"]),
                                        ("dst", dst, out["dst_dst"], out["dst_dst_mask"])):
        mask = blurred[name] if options.masked_training else None
        loss = L.reconstruction_loss(pred, targets[name], res, mask=mask)
        if options.eyes_mouth_prio:
            loss = loss + L.eyes_mouth_loss(pred, targets[name], side.em_mask)
        loss = loss + L.mask_loss(pred_mask, side.mask)
        side_loss[name] = loss

    if options.face_style_power > 0:
        m = blurred["dst"]
        style = L.style_loss(out["src_dst_style"] * m, targets["dst"] * m, res, options.face_style_power / 100.0)
        terms["face_style"] = style.mean()
        side_loss["src"] = side_loss["src"] + style
    if options.bg_style_power > 0:
        bg = L.background_style_loss(out["src_dst"], targets["dst"], blurred["dst"], res,
                                     options.bg_style_power / 100.0, mask_is_blurred=True)
        terms["bg_style"] = bg.mean()
        side_loss["src"] = side_loss["src"] + bg

    total = side_loss["src"] + side_loss["dst"]
    if gan_d is not None and options.gan_power > 0:
        m = blurred["src"] if options.masked_training else 1.0
        _set_requires_grad(gan_d, False)
        with autocast():
            fake = gan_d(out["src_src"] * m)
        _set_requires_grad(gan_d, True)
        g = options.gan_power * L.gan_g_loss(fake)
        if options.masked_training:
            anti = 1.0 - blurred["src"]
            g = g + 1e-6 * L.total_variation(out["src_src"])
            g = g + 0.02 * ((out["src_src"].float() * anti - targets["src"] * anti) ** 2).mean(dim=(1, 2, 3))
        terms["gan_g"] = g.mean()
        total = total + g
    if code_d is not None and options.true_face_power > 0:
        _set_requires_grad(code_d, False)
        with autocast():
            logits = code_d(out["src_code"])
        tf = options.true_face_power * L.gan_g_loss(logits)
        _set_requires_grad(code_d, True)
        terms["true_face"] = tf.mean()
        total = total + tf
    terms["src"] = side_loss["src"].mean()
    terms["dst"] = side_loss["dst"].mean()
    return total.mean(), terms


def gan_discriminator_loss(gan_d: nn.Module, out: dict[str, torch.Tensor], src: SideTensors, options,
                           autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
                           ) -> torch.Tensor:
    """U-Net patch D: real = target src, fake = src->src (both masked when training masked)."""
    m = L.blurred_mask(src.mask, options.resolution) if options.masked_training else 1.0
    target = src.target if not options.blur_out_mask else L.blur_out_mask(src.target, src.mask, options.resolution)
    with autocast():
        real = gan_d(target * m)
        fake = gan_d(out["src_src"].detach() * m)
    return L.gan_d_loss(real, fake).mean()


def code_discriminator_loss(code_d: nn.Module, out: dict[str, torch.Tensor],
                            autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
                            ) -> torch.Tensor:
    """TrueFace code D: dst codes are 'real' (1), src codes 'fake' (0)."""
    with autocast():
        real, fake = code_d(out["dst_code"].detach()), code_d(out["src_code"].detach())
    return L.gan_d_loss(real, fake).mean()
