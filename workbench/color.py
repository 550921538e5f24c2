"""Colour transfer: make a face take on the colours of a reference (DeepFaceLab's ``color_transfer.py``).

In the merger the *face* is the model's prediction and the *reference* is the destination face crop,
so the swapped face gets the lighting and skin tone of the frame it is pasted into. Training's
``ct_mode`` does the same to source samples with random destination faces as references.

Every function here has the form ``f(face, reference, mask=None, **options) -> np.ndarray``:

- ``face``, ``reference``: RGB float32 HWC in [0, 1] (they may differ in size).
- ``mask``: HW float32 in [0, 1] on the face's grid; pixels with mask > 0.5 are "inside". It is also used
  for the reference when the two have the same size (the merger's case: both are aligned crops);
  otherwise pass ``reference_mask`` too. ``inside_only=True`` blends the result into the face with the
  (soft) mask as weights, so outside pixels keep their colours.
- The result is a new float32 array clipped to [0, 1]. Inputs are never modified.

Transfers (``TRANSFERS``, or ``apply_transfer(name, ...)``):

=============  =================================================================================
``rct``        Reinhard: per-channel mean/std matching in Lab (L 0..100, a/b +-127).
``lct``        Linear Monge-Kantorovich: x' = Qs Qt^-1 (x - mu_t) + mu_s, Q = symmetric sqrt(cov).
``mkl``        Monge-Kantorovich linear map T = A^-1/2 (A^1/2 B A^1/2)^1/2 A^-1/2 (Pitie 2007).
``idt``        Iterative distribution transfer: 1-D CDF matching along random 3-D rotations.
``sot``        Sliced optimal transport with a bilateral-filtered displacement field.
``mix``        Lightness from lct, chroma from sot, recombined in Lab.
``hist_match`` Per-channel CDF (histogram) matching with DFL's threshold.
``none``       A copy of the face.
=============  =================================================================================

Differences from DeepFaceLab (DFL), on purpose:

- DFL works on BGR images; these functions take RGB. Every method is written so that the result is the
  same as DFL's on the channel-swapped image (Lab conversion is order-aware; the covariance methods are
  equivariant under channel permutation, the random-direction ones are equal in distribution).
- Masks: DFL's masked modes (``rct`` in the merger, ``mkl-m``, ``idt-m``, ``sot-m``, ``mix-m``) multiply
  the images by the mask and compute statistics over *all* pixels, so the zeros outside the mask drag the
  means towards black and inflate the spread. Here statistics use *only* the pixels inside the mask.
  ``hist_match`` likewise uses only inside pixels instead of DFL's trick of painting the outside white.
- A mask that selects fewer than 2 pixels raises ``ConfigError`` (DFL would divide by zero); callers
  such as the merger should skip colour transfer for an empty mask.
- ``idt``'s 1-D maps start at the lower histogram edge, so values in the first bin are interpolated;
  DFL's ``interp(x, edges[1:], f, left=0, ...)`` sends them to 0. Its rotations come from a seeded generator.
- ``mix`` stays in float instead of round-tripping through 8-bit Lab as DFL does.
- ``rct`` and ``mix`` use OpenCV's float Lab conversion, like DFL (OpenCV interpolates a lookup table
  for RGB -> Lab, within about 0.5 Lab units of the exact formula that ``rgb_to_lab_torch`` uses).

Torch batch versions for training augmentation: ``rct_torch``, ``lct_torch``, ``mkl_torch`` on
(B, 3, H, W) float32 tensors in [0, 1].
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:  # torch is imported lazily: the merge UI and notebooks import this module often
    import torch

__all__ = [
    "TRANSFERS",
    "apply_transfer",
    "MIX_CHROMA_LIGHTNESS",
    "hist_match",
    "idt",
    "lab_to_rgb_torch",
    "lct",
    "lct_torch",
    "mix",
    "mkl",
    "mkl_torch",
    "none",
    "rct",
    "rct_torch",
    "rgb_to_lab_torch",
    "sot",
    "transfer_names",
]

# Lab ranges of OpenCV's float32 conversion, used as rct's clip limits (DFL constants).
LAB_LOW = np.array([0.0, -127.0, -127.0], dtype=np.float32)
LAB_HIGH = np.array([100.0, 127.0, 127.0], dtype=np.float32)
LCT_EPS = 1e-5
# DFL's mix writes L = 100 into OpenCV's *8-bit* Lab (L scaled to 0..255), i.e. L* = 100 * 100 / 255.
MIX_CHROMA_LIGHTNESS = 100.0 * 100.0 / 255.0
MIN_PIXELS = 2
_STD_FLOOR = 1e-6


# ----------------------------------------------------------------------------------------------------------
# validation and mask handling
# ----------------------------------------------------------------------------------------------------------


def _as_image(image: np.ndarray, name: str) -> np.ndarray:
    """Check an RGB float image and return it as a C-contiguous float32 array (never written to)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be an RGB image of shape (H, W, 3), got {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"{name} must be float in [0, 1], got {image.dtype} (use workbench.images.to_float)")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name} is empty: {image.shape}")
    return np.ascontiguousarray(image, dtype=np.float32)


def _as_mask(mask: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Check a mask of shape (H, W) or (H, W, 1) against an image's (H, W) and return float32 (H, W)."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.shape != tuple(shape[:2]):
        raise ValueError(f"{name} must have shape {tuple(shape[:2])} (H, W) like its image, got {mask.shape}")
    return np.asarray(mask, dtype=np.float32)


class _Masks:
    """Resolved masks of one call: boolean selections for statistics and soft weights for blending."""

    __slots__ = ("face_sel", "ref_sel", "weights")

    def __init__(
        self,
        face: np.ndarray,
        reference: np.ndarray,
        mask: np.ndarray | None,
        reference_mask: np.ndarray | None,
        inside_only: bool,
    ):
        self.face_sel: np.ndarray | None = None
        self.ref_sel: np.ndarray | None = None
        self.weights: np.ndarray | None = None
        if mask is not None:
            soft = _as_mask(mask, face.shape, "mask")
            self.face_sel = soft > 0.5
            self.weights = np.clip(soft, 0.0, 1.0)
            if reference_mask is None:
                if reference.shape[:2] != face.shape[:2]:
                    raise ConfigError(
                        f"mask is {face.shape[1]}x{face.shape[0]} but the reference is "
                        f"{reference.shape[1]}x{reference.shape[0]}",
                        hint="pass reference_mask= for a reference of another size",
                    )
                self.ref_sel = self.face_sel
        if reference_mask is not None:
            self.ref_sel = _as_mask(reference_mask, reference.shape, "reference_mask") > 0.5
        if inside_only and self.weights is None:
            raise ConfigError("inside_only=True needs a mask", hint="pass mask= or leave inside_only False")
        if not inside_only:
            self.weights = None
        for sel, what in ((self.face_sel, "mask"), (self.ref_sel, "reference_mask")):
            if sel is not None and np.count_nonzero(sel) < MIN_PIXELS:
                raise ConfigError(
                    f"{what} selects fewer than {MIN_PIXELS} pixels (values > 0.5)",
                    hint="check the mask's erode/blur settings, or pass no mask",
                )


def _pixels(image: np.ndarray, sel: np.ndarray | None) -> np.ndarray:
    """(N, 3) pixels of an image, only those where ``sel`` is True when given."""
    flat = image.reshape(-1, 3)
    return flat if sel is None else flat[sel.ravel()]


def _finish(result: np.ndarray, face: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Blend into the face with the soft mask for ``inside_only``, then clip to [0, 1] as float32."""
    result = np.asarray(result, dtype=np.float32)
    if weights is not None:
        result = face + weights[:, :, None] * (np.clip(result, 0.0, 1.0) - face)
    return np.clip(result, 0.0, 1.0, out=result)


def _generator(seed: int | None, rng: np.random.Generator | None) -> np.random.Generator:
    if seed is not None and rng is not None:
        raise ConfigError("pass either seed= or rng=, not both")
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise ConfigError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return rng
    return np.random.default_rng(seed)


def _check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------------------------
# statistics helpers
# ----------------------------------------------------------------------------------------------------------


def _mean_cov(px: np.ndarray, ddof: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (3,) and covariance (3, 3), float64, of (N, 3) pixels (raw moments in float64 via BLAS)."""
    x = px.astype(np.float64)
    n = x.shape[0]
    mu = (np.ones(n) @ x) / n
    scatter = x.T @ x - n * np.outer(mu, mu)
    return mu, scatter / max(n - ddof, 1)


def _sqrtm_sym(c: np.ndarray) -> np.ndarray:
    """Symmetric square root E sqrt(L) E^T of a symmetric positive (semi)definite matrix."""
    vals, vecs = np.linalg.eigh(c)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def _apply_affine(
    face: np.ndarray, matrix: np.ndarray, mu_face: np.ndarray, mu_ref: np.ndarray
) -> np.ndarray:
    """x' = M (x - mu_face) + mu_ref for every pixel; returns a new (H, W, 3) float32 array."""
    offset = mu_ref - matrix @ mu_face
    return cv2.transform(face, np.hstack([matrix, offset[:, None]]))


# ----------------------------------------------------------------------------------------------------------
# transfers
# ----------------------------------------------------------------------------------------------------------


def none(
    face: np.ndarray,
    reference: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    *,
    reference_mask: np.ndarray | None = None,
    inside_only: bool = False,
) -> np.ndarray:
    """No colour transfer: a new float32 copy of ``face`` (H, W, 3) clipped to [0, 1].

    ``reference``, the masks and ``inside_only`` are accepted (so callers can switch transfers with the
    same arguments) and ignored.
    """
    face = _as_image(face, "face")
    return np.clip(face, 0.0, 1.0)


def rct(
    face: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    reference_mask: np.ndarray | None = None,
    inside_only: bool = False,
) -> np.ndarray:
    """Reinhard colour transfer in Lab (DFL ``rct``, the merger's default).

    The face is converted to Lab (OpenCV float32: L 0..100, a/b about +-127); each channel becomes
    ``(t - mean_t) * std_ref / std_t + mean_ref`` (population std, floored at 1e-6), is clipped to
    L [0, 100], a/b [-127, 127], and converted back. A few ms at 256 px.

    Args:
        face: (H, W, 3) RGB float in [0, 1], the image to recolour.
        reference: (H2, W2, 3) RGB float in [0, 1] whose colour statistics are taken.
        mask: optional (H, W) float in [0, 1]. Statistics use only pixels > 0.5 (DFL counts the
            masked-out pixels as zeros, which biases them; see the module docstring).
        reference_mask: optional (H2, W2) mask for the reference; defaults to ``mask`` when sizes match.
        inside_only: blend the result into the face with ``mask`` as weights instead of recolouring all.

    Returns:
        (H, W, 3) float32 RGB in [0, 1], a new array.
    """
    face = _as_image(face, "face")
    reference = _as_image(reference, "reference")
    masks = _Masks(face, reference, mask, reference_mask, inside_only)
    face_lab = cv2.cvtColor(face, cv2.COLOR_RGB2Lab)
    ref_lab = cv2.cvtColor(reference, cv2.COLOR_RGB2Lab)
    mu_t, sd_t = _lab_mean_std(face_lab, masks.face_sel)
    mu_s, sd_s = _lab_mean_std(ref_lab, masks.ref_sel)
    scale = sd_s / np.maximum(sd_t, _STD_FLOOR)
    offset = mu_s - mu_t * scale
    out_lab = cv2.transform(face_lab, np.hstack([np.diag(scale), offset[:, None]]))
    out_lab = cv2.min(cv2.max(out_lab, (*LAB_LOW.tolist(), 0.0)), (*LAB_HIGH.tolist(), 0.0))
    return _finish(cv2.cvtColor(out_lab, cv2.COLOR_Lab2RGB), face, masks.weights)


def _lab_mean_std(lab: np.ndarray, sel: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std (float64, shape (3,)) of an (H, W, 3) image, optionally masked."""
    cv_mask = None if sel is None else np.ascontiguousarray(sel).view(np.uint8)
    mean, std = cv2.meanStdDev(lab, mask=cv_mask)
    return mean.reshape(3), std.reshape(3)


def lct(
    face: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    eps: float = LCT_EPS,
    reference_mask: np.ndarray | None = None,
    inside_only: bool = False,
) -> np.ndarray:
    """Linear colour transfer, Monge-Kantorovich "pca" mode (DFL ``lct``).

    With C = covariance (divided by N) + eps * I and Q = E sqrt(L) E^T its symmetric square root,
    every pixel becomes ``Q_ref Q_face^-1 (x - mean_face) + mean_ref``. The output mean equals the
    reference's; the output covariance is Q_ref Q_face^-1 C_face Q_face^-1 Q_ref, close to the
    reference's (exact for eps = 0, before clipping).

    Args:
        face: (H, W, 3) RGB float in [0, 1].
        reference: (H2, W2, 3) RGB float in [0, 1].
        mask: optional (H, W) float; statistics use only pixels > 0.5, the map applies to all pixels.
        eps: ridge added to both covariances (DFL 1e-5).
        reference_mask: optional (H2, W2) mask for the reference; defaults to ``mask`` when sizes match.
        inside_only: blend the result into the face with ``mask`` as weights.

    Returns:
        (H, W, 3) float32 RGB in [0, 1], a new array.
    """
    face = _as_image(face, "face")
    reference = _as_image(reference, "reference")
    if not eps >= 0:
        raise ConfigError(f"eps must be >= 0, got {eps!r}")
    masks = _Masks(face, reference, mask, reference_mask, inside_only)
    mu_t, c_t = _mean_cov(_pixels(face, masks.face_sel), ddof=0)
    mu_s, c_s = _mean_cov(_pixels(reference, masks.ref_sel), ddof=0)
    eye = np.eye(3)
    q_t = _sqrtm_sym(c_t + eps * eye)
    q_s = _sqrtm_sym(c_s + eps * eye)
    matrix = q_s @ np.linalg.pinv(q_t)
    return _finish(_apply_affine(face, matrix, mu_t, mu_s), face, masks.weights)


def mkl(
    face: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    reference_mask: np.ndarray | None = None,
    inside_only: bool = False,
) -> np.ndarray:
    """Monge-Kantorovich linear colour transfer (DFL ``mkl``; ``mkl-m`` with a mask).

    With covariances A (face) and B (reference), both with N - 1 normalisation as ``np.cov``:
    A = Ua Da^2 Ua^T, C = Da Ua^T B Ua Da = Uc Dc^2 Uc^T (eigenvalues clipped at float eps),
    T = Ua Da^-1 Uc Dc Uc^T Da^-1 Ua^T, and every pixel becomes ``(x - mean_face) T + mean_ref``.
    T is the unique symmetric positive map with T A T = B, so the output covariance equals the
    reference's (before clipping).

    Args:
        face: (H, W, 3) RGB float in [0, 1].
        reference: (H2, W2, 3) RGB float in [0, 1].
        mask: optional (H, W) float; statistics use only pixels > 0.5 (DFL's ``mkl-m`` multiplies by the
            mask and counts the zeros), the map applies to all pixels.
        reference_mask: optional (H2, W2) mask for the reference; defaults to ``mask`` when sizes match.
        inside_only: blend the result into the face with ``mask`` as weights.

    Returns:
        (H, W, 3) float32 RGB in [0, 1], a new array.
    """
    face = _as_image(face, "face")
    reference = _as_image(reference, "reference")
    masks = _Masks(face, reference, mask, reference_mask, inside_only)
    mu_x, a = _mean_cov(_pixels(face, masks.face_sel), ddof=1)
    mu_b, b = _mean_cov(_pixels(reference, masks.ref_sel), ddof=1)
    matrix = _mkl_matrix(a, b)
    return _finish(_apply_affine(face, matrix, mu_x, mu_b), face, masks.weights)


def _mkl_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The symmetric MKL map T with T A T = B for symmetric positive semidefinite A, B (3, 3)."""
    eps = np.finfo(np.float64).eps
    da2, ua = np.linalg.eigh(a)
    da = np.sqrt(np.clip(da2, eps, None))
    c = (da[:, None] * (ua.T @ b @ ua)) * da[None, :]
    dc2, uc = np.linalg.eigh((c + c.T) / 2)
    dc = np.sqrt(np.clip(dc2, eps, None))
    middle = (uc * dc) @ uc.T
    t = (ua / da) @ middle @ (ua / da).T
    return (t + t.T) / 2


def hist_match(
    face: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    threshold: float = 255,
    *,
    reference_mask: np.ndarray | None = None,
    inside_only: bool = False,
) -> np.ndarray:
    """Per-channel histogram (CDF) matching, DFL's ``hist-match`` merge mode.

    For each RGB channel, a face value whose CDF is c becomes the reference value whose CDF is
    ``c * threshold / 255``. At 255 the output's per-channel distributions equal the reference's;
    lower thresholds map onto a lower part of the reference's distribution, so the result is darker
    (at 0 every value becomes the reference's minimum). The DFL merger's default threshold is 238.

    Args:
        face: (H, W, 3) RGB float in [0, 1].
        reference: (H2, W2, 3) RGB float in [0, 1].
        mask: optional (H, W) float. Both CDFs use only pixels > 0.5 (DFL instead paints the outside
            white in both images, which puts a spike at 1.0 into both CDFs); the map, interpolated
            between the inside values, applies to all pixels.
        threshold: 0..255, DFL's ``hist_match_threshold``.
        reference_mask: optional (H2, W2) mask for the reference; defaults to ``mask`` when sizes match.
        inside_only: blend the result into the face with ``mask`` as weights.

    Returns:
        (H, W, 3) float32 RGB in [0, 1], a new array.
    """
    face = _as_image(face, "face")
    reference = _as_image(reference, "reference")
    if not 0 <= threshold <= 255:
        raise ConfigError(f"hist_match threshold must be in 0..255, got {threshold!r}")
    masks = _Masks(face, reference, mask, reference_mask, inside_only)
    face_px = _pixels(face, masks.face_sel)
    ref_px = _pixels(reference, masks.ref_sel)
    channels = list(cv2.split(face))  # contiguous planes: np.interp is twice as fast on them
    for ch in range(3):
        s_values, s_counts = np.unique(face_px[:, ch], return_counts=True)
        t_values, t_counts = np.unique(ref_px[:, ch], return_counts=True)
        s_quantiles = np.cumsum(s_counts, dtype=np.float64)
        s_quantiles *= float(threshold) / s_quantiles[-1]
        t_quantiles = np.cumsum(t_counts, dtype=np.float64)
        t_quantiles *= 255.0 / t_quantiles[-1]
        mapped = np.interp(s_quantiles, t_quantiles, t_values)
        channels[ch] = np.interp(channels[ch], s_values, mapped).astype(np.float32)
    return _finish(cv2.merge(channels), face, masks.weights)


def idt(
    face: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    n_rot: int = 20,
    bins: int = 256,
    relaxation: float | None = None,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    reference_mask: np.ndarray | None = None,
    inside_only: bool = False,
) -> np.ndarray:
    """Iterative distribution transfer (Pitie et al. 2005; DFL ``idt``, ``idt-m`` with a mask).

    Repeats ``n_rot`` times: draw a random 3-D rotation (Haar, like DFL's ``special_ortho_group``),
    project face and reference pixels onto its three axes, match each 1-D histogram (``bins`` bins over
    the joint range) by CDF lookup, and move the face pixels ``relaxation`` of the way towards the matched
    values. DFL's relaxation is 1 / n_rot, so 20 rotations give a partial, smooth transfer.
    About 0.1-0.2 s at 256 px.

    Args:
        face: (H, W, 3) RGB float in [0, 1].
        reference: (H2, W2, 3) RGB float in [0, 1].
        mask: optional (H, W) float; the histograms use only pixels > 0.5, all pixels are moved.
        n_rot: number of random rotations (DFL 20).
        bins: histogram bins per axis (DFL 256).
        relaxation: step size in (0, 1]; None means 1 / n_rot as in DFL.
        seed, rng: randomness (one of them); same seed, same output.
        reference_mask: optional (H2, W2) mask for the reference; defaults to ``mask`` when sizes match.
        inside_only: blend the result into the face with ``mask`` as weights.

    Returns:
        (H, W, 3) float32 RGB in [0, 1], a new array.
    """
    face = _as_image(face, "face")
    reference = _as_image(reference, "reference")
    n_rot = _check_positive_int(n_rot, "n_rot")
    bins = _check_positive_int(bins, "bins")
    relaxation = 1.0 / n_rot if relaxation is None else float(relaxation)
    if not 0 < relaxation <= 1:
        raise ConfigError(f"relaxation must be in (0, 1], got {relaxation!r}")
    gen = _generator(seed, rng)
    masks = _Masks(face, reference, mask, reference_mask, inside_only)
    d0 = np.array(face.reshape(-1, 3).T, order="C")  # (3, N), always a copy: we update it
    d1 = np.ascontiguousarray(_pixels(reference, masks.ref_sel).T)  # (3, M)
    sel = None if masks.face_sel is None else masks.face_sel.ravel()
    moved = np.empty_like(d0)
    for _ in range(n_rot):
        r = _random_rotation(gen)
        d0r = r @ d0
        d1r = r @ d1
        for j in range(3):
            src = d0r[j] if sel is None else d0r[j][sel]
            moved[j] = _match_1d(d0r[j], src, d1r[j], bins)
        d0 += relaxation * (r.T @ (moved - d0r))
    return _finish(d0.T.reshape(face.shape).copy(), face, masks.weights)


def _match_1d(values: np.ndarray, src: np.ndarray, trg: np.ndarray, bins: int) -> np.ndarray:
    """Map ``values`` through the CDF-matching map from the histogram of ``src`` to that of ``trg``.

    Both histograms have ``bins`` equal bins over the joint range [lo, hi]. The map sends each bin edge
    to the reference value at the same CDF and is linear in between (values are on the edge grid, so the
    lookup is an index computation rather than a binary search).
    """
    lo = float(min(src.min(), trg.min()))
    hi = float(max(src.max(), trg.max()))
    if hi <= lo:
        return np.full_like(values, lo)
    scale = bins / (hi - lo)
    edges = np.linspace(lo, hi, bins + 1)

    def cdf(x: np.ndarray) -> np.ndarray:
        idx = np.minimum(((x - lo) * scale).astype(np.int32), bins - 1)
        out = np.zeros(bins + 1)
        np.cumsum(np.bincount(idx, minlength=bins), out=out[1:])
        return out / out[-1]

    transfer = np.interp(cdf(src), cdf(trg), edges).astype(np.float32)  # edge -> reference value
    pos = np.clip((values - np.float32(lo)) * np.float32(scale), 0, bins)
    idx = np.minimum(pos.astype(np.int32), bins - 1)
    frac = pos - idx
    low = transfer[idx]
    return low + frac * (transfer[idx + 1] - low)


def _random_rotation(gen: np.random.Generator) -> np.ndarray:
    """A Haar-random 3-D rotation (3, 3) float32: QR of a Gaussian matrix with sign fixes (Mezzadri 2007)."""
    q, r = np.linalg.qr(gen.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.astype(np.float32)


def sot(
    face: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    steps: int = 10,
    batch_size: int = 5,
    reg_sigma_xy: float = 16.0,
    reg_sigma_v: float = 5.0,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    reference_mask: np.ndarray | None = None,
    inside_only: bool = False,
) -> np.ndarray:
    """Sliced optimal transport colour transfer (DFL ``sot``; the merger's ``sot-m`` uses batch_size 30).

    Each of ``steps`` steps draws ``batch_size`` random unit directions; along each, the face's
    projections are sorted and moved onto the sorted reference projections (the 1-D optimal transport),
    and the moves are averaged. Then the displacement field (result - face) is smoothed by
    ``cv2.bilateralFilter(d=0, sigmaColor=reg_sigma_v, sigmaSpace=reg_sigma_xy)`` so neighbouring pixels
    move alike; ``reg_sigma_xy=0`` turns this off. About 0.3-0.5 s at 256 px, most of it the filter.

    Args:
        face: (H, W, 3) RGB float in [0, 1].
        reference: (H2, W2, 3) RGB float in [0, 1]; its sorted projections are resampled when it holds a
            different number of (inside) pixels than the face.
        mask: optional (H, W) float. Only pixels > 0.5 of both images take part in the matching;
            face pixels outside are moved by the same monotone 1-D maps, interpolated.
        steps: solver steps (DFL 10).
        batch_size: directions per step (DFL 5; 30 in the merger).
        reg_sigma_xy: bilateral sigmaSpace in pixels (DFL 16), 0 disables the regulariser.
        reg_sigma_v: bilateral sigmaColor in image units (DFL 5).
        seed, rng: randomness (one of them); same seed, same output.
        reference_mask: optional (H2, W2) mask for the reference; defaults to ``mask`` when sizes match.
        inside_only: blend the result into the face with ``mask`` as weights.

    Returns:
        (H, W, 3) float32 RGB in [0, 1], a new array.
    """
    face = _as_image(face, "face")
    reference = _as_image(reference, "reference")
    masks = _Masks(face, reference, mask, reference_mask, inside_only)
    moved = _sot_raw(
        face, reference, masks, steps, batch_size, reg_sigma_xy, reg_sigma_v, _generator(seed, rng)
    )
    return _finish(moved, face, masks.weights)


def _sot_raw(
    face: np.ndarray,
    reference: np.ndarray,
    masks: _Masks,
    steps: int,
    batch_size: int,
    reg_sigma_xy: float,
    reg_sigma_v: float,
    gen: np.random.Generator,
) -> np.ndarray:
    """Unclipped sliced-OT result (H, W, 3) float32 of ``face`` towards ``reference``."""
    steps = _check_positive_int(steps, "steps")
    batch = _check_positive_int(batch_size, "batch_size")
    if not reg_sigma_xy >= 0 or not reg_sigma_v > 0:
        raise ConfigError(
            f"reg_sigma_xy must be >= 0 and reg_sigma_v > 0, got {reg_sigma_xy!r}, {reg_sigma_v!r}"
        )
    x = np.array(face.reshape(-1, 3).T, order="C")  # (3, N), always a copy: updated in place
    y = np.ascontiguousarray(_pixels(reference, masks.ref_sel).T)  # (3, M)
    sel = None if masks.face_sel is None else masks.face_sel.ravel()
    n_in = x.shape[1] if sel is None else int(np.count_nonzero(sel))
    rows = np.arange(batch)[:, None]
    for _ in range(steps):
        dirs = gen.normal(size=(batch, 3))
        dirs = (dirs / np.linalg.norm(dirs, axis=1, keepdims=True)).astype(np.float32)  # (B, 3)
        proj = dirs @ x  # (B, N)
        target = np.sort(dirs @ y, axis=1)  # (B, M)
        if target.shape[1] != n_in:  # resample reference quantiles to the face's pixel count
            pos = (np.arange(n_in) + 0.5) * (target.shape[1] / n_in) - 0.5
            target = np.stack([np.interp(pos, np.arange(target.shape[1]), t) for t in target]).astype(
                np.float32
            )
        src = proj if sel is None else proj[:, sel]
        order = np.argsort(src, axis=1)
        src_sorted = src[rows, order]
        shift_in = np.empty_like(src)
        shift_in[rows, order] = target - src_sorted
        if sel is None:
            shift = shift_in
        else:
            shift = np.empty_like(proj)
            shift[:, sel] = shift_in
            outside = ~sel
            for b in range(batch):
                p = proj[b, outside]
                shift[b, outside] = np.interp(p, src_sorted[b], target[b]) - p
        x += (dirs.T @ shift) / batch
    moved = x.T.reshape(face.shape)
    if reg_sigma_xy > 0:
        diff = np.ascontiguousarray(moved - face)
        diff = cv2.bilateralFilter(diff, 0, float(reg_sigma_v), float(reg_sigma_xy))
        moved = face + diff.reshape(face.shape)
    return moved.astype(np.float32, copy=False)


def mix(
    face: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    steps: int = 10,
    batch_size: int = 5,
    chroma_lightness: float = MIX_CHROMA_LIGHTNESS,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    reference_mask: np.ndarray | None = None,
    inside_only: bool = False,
) -> np.ndarray:
    """Lightness from ``lct``, chroma from ``sot``, recombined in Lab (DFL ``mix-m``).

    1. L (0..100) of the face is matched to the reference's by 1-D lct (mean and std, eps 1e-5 on L/100).
    2. Both images get their L replaced by ``chroma_lightness`` and go back to RGB; sot moves the face's
       colours onto the reference's (bilateral sigmaColor 5/255, as DFL's filter on 0..255 values).
    3. The a, b channels of the sot result are combined with the new L and converted to RGB.

    ``chroma_lightness`` defaults to 39.2: DFL writes 100 into OpenCV's 8-bit Lab, whose L is scaled to
    0..255, so its "L forced to 100" is L* = 100 * 100 / 255. DFL also rounds to 8 bits between steps;
    this version stays in float.

    Args:
        face: (H, W, 3) RGB float in [0, 1].
        reference: (H2, W2, 3) RGB float in [0, 1].
        mask: optional (H, W) float; statistics and matching use only pixels > 0.5.
        steps, batch_size: sot solver settings (DFL 10 and 5).
        chroma_lightness: the constant L* (0..100) at which chroma is transferred.
        seed, rng: randomness for sot (one of them).
        reference_mask: optional (H2, W2) mask for the reference; defaults to ``mask`` when sizes match.
        inside_only: blend the result into the face with ``mask`` as weights.

    Returns:
        (H, W, 3) float32 RGB in [0, 1], a new array.
    """
    face = _as_image(face, "face")
    reference = _as_image(reference, "reference")
    if not 0 <= chroma_lightness <= 100:
        raise ConfigError(f"chroma_lightness must be in 0..100, got {chroma_lightness!r}")
    gen = _generator(seed, rng)
    masks = _Masks(face, reference, mask, reference_mask, inside_only)
    face_lab = cv2.cvtColor(face, cv2.COLOR_RGB2Lab)
    ref_lab = cv2.cvtColor(reference, cv2.COLOR_RGB2Lab)

    # 1. lightness: 1-D lct on L / 100 (DFL: L / 255 of 8-bit Lab, the same [0, 1] scale)
    l_face = _pixels(face_lab, masks.face_sel)[:, 0].astype(np.float64) / 100.0
    l_ref = _pixels(ref_lab, masks.ref_sel)[:, 0].astype(np.float64) / 100.0
    gain = np.sqrt(l_ref.var() + LCT_EPS) / np.sqrt(l_face.var() + LCT_EPS)
    new_l = (face_lab[:, :, 0] / 100.0 - l_face.mean()) * gain + l_ref.mean()
    new_l = np.clip(new_l, 0.0, 1.0) * 100.0

    # 2. chroma: sot between the images at constant lightness
    def flat_light(lab: np.ndarray) -> np.ndarray:
        lab = lab.copy()
        lab[:, :, 0] = chroma_lightness
        return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0.0, 1.0)

    chroma = _sot_raw(
        flat_light(face_lab), flat_light(ref_lab), masks, steps, batch_size, 16.0, 5.0 / 255.0, gen
    )
    chroma_lab = cv2.cvtColor(np.clip(chroma, 0.0, 1.0), cv2.COLOR_RGB2Lab)

    # 3. recombine
    chroma_lab[:, :, 0] = new_l
    return _finish(cv2.cvtColor(chroma_lab, cv2.COLOR_Lab2RGB), face, masks.weights)


# ----------------------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------------------

TRANSFERS: dict[str, Callable[..., np.ndarray]] = {
    "none": none,
    "rct": rct,
    "lct": lct,
    "mkl": mkl,
    "idt": idt,
    "sot": sot,
    "mix": mix,
    "hist_match": hist_match,
}


def transfer_names() -> tuple[str, ...]:
    """Names accepted by ``apply_transfer``, in registry order."""
    return tuple(TRANSFERS)


def apply_transfer(
    name: str,
    face: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    **options: object,
) -> np.ndarray:
    """Run the colour transfer called ``name`` (a key of ``TRANSFERS``) with its keyword options.

    Raises:
        ConfigError: unknown name (the message lists the valid ones) or an option the transfer lacks.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    func = TRANSFERS.get(key)  # type: ignore[arg-type]
    if func is None:
        raise ConfigError(f"unknown colour transfer {name!r}", hint=f"use one of: {', '.join(TRANSFERS)}")
    params = inspect.signature(func).parameters
    allowed = [p for p in params if p not in ("face", "reference", "mask")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"colour transfer {key!r} has no option(s) {', '.join(unknown)}",
            hint=f"its options are: {', '.join(allowed) or '(none)'}",
        )
    return func(face, reference, mask, **options)


# ----------------------------------------------------------------------------------------------------------
# torch batch versions (training ct_mode augmentation)
# ----------------------------------------------------------------------------------------------------------

# OpenCV's sRGB (D65) -> XYZ matrix, with X and Z already divided by the white point as cv2 does.
_XN, _ZN = 0.950456, 1.088754
_RGB2XYZ = np.array(
    [
        [0.412453 / _XN, 0.357580 / _XN, 0.180423 / _XN],
        [0.212671, 0.715160, 0.072169],
        [0.019334 / _ZN, 0.119193 / _ZN, 0.950227 / _ZN],
    ]
)
_XYZ2RGB = np.linalg.inv(_RGB2XYZ)


def _check_batch(x: torch.Tensor, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must be a (B, 3, H, W) tensor, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor in [0, 1], got {x.dtype}")


def _batch_weights(masks: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """(B, 1, H*W) 0/1 weights from masks (B, H, W) or (B, 1, H, W) (> 0.5 inside), or all ones."""
    b, _, h, w = like.shape
    if masks is None:
        return like.new_ones((b, 1, h * w))
    m = masks.reshape(masks.shape[0], -1)
    if m.shape != (b, h * w):
        raise ValueError(
            f"masks must be (B, H, W) or (B, 1, H, W) matching {tuple(like.shape)}, got {tuple(masks.shape)}"
        )
    return (m > 0.5).to(like.dtype).unsqueeze(1)


def rgb_to_lab_torch(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (B, 3, H, W) in [0, 1] -> Lab (L 0..100, a/b about +-127) with OpenCV's float formulas."""
    import torch

    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb.clamp(min=0) + 0.055) / 1.055) ** 2.4)
    m = torch.as_tensor(_RGB2XYZ, dtype=rgb.dtype, device=rgb.device)
    xyz = torch.einsum("ij,bjhw->bihw", m, lin)
    t = 0.008856
    f = torch.where(xyz > t, xyz.clamp(min=t) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    big_l = torch.where(xyz[:, 1] > t, 116.0 * f[:, 1] - 16.0, 903.3 * xyz[:, 1])
    a = 500.0 * (f[:, 0] - f[:, 1])
    b = 200.0 * (f[:, 1] - f[:, 2])
    return torch.stack([big_l, a, b], dim=1)


def lab_to_rgb_torch(lab: torch.Tensor) -> torch.Tensor:
    """Lab (B, 3, H, W) -> sRGB in [0, 1] (inverse of ``rgb_to_lab_torch``, clipped like OpenCV)."""
    import torch

    big_l, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    lin_thresh = 0.008856 * 903.3
    y = torch.where(big_l <= lin_thresh, big_l / 903.3, ((big_l + 16.0) / 116.0) ** 3)
    fy = torch.where(big_l <= lin_thresh, 7.787 * y + 16.0 / 116.0, (big_l + 16.0) / 116.0)
    fx = a / 500.0 + fy
    fz = fy - b / 200.0
    f_thresh = 0.008856 ** (1.0 / 3.0)

    def finv(v: torch.Tensor) -> torch.Tensor:
        return torch.where(v > f_thresh, v**3, (v - 16.0 / 116.0) / 7.787)

    xyz = torch.stack([finv(fx), y, finv(fz)], dim=1)
    m = torch.as_tensor(_XYZ2RGB, dtype=lab.dtype, device=lab.device)
    lin = torch.einsum("ij,bjhw->bihw", m, xyz).clamp(0.0, 1.0)
    return torch.where(
        lin <= 0.0031308, 12.92 * lin, 1.055 * lin.clamp(min=1e-12) ** (1.0 / 2.4) - 0.055
    ).clamp(0, 1)


def rct_torch(
    faces: torch.Tensor,
    refs: torch.Tensor,
    masks: torch.Tensor | None = None,
    ref_masks: torch.Tensor | None = None,
) -> torch.Tensor:
    """Batched ``rct``: each face (B, 3, H, W) RGB in [0, 1] takes the Lab mean/std of its reference.

    ``masks`` (B, H, W) or (B, 1, H, W) restrict the face statistics to pixels > 0.5, ``ref_masks`` the
    reference's (defaulting to ``masks`` when the sizes match). Returns a new (B, 3, H, W) tensor in [0, 1].
    Matches the numpy ``rct`` to about 1e-3 (OpenCV tabulates the sRGB gamma).
    """
    import torch

    _check_batch(faces, "faces")
    _check_batch(refs, "refs")
    if faces.shape[0] != refs.shape[0]:
        raise ValueError(f"faces and refs need the same batch size, got {faces.shape[0]} and {refs.shape[0]}")
    if ref_masks is None and faces.shape[2:] == refs.shape[2:]:
        ref_masks = masks
    face_lab = rgb_to_lab_torch(faces)
    ref_lab = rgb_to_lab_torch(refs)

    def stats(lab: torch.Tensor, m: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        w = _batch_weights(m, lab)
        x = lab.reshape(lab.shape[0], 3, -1)
        n = w.sum(-1, keepdim=True).clamp(min=1.0)
        mean = (x * w).sum(-1, keepdim=True) / n
        var = (((x - mean) ** 2) * w).sum(-1, keepdim=True) / n
        return mean.unsqueeze(-1), var.sqrt().unsqueeze(-1)

    mu_t, sd_t = stats(face_lab, masks)
    mu_s, sd_s = stats(ref_lab, ref_masks)
    out = (face_lab - mu_t) * (sd_s / sd_t.clamp(min=_STD_FLOOR)) + mu_s
    low = torch.as_tensor(LAB_LOW, dtype=out.dtype, device=out.device).view(1, 3, 1, 1)
    high = torch.as_tensor(LAB_HIGH, dtype=out.dtype, device=out.device).view(1, 3, 1, 1)
    return lab_to_rgb_torch(torch.maximum(torch.minimum(out, high), low))


def _batch_mean_cov(x: torch.Tensor, m: torch.Tensor | None, ddof: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample mean (B, 3, 1) and covariance (B, 3, 3), float64, of (B, 3, H, W) images."""
    w = _batch_weights(m, x).double()
    flat = x.reshape(x.shape[0], 3, -1).double()
    n = w.sum(-1, keepdim=True)
    mean = (flat * w).sum(-1, keepdim=True) / n.clamp(min=1.0)
    xc = (flat - mean) * w
    cov = xc @ xc.transpose(1, 2) / (n - ddof).clamp(min=1.0)
    return mean, cov


def _apply_batch_affine(
    faces: torch.Tensor, matrix: torch.Tensor, mu_face: torch.Tensor, mu_ref: torch.Tensor
) -> torch.Tensor:
    flat = faces.reshape(faces.shape[0], 3, -1).double()
    out = matrix @ (flat - mu_face) + mu_ref
    return out.reshape(faces.shape).to(faces.dtype).clamp(0.0, 1.0)


def _sqrtm_sym_torch(c: torch.Tensor) -> torch.Tensor:
    import torch

    vals, vecs = torch.linalg.eigh(c)
    return (vecs * vals.clamp(min=0).sqrt().unsqueeze(-2)) @ vecs.transpose(-1, -2)


def lct_torch(
    faces: torch.Tensor,
    refs: torch.Tensor,
    masks: torch.Tensor | None = None,
    ref_masks: torch.Tensor | None = None,
    eps: float = LCT_EPS,
) -> torch.Tensor:
    """Batched ``lct`` on (B, 3, H, W) RGB tensors in [0, 1]; returns a new tensor clipped to [0, 1]."""
    import torch

    _check_batch(faces, "faces")
    _check_batch(refs, "refs")
    if ref_masks is None and faces.shape[2:] == refs.shape[2:]:
        ref_masks = masks
    mu_t, c_t = _batch_mean_cov(faces, masks, ddof=0)
    mu_s, c_s = _batch_mean_cov(refs, ref_masks, ddof=0)
    eye = torch.eye(3, dtype=c_t.dtype, device=c_t.device)
    q_t = _sqrtm_sym_torch(c_t + eps * eye)
    q_s = _sqrtm_sym_torch(c_s + eps * eye)
    matrix = q_s @ torch.linalg.pinv(q_t)
    return _apply_batch_affine(faces, matrix, mu_t, mu_s)


def mkl_torch(
    faces: torch.Tensor,
    refs: torch.Tensor,
    masks: torch.Tensor | None = None,
    ref_masks: torch.Tensor | None = None,
) -> torch.Tensor:
    """Batched ``mkl`` on (B, 3, H, W) RGB tensors in [0, 1]; returns a new tensor clipped to [0, 1]."""
    import torch

    _check_batch(faces, "faces")
    _check_batch(refs, "refs")
    if ref_masks is None and faces.shape[2:] == refs.shape[2:]:
        ref_masks = masks
    mu_x, a = _batch_mean_cov(faces, masks, ddof=1)
    mu_b, b = _batch_mean_cov(refs, ref_masks, ddof=1)
    eps = torch.finfo(torch.float64).eps
    da2, ua = torch.linalg.eigh(a)
    da = da2.clamp(min=eps).sqrt()
    c = da.unsqueeze(-1) * (ua.transpose(-1, -2) @ b @ ua) * da.unsqueeze(-2)
    dc2, uc = torch.linalg.eigh((c + c.transpose(-1, -2)) / 2)
    middle = (uc * dc2.clamp(min=eps).sqrt().unsqueeze(-2)) @ uc.transpose(-1, -2)
    ua_da = ua / da.unsqueeze(-2)
    t = ua_da @ middle @ ua_da.transpose(-1, -2)
    return _apply_batch_affine(faces, (t + t.transpose(-1, -2)) / 2, mu_x, mu_b)
