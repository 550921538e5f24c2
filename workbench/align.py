"""Face alignment: DFL's ``get_transform_mat`` (Umeyama to the mean face + face-type padding) and warps.

An aligned face is a square crop of the frame. Its geometry is one (2, 3) affine matrix ``mat`` that maps
frame pixels to face pixels (``face_xy = mat @ [x, y, 1]``); every function here takes or returns that
matrix, so a crop can always be pasted back exactly.

How DFL builds ``mat`` (``facelib/LandmarksProcessor.get_transform_mat``):

1. Fit a similarity (rotation, uniform scale, shift) from 33 frame landmarks (17..48 and 54: brows, nose,
   eyes, mouth corners; never the jaw, which slides with pose) to the normalised mean face, whose
   "unit square" [0, 1]^2 spans brow-to-chin.
2. Map the unit square's corners and centre back into the frame.
3. Grow the square about its centre by the face type's padding; ``whole_face`` moves the centre up by
   7% of the unit side (more forehead), ``head`` moves it up by 50% and sideways with the yaw.
4. The crop's top-left, top-right and bottom-right corners go to (0, 0), (S, 0), (S, S).

The ``*_no_align`` types keep the same centre and area but use an axis-aligned square (no roll).
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import NamedTuple

import cv2
import numpy as np

from .errors import ConfigError
from .face_constants import UMEYAMA_INDICES, UMEYAMA_TARGET

FACE_TYPES: tuple[str, ...] = (
    "half",
    "mid_full",
    "full",
    "whole_face",
    "head",
    "full_no_align",
    "head_no_align",
)
"""Canonical face-type names, narrowest crop first (the ``*_no_align`` variants last)."""

FACE_TYPE_PADDING = MappingProxyType(
    {
        "half": 0.0,
        "mid_full": 0.0675,
        "full": 0.2109375,
        "whole_face": 0.40,
        "head": 0.70,
        "full_no_align": 0.2109375,
        "head_no_align": 0.70,
    }
)
"""DFL ``FaceType_to_padding_remove_align`` paddings. Crop side = unit side x (1 + 2*sqrt(2)*padding)."""

FACE_TYPE_DFL_NAMES = MappingProxyType(
    {
        "half": "half_face",
        "mid_full": "midfull_face",
        "full": "full_face",
        "whole_face": "whole_face",
        "head": "head",
        "full_no_align": "full_face_no_align",
        "head_no_align": "head_no_align",
    }
)
"""Canonical name -> the string DFL writes into ``DFLJPG`` metadata (``FaceType.toString``)."""

_NO_ALIGN = frozenset({"full_no_align", "head_no_align"})

# DFL enum values, so metadata imported from DFL (which stores ints in some places) also resolves.
_DFL_ENUM = {
    0: "half",
    1: "mid_full",
    2: "full",
    3: "full_no_align",
    4: "whole_face",
    10: "head",
    20: "head_no_align",
}

_ALIASES = MappingProxyType(
    {
        "h": "half",
        "half": "half",
        "half_face": "half",
        "mf": "mid_full",
        "mid_full": "mid_full",
        "midfull": "mid_full",
        "midfull_face": "mid_full",
        "mid_full_face": "mid_full",
        "f": "full",
        "full": "full",
        "full_face": "full",
        "wf": "whole_face",
        "whole": "whole_face",
        "whole_face": "whole_face",
        "wholeface": "whole_face",
        "head": "head",
        "full_no_align": "full_no_align",
        "full_face_no_align": "full_no_align",
        "head_no_align": "head_no_align",
    }
)

INTERPOLATIONS = MappingProxyType(
    {
        "lanczos": cv2.INTER_LANCZOS4,
        "cubic": cv2.INTER_CUBIC,
        "linear": cv2.INTER_LINEAR,
        "nearest": cv2.INTER_NEAREST,
    }
)
"""Interpolation names accepted by the warps. DFL extracts with Lanczos; training warps use cubic."""

BORDERS = MappingProxyType(
    {
        "replicate": cv2.BORDER_REPLICATE,
        "constant": cv2.BORDER_CONSTANT,
        "reflect": cv2.BORDER_REFLECT_101,
    }
)
"""Border names accepted by the warps: ``constant`` fills with 0 (black), as DFL's extractor does."""


def normalize_face_type(name: str | int) -> str:
    """Return the canonical face-type name for a workbench or DFL spelling.

    Accepts the canonical names (:data:`FACE_TYPES`), DFL's short option codes (``h``, ``mf``, ``f``,
    ``wf``, ``head``), DFL's metadata strings (``half_face``, ``midfull_face``, ``full_face``,
    ``whole_face``, ``full_face_no_align``, ...) and DFL's integer enum values. Case, spaces and
    hyphens are ignored.

    Raises:
        ConfigError: the name is not a known face type (the message lists the valid names).
    """
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        if int(name) in _DFL_ENUM:
            return _DFL_ENUM[int(name)]
    elif isinstance(name, str):
        key = name.strip().lower().replace("-", "_").replace(" ", "_")
        if key in _ALIASES:
            return _ALIASES[key]
    hint = "mark_only faces have no crop and cannot be aligned" if str(name).lower() == "mark_only" else None
    raise ConfigError(
        f"unknown face type {name!r}; valid names: {', '.join(FACE_TYPES)} "
        "(DFL spellings h, mf, f, wf, head, half_face, midfull_face, full_face, whole_face are accepted too)",
        hint=hint,
    )


def _as_points(points: np.ndarray, name: str = "points") -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"{name} contain NaN or infinite values")
    return pts


def _as_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = _as_points(landmarks, "landmarks")
    if lm.shape[0] != 68:
        raise ValueError(f"landmarks must have shape (68, 2) (iBUG 68-point order), got {lm.shape}")
    return lm


def _as_affine(mat: np.ndarray) -> np.ndarray:
    m = np.asarray(mat, dtype=np.float64)
    if m.shape == (3, 3):
        m = m[:2]
    if m.shape != (2, 3):
        raise ValueError(f"affine matrix must have shape (2, 3) (or (3, 3)), got {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("affine matrix contains NaN or infinite values")
    return m


def umeyama(src: np.ndarray, dst: np.ndarray, estimate_scale: bool = True) -> np.ndarray:
    """Least-squares similarity transform mapping ``src`` points onto ``dst`` (Umeyama 1991).

    The same algorithm as DFL's ``core/mathlib/umeyama.py`` (itself from scikit-image): SVD of the
    cross-covariance, with a reflection guard so the result is a proper rotation.

    Args:
        src: (N, D) source points, N >= 2.
        dst: (N, D) destination points.
        estimate_scale: fit a uniform scale too (a similarity); if False, a rigid transform.

    Returns:
        (D+1, D+1) float64 homogeneous matrix ``T`` with ``dst ~ T @ [src, 1]``.

    Raises:
        ValueError: mismatched shapes, fewer than 2 points, or all source points coincide.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape != dst.shape:
        raise ValueError(
            f"src and dst must both be (N, D) with the same shape, got {src.shape} and {dst.shape}"
        )
    num, dim = src.shape
    if num < 2:
        raise ValueError(f"umeyama needs at least 2 points, got {num}")
    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    src_demean = src - src_mean
    dst_demean = dst - dst_mean
    src_var = src_demean.var(axis=0).sum()
    if not src_var > 0:
        raise ValueError("umeyama: all source points coincide, the transform is undefined")

    cov = dst_demean.T @ src_demean / num  # (D, D) cross-covariance, Eq. 38
    d = np.ones(dim)
    if np.linalg.det(cov) < 0:
        d[-1] = -1.0  # the best orthogonal map is a reflection: flip the weakest axis instead
    u, s, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    rot = np.eye(dim)
    if rank == 0:
        raise ValueError("umeyama: the points carry no direction information (rank 0 covariance)")
    if rank == dim - 1:
        # Collinear points: det(cov) is ~0 so its sign is noise; decide the reflection from U and V.
        if np.linalg.det(u) * np.linalg.det(vt) > 0:
            rot = u @ vt
        else:
            dd = d.copy()
            dd[-1] = -1.0
            rot = u @ np.diag(dd) @ vt
    else:
        rot = u @ np.diag(d) @ vt

    scale = (s @ d) / src_var if estimate_scale else 1.0
    out = np.eye(dim + 1)
    out[:dim, :dim] = scale * rot
    out[:dim, dim] = dst_mean - scale * rot @ src_mean
    return out


def transform_points(points: np.ndarray, mat: np.ndarray, invert: bool = False) -> np.ndarray:
    """Apply an affine matrix to 2D points.

    Args:
        points: (N, 2) or (2,) points in pixels.
        mat: (2, 3) (or (3, 3)) affine matrix.
        invert: apply the inverse of ``mat`` instead (face -> frame for an alignment matrix).

    Returns:
        Points of the same shape; float32 when ``points`` is float32, else float64.
    """
    arr = np.asarray(points)
    single = arr.ndim == 1
    pts = _as_points(arr.reshape(1, -1) if single else arr)
    m = _as_affine(mat)
    if invert:
        m = invert_affine(m)
    out = pts @ m[:, :2].T + m[:, 2]
    if single:
        out = out[0]
    return out.astype(np.float32) if arr.dtype == np.float32 else out


def invert_affine(mat: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix, in float64 (exact, unlike ``cv2.invertAffineTransform`` on float32).

    Raises:
        ValueError: the matrix is singular.
    """
    m = _as_affine(mat)
    lin = m[:, :2]
    det = np.linalg.det(lin)
    if abs(det) < 1e-12:
        raise ValueError("affine matrix is singular and cannot be inverted")
    inv_lin = np.linalg.inv(lin)
    return np.hstack([inv_lin, -inv_lin @ m[:, 2:3]])


def compose_affine(first: np.ndarray, then: np.ndarray) -> np.ndarray:
    """The (2, 3) matrix that applies ``first`` and then ``then``.

    Example: ``compose_affine(face_matrix, refit_matrix)`` maps frame pixels straight into a refitted face.
    """
    a = np.vstack([_as_affine(first), [0.0, 0.0, 1.0]])
    b = np.vstack([_as_affine(then), [0.0, 0.0, 1.0]])
    return (b @ a)[:2]


def estimate_averaged_yaw(landmarks: np.ndarray) -> float:
    """DFL's cheap yaw estimate: right minus left jaw-to-nose-bridge distance (x only).

    ``l = mean(x27-x0, x28-x1, x29-x2)``, ``r = mean(x16-x27, x15-x28, x14-x29)``, yaw = ``r - l``.
    DFL applies it to landmarks already mapped into the mean-face unit space, where the result is roughly
    in [-1, 1] and positive when the nose bridge sits left of the jaw's middle in the image.

    Args:
        landmarks: (68, 2) points.

    Returns:
        The yaw proxy as a Python float (units of the input's x axis).
    """
    lm = _as_landmarks(landmarks)
    x = lm[:, 0]
    left = ((x[27] - x[0]) + (x[28] - x[1]) + (x[29] - x[2])) / 3.0
    right = ((x[16] - x[27]) + (x[15] - x[28]) + (x[14] - x[29])) / 3.0
    return float(right - left)


def _affine_from_3_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    # Same solve as cv2.getAffineTransform, but in float64 (OpenCV insists on float32 input points).
    a = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(a, dst).T


def _polygon_area(x: np.ndarray, y: np.ndarray) -> float:
    # DFL core/mathlib.polygon_area (shoelace formula).
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def transform_matrix(landmarks: np.ndarray, size: int, face_type: str, scale: float = 1.0) -> np.ndarray:
    """The frame -> aligned-face matrix, reproducing DFL's ``get_transform_mat``.

    Args:
        landmarks: (68, 2) frame landmarks in pixels (iBUG order). Only 17..48 and 54 drive the fit;
            ``head`` also reads the jaw (0..2, 14..16) and nose bridge (27..29) for its yaw shift.
        size: side of the square output face, in pixels.
        face_type: any spelling :func:`normalize_face_type` accepts.
        scale: zoom factor; > 1 zooms in (DFL merger's ``output_face_scale`` enters as ``1 + 0.01*s``).

    Returns:
        (2, 3) float64 affine matrix mapping frame pixels to face pixels.

    Raises:
        ConfigError: unknown face type.
        ValueError: bad landmark shape, non-positive size or scale, degenerate landmarks.

    Example:
        >>> from workbench.face_constants import MEAN_FACE_68
        >>> lm = MEAN_FACE_68 * 200 + 100  # the mean face, unit square at [100, 300]^2
        >>> mat = transform_matrix(lm, 256, "full")
        >>> transform_points(np.array([[100.0, 100.0], [300.0, 300.0]]), mat).round(1)
        array([[ 47.8,  47.8],
               [208.2, 208.2]])
    """
    ftype = normalize_face_type(face_type)
    lm = _as_landmarks(landmarks)
    if int(size) != size or size <= 0:
        raise ValueError(f"size must be a positive integer, got {size}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    padding = FACE_TYPE_PADDING[ftype]

    # 1. frame -> normalised mean-face space (the unit square spans brows to chin).
    to_unit = umeyama(lm[UMEYAMA_INDICES], UMEYAMA_TARGET, estimate_scale=True)[:2]

    # 2. the unit square's corners (TL, TR, BR, BL) and centre, in frame pixels.
    g_p = transform_points(
        np.array([(0, 0), (1, 0), (1, 1), (0, 1), (0.5, 0.5)], np.float64), to_unit, invert=True
    )
    g_c = g_p[4].copy()

    # 3. unit diagonals; the crop's half-diagonal is the unit square's, grown by the padding.
    tb_diag = g_p[2] - g_p[0]
    tb_diag /= np.linalg.norm(tb_diag)
    bt_diag = g_p[1] - g_p[3]
    bt_diag /= np.linalg.norm(bt_diag)
    mod = (1.0 / scale) * (np.linalg.norm(g_p[0] - g_p[2]) * (padding * math.sqrt(2.0) + 0.5))

    if ftype == "whole_face":
        # g_p[0] - g_p[3] points from the bottom-left to the top-left corner: up the face, one unit side
        # long. DFL's comment says "7% below" but the vector moves the centre toward the forehead.
        g_c += (g_p[0] - g_p[3]) * 0.07
    elif ftype == "head":
        yaw = estimate_averaged_yaw(transform_points(lm, to_unit))
        yaw *= abs(math.tanh(yaw * 2.0))  # damp the shift near frontal, where the estimate is noisy
        # Sideways along the top edge, away from where the nose points: toward the back of the head.
        g_c -= (g_p[0] - g_p[1]) * (yaw / 2.0)
        g_c += (g_p[0] - g_p[3]) * 0.50  # half a unit side up: the head's centre is above the face's

    if ftype not in _NO_ALIGN:
        corners = np.array([g_c - tb_diag * mod, g_c + bt_diag * mod, g_c + tb_diag * mod])
    else:
        # Same centre and area, but an upright square: the face keeps its roll inside the crop.
        quad = np.array([g_c - tb_diag * mod, g_c + bt_diag * mod, g_c + tb_diag * mod, g_c - bt_diag * mod])
        half = math.sqrt(_polygon_area(quad[:, 0], quad[:, 1])) / 2.0
        corners = np.array([g_c + (-half, -half), g_c + (half, -half), g_c + (half, half)])

    s = float(size)
    return _affine_from_3_points(corners, np.array([(0.0, 0.0), (s, 0.0), (s, s)]))


def crop_corners(mat: np.ndarray, size: int) -> np.ndarray:
    """Frame-space corners of the aligned square, for drawing the crop on the frame.

    Args:
        mat: (2, 3) frame -> face matrix.
        size: side of the aligned face in pixels.

    Returns:
        (4, 2) float64 frame points of face corners (0, 0), (size, 0), (size, size), (0, size):
        top-left, top-right, bottom-right, bottom-left *of the face* (the top edge is the forehead side).
    """
    s = float(size)
    return transform_points(np.array([(0.0, 0.0), (s, 0.0), (s, s), (0.0, s)]), mat, invert=True)


def _interp_flag(interpolation: str) -> int:
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"unknown interpolation {interpolation!r}; valid: {', '.join(INTERPOLATIONS)}")
    return INTERPOLATIONS[interpolation]


def _border_flag(border: str) -> int:
    if border not in BORDERS:
        raise ConfigError(f"unknown border mode {border!r}; valid: {', '.join(BORDERS)}")
    return BORDERS[border]


def _as_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be HW or HWC, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    return img.astype(np.float32, copy=False)


def _warp(img: np.ndarray, mat: np.ndarray, dsize: tuple[int, int], flags: int, border: int) -> np.ndarray:
    # OpenCV warps at most 4 channels at a time; wider stacks (image + masks) go in chunks.
    if img.ndim == 3 and img.shape[2] > 4:
        parts = [_warp(img[:, :, i : i + 4], mat, dsize, flags, border) for i in range(0, img.shape[2], 4)]
        return np.concatenate([p if p.ndim == 3 else p[:, :, None] for p in parts], axis=2)
    out = cv2.warpAffine(img, mat, dsize, flags=flags, borderMode=border, borderValue=0)
    if img.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]  # OpenCV drops a singleton channel axis
    return out


def warp_face(
    image: np.ndarray,
    mat: np.ndarray,
    size: int,
    interpolation: str = "lanczos",
    border: str = "replicate",
) -> np.ndarray:
    """Cut the aligned face out of a frame.

    Args:
        image: (H, W, C) or (H, W) frame, float in [0, 1] (uint8 is converted).
        mat: (2, 3) frame -> face matrix from :func:`transform_matrix`.
        size: side of the output square.
        interpolation: "lanczos" (DFL extraction), "cubic", "linear" or "nearest".
        border: "replicate" (smear edge pixels where the crop leaves the frame), "constant" (black, as
            DFL's extractor) or "reflect".

    Returns:
        (size, size, C) or (size, size) float32, clipped to [0, 1] (Lanczos/cubic overshoot at edges).
    """
    img = _as_image(image)
    m = _as_affine(mat)
    if int(size) != size or size <= 0:
        raise ValueError(f"size must be a positive integer, got {size}")
    out = _warp(img, m, (int(size), int(size)), _interp_flag(interpolation), _border_flag(border))
    return np.clip(out, 0.0, 1.0, out=out)


def _frame_hw(frame_shape: tuple[int, ...]) -> tuple[int, int]:
    if len(frame_shape) < 2 or frame_shape[0] <= 0 or frame_shape[1] <= 0:
        raise ValueError(f"frame_shape must be (H, W) or (H, W, C), got {frame_shape}")
    return int(frame_shape[0]), int(frame_shape[1])


def unwarp_face(
    face: np.ndarray,
    mat: np.ndarray,
    frame_shape: tuple[int, ...],
    interpolation: str = "lanczos",
    border: str = "constant",
) -> np.ndarray:
    """Map an aligned face (or a face-space mask) back into frame coordinates.

    This is only the geometry of paste-back: pixels outside the face square are 0 (with the default
    ``constant`` border); blend with :func:`coverage_mask` or a face mask to composite.

    Args:
        face: (S, S, C) or (S, S) aligned face, float in [0, 1] (uint8 is converted).
        mat: the (2, 3) frame -> face matrix the face was cut with (for size S).
        frame_shape: (H, W) or (H, W, C) of the frame.
        interpolation: see :func:`warp_face`.
        border: see :func:`warp_face`; "constant" leaves the frame outside the face at 0.

    Returns:
        (H, W, C) or (H, W) float32 in [0, 1].
    """
    img = _as_image(face)
    m = _as_affine(mat)
    h, w = _frame_hw(frame_shape)
    # WARP_INVERSE_MAP: OpenCV samples the face at mat @ frame_xy, which is exactly the inverse warp.
    flags = _interp_flag(interpolation) | cv2.WARP_INVERSE_MAP
    out = _warp(img, m, (w, h), flags, _border_flag(border))
    return np.clip(out, 0.0, 1.0, out=out)


def coverage_mask(
    mat: np.ndarray, size: int, frame_shape: tuple[int, ...], interpolation: str = "linear"
) -> np.ndarray:
    """Which frame pixels the aligned square covers: the unwarp of an all-ones face.

    Args:
        mat: (2, 3) frame -> face matrix.
        size: side of the aligned face.
        frame_shape: (H, W) or (H, W, C) of the frame.
        interpolation: "linear" gives a one-pixel anti-aliased edge; "nearest" a hard one.

    Returns:
        (H, W) float32 in [0, 1]: 1 inside the square, 0 outside.
    """
    ones = np.ones((int(size), int(size)), np.float32)
    return unwarp_face(ones, mat, frame_shape, interpolation=interpolation, border="constant")


class RefitFace(NamedTuple):
    """Result of :func:`refit_face`."""

    image: np.ndarray
    """(size, size, C) float32 face of the new type."""
    landmarks: np.ndarray
    """(68, 2) float32 landmarks in the new face's pixels."""
    matrix: np.ndarray
    """(2, 3) float64 old-face -> new-face matrix."""


def refit_face(
    image: np.ndarray,
    face_landmarks: np.ndarray,
    face_type: str,
    size: int,
    interpolation: str = "lanczos",
    border: str = "constant",
) -> RefitFace:
    """Re-crop an aligned face to another face type and/or size, using its aligned-space landmarks.

    Because the alignment is built from a similarity fit, running it on the stored aligned landmarks
    gives the old-face -> new-face matrix directly, and composing it with the old frame -> face matrix
    equals a fresh crop of the frame (for the aligned types). Going to a wider type than the stored one
    leaves areas the old crop never saw: they are black with the default ``constant`` border, as in
    DFL's ``facesettool resize``. ``*_no_align`` targets are upright in the *old face*, not the frame.

    Args:
        image: (S, S, C) or (S, S) aligned face in [0, 1].
        face_landmarks: (68, 2) landmarks in that face's pixels.
        face_type: target face type (any spelling :func:`normalize_face_type` accepts).
        size: target side in pixels.
        interpolation: see :func:`warp_face`.
        border: see :func:`warp_face`.

    Returns:
        :class:`RefitFace` ``(image, landmarks, matrix)``.
    """
    mat = transform_matrix(face_landmarks, size, face_type)
    new_image = warp_face(image, mat, size, interpolation=interpolation, border=border)
    new_landmarks = transform_points(np.asarray(face_landmarks, np.float64), mat).astype(np.float32)
    return RefitFace(new_image, new_landmarks, mat)
