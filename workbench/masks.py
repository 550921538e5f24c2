"""Landmark masks, as DFL builds them (``facelib/LandmarksProcessor``), plus slider-sized mask utilities.

All masks are (H, W) float32 in [0, 1]. Landmark masks are normally drawn on the *aligned* face, with the
face's stored landmarks; sizes such as the eye/mouth dilation scale with that image's height.

* :func:`hull_mask` - the "full face" mask DFL trains with when a face has no XSeg mask: the union of
  8 convex hulls over jaw, cheeks, brows and nose, with the brows first raised (:func:`expand_eyebrows`)
  so the forehead edge is not cut at the brow line.
* :func:`eye_mask`, :func:`mouth_mask`, :func:`eyes_mouth_mask` - the ``eyes_mouth_prio`` loss weights.
* :func:`erode_dilate`, :func:`feather` - what the merger's erode/blur sliders do to a mask.
"""

from __future__ import annotations

import cv2
import numpy as np


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2), got {lm.shape}")
    if not np.all(np.isfinite(lm)):
        raise ValueError("landmarks contain NaN or infinite values")
    return lm


def _check_shape(shape_hw: tuple[int, ...]) -> tuple[int, int]:
    if len(shape_hw) < 2 or int(shape_hw[0]) <= 0 or int(shape_hw[1]) <= 0:
        raise ValueError(f"shape_hw must be (H, W) (or (H, W, C)) with positive sides, got {shape_hw}")
    return int(shape_hw[0]), int(shape_hw[1])


def _as_int(landmarks: np.ndarray) -> np.ndarray:
    # DFL uses astype(np.int), which truncates toward zero (not rounding); OpenCV wants int32.
    return np.trunc(np.asarray(landmarks, dtype=np.float64)).astype(np.int32)


def _fill_hull(mask: np.ndarray, points: np.ndarray) -> None:
    cv2.fillConvexPoly(mask, cv2.convexHull(np.ascontiguousarray(points, dtype=np.int32)), 1.0)


def expand_eyebrows(landmarks: np.ndarray, mod: float = 1.0) -> np.ndarray:
    """Raise the eyebrow points away from the eyes, as DFL does before drawing the hull mask.

    With integer arithmetic as DFL: ``ml = (p36 + p0)//2``, ``mr = (p16 + p45)//2``,
    ``ql = (p36 + ml)//2``, ``qr = (p45 + mr)//2``; the eye "top rows" are ``[ql, 36, 37, 38, 39]`` and
    ``[42, 43, 44, 45, qr]``; then ``brow += mod * 0.5 * (brow - eye_row)`` (truncated to int).

    Args:
        landmarks: (68, 2) pixel coordinates (truncated to integers first, as DFL).
        mod: DFL's ``eyebrows_expand_mod``; 0 leaves the brows where they are, 1 is DFL's default.

    Returns:
        (68, 2) int32 landmarks with rows 17..26 moved; the input is not modified.
    """
    lm = _as_int(_check_landmarks(landmarks)).astype(np.int64)
    ml = (lm[36] + lm[0]) // 2
    mr = (lm[16] + lm[45]) // 2
    ql = (lm[36] + ml) // 2
    qr = (lm[45] + mr) // 2
    bot_l = np.array([ql, lm[36], lm[37], lm[38], lm[39]])
    bot_r = np.array([lm[42], lm[43], lm[44], lm[45], qr])
    top_l = lm[17:22].copy()
    top_r = lm[22:27].copy()
    lm[17:22] = np.trunc(top_l + mod * 0.5 * (top_l - bot_l)).astype(np.int64)
    lm[22:27] = np.trunc(top_r + mod * 0.5 * (top_r - bot_r)).astype(np.int64)
    return lm.astype(np.int32)


# The 8 hull parts of DFL's get_image_hull_mask, as index lists into the (brow-raised) landmarks.
_HULL_PARTS: tuple[tuple[int, ...], ...] = (
    (*range(0, 9), 17),  # right jaw
    (*range(8, 17), 26),  # left jaw
    (*range(17, 20), 8),  # right cheek
    (*range(24, 27), 8),  # left cheek
    (*range(19, 25), 8),  # nose ridge
    (*range(17, 22), 27, *range(31, 36), 8),  # right eye area
    (*range(22, 27), 27, *range(31, 36), 8),  # left eye area
    (*range(27, 31), *range(31, 36)),  # nose
)


def hull_mask(
    shape_hw: tuple[int, ...], landmarks: np.ndarray, eyebrows_expand_mod: float = 1.0
) -> np.ndarray:
    """DFL's landmark hull ("full face") mask.

    A single convex hull of all 68 points would bulge over the temples; DFL instead fills 8 convex parts
    (jaw halves, cheeks, nose ridge, the two eye areas, nose) and takes their union.

    Args:
        shape_hw: (H, W) of the image the landmarks live in (a trailing channel count is ignored).
        landmarks: (68, 2) pixel coordinates in that image.
        eyebrows_expand_mod: how far the brows are raised first (see :func:`expand_eyebrows`).

    Returns:
        (H, W) float32 mask with values 0 or 1.
    """
    h, w = _check_shape(shape_hw)
    lm = expand_eyebrows(landmarks, eyebrows_expand_mod)
    mask = np.zeros((h, w), np.float32)
    for part in _HULL_PARTS:
        _fill_hull(mask, lm[list(part)])
    return mask


def _dilate_blur(mask: np.ndarray) -> np.ndarray:
    # DFL softens eye/mouth masks relative to the image height: dilate by h//32, blur with k = h//16 (odd).
    h = mask.shape[0]
    dilate = h // 32
    if dilate > 0:
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (dilate, dilate)), iterations=1)
    blur = h // 16
    blur = blur + (1 - blur % 2)
    return cv2.GaussianBlur(mask, (blur, blur), 0)


def eye_mask(shape_hw: tuple[int, ...], landmarks: np.ndarray) -> np.ndarray:
    """DFL's eye mask: hulls of 36..41 and 42..47, dilated (ellipse h//32) and blurred (k = h//16, odd).

    Args:
        shape_hw: (H, W) of the image the landmarks live in.
        landmarks: (68, 2) pixel coordinates.

    Returns:
        (H, W) float32 in [0, 1].
    """
    h, w = _check_shape(shape_hw)
    lm = _as_int(_check_landmarks(landmarks))
    mask = np.zeros((h, w), np.float32)
    _fill_hull(mask, lm[36:42])
    _fill_hull(mask, lm[42:48])
    return np.clip(_dilate_blur(mask), 0.0, 1.0)


def mouth_mask(shape_hw: tuple[int, ...], landmarks: np.ndarray) -> np.ndarray:
    """DFL's mouth mask: hull of the inner lips 60..67, dilated (ellipse h//32) and blurred (k = h//16, odd).

    Args:
        shape_hw: (H, W) of the image the landmarks live in.
        landmarks: (68, 2) pixel coordinates.

    Returns:
        (H, W) float32 in [0, 1].
    """
    h, w = _check_shape(shape_hw)
    lm = _as_int(_check_landmarks(landmarks))
    mask = np.zeros((h, w), np.float32)
    _fill_hull(mask, lm[60:68])
    return np.clip(_dilate_blur(mask), 0.0, 1.0)


def eyes_mouth_mask(
    shape_hw: tuple[int, ...], landmarks: np.ndarray, face_mask: np.ndarray | None = None
) -> np.ndarray:
    """DFL's EYES_MOUTH training mask: ``clip(eyes + mouth) * (face_mask != 0)``, divided by its max.

    Args:
        shape_hw: (H, W) of the image the landmarks live in.
        landmarks: (68, 2) pixel coordinates.
        face_mask: the FULL_FACE mask to restrict to (an XSeg mask when the face has one); defaults to
            :func:`hull_mask`.

    Returns:
        (H, W) float32 in [0, 1]; its maximum is 1 unless the mask is empty (then all 0).
    """
    h, w = _check_shape(shape_hw)
    if face_mask is None:
        face_mask = hull_mask((h, w), landmarks)
    face_mask = np.asarray(face_mask)
    if face_mask.shape[:2] != (h, w):
        raise ValueError(f"face_mask shape {face_mask.shape} does not match shape_hw {(h, w)}")
    if face_mask.ndim == 3:
        face_mask = face_mask[:, :, 0]
    mask = np.clip(eye_mask((h, w), landmarks) + mouth_mask((h, w), landmarks), 0.0, 1.0)
    mask = mask * (face_mask != 0)
    peak = float(mask.max())
    if peak > 0:
        mask = mask / peak  # DFL renormalises so the loss weight peaks at 1 whatever the blur left
    return mask.astype(np.float32)


def _check_mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {m.shape}")
    if m.dtype == np.uint8:
        return m.astype(np.float32) / 255.0
    return m.astype(np.float32)


def erode_dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Shrink (``pixels > 0``) or grow (``pixels < 0``) a mask's edge by about ``|pixels|`` pixels.

    Uses an elliptical structuring element of diameter ``2*|pixels| + 1`` so the edge moves evenly in
    all directions. The image border does not count as background (OpenCV's default), so a mask that
    touches the border is not eaten from that side.

    Args:
        mask: (H, W) float mask in [0, 1] (uint8 is converted).
        pixels: erosion radius; negative dilates; 0 returns a copy.

    Returns:
        (H, W) float32 in [0, 1].
    """
    m = _check_mask(mask)
    n = int(pixels)
    if n == 0:
        return m.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(n) + 1, 2 * abs(n) + 1))
    out = cv2.erode(m, kernel) if n > 0 else cv2.dilate(m, kernel)
    return np.clip(out, 0.0, 1.0)


def feather(mask: np.ndarray, blur_px: int) -> np.ndarray:
    """Soften a mask's edge with a Gaussian blur whose kernel spans ``2*blur_px + 1`` pixels.

    Edges are extended by replication, so the blur does not invent background at the image border.
    (DFL's merger zero-pads its mask before blurring so the face fades out at the crop edge; pad first
    if you want that.)

    Args:
        mask: (H, W) float mask in [0, 1] (uint8 is converted).
        blur_px: feather radius in pixels; 0 returns a copy.

    Returns:
        (H, W) float32 in [0, 1].
    """
    m = _check_mask(mask)
    n = int(blur_px)
    if n < 0:
        raise ValueError(f"blur_px must be >= 0, got {blur_px}")
    if n == 0:
        return m.copy()
    k = 2 * n + 1
    out = cv2.GaussianBlur(m, (k, k), 0, borderType=cv2.BORDER_REPLICATE)
    return np.clip(out, 0.0, 1.0)
