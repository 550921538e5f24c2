"""Merging: paste the swapped face back into each destination frame, the way DeepFaceLab's merger does.

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

Batch merging of a project (:func:`merge_project`), per-frame-range overrides (:class:`MergeConfig`), temporal
landmark smoothing (:func:`smooth_landmark_tracks`) and a flicker measure (:func:`flicker_metric`) live here
too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import shutil
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from . import align, color, masks
from .errors import ConfigError, MergeError
from .fileutil import append_jsonl, atomic_path, atomic_write_json, read_jsonl
from .images import encode_image, read_image, to_float, to_uint8, write_image

# ----------------------------------------------------------------------------------------------------------
# Names and constants (constants.md §9)

MODES: tuple[str, ...] = (
    "original", "overlay", "hist-match", "seamless", "seamless-hist-match", "raw-rgb", "raw-predict",
)
"""Merge modes, in DFL's order (codes 0..6)."""

LEARNED_MASK_MODES: tuple[str, ...] = (
    "full", "dst", "learned-prd", "learned-dst", "learned-prd*learned-dst", "learned-prd+learned-dst",
)
"""Mask modes that need only the model (codes 0..5)."""

SEGMENTATION_MASK_MODES: tuple[str, ...] = (
    "xseg-prd", "xseg-dst", "xseg-prd*xseg-dst", "learned-prd*learned-dst*xseg-prd*xseg-dst",
)
"""Mask modes that also need a segmentation callable (DFL's XSeg modes 6..9)."""

MASK_MODES: tuple[str, ...] = LEARNED_MASK_MODES + SEGMENTATION_MASK_MODES

SHARPEN_MODES: tuple[str, ...] = ("none", "box", "gaussian")

MASK_NOISE_FLOOR = 1.0 / 255.0  # mask values below this are zeroed
MASK_SUBRES_FACTOR = 4  # the mask is eroded/blurred at 4x the model resolution
SUPER_RESOLUTION_FACTOR = 4
SHARPEN_KERNEL = 3
DENOISE_KERNEL, DENOISE_PASS_STEP = 5, 10
BLUR_MEDIAN_KERNEL, BLUR_PASS_STEP = 5, 10
MOTION_BLUR_MAX_KERNEL = 50
MOTION_REFERENCE_SIZE = 256  # DFL measures face motion as FULL-crop centres in a 256 px crop
COLOR_DEGRADE_COLORS = 256
MERGE_SCHEMA_VERSION = 1
STATE_FILE = ".merge_state.jsonl"  # per-frame settings fingerprints, for resume

# Model interface types ------------------------------------------------------------------------------------

Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(swapped RGB (res,res,3), swapped-face mask (res,res), destination-face mask (res,res))``, float in [0, 1]."""

Predictor = Callable[[np.ndarray], Prediction]
"""``predict(face)`` with ``face`` the RGB float32 (res, res, 3) destination crop. An object may also offer
``predict_batch(faces: (N,res,res,3)) -> (swapped (N,res,res,3), masks (N,res,res), dst_masks (N,res,res))``,
which :func:`merge_project` uses to run the model on several faces at once."""

Segmenter = Callable[[np.ndarray], np.ndarray]
"""``segment(face RGB (S,S,3)) -> mask (h,w)`` in [0, 1] (any size; resized to the face): an XSeg-like model."""

Enhancer = Callable[[np.ndarray], np.ndarray]
"""``enhance(face RGB (res,res,3)) -> (4res,4res,3)``: a x4 face super-resolution model (DFL's FaceEnhancer)."""


# ----------------------------------------------------------------------------------------------------------
# Settings


def color_transfer_names() -> tuple[str, ...]:
    """Valid ``color_transfer`` values: "none", every key of ``color.TRANSFERS``, and ``<key>-m``.

    The ``-m`` variants run the transfer on the images multiplied by the binary working mask (DFL's
    ``mkl-m``, ``idt-m``, ``sot-m``, ``mix-m``); ``rct`` always uses the mask, as in DFL.
    """
    names = ["none"]
    for key in color.TRANSFERS:
        if key not in names:
            names.append(key)
    for key in color.TRANSFERS:
        if key not in ("none", "rct", "hist_match"):
            names.append(f"{key}-m")
    return tuple(names)


INT_RANGES: dict[str, tuple[int, int]] = {
    "erode": (-400, 400),
    "blur": (0, 400),
    "motion_blur": (0, 100),
    "output_face_scale": (-50, 50),
    "hist_match_threshold": (0, 255),
    "blursharpen_amount": (-100, 100),
    "super_resolution_power": (0, 100),
    "image_denoise_power": (0, 500),
    "bicubic_degrade_power": (0, 100),
    "color_degrade_power": (0, 100),
    "resolution": (16, 1024),
}

FIELD_HELP: dict[str, str] = {
    "mode": "How the face is put back: overlay (alpha blend), hist-match, seamless (Poisson clone), "
    "seamless-hist-match, raw-rgb (whole predicted square), raw-predict (the aligned prediction) or original.",
    "mask_mode": "Which mask cuts the face: full square, dst landmark hull, learned-prd (model's mask of the swap), "
    "learned-dst (model's mask of the destination), their product (default) or sum; xseg-* need a segmenter.",
    "erode": "Shrink (>0) or grow (<0) the mask, in pixels of the 4x-resolution mask (-400..400).",
    "blur": "Feather the mask edge with a Gaussian of this size, in 4x-resolution pixels (0..400).",
    "motion_blur": "Blur the face along its motion between the previous and next frame, % of the motion (0..100).",
    "output_face_scale": "Resize the pasted face: the face square is scaled by 1/(1 + s/100), so positive values "
    "paste a smaller face, negative a larger one (-50..50).",
    "color_transfer": "Match the swapped face's colours to the destination face: rct (default), lct, mkl, idt, sot, "
    "mix, hist_match, none; '-m' variants use masked images.",
    "masked_hist_match": "Hist-match only inside the mask (pixels outside are set to white in both faces).",
    "hist_match_threshold": "Limit the histogram-matching correction: 255 = full match, lower = weaker (0..255).",
    "sharpen_mode": "Filter for a positive blur/sharpen amount: none, box or gaussian (3 px kernel).",
    "blursharpen_amount": "Sharpen the face (>0, with sharpen_mode) or blur it by median blending (<0) (-100..100).",
    "super_resolution_power": "Blend in a x4 face enhancer's output by this percent (0..100; needs an enhancer).",
    "image_denoise_power": "Median-denoise the destination frame (background) to match a smooth face (0..500).",
    "bicubic_degrade_power": "Soften the frame by bicubic down- and up-scaling, % strength (0..100).",
    "color_degrade_power": "Blend in a 256-colour adaptive-palette version of the output, percent (0..100).",
    "face_type": "Face type the model was trained on (crop extent): half, mid_full, full, whole_face, head.",
    "resolution": "Model input resolution in pixels (the side of the face crop the model sees).",
}


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"merge setting {name} must be an integer, got {value!r}", hint=FIELD_HELP.get(name))
    if isinstance(value, (float, np.floating)) and not float(value).is_integer():
        raise ConfigError(f"merge setting {name} must be a whole number, got {value!r}", hint=FIELD_HELP.get(name))
    value = int(value)
    lo, hi = INT_RANGES[name]
    if not lo <= value <= hi:
        raise ConfigError(f"merge setting {name}={value} is out of range {lo}..{hi}", hint=FIELD_HELP.get(name))
    return value


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"merge setting {name}={value!r} is not one of: {', '.join(choices)}",
                          hint=FIELD_HELP.get(name))
    return value


@dataclass(frozen=True)
class MergeSettings:
    """Every knob of DFL's merger, with ``MergerConfigMasked``'s constructor defaults (constants.md §9).

    Integer settings keep DFL's units and ranges; see :data:`FIELD_HELP` for one-line explanations.
    ``face_type`` and ``resolution`` describe the model (they are set from the predictor when it knows them).

    Raises:
        ConfigError: a value is out of range or not a valid name (the message names the field and its range).
    """

    mode: str = "overlay"
    mask_mode: str = "learned-prd*learned-dst"
    erode: int = 0
    blur: int = 0
    motion_blur: int = 0
    output_face_scale: int = 0
    color_transfer: str = "rct"
    masked_hist_match: bool = True
    hist_match_threshold: int = 238
    sharpen_mode: str = "none"
    blursharpen_amount: int = 0
    super_resolution_power: int = 0
    image_denoise_power: int = 0
    bicubic_degrade_power: int = 0
    color_degrade_power: int = 0
    face_type: str = "full"
    resolution: int = 128

    def __post_init__(self) -> None:
        _check_choice("mode", self.mode, MODES)
        if isinstance(self.mask_mode, str):
            object.__setattr__(self, "mask_mode", self.mask_mode.lower())
        _check_choice("mask_mode", self.mask_mode, MASK_MODES)
        _check_choice("color_transfer", self.color_transfer, color_transfer_names())
        _check_choice("sharpen_mode", self.sharpen_mode, SHARPEN_MODES)
        if not isinstance(self.masked_hist_match, (bool, np.bool_)):
            raise ConfigError(f"merge setting masked_hist_match must be true or false, got {self.masked_hist_match!r}")
        object.__setattr__(self, "masked_hist_match", bool(self.masked_hist_match))
        for name in INT_RANGES:
            object.__setattr__(self, name, _check_int(name, getattr(self, name)))
        try:
            object.__setattr__(self, "face_type", align.normalize_face_type(self.face_type))
        except ConfigError as exc:
            raise ConfigError(f"merge setting face_type: {exc.message}", hint=FIELD_HELP["face_type"]) from exc

    @property
    def is_raw(self) -> bool:
        return self.mode.startswith("raw")

    @property
    def needs_segmenter(self) -> bool:
        return "xseg" in self.mask_mode

    def replace(self, **changes: Any) -> MergeSettings:
        """A copy with some fields changed (validated)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown merge setting(s): {', '.join(sorted(unknown))}",
                              hint=f"valid: {', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MergeSettings:
        """Build from a mapping; missing keys take the defaults, unknown keys raise ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"merge settings must be a JSON object, got {type(data).__name__}")
        return cls().replace(**dict(data))

    def fingerprint(self) -> str:
        """Short stable hash of the settings (used to re-merge frames whose settings changed)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------
# Small image operations (pure; DFL's core/imagelib equivalents)


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
        m = np.asarray(segment(img), dtype=np.float32)
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


def motion_vectors(landmarks_per_frame: Sequence[Sequence[np.ndarray]]) -> list[tuple[float, float] | None]:
    """Per-frame face motion ``(power_px, angle_deg)`` as DFL's merger computes it (deepfacelab.md §4.1).

    The motion of frame i is the displacement of the FULL-crop centre (256 px space, mapped to the frame)
    from frame i−1 to frame i+1; 0 at the ends or next to frames without a face. When any frame has several
    faces DFL turns motion off: every entry is then None.
    """
    if any(len(f) > 1 for f in landmarks_per_frame):
        return [None] * len(landmarks_per_frame)
    centre = np.array([(MOTION_REFERENCE_SIZE / 2, MOTION_REFERENCE_SIZE / 2)], np.float64)
    centres: list[np.ndarray | None] = []
    for faces in landmarks_per_frame:
        if len(faces) == 0:
            centres.append(None)
            continue
        mat = align.transform_matrix(_as_landmarks(faces[0]), MOTION_REFERENCE_SIZE, "full")
        centres.append(align.transform_points(centre, mat, invert=True)[0])
    out: list[tuple[float, float] | None] = []
    for i, c in enumerate(centres):
        if c is None:
            out.append(None)
            continue
        prev = centres[i - 1] if i > 0 else None
        nxt = centres[i + 1] if i + 1 < len(centres) else None
        if prev is None or nxt is None:
            out.append((0.0, 0.0))
            continue
        v = nxt - prev
        power = float(np.linalg.norm(v))
        v = v / power if power else np.zeros(2)
        out.append((power, -math.degrees(math.atan2(v[1], v[0]))))
    return out


# ----------------------------------------------------------------------------------------------------------
# Per-frame-range overrides (the interactive merger's carry-over)


@dataclass(frozen=True)
class RangeOverride:
    """Setting changes for frames ``start <= index < stop`` (``stop`` None = to the end)."""

    start: int
    stop: int | None
    changes: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if isinstance(self.start, bool) or not isinstance(self.start, (int, np.integer)) or self.start < 0:
            raise ConfigError(f"override start must be a frame index >= 0, got {self.start!r}")
        if self.stop is not None and (isinstance(self.stop, bool) or not isinstance(self.stop, (int, np.integer))
                                      or self.stop <= self.start):
            raise ConfigError(f"override stop must be an index > start ({self.start}) or null, got {self.stop!r}")
        if not isinstance(self.changes, Mapping):
            raise ConfigError("override changes must be a mapping of setting name -> value")
        object.__setattr__(self, "start", int(self.start))
        object.__setattr__(self, "stop", None if self.stop is None else int(self.stop))
        object.__setattr__(self, "changes", dict(self.changes))

    def covers(self, frame_index: int) -> bool:
        return self.start <= frame_index and (self.stop is None or frame_index < self.stop)

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "stop": self.stop, "changes": dict(self.changes)}


@dataclass(frozen=True)
class MergeConfig:
    """Default settings plus per-frame-range overrides; later overrides win where ranges overlap.

    ``temporal_smoothing`` (0..1) is the strength of landmark smoothing over time (0 = off).
    Saved as ``PROJECT/merge.json``.
    """

    default: MergeSettings = field(default_factory=MergeSettings)
    overrides: tuple[RangeOverride, ...] = ()
    temporal_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.default, MergeSettings):
            raise ConfigError("MergeConfig.default must be a MergeSettings")
        overrides = tuple(self.overrides)
        for ov in overrides:
            if not isinstance(ov, RangeOverride):
                raise ConfigError("MergeConfig.overrides must hold RangeOverride items")
            try:
                self.default.replace(**ov.changes)
            except ConfigError as exc:
                raise ConfigError(f"override for frames {ov.start}..{ov.stop}: {exc.message}", hint=exc.hint) from exc
        object.__setattr__(self, "overrides", overrides)
        ts = self.temporal_smoothing
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0.0 <= float(ts) <= 1.0:
            raise ConfigError(f"temporal_smoothing={ts!r} is out of range 0..1",
                              hint="0 = off; 0.5 is a good start for steady shots")
        object.__setattr__(self, "temporal_smoothing", float(ts))

    def settings_for(self, frame_index: int) -> MergeSettings:
        """The settings that apply to one frame."""
        changes: dict[str, Any] = {}
        for ov in self.overrides:
            if ov.covers(frame_index):
                changes.update(ov.changes)
        return self.default.replace(**changes) if changes else self.default

    def with_override(self, start: int, stop: int | None, **changes: Any) -> MergeConfig:
        """A new config with one more override (applied on top of the earlier ones)."""
        return dataclasses.replace(self, overrides=(*self.overrides, RangeOverride(start, stop, changes)))

    def with_settings(self, start: int, stop: int | None, settings: MergeSettings) -> MergeConfig:
        """Carry ``settings`` over frames ``start..stop`` (stored as its difference from the default)."""
        diff = {k: v for k, v in settings.to_dict().items() if getattr(self.default, k) != v}
        return self.with_override(start, stop, **diff)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": MERGE_SCHEMA_VERSION,
            "default": self.default.to_dict(),
            "overrides": [ov.to_dict() for ov in self.overrides],
            "temporal_smoothing": self.temporal_smoothing,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MergeConfig:
        if not isinstance(data, Mapping):
            raise ConfigError("merge config must be a JSON object")
        version = data.get("schema_version", MERGE_SCHEMA_VERSION)
        if version != MERGE_SCHEMA_VERSION:
            raise ConfigError(f"unsupported merge config schema_version {version!r} (expected {MERGE_SCHEMA_VERSION})")
        unknown = set(data) - {"schema_version", "default", "overrides", "temporal_smoothing"}
        if unknown:
            raise ConfigError(f"unknown merge config key(s): {', '.join(sorted(unknown))}")
        try:
            overrides = tuple(RangeOverride(int(o["start"]), None if o.get("stop") is None else int(o["stop"]),
                                            dict(o.get("changes", {}))) for o in data.get("overrides", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"broken override entry in merge config ({exc})") from exc
        return cls(MergeSettings.from_dict(data.get("default", {})), overrides,
                   data.get("temporal_smoothing", 0.0))

    def save(self, path: str | Path) -> Path:
        """Write as JSON, atomically."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> MergeConfig:
        """Read a saved config.

        Raises:
            ConfigError: unreadable JSON or invalid values (the message names the file).
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read merge settings ({exc})", path,
                              "fix the JSON or delete the file to start from the defaults") from exc
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(exc.message, path, exc.hint or "fix the value named above, or delete the file to "
                              "start from the defaults") from exc


MergePlan = MergeConfig


# ----------------------------------------------------------------------------------------------------------
# Temporal stability


def smooth_landmark_tracks(
    landmarks_per_frame: Sequence[np.ndarray | None],
    strength: float,
    timestamps: Sequence[float] | None = None,
    beta: float = 4.0,
) -> list[np.ndarray | None]:
    """Reduce landmark jitter of one face over time without lagging fast motion (One-Euro filter).

    The cut-off frequency rises with the face's speed (measured in face sizes per second), so a still face
    is smoothed hard and a moving one is followed within a frame or two. One cut-off per face keeps the
    landmark shape rigid. Frames without the face (None) split the track; each piece is filtered alone.

    Args:
        landmarks_per_frame: per frame, the face's (68, 2) landmarks or None.
        strength: 0 = off (returns copies), 1 = strongest (still-face cut-off 0.1 Hz; 0.5 -> 1 Hz).
        timestamps: per-frame seconds (variable frame rate); default 30 fps.
        beta: how fast the cut-off rises with speed; larger = less lag, more jitter on motion.

    Returns:
        A list like the input with float32 smoothed landmarks.
    """
    from .smoothing import smooth_landmark_track

    if not 0.0 <= float(strength) <= 1.0:
        raise ConfigError(f"smoothing strength {strength!r} is out of range 0..1")
    n = len(landmarks_per_frame)
    ts = np.arange(n) / 30.0 if timestamps is None else np.asarray(timestamps, np.float64)
    if len(ts) != n:
        raise ValueError(f"got {len(ts)} timestamps for {n} frames")
    out: list[np.ndarray | None] = [None if lm is None else np.asarray(lm, np.float32).copy()
                                    for lm in landmarks_per_frame]
    if strength <= 0:
        return out
    i = 0
    while i < n:
        if out[i] is None:
            i += 1
            continue
        j = i
        while j < n and out[j] is not None:
            j += 1
        if j - i >= 2:
            seg = np.stack([out[k] for k in range(i, j)])  # type: ignore[misc]
            smoothed = smooth_landmark_track(seg, ts[i:j], strength=float(strength), beta=beta)
            for k in range(i, j):
                out[k] = smoothed[k - i]
        i = j
    return out


class FlickerMeter:
    """Streaming :func:`flicker_metric`: add frames in order; ``value`` is the mean over consecutive pairs."""

    def __init__(self) -> None:
        self._prev: tuple[np.ndarray, np.ndarray | None] | None = None
        self._total = 0.0
        self._pairs = 0

    def reset(self) -> None:
        """Break continuity (the next frame starts a new pair chain)."""
        self._prev = None

    def add(self, frame: np.ndarray, mask: np.ndarray | None) -> None:
        cur = (frame, mask)
        if self._prev is not None:
            change = _pair_change(self._prev[0], self._prev[1], frame, mask)
            if change is not None:
                self._total += change
                self._pairs += 1
        self._prev = cur

    @property
    def pairs(self) -> int:
        return self._pairs

    @property
    def value(self) -> float | None:
        return self._total / self._pairs if self._pairs else None


def _pair_change(a: np.ndarray, ma: np.ndarray | None, b: np.ndarray, mb: np.ndarray | None) -> float | None:
    if a.shape != b.shape:
        raise ValueError(f"frames differ in shape: {a.shape} vs {b.shape}")
    if ma is None and mb is None:
        return float(np.abs(to_float(b) - to_float(a)).mean())
    w = np.maximum(to_float(ma) if ma is not None else 0.0, to_float(mb) if mb is not None else 0.0)
    w = np.asarray(w, np.float32)
    if w.ndim == 3:
        w = w[..., 0]
    ys, xs = np.nonzero(w > 0)
    if ys.size == 0:
        return None
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    ww = w[y0:y1, x0:x1]
    diff = np.abs(to_float(b[y0:y1, x0:x1]) - to_float(a[y0:y1, x0:x1]))
    if diff.ndim == 3:
        diff = diff.mean(axis=2)
    return float((diff * ww).sum() / ww.sum())


def flicker_metric(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray | None] | None = None) -> float:
    """Mean absolute frame-to-frame change inside the face region (0 = perfectly stable).

    For each consecutive pair the per-pixel change (mean over RGB, image units 0..1) is averaged with weights
    ``max(mask_t−1, mask_t)``; the result is the mean over pairs. Without masks the whole frame counts.
    Compute it for the destination video and the merged video with the SAME masks: the difference is the
    flicker the swap adds. Returns 0.0 when no pair has a face region.
    """
    if masks is not None and len(masks) != len(frames):
        raise ValueError(f"got {len(masks)} masks for {len(frames)} frames")
    meter = FlickerMeter()
    for i, f in enumerate(frames):
        meter.add(np.asarray(f), None if masks is None else masks[i])
    return meter.value or 0.0


# ----------------------------------------------------------------------------------------------------------
# Batch merge of a project


@dataclass(frozen=True)
class MergeSummary:
    """What :func:`merge_project` did. Flicker values are mean |Δ| per frame inside the face (0..1 units),
    measured on the frames merged in this run, with the merged masks for both videos."""

    frames: int
    merged: int
    resumed: int
    faces_merged: int
    frames_without_faces: int
    flicker_dst: float | None
    flicker_merged: float | None
    seconds: float
    broken_faces: int = 0
    output_dir: Path | None = None

    @property
    def frames_per_second(self) -> float:
        return self.merged / self.seconds if self.seconds > 0 else 0.0

    def format(self) -> str:
        def fl(v: float | None) -> str:
            return "n/a" if v is None else f"{v * 255:.2f}"

        lines = [
            f"frames: {self.frames} ({self.merged} merged now, {self.resumed} already merged)",
            f"faces merged: {self.faces_merged}",
            f"frames without faces (copied unchanged): {self.frames_without_faces}",
            f"flicker inside the face, mean |change| per frame in 0-255 levels: destination {fl(self.flicker_dst)}, "
            f"merged {fl(self.flicker_merged)}",
            f"time: {self.seconds:.1f} s ({self.frames_per_second:.1f} frames/s)",
        ]
        if self.broken_faces:
            lines.append(f"unreadable aligned faces skipped: {self.broken_faces}")
        if self.output_dir is not None:
            lines.append(f"output: {self.output_dir}")
        return "\n".join(lines)


def predict_many(predict: Predictor, faces: Sequence[np.ndarray]) -> list[Prediction]:
    """Run the model on several crops: one ``predict_batch`` (or ``batch``) call when the predictor offers it."""
    if not faces:
        return []
    batch = getattr(predict, "predict_batch", None) or getattr(predict, "batch", None)
    if callable(batch):
        sw, m1, m2 = batch(np.stack(faces))
        return [(sw[i], m1[i], m2[i]) for i in range(len(faces))]
    return [predict(f) for f in faces]


@dataclass
class _Job:
    index: int
    frame_path: Path
    out_path: Path
    mask_path: Path
    settings: MergeSettings
    landmarks: list[np.ndarray]
    motions: list[tuple[float, float] | None] | None
    image: np.ndarray | None = None
    predictions: list[Prediction] | None = None


def adapt_to_predictor(config: MergeConfig, predict: Any) -> MergeConfig:
    """Set ``resolution`` and ``face_type`` from the predictor's attributes of those names, when it has them
    (they are facts about the model, not choices), in the default and in every override."""
    facts = {k: getattr(predict, k) for k in ("resolution", "face_type") if getattr(predict, k, None) is not None}
    if not facts:
        return config
    overrides = tuple(RangeOverride(o.start, o.stop, {k: v for k, v in o.changes.items() if k not in facts})
                      for o in config.overrides)
    return dataclasses.replace(config, default=config.default.replace(**facts), overrides=overrides)


def landmarks_by_frame(records: Sequence[Any]) -> dict[int, list[np.ndarray]]:
    """Frame index -> the frame-space landmarks of its aligned faces, in face order (faceset records)."""
    grouped: dict[int, list[tuple[int, np.ndarray]]] = {}
    for rec in records:
        grouped.setdefault(int(rec.meta.frame_index), []).append(
            (int(rec.meta.face_index), np.asarray(rec.meta.source_landmarks, np.float32)))
    return {k: [lm for _, lm in sorted(v, key=lambda t: t[0])] for k, v in grouped.items()}


def _frame_faces(project: Any) -> tuple[dict[int, list[np.ndarray]], int]:
    from .faceset import scan_faceset

    folder = project.aligned_dir("dst")
    if not folder.is_dir():
        raise MergeError("no aligned destination faces", folder,
                         f"run `workbench extract {project.root} --side dst` first")
    scan = scan_faceset(folder)
    faces = landmarks_by_frame(scan.faces)
    if not faces:
        raise MergeError("the aligned destination faceset is empty", folder,
                         "extract destination faces first (or restore them from aligned/dst_trash)")
    return faces, len(scan.broken)


def _smoothed_faces(faces: dict[int, list[np.ndarray]], order: Sequence[int], timestamps: Sequence[float],
                    strength: float) -> dict[int, list[np.ndarray]]:
    """Smooth each face slot (0, 1, ...) over the frame order; gaps split the track."""
    if strength <= 0:
        return faces
    out = {k: list(v) for k, v in faces.items()}
    slots = max((len(v) for v in faces.values()), default=0)
    for slot in range(slots):
        track = [faces[i][slot] if i in faces and len(faces[i]) > slot else None for i in order]
        smoothed = smooth_landmark_tracks(track, strength, timestamps)
        for i, lm in zip(order, smoothed):
            if lm is not None:
                out[i][slot] = lm
    return out


def _composite(job: _Job, segment: Segmenter | None, super_resolution: Enhancer | None
               ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Worker: merge one frame and write the PNGs (mask first, so a frame file means a finished frame)."""
    assert job.image is not None
    img = job.image
    if not job.landmarks:
        out_u8, mask = to_uint8(img), np.zeros(img.shape[:2], np.float32)
        write_image(job.mask_path, mask)
        if job.frame_path.suffix.lower() == ".png":
            with atomic_path(job.out_path) as tmp:
                shutil.copyfile(job.frame_path, tmp)
        else:
            write_image(job.out_path, out_u8)
        return job.index, to_uint8(img), out_u8, to_uint8(mask)
    out, mask = merge_frame(img, job.landmarks, None, job.settings, motions=job.motions,
                            predictions=job.predictions, rng=np.random.default_rng(job.index), segment=segment,
                            super_resolution=super_resolution)
    out_u8, mask_u8 = to_uint8(out), to_uint8(mask)
    with atomic_path(job.mask_path) as tmp:
        tmp.write_bytes(encode_image(mask_u8, "png"))
    with atomic_path(job.out_path) as tmp:
        tmp.write_bytes(encode_image(out_u8, "png"))
    return job.index, to_uint8(img), out_u8, mask_u8


def merged_models(project: Any, files: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The models (``{"run": name, "step": n}``) that made the merged frames, per the merged frames' index.

    ``files``: only these merged file names (default all). The last record of each file counts; frames merged
    by a model without a record (a plain callable) are left out.
    """
    latest: dict[str, Any] = {}
    for row in read_jsonl(Path(project.merged_dir) / STATE_FILE):
        if isinstance(row, dict) and isinstance(row.get("file"), str):
            latest[row["file"]] = row.get("model")
    wanted = latest if files is None else {f: latest.get(f) for f in files}
    out: list[dict[str, Any]] = []
    for model in wanted.values():
        if isinstance(model, dict) and model not in out:
            out.append(model)
    return out


def merge_project(
    project: Any,
    predict: Predictor,
    config: MergeConfig | None = None,
    *,
    workers: int = 2,
    progress: bool = True,
    resume: bool = True,
    batch_size: int = 8,
    segment: Segmenter | None = None,
    super_resolution: Enhancer | None = None,
) -> MergeSummary:
    """Merge every destination frame of a project into ``PROJECT/merged`` (+ ``merged/masks``).

    Reads ``frames/dst`` (frames.json) and the aligned destination faces' ``source_landmarks`` grouped by
    ``frame_index``; frames with no face are copied unchanged (and counted). The model runs in this thread
    on batches of crops; compositing and PNG writing run in a pool of ``workers`` threads (OpenCV, NumPy
    and PIL release the GIL). Every file is written atomically.

    Args:
        project: a ``workbench.project.Project`` or a project folder path.
        predict: the model (:data:`Predictor`).
        config: settings + overrides; default: ``PROJECT/merge.json`` if present, else DFL defaults.
            ``resolution``/``face_type`` are taken from the predictor when it has those attributes.
        workers: compositing threads.
        progress: show a tqdm progress bar.
        resume: skip frames already merged with the same settings (a frame whose settings changed since,
            e.g. after editing an override, is merged again). False re-merges everything.
        batch_size: frames per model batch.
        segment, super_resolution: optional models for xseg mask modes / super-resolution.

    Returns:
        A :class:`MergeSummary` (frames, faces merged, frames without faces, flicker dst vs merged, seconds).

    Raises:
        ProjectError: not a project, or no destination frames yet.
        MergeError: no aligned destination faces.
    """
    from tqdm.auto import tqdm

    from .project import Project, read_frame_index

    t_start = time.perf_counter()
    if not isinstance(project, Project):
        project = Project.open(project)
    if config is None:
        path = project.merge_settings_path
        config = MergeConfig.load(path) if path.is_file() else MergeConfig()
    config = adapt_to_predictor(config, predict)
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    index = read_frame_index(project)
    entries = sorted(index.frames, key=lambda e: e.index)
    for ov_settings in {config.default, *(config.settings_for(ov.start) for ov in config.overrides)}:
        if ov_settings.needs_segmenter and segment is None:
            raise ConfigError(f"mask_mode {ov_settings.mask_mode!r} needs a segmentation model")
        if ov_settings.super_resolution_power and super_resolution is None:
            raise ConfigError("super_resolution_power > 0 needs a super-resolution model")
    faces, broken = _frame_faces(project)
    order = [e.index for e in entries]
    faces = _smoothed_faces(faces, order, [e.timestamp for e in entries], config.temporal_smoothing)
    motion_list = motion_vectors([faces.get(i, []) for i in order])
    motions = dict(zip(order, motion_list))

    merged_dir, masks_dir = project.merged_dir, project.merged_masks_dir
    masks_dir.mkdir(parents=True, exist_ok=True)
    state_path = merged_dir / STATE_FILE
    # The merged frames' index: per file, the settings fingerprint and the model (run, step) that made it.
    model = getattr(predict, "provenance", None)
    done_state = {row.get("file"): (row.get("settings"), row.get("model"))
                  for row in read_jsonl(state_path) if isinstance(row, dict)} if resume else {}

    jobs: list[_Job] = []
    resumed = 0
    for e in entries:
        name = Path(e.file).with_suffix(".png").name
        settings = config.settings_for(e.index)
        out_path, mask_path = merged_dir / name, masks_dir / name
        lms = faces.get(e.index, [])
        fp = settings.fingerprint() if lms else "copy"
        if resume and out_path.is_file() and mask_path.is_file() and done_state.get(name, (fp, model)) == (fp, model):
            resumed += 1
            continue
        m = motions.get(e.index)
        jobs.append(_Job(e.index, project.frames_dir / e.file, out_path, mask_path, settings, lms,
                         [m] * len(lms) if m is not None else None))

    meter_dst, meter_out = FlickerMeter(), FlickerMeter()
    faces_merged = no_face = 0
    prev_index: int | None = None
    pos = {i: k for k, i in enumerate(order)}
    bar = tqdm(total=len(entries), initial=resumed, desc="merge", unit="frame", disable=not progress)

    def consume(job: _Job, fut: Future) -> None:
        nonlocal faces_merged, no_face, prev_index
        _, dst_u8, out_u8, mask_u8 = fut.result()
        job.image, job.predictions = None, None  # free memory as we go
        if prev_index is None or pos[job.index] != pos[prev_index] + 1:
            meter_dst.reset()
            meter_out.reset()
        meter_dst.add(dst_u8, mask_u8)
        meter_out.add(out_u8, mask_u8)
        prev_index = job.index
        if job.landmarks:
            faces_merged += len(job.landmarks)
        else:
            no_face += 1
        append_jsonl(state_path, {"file": job.out_path.name,
                                  "settings": job.settings.fingerprint() if job.landmarks else "copy",
                                  "model": model})
        bar.update(1)

    try:
        # one reader thread prefetches frames; `workers` threads composite and write; the model runs here
        with ThreadPoolExecutor(max_workers=1) as reader, ThreadPoolExecutor(max_workers=workers) as pool:
            upcoming = iter(jobs)
            reads: deque[tuple[_Job, Future]] = deque()
            pending: deque[tuple[_Job, Future]] = deque()

            def prefetch() -> None:
                while len(reads) < 2 * batch_size:
                    nxt = next(upcoming, None)
                    if nxt is None:
                        return
                    reads.append((nxt, reader.submit(read_image, nxt.frame_path)))

            prefetch()
            while reads:
                chunk: list[_Job] = []
                while reads and len(chunk) < batch_size:
                    job, fut = reads.popleft()
                    job.image = fut.result()
                    chunk.append(job)
                prefetch()
                crops = [crop_for_model(job.image, lm, job.settings)[0] for job in chunk for lm in job.landmarks]
                preds = iter(predict_many(predict, crops))
                for job in chunk:
                    job.predictions = [next(preds) for _ in job.landmarks]
                    pending.append((job, pool.submit(_composite, job, segment, super_resolution)))
                while len(pending) > batch_size + 2 * workers:
                    consume(*pending.popleft())
            while pending:
                consume(*pending.popleft())
    finally:
        bar.close()
    return MergeSummary(
        frames=len(entries), merged=len(jobs), resumed=resumed, faces_merged=faces_merged,
        frames_without_faces=no_face, flicker_dst=meter_dst.value, flicker_merged=meter_out.value,
        seconds=time.perf_counter() - t_start, broken_faces=broken, output_dir=merged_dir,
    )
