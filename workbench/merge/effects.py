"""Post-effects of the merger: pure image operations (DFL's core/imagelib equivalents): blur/sharpen,
denoise, bicubic degrade, colour reduction, motion blur, the seamless-clone mask."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from ..images import to_uint8

SHARPEN_KERNEL = 3
DENOISE_KERNEL, DENOISE_PASS_STEP = 5, 10
BLUR_MEDIAN_KERNEL, BLUR_PASS_STEP = 5, 10
MOTION_BLUR_MAX_KERNEL = 50
COLOR_DEGRADE_COLORS = 256



def blursharpen(image: np.ndarray, mode: str, amount: int, kernel_size: int = SHARPEN_KERNEL) -> np.ndarray:
    """DFL's ``blursharpen`` (deepfacelab.md §4.5).

    Positive ``amount`` sharpens: box: kernel = δ + (δ − box)·amount; gaussian: img·(1 + a/2) − blur·a/2.
    Negative ``amount`` blurs by repeated 5x5 median blending (10 units per full pass), whatever the mode.
    """
    if kernel_size % 2 == 0:
        kernel_size += 1
    img = np.asarray(image, dtype=np.float32)
    if amount > 0:
        if mode == "box":
            kernel = np.zeros((kernel_size, kernel_size), np.float32)
            kernel[kernel_size // 2, kernel_size // 2] = 1.0
            box = np.full((kernel_size, kernel_size), 1.0 / kernel_size**2, np.float32)
            return cv2.filter2D(img, -1, kernel + (kernel - box) * amount)
        if mode == "gaussian":
            blurred = cv2.GaussianBlur(img, (kernel_size, kernel_size), 0)
            return cv2.addWeighted(img, 1.0 + 0.5 * amount, blurred, -0.5 * amount, 0)
        return img
    if amount < 0:
        return _median_passes(img, -amount, full=BLUR_PASS_STEP, step=BLUR_PASS_STEP, ksize=BLUR_MEDIAN_KERNEL)
    return img


def _median_passes(img: np.ndarray, power: int, full: int, step: int, ksize: int) -> np.ndarray:
    """DFL's repeated median blending: while n > 0, replace the image by its median blur when n >= ``full``,
    else blend it in by (n % full)/full; then n -= ``step``."""
    n = power
    while n > 0:
        blurred = cv2.medianBlur(img, ksize)
        if n // full != 0:
            img = blurred
        else:
            p = (n % full) / full
            img = img * (1.0 - p) + blurred * p
        n = max(n - step, 0)
    return img.astype(np.float32, copy=False)


def denoise(image: np.ndarray, power: int) -> np.ndarray:
    """DFL's image denoise (0..500): 5x5 median passes; n >= 100 replaces, below blends by (n % 100)/100; n -= 10."""
    return _median_passes(np.asarray(image, np.float32), power, full=100, step=DENOISE_PASS_STEP, ksize=DENOISE_KERNEL)


def bicubic_degrade(image: np.ndarray, power: int) -> np.ndarray:
    """Downscale by ``1 - power/101`` and upscale back, both bicubic (DFL's bicubic degrade)."""
    h, w = image.shape[:2]
    p = 1.0 - power / 101.0
    small = cv2.resize(image, (max(1, int(w * p)), max(1, int(h * p))), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def reduce_colors(image: np.ndarray, colors: int = COLOR_DEGRADE_COLORS) -> np.ndarray:
    """Quantise an RGB image to an adaptive palette of ``colors`` entries (PIL), as DFL's ``reduce_colors``."""
    pil = Image.fromarray(to_uint8(image)).convert("P", palette=Image.Palette.ADAPTIVE, colors=colors)
    return np.asarray(pil.convert("RGB"), dtype=np.float32) / 255.0


def linear_motion_blur(image: np.ndarray, size: int, angle_deg: float) -> np.ndarray:
    """Blur along a line of ``size`` px rotated by ``angle_deg`` (DFL's ``LinearMotionBlur``)."""
    k = np.zeros((size, size), np.float32)
    k[(size - 1) // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), angle_deg, 1.0)
    k = cv2.warpAffine(k, rot, (size, size))
    total = float(k.sum())
    if total <= 0:
        return np.asarray(image, np.float32)
    return cv2.filter2D(np.asarray(image, np.float32), -1, k / total)


def motion_blur_kernel_size(motion_power: float, motion_blur: int, super_resolution: bool = False) -> int:
    """DFL's kernel: k = int(motion_power·mb/100); 0 when k < 1, else clip(k + 1, 2, 50), x2 with super-resolution."""
    k = int(motion_power * motion_blur / 100.0)
    if k < 1:
        return 0
    k = int(np.clip(k + 1, 2, MOTION_BLUR_MAX_KERNEL))
    return k * 2 if super_resolution else k


def seamless_mask(mask: np.ndarray) -> np.ndarray | None:
    """DFL's seamless-clone mask: ``mask > i/10`` for the first i = 1..9 that leaves pixels (None if none)."""
    for i in range(1, 10):
        binary = mask > i / 10.0
        if binary.any():
            return binary
    return None
