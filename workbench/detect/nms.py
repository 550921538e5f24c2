"""Box overlap: the IoU of two boxes and greedy non-maximum suppression on numpy boxes, vectorised over the
remaining boxes at each step."""

from __future__ import annotations

import numpy as np


def box_iou(a, b) -> float:
    """Intersection over union of two ``x0, y0, x1, y1`` boxes (0 when both are empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Indices of the boxes kept, best score first.

    Args:
        boxes: (N, 4) ``x0, y0, x1, y1``.
        scores: (N,).
        threshold: a box is dropped when its overlap with a kept, better box exceeds this.
        mode: "union" (IoU) or "min" (intersection over the smaller box: MTCNN's last stage, which removes
            a small box nested inside a bigger one).

    The loop runs once per KEPT box (a handful per image); each step compares that box with all the
    remaining ones in one numpy expression.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).ravel()
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    if mode not in ("union", "min"):
        raise ValueError(f"mode must be 'union' or 'min', got {mode!r}")
    x0, y0, x1, y1 = boxes.T
    area = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        ih = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = iw * ih
        if mode == "min":
            overlap = inter / np.maximum(np.minimum(area[i], area[rest]), 1e-9)
        else:
            overlap = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)
