"""Tracking between video frames: KLT landmark tracking (extraction) and dense-flow stabilisation (merging).

- :class:`LandmarkTracker` follows the 68 landmarks of one face with pyramidal Lucas-Kanade (KLT,
  ``cv2.calcOpticalFlowPyrLK``) from the last good detection. It fills frames where the detector finds nothing
  (a blink of motion blur, a hand in front of the chin, a head turned a little too far) and steadies jitter:
  where both exist, the detection is blended with the tracked points, so still faces stop shimmering while
  moving faces are followed (optical flow moves with the face; a low-pass filter lags). Every point is tracked
  forward and back again; when the forward-backward error grows (occlusion, a cut), the track ends and the
  detector must find the face again.
- :class:`FlowStabilizer` keeps the merged face steady from frame to frame: dense optical flow (Farneback)
  between consecutive destination frames carries the previous merged result onto the current frame; where the
  destination itself is well explained by that flow (a still or smoothly moving face), the current merged frame
  and mask are blended towards the carried-over one, so texture, mask edge and colour correction stop
  flickering; where the flow fails (fast motion, a cut), the current frame is kept as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# KLT settings: a 21 px window over a 3-level pyramid follows ~60 px per frame at full resolution.
KLT_WINDOW = (21, 21)
KLT_LEVELS = 3
KLT_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)


def to_grey(image: np.ndarray) -> np.ndarray:
    """RGB float [0,1] or uint8 -> uint8 grey (what KLT and Farneback read)."""
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(np.ascontiguousarray(image), alpha=255.0)
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def inter_ocular(points: np.ndarray) -> float:
    """Outer-eye-corner distance of 68 points (the usual NME normaliser)."""
    return max(float(np.linalg.norm(np.asarray(points)[36] - np.asarray(points)[45])), 1.0)


def klt_track(previous_grey: np.ndarray, grey: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Track points from one grey frame to the next, forward and back.

    Returns:
        (N, 2) float32 tracked points and (N,) forward-backward error in pixels (inf where KLT lost a point).
    """
    p0 = np.ascontiguousarray(np.asarray(points, np.float32).reshape(-1, 1, 2))
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(previous_grey, grey, p0, None, winSize=KLT_WINDOW, maxLevel=KLT_LEVELS,
                                          criteria=KLT_CRITERIA)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(grey, previous_grey, p1, None, winSize=KLT_WINDOW,
                                            maxLevel=KLT_LEVELS, criteria=KLT_CRITERIA)
    error = np.linalg.norm((back - p0).reshape(-1, 2), axis=1)
    error[(st1.ravel() == 0) | (st2.ravel() == 0)] = np.inf
    return p1.reshape(-1, 2).astype(np.float32), error


@dataclass(frozen=True)
class TrackOptions:
    """KLT landmark tracking in extraction.

    Attributes:
        max_gap: frames in a row the tracker may fill without a detection before the track ends.
        max_error: largest median forward-backward error (fraction of the eye distance) of a usable track.
        min_valid: share of the 68 points that must be tracked well (error under ``2 * max_error``).
        blend: weight of the tracked points when a detection exists too (0 = detector only, 1 = tracker only);
            the rest comes from the detection, which keeps the track from drifting.
        max_disagreement: when detection and track differ by more (mean, in eye distances) the detection wins
            outright (new face, or the track slipped).
    """

    max_gap: int = 10
    max_error: float = 0.03
    min_valid: float = 0.8
    blend: float = 0.6
    max_disagreement: float = 0.15


@dataclass(frozen=True)
class TrackStep:
    """The tracker's answer for one frame: landmarks (or None), where they came from and the track quality."""

    landmarks: np.ndarray | None
    origin: str  # "detected", "tracked" or "none"
    error: float | None = None  # median forward-backward error in eye distances (None without a track)


class LandmarkTracker:
    """Streaming KLT tracker for one face: feed frames in order with the detector's landmarks (or None)."""

    def __init__(self, options: TrackOptions = TrackOptions()):
        self.options = options
        self.reset()

    def reset(self) -> None:
        """Forget the track (a cut, a frame without the face, a resumed extraction)."""
        self._grey: np.ndarray | None = None
        self._points: np.ndarray | None = None
        self._gap = 0

    def _track(self, grey: np.ndarray) -> tuple[np.ndarray | None, float | None]:
        if self._grey is None or self._points is None or self._grey.shape != grey.shape:
            return None, None
        points, fb = klt_track(self._grey, grey, self._points)
        scale = inter_ocular(self._points)
        error = float(np.median(fb)) / scale
        valid = float(np.mean(fb / scale < 2 * self.options.max_error))
        if not np.isfinite(error) or error > self.options.max_error or valid < self.options.min_valid:
            return None, error if np.isfinite(error) else None
        return points, error

    def update(self, frame: np.ndarray, detected: np.ndarray | None) -> TrackStep:
        """Landmarks for this frame: the detection steadied by the track, the track alone, or nothing."""
        grey = to_grey(frame)
        tracked, error = self._track(grey)
        self._grey = grey
        opts = self.options
        if detected is not None:
            detected = np.asarray(detected, np.float32).reshape(-1, 2)
            out = detected
            if tracked is not None:
                gap = float(np.linalg.norm(tracked - detected, axis=1).mean()) / inter_ocular(detected)
                if gap <= opts.max_disagreement:
                    out = (opts.blend * tracked + (1 - opts.blend) * detected).astype(np.float32)
            self._points, self._gap = out, 0
            return TrackStep(out, "detected", error)
        if tracked is not None and self._gap < opts.max_gap:
            self._points = tracked
            self._gap += 1
            return TrackStep(tracked, "tracked", error)
        self._points, self._gap = None, 0
        return TrackStep(None, "none", error)


# DetectedFace.engine of a face that KLT filled in (recorded as origin "tracked" in the face metadata).
TRACKED_ENGINE = "klt"


def tracked_face(landmarks: np.ndarray):
    """A :class:`~workbench.detect.DetectedFace` for landmarks KLT carried into a frame the detector missed."""
    from .detect import DetectedFace

    return DetectedFace(box=box_around(landmarks), score=0.0, landmarks=np.asarray(landmarks, np.float32),
                        engine=TRACKED_ENGINE)


def box_around(points: np.ndarray) -> tuple[float, float, float, float]:
    """A HOG-like square box for tracked landmarks (brows to chin), for metadata and debug images."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    side = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (float(cx - side / 2), float(cy - side / 2), float(cx + side / 2), float(cy + side / 2))


# ------------------------------------------------------------------------------------------- merge stabiliser


def dense_flow(previous_grey: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """Farneback optical flow (H, W, 2) such that ``grey[y, x] ~ previous_grey[y + v, x + u]``.

    Computed backward (current -> previous) so it can warp previous images onto the current frame directly.
    """
    return cv2.calcOpticalFlowFarneback(grey, previous_grey, None, pyr_scale=0.5, levels=3, winsize=21,
                                        iterations=3, poly_n=5, poly_sigma=1.1, flags=0)


def warp_with_flow(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``image`` (previous frame) at ``pixel + flow``: the previous frame moved onto the current one."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(np.ascontiguousarray(image), gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class StabilizeOptions:
    """Dense-flow stabilisation of merged frames.

    Attributes:
        strength: 0 (off) .. 1: how much of the carried-over previous result a perfectly tracked pixel keeps.
        sigma: destination warp error (0-1 levels) at which a pixel's confidence falls to 1/e; above it the flow
            is not trusted (motion, occlusion, a cut) and the current merged pixel is kept.
    """

    strength: float = 0.5
    sigma: float = 0.03


class FlowStabilizer:
    """Streaming: feed (destination frame, merged frame, mask) in order; get steadier merged frames and masks."""

    def __init__(self, options: StabilizeOptions = StabilizeOptions()):
        if not 0.0 <= options.strength <= 1.0:
            raise ValueError(f"strength must be 0..1, got {options.strength}")
        self.options = options
        self.reset()

    def reset(self) -> None:
        self._grey: np.ndarray | None = None
        self._dst: np.ndarray | None = None
        self._merged: np.ndarray | None = None
        self._mask: np.ndarray | None = None

    def update(self, dst: np.ndarray, merged: np.ndarray, mask: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """Stabilised (merged, mask) for this frame; RGB float32 HWC and HW float32 in [0, 1]."""
        dst = np.asarray(dst, np.float32)
        merged = np.asarray(merged, np.float32)
        grey = to_grey(dst)
        out, out_mask = merged, mask
        if (self.options.strength > 0 and self._grey is not None and self._grey.shape == grey.shape
                and self._merged is not None and self._merged.shape == merged.shape):
            flow = dense_flow(self._grey, grey)
            carried_dst = warp_with_flow(self._dst, flow)
            # Confidence: how well the flow explains the destination itself at each pixel.
            error = np.abs(carried_dst - dst).mean(axis=2)
            error = cv2.GaussianBlur(error, (0, 0), 2.0)
            weight = (self.options.strength * np.exp(-error / self.options.sigma)).astype(np.float32)
            if mask is not None and self._mask is not None and self._mask.shape == mask.shape:
                carried_mask = warp_with_flow(self._mask, flow)
                # Only the pasted face (and a feathered rim) is steadied; the rest is the destination itself.
                region = cv2.GaussianBlur(np.maximum(mask, carried_mask).astype(np.float32), (0, 0), 3.0)
                weight *= np.clip(2.0 * region, 0.0, 1.0)
                out_mask = np.asarray(mask, np.float32) + weight * (carried_mask - mask)
            carried = warp_with_flow(self._merged, flow)
            out = merged + weight[..., None] * (carried - merged)
        self._grey, self._dst, self._merged = grey, dst, np.asarray(out, np.float32)
        self._mask = None if out_mask is None else np.asarray(out_mask, np.float32)
        return self._merged, self._mask
