"""The visible SYNTHETIC label that every exported video, live view and recording carries.

Pure image functions (OpenCV drawing only), apart from the video stack, so the live view and anything else that
shows swapped frames can draw it without PyAV. :mod:`workbench.export` draws it on every exported frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from .images import to_uint8

LABEL_TEXT = "SYNTHETIC"


def _ink_height_per_scale(font: int, thickness: int) -> float:
    """Height in px of the inked capitals per unit of font scale (getTextSize overstates it, by version)."""
    canvas = np.zeros((160, 640), np.uint8)
    cv2.putText(canvas, LABEL_TEXT, (8, 120), font, 2.0, 255, thickness, cv2.LINE_AA)
    rows = np.nonzero(canvas.max(axis=1) > 127)[0]
    return (rows[-1] - rows[0] + 1) / 2.0 if rows.size else 20.0


def label_patch(height: int, width: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Render the corner label for a frame size: (y0, x0, RGB uint8 patch, alpha HxWx1 float32).

    Capital letters are 5 % of the short side tall (13 px at 256 px, 54 px at 1080p), never below 10 px.
    """
    short = min(height, width)
    text_h = max(10, round(0.05 * short))
    font = cv2.FONT_HERSHEY_SIMPLEX
    thickness = max(1, round(text_h / 9))
    scale = text_h / _ink_height_per_scale(font, thickness)
    (tw, _), _ = cv2.getTextSize(LABEL_TEXT, font, scale, thickness)
    pad = max(3, round(0.4 * text_h))
    ph, pw = text_h + 2 * pad, tw + 2 * pad
    margin = max(2, round(0.02 * short))
    ph, pw = min(ph, height - margin), min(pw, width - margin)  # tiny frames: clip rather than fail
    patch = np.zeros((ph, pw, 3), np.uint8)
    cv2.putText(patch, LABEL_TEXT, (pad, pad + text_h), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    text_alpha = patch[..., :1].astype(np.float32) / 255.0
    alpha = 0.6 + 0.4 * text_alpha  # a dark 60 % box behind opaque white letters
    return margin, margin, patch, alpha


def apply_label(rgb: np.ndarray, label: tuple[int, int, np.ndarray, np.ndarray]) -> np.ndarray:
    """A copy of an RGB uint8 frame with a rendered label (:func:`label_patch`) blended into its corner."""
    y0, x0, patch, alpha = label
    out = rgb.copy()
    region = out[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]].astype(np.float32)
    blended = region * (1.0 - alpha) + patch.astype(np.float32) * alpha
    out[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] = np.clip(np.rint(blended), 0, 255).astype(
        np.uint8
    )
    return out


def draw_synthetic_label(image: np.ndarray) -> np.ndarray:
    """Copy of an RGB image (uint8 or float [0,1]) with a "SYNTHETIC" label in its top-left corner."""
    rgb = to_uint8(image)
    out = apply_label(rgb, label_patch(rgb.shape[0], rgb.shape[1]))
    return out if image.dtype == np.uint8 else out.astype(np.float32) / np.float32(255.0)
