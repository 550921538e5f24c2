"""Temporal stability: per-frame face motion (for motion blur), landmark smoothing over time and a
flicker measure."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .. import align
from ..errors import ConfigError
from ..images import to_float
from .face import _as_landmarks

MOTION_REFERENCE_SIZE = 256  # DFL measures face motion as FULL-crop centres in a 256 px crop


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
    from ..smoothing import smooth_landmark_track

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
