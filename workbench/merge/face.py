"""The per-face merge: paste the swapped face back into each destination frame, the way DeepFaceLab's merger does.

The merger never imports a model. It receives a ``predict`` callable (:data:`Predictor`) that maps the
destination face crop to ``(swapped RGB, learned swapped-face mask, learned destination-face mask)``, and
follows DFL's ``MergeMaskedFace`` order of operations (deepfacelab.md §4.2):

1. crop the destination face at the model's resolution and face type (cubic) and predict;
2. build the working mask from ``mask_mode`` and zero values under 1/255;
3. unless a ``raw-*`` mode: at 4x the model resolution, zero-padded by the resolution, erode (or dilate),
   zero a border band, Gaussian-blur, crop back;
4. warp the mask into the frame with the inverse of the crop matrix at scale ``1 + 0.01 * output_face_scale``;
5. colour-transfer the prediction (non-seamless modes), hist-match, warp it back, seamless-clone
   (seamless modes, then colour transfer on the re-cropped result), alpha-blend;
6. post-effects on a re-cropped face: motion blur, blur/sharpen; frame degradations (denoise, bicubic
   degrade) on the background; colour degrade of the whole output.

Everything works on RGB float32 in [0, 1]; only the small face square and its bounding box in the frame are
touched, so a 512 px frame re-renders in a few milliseconds when the prediction is cached
(:func:`crop_for_model` + ``merge_face(..., prediction=...)``).

The settings live in :mod:`.settings`, the post-effects in :mod:`.effects`.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from .. import align, color, masks
from ..errors import ConfigError, MergeError
from ..images import to_float, to_uint8
from .effects import (
    bicubic_degrade,
    blursharpen,
    denoise,
    linear_motion_blur,
    motion_blur_kernel_size,
    reduce_colors,
    seamless_mask,
)
from .settings import LEARNED_MASK_MODES, MergeSettings

MASK_NOISE_FLOOR = 1.0 / 255.0  # mask values below this are zeroed
MASK_SUBRES_FACTOR = 4  # the mask is eroded/blurred at 4x the model resolution
SUPER_RESOLUTION_FACTOR = 4

# Model interface types ------------------------------------------------------------------------------------

Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(swapped RGB (res,res,3), swapped-face mask (res,res), destination-face mask (res,res))``, float in [0, 1]."""

Predictor = Callable[[np.ndarray], Prediction]
"""``predict(face)`` with ``face`` the RGB float32 (res, res, 3) destination crop. An object may also offer
``predict_batch(faces: (N,res,res,3)) -> (swapped (N,res,res,3), masks (N,res,res), dst_masks (N,res,res))``,
which :func:`merge_project` uses to run the model on several faces at once."""

Segmenter = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``segment(face RGB (S,S,3), landmarks (68,2) in face pixels) -> mask (h,w)`` in [0, 1] (any size; resized to
the face): an XSeg-like model (:class:`workbench.segment.predict.XSegModel` reads the landmarks' hull)."""

Enhancer = Callable[[np.ndarray], np.ndarray]
"""``enhance(face RGB (res,res,3)) -> (4res,4res,3)``: a x4 face super-resolution model (DFL's FaceEnhancer)."""


# ----------------------------------------------------------------------------------------------------------
# Geometry helpers


def _as_frame(frame: np.ndarray) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"frame must be RGB (H, W, 3), got shape {arr.shape}")
    return to_float(arr)


def _as_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        raise ValueError(f"landmarks must be finite (68, 2) frame pixels, got shape {lm.shape}")
    return lm


def _warp_to_face(image: np.ndarray, mat: np.ndarray, size: int) -> np.ndarray:
    """Frame -> face crop, cubic, black outside the frame (DFL's ``cv2.warpAffine(img, mat, ..., INTER_CUBIC)``)."""
    out = cv2.warpAffine(image, mat, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)
    return np.clip(out, 0.0, 1.0, out=out)


def scale_about_centre(mat: np.ndarray, size: int, scale: float) -> np.ndarray:
    """``transform_matrix(..., scale=scale)`` from the scale-1 matrix: zoom the face crop about its centre.

    DFL shrinks the frame square by 1/scale about its centre; in face space that is a zoom by ``scale``
    about (size/2, size/2), so no second landmark fit is needed.
    """
    if scale == 1.0:
        return np.array(mat, dtype=np.float64)
    c = size / 2.0
    zoom = np.array([[scale, 0.0, (1.0 - scale) * c], [0.0, scale, (1.0 - scale) * c], [0.0, 0.0, 1.0]])
    return (zoom @ np.vstack([np.asarray(mat, np.float64), [0.0, 0.0, 1.0]]))[:2]


def _roi_matrix(mat: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """Shift a frame -> face matrix so that frame pixel (x0, y0) becomes (0, 0) of the ROI."""
    m = np.array(mat, dtype=np.float64)
    m[:, 2] += m[:, :2] @ np.array([roi[0], roi[1]], np.float64)
    return m


def _warp_to_roi(face: np.ndarray, mat: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """Face -> frame ROI (inverse warp, cubic, 0 outside the face square)."""
    x0, y0, x1, y1 = roi
    out = cv2.warpAffine(face, _roi_matrix(mat, roi), (x1 - x0, y1 - y0),
                         flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
    if face.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out


def _face_roi(mats_sizes: Sequence[tuple[np.ndarray, int]], hw: tuple[int, int], pad: int = 3
              ) -> tuple[int, int, int, int] | None:
    """Frame bounding box (x0, y0, x1, y1) of the face squares, padded for the cubic kernel; None if outside."""
    pts = np.concatenate([align.crop_corners(m, s) for m, s in mats_sizes])
    x0 = max(int(math.floor(pts[:, 0].min())) - pad, 0)
    y0 = max(int(math.floor(pts[:, 1].min())) - pad, 0)
    x1 = min(int(math.ceil(pts[:, 0].max())) + pad + 1, hw[1])
    y1 = min(int(math.ceil(pts[:, 1].max())) + pad + 1, hw[0])
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def crop_for_model(frame: np.ndarray, landmarks: np.ndarray, settings: MergeSettings
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Cut the destination face the model sees: ``settings.resolution`` px, ``settings.face_type``, cubic.

    The crop depends only on the frame, the landmarks, ``face_type`` and ``resolution``; a UI can run the model
    once on it and pass the result to ``merge_face(..., prediction=...)`` on every settings change.

    Returns:
        ``(face, mat)``: RGB float32 (res, res, 3) in [0, 1] and the (2, 3) frame -> face matrix.
    """
    img = _as_frame(frame)
    mat = align.transform_matrix(_as_landmarks(landmarks), settings.resolution, settings.face_type)
    return _warp_to_face(img, mat, settings.resolution), mat


def _check_prediction(prediction: Prediction, res: int) -> Prediction:
    try:
        face, prd_mask, dst_mask = prediction
    except (TypeError, ValueError) as exc:
        raise MergeError("the predictor must return (swapped face, swapped mask, destination mask)") from exc
    face = np.asarray(face, dtype=np.float32)
    prd_mask = np.asarray(prd_mask, dtype=np.float32)
    dst_mask = np.asarray(dst_mask, dtype=np.float32)
    if prd_mask.ndim == 3:
        prd_mask = prd_mask[..., 0]
    if dst_mask.ndim == 3:
        dst_mask = dst_mask[..., 0]
    if face.shape != (res, res, 3) or prd_mask.shape != (res, res) or dst_mask.shape != (res, res):
        raise MergeError(
            f"the predictor returned shapes {face.shape}, {prd_mask.shape}, {dst_mask.shape}; "
            f"expected ({res}, {res}, 3), ({res}, {res}), ({res}, {res})",
            hint="set MergeSettings.resolution (and face_type) to the model's",
        )
    return np.clip(face, 0, 1), np.clip(prd_mask, 0, 1), np.clip(dst_mask, 0, 1)


# ----------------------------------------------------------------------------------------------------------
# Colour


def _accepts(func: Callable, name: str) -> bool:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def apply_color_transfer(face: np.ndarray, reference: np.ndarray, name: str, area_mask: np.ndarray,
                         rng: np.random.Generator | None = None) -> np.ndarray:
    """Colour-transfer ``face`` towards ``reference`` as DFL's merger does for transfer ``name``.

    ``rct`` and the ``-m`` variants take their statistics inside the binary working mask (``color`` uses
    only inside pixels, where DFL multiplies the images by the mask and counts the zeros); the others use
    the whole crops. ``sot`` (and ``mix``'s chroma) use DFL's merger values: 10 steps of 30 directions.
    """
    if name == "none":
        return face
    masked = name.endswith("-m")
    key = name[:-2] if masked else name
    func = color.TRANSFERS[key]
    kwargs: dict[str, Any] = {}
    if key in ("sot", "mix"):
        kwargs.update(steps=10, batch_size=30)
    if rng is not None and _accepts(func, "rng"):
        kwargs["rng"] = rng
    mask = area_mask if (masked or key == "rct") else None
    out = func(face, reference, mask, **kwargs)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def _hist_match(face: np.ndarray, reference: np.ndarray, threshold: int,
                area_mask: np.ndarray | None = None) -> np.ndarray:
    """Per-channel CDF matching with DFL's threshold; with a mask the CDFs use only pixels inside it
    (DFL paints the outside white in both images: the same map inside at threshold 255)."""
    out = color.hist_match(face, reference, area_mask, threshold=threshold)
    return np.clip(np.asarray(out, np.float32), 0, 1)


# ----------------------------------------------------------------------------------------------------------
# The per-face pipeline


def _working_mask(settings: MergeSettings, size: int, prd: np.ndarray, prd_mask: np.ndarray,
                  dst_mask: np.ndarray, dst_face: np.ndarray, face_landmarks: np.ndarray,
                  segment: Segmenter | None) -> np.ndarray:
    """Step 2: the working mask at ``size`` (the output face size) from ``mask_mode``, noise-floored."""
    mode = settings.mask_mode

    def seg(img: np.ndarray) -> np.ndarray:
        assert segment is not None
        # the swapped face is aligned like the destination face: one set of landmarks serves both
        m = np.asarray(segment(img, np.asarray(face_landmarks, np.float32) * (img.shape[0] / size)), dtype=np.float32)
        if m.ndim == 3:
            m = m[..., 0]
        if m.shape != (size, size):
            m = cv2.resize(m, (size, size), interpolation=cv2.INTER_CUBIC)
        return np.clip(m, 0, 1)

    if mode == "full":
        wrk = np.ones((size, size), np.float32)
    elif mode == "dst":
        wrk = np.asarray(masks.hull_mask((size, size), face_landmarks), dtype=np.float32)
    elif mode == "learned-prd":
        wrk = prd_mask.copy()
    elif mode == "learned-dst":
        wrk = dst_mask.copy()
    elif mode == "learned-prd*learned-dst":
        wrk = prd_mask * dst_mask
    elif mode == "learned-prd+learned-dst":
        wrk = np.clip(prd_mask + dst_mask, 0, 1)
    else:
        if segment is None:
            raise ConfigError(f"mask_mode {mode!r} needs a segmentation model",
                              hint="pass segment=... or choose one of: " + ", ".join(LEARNED_MASK_MODES))
        if mode == "xseg-prd":
            wrk = seg(prd)
        elif mode == "xseg-dst":
            wrk = seg(dst_face)
        elif mode == "xseg-prd*xseg-dst":
            wrk = seg(prd) * seg(dst_face)
        else:
            wrk = prd_mask * dst_mask * seg(prd) * seg(dst_face)
    wrk = np.clip(wrk.astype(np.float32, copy=False), 0, 1)
    wrk[wrk < MASK_NOISE_FLOOR] = 0.0
    return wrk


def refine_mask(mask: np.ndarray, erode: int, blur: int, pad: int) -> np.ndarray:
    """Step 3 on a sub-resolution mask: zero-pad by ``pad``, erode (>0) / dilate (<0) with an elliptical kernel,
    zero the border band ``pad + blur//2``, Gaussian-blur (size made odd), crop back, clip to [0, 1]."""
    m = np.pad(mask.astype(np.float32, copy=False), pad)
    if erode > 0:
        m = cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (erode, erode)), iterations=1)
    elif erode < 0:
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (-erode, -erode)), iterations=1)
    clip = pad + blur // 2
    m[:clip, :] = 0
    m[-clip:, :] = 0
    m[:, :clip] = 0
    m[:, -clip:] = 0
    if blur > 0:
        k = blur + (1 - blur % 2)
        m = cv2.GaussianBlur(m, (k, k), 0)
    m = m[pad:-pad, pad:-pad]
    return np.clip(m, 0, 1)


def merge_face(
    frame: np.ndarray,
    landmarks: np.ndarray,
    predict: Predictor | None,
    settings: MergeSettings,
    *,
    motion: tuple[float, float] | None = None,
    rng: np.random.Generator | None = None,
    prediction: Prediction | None = None,
    segment: Segmenter | None = None,
    super_resolution: Enhancer | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge one predicted face into a frame (DFL's ``MergeMaskedFace``).

    Args:
        frame: RGB (H, W, 3) destination frame, float32 in [0, 1] (uint8 is converted). Not modified.
        landmarks: (68, 2) landmarks of the face in frame pixels.
        predict: the model (:data:`Predictor`); may be None when ``prediction`` is given.
        settings: merge settings; ``resolution`` and ``face_type`` must be the model's.
        motion: ``(power_px, angle_deg)`` of the face's motion (:func:`motion_vectors`), for motion blur.
        rng: random generator for the randomised colour transfers (idt, sot); None = their default.
        prediction: ``predict(crop_for_model(frame, landmarks, settings)[0])`` computed earlier (cache).
        segment: segmentation model for the ``xseg-*`` mask modes.
        super_resolution: x4 face enhancer, needed when ``super_resolution_power`` > 0.

    Returns:
        ``(out, mask)``: the merged RGB float32 frame (for ``raw-predict``: the aligned prediction) and the
        face mask, HW float32 in [0, 1] (frame size; for ``raw-predict`` the working mask in face space).

    Raises:
        ConfigError: a segmentation mask mode without ``segment``, super-resolution without an enhancer.
        MergeError: the predictor's output has the wrong shape.
    """
    img = _as_frame(frame)
    lm = _as_landmarks(landmarks)
    s = settings
    hw = img.shape[:2]
    res = s.resolution
    use_sr = s.super_resolution_power > 0
    if use_sr and super_resolution is None:
        raise ConfigError("super_resolution_power > 0 needs a super-resolution model",
                          hint="pass super_resolution=... or set super_resolution_power to 0")
    out_size = res * SUPER_RESOLUTION_FACTOR if use_sr else res
    mask_size = res * MASK_SUBRES_FACTOR
    scale = 1.0 + 0.01 * s.output_face_scale

    # 1. crop + predict
    face_mat = align.transform_matrix(lm, out_size, s.face_type)
    out_mat = scale_about_centre(face_mat, out_size, scale)
    mask_out_mat = out_mat * (mask_size / out_size)  # the matrix is linear in the output size
    dst_face = _warp_to_face(img, face_mat, out_size)
    if prediction is None:
        if predict is None:
            raise MergeError("no predictor and no precomputed prediction were given")
        # without super-resolution the output crop IS the model crop (same matrix, same warp)
        prediction = predict(crop_for_model(img, lm, s)[0] if use_sr else dst_face)
    prd, prd_mask, prd_dst_mask = _check_prediction(prediction, res)
    if use_sr:
        assert super_resolution is not None
        enhanced = np.asarray(super_resolution(prd), dtype=np.float32)
        p = s.super_resolution_power / 100.0
        up = cv2.resize(prd, (out_size, out_size))
        prd = np.clip(up * (1.0 - p) + cv2.resize(enhanced, (out_size, out_size)) * p, 0, 1)
        prd_mask = np.clip(cv2.resize(prd_mask, (out_size, out_size), interpolation=cv2.INTER_CUBIC), 0, 1)
        prd_dst_mask = np.clip(cv2.resize(prd_dst_mask, (out_size, out_size), interpolation=cv2.INTER_CUBIC), 0, 1)

    # 2. working mask
    face_lm = align.transform_points(lm, face_mat)
    wrk = _working_mask(s, out_size, prd, prd_mask, prd_dst_mask, dst_face, face_lm, segment)
    if wrk.shape[0] != mask_size:
        wrk = cv2.resize(wrk, (mask_size, mask_size), interpolation=cv2.INTER_CUBIC)

    # 3. erode / blur at 4x resolution
    if not s.is_raw:
        wrk = refine_mask(wrk, s.erode, s.blur, res)

    # 4. mask into the frame (only the face square's bounding box is computed)
    frame_mask = np.zeros(hw, np.float32)
    roi = _face_roi([(out_mat, out_size), (face_mat, out_size)], hw)
    if roi is not None:
        x0, y0, x1, y1 = roi
        m_roi = np.clip(_warp_to_roi(wrk, mask_out_mat, roi), 0, 1)
        m_roi[m_roi < MASK_NOISE_FLOOR] = 0.0
        frame_mask[y0:y1, x0:x1] = m_roi
    if wrk.shape[0] != out_size:
        wrk = cv2.resize(wrk, (out_size, out_size), interpolation=cv2.INTER_CUBIC)

    # 5. modes. `img` is ours to modify when _as_frame converted the input (uint8 frames): no full copy.
    owned = not np.may_share_memory(img, frame)
    if s.mode == "original":
        return (img if owned else img.copy()), frame_mask
    if s.mode == "raw-predict":
        return prd.copy(), wrk
    if roi is None:
        return (img if owned else img.copy()), frame_mask
    x0, y0, x1, y1 = roi
    orig_roi = img[y0:y1, x0:x1].copy()
    if s.mode == "raw-rgb":
        face_roi = _warp_to_roi(prd, out_mat, roi)
        cover = _warp_to_roi(np.ones((out_size, out_size), np.float32), out_mat, roi)[..., None]
        out = img if owned else img.copy()
        out[y0:y1, x0:x1] = np.clip(orig_roi * (1 - cover) + face_roi * cover, 0, 1)
        return out, frame_mask

    # DFL skips faces whose mask (>= 0.1) spans fewer than 4 px
    m_roi = frame_mask[y0:y1, x0:x1]
    big = m_roi >= 0.1
    rows, cols = np.flatnonzero(big.any(axis=1)), np.flatnonzero(big.any(axis=0))
    if rows.size == 0 or min(rows[-1] - rows[0], cols[-1] - cols[0]) < 4:
        return (img if owned else img.copy()), frame_mask

    area = (wrk > 0).astype(np.float32)
    seamless = "seamless" in s.mode
    if not seamless:
        prd = apply_color_transfer(prd, dst_face, s.color_transfer, area, rng)
    if s.mode == "hist-match":
        prd = _hist_match(prd, dst_face, s.hist_match_threshold, area if s.masked_hist_match else None)

    face_roi = np.clip(_warp_to_roi(prd, out_mat, roi), 0, 1)
    if seamless:
        face_roi = _seamless_clone(img, face_roi, m_roi, roi)

    k_motion = 0
    if s.motion_blur and motion is not None:
        k_motion = motion_blur_kernel_size(float(motion[0]), s.motion_blur, use_sr)
    post = bool((seamless and s.color_transfer != "none") or s.mode == "seamless-hist-match" or k_motion
                or s.blursharpen_amount or s.image_denoise_power or s.bicubic_degrade_power)
    background = img
    if post and s.image_denoise_power:  # frame degradations: DFL applies them to the background
        background = denoise(background, s.image_denoise_power)
    if post and s.bicubic_degrade_power:
        background = bicubic_degrade(background, s.bicubic_degrade_power)

    out = img if owned else img.copy()
    m3 = m_roi[..., None]
    out[y0:y1, x0:x1] = orig_roi * (1 - m3) + face_roi * m3

    # 6. post-effects on the re-cropped face, pasted again with the same mask
    if post:
        out_face = _warp_to_face(out, face_mat, out_size)
        if seamless and s.color_transfer != "none":
            out_face = apply_color_transfer(out_face, dst_face, s.color_transfer, area, rng)
        if s.mode == "seamless-hist-match":
            out_face = _hist_match(out_face, dst_face, s.hist_match_threshold)
        if k_motion:
            out_face = linear_motion_blur(out_face, k_motion, float(motion[1]))  # type: ignore[index]
        if s.blursharpen_amount:
            out_face = blursharpen(out_face, s.sharpen_mode, s.blursharpen_amount)
        new_roi = _warp_to_roi(np.ascontiguousarray(out_face, dtype=np.float32), face_mat, roi)
        bg_roi = orig_roi
        if background is not img:
            out, bg_roi = background, background[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = np.clip(bg_roi * (1 - m3) + new_roi * m3, 0, 1)

    if s.color_degrade_power:
        reduced = reduce_colors(out)
        a = s.color_degrade_power / 100.0
        out = reduced if s.color_degrade_power == 100 else out * (1.0 - a) + reduced * a
    return out.astype(np.float32, copy=False), frame_mask


def _seamless_clone(img: np.ndarray, face_roi: np.ndarray, mask_roi: np.ndarray,
                    roi: tuple[int, int, int, int]) -> np.ndarray:
    """Poisson-clone the warped face into the frame (NORMAL_CLONE), centred on the mask's bounding rectangle."""
    binary = seamless_mask(mask_roi)
    if binary is None:
        return face_roi
    x0, y0, x1, y1 = roi
    h, w = img.shape[:2]
    mask_u8 = np.zeros((h, w), np.uint8)
    mask_u8[y0:y1, x0:x1] = binary.astype(np.uint8) * 255
    # OpenCV's clone reads one pixel around the mask; keep it off the frame edge (DFL sometimes crashes there).
    mask_u8[0, :] = mask_u8[-1, :] = 0
    mask_u8[:, 0] = mask_u8[:, -1] = 0
    if not mask_u8.any():
        return face_roi
    src = np.zeros((h, w, 3), np.uint8)
    src[y0:y1, x0:x1] = to_uint8(face_roi)
    bx, by, bw, bh = cv2.boundingRect(mask_u8)
    center = (int(bx + bw / 2), int(by + bh / 2))  # the same centre cv2 would use: no jitter
    try:
        cloned = cv2.seamlessClone(src, to_uint8(img), mask_u8, center, cv2.NORMAL_CLONE)
    except cv2.error as exc:  # rare numeric/geometry failures: keep the plain overlay, as DFL does
        warnings.warn(f"seamless clone failed, using overlay for this face: {exc}", RuntimeWarning, stacklevel=3)
        return face_roi
    return cloned[y0:y1, x0:x1].astype(np.float32) / 255.0


def merge_frame(
    frame: np.ndarray,
    faces_landmarks: Sequence[np.ndarray],
    predict: Predictor | None,
    settings: MergeSettings,
    *,
    motions: Sequence[tuple[float, float] | None] | None = None,
    predictions: Sequence[Prediction | None] | None = None,
    rng: np.random.Generator | None = None,
    segment: Segmenter | None = None,
    super_resolution: Enhancer | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge every face of a frame, composited in sequence as DFL does.

    Each face is merged against the original frame; the results are layered with their masks
    (``out = out·(1−m) + face_out·m``, mask = clip(sum)). A frame without faces comes back as an unchanged
    copy with an empty mask. In ``raw-predict`` mode the first face's aligned prediction is returned.

    Returns:
        ``(out, mask)`` as :func:`merge_face`.
    """
    img = _as_frame(frame)
    n = len(faces_landmarks)
    if n == 0:
        return img.copy(), np.zeros(img.shape[:2], np.float32)
    if motions is not None and len(motions) != n:
        raise ValueError(f"got {len(motions)} motions for {n} faces")
    if predictions is not None and len(predictions) != n:
        raise ValueError(f"got {len(predictions)} predictions for {n} faces")
    final: np.ndarray | None = None
    final_mask: np.ndarray | None = None
    for i, lm in enumerate(faces_landmarks):
        out, m = merge_face(img, lm, predict, settings, motion=motions[i] if motions else None, rng=rng,
                            prediction=predictions[i] if predictions else None, segment=segment,
                            super_resolution=super_resolution)
        if settings.mode == "raw-predict":
            return out, m
        if final is None or final_mask is None:
            final, final_mask = out, m
        else:
            m3 = m[..., None]
            final = final * (1 - m3) + out * m3
            final_mask = np.clip(final_mask + m, 0, 1)
    assert final is not None and final_mask is not None
    return final.astype(np.float32, copy=False), final_mask
