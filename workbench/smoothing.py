"""Temporal smoothing of landmark tracks (destination videos): less jitter, no lag on fast motion.

Uses the One-Euro filter (Casiez et al., CHI 2012): a low-pass filter whose cut-off rises with the
speed of the signal, so a still face is smoothed hard while a turning head is followed at once.
Speeds are measured in face sizes per second (inter-ocular distance) so one ``strength`` works for
any resolution.
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff_hz: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz))
    return 1.0 / (1.0 + tau / dt)


def strength_to_cutoff(strength: float) -> float:
    """Map a user strength in [0, 1] to the One-Euro minimum cut-off in Hz (0.5 -> 1 Hz, 1 -> 0.1 Hz)."""
    strength = float(np.clip(strength, 0.0, 1.0))
    return 10.0 ** (1.0 - 2.0 * strength)


class LandmarkFilter:
    """Streaming One-Euro filter for one face track: feed frames in order, get smoothed landmarks back.

    Extraction uses it frame by frame so a long video never has to be held in memory.
    """

    def __init__(self, strength: float = 0.5, beta: float = 4.0, derivative_cutoff: float = 1.0):
        self.min_cutoff = strength_to_cutoff(strength)
        self.enabled = strength > 0
        self.beta = beta
        self.derivative_cutoff = derivative_cutoff
        self.reset()

    def reset(self) -> None:
        """Start a new track (after a cut or a frame without the face)."""
        self._previous: np.ndarray | None = None
        self._time = 0.0
        self._speed: np.ndarray | float = 0.0

    def update(self, landmarks: np.ndarray, timestamp: float) -> np.ndarray:
        """Smooth the next frame's (N, 2) landmarks taken at ``timestamp`` seconds."""
        points = np.asarray(landmarks, dtype=np.float64)
        if not self.enabled:
            return points.astype(np.float32)
        if self._previous is None:
            self._previous, self._time = points, timestamp
            return points.astype(np.float32)
        dt = max(timestamp - self._time, 1e-3)
        if len(points) == 68:  # face scale: outer eye corners
            scale = max(float(np.linalg.norm(points[45] - points[36])), 1.0)
        else:
            scale = max(float(points.std(axis=0).mean()), 1.0)
        raw_speed = (points - self._previous) / dt / scale
        a_d = _alpha(self.derivative_cutoff, dt)
        self._speed = a_d * raw_speed + (1 - a_d) * self._speed
        # One cut-off per face (not per point) keeps the face shape rigid while smoothing.
        cutoff = self.min_cutoff + self.beta * float(np.linalg.norm(self._speed, axis=-1).mean())
        a = _alpha(cutoff, dt)
        self._previous = a * points + (1 - a) * self._previous
        self._time = timestamp
        return self._previous.astype(np.float32)


def smooth_landmark_track(
    landmarks: np.ndarray,
    timestamps: np.ndarray | None = None,
    strength: float = 0.5,
    beta: float = 4.0,
    derivative_cutoff: float = 1.0,
) -> np.ndarray:
    """Smooth one face's landmarks over time.

    Args:
        landmarks: (T, N, 2) landmarks of the same face in consecutive frames (frame pixels).
        timestamps: (T,) seconds; defaults to 30 fps spacing. Variable frame rate is respected.
        strength: 0 returns the input unchanged; 1 smooths a still face the most.
        beta: how fast the cut-off rises with speed (in face sizes per second); higher = less lag.
        derivative_cutoff: cut-off (Hz) of the speed estimate.

    Returns:
        (T, N, 2) float32 smoothed landmarks (a new array).
    """
    track = np.asarray(landmarks, dtype=np.float64)
    if track.ndim != 3 or track.shape[-1] != 2:
        raise ValueError(f"landmarks must be (T, N, 2), got {track.shape}")
    if timestamps is None:
        timestamps = np.arange(len(track)) / 30.0
    smoother = LandmarkFilter(strength, beta, derivative_cutoff)
    return np.stack([smoother.update(points, float(t)) for points, t in zip(track, timestamps)]) if len(track) \
        else track.astype(np.float32)


def jitter(track: np.ndarray) -> float:
    """Mean frame-to-frame landmark displacement (pixels), a simple jitter measure."""
    track = np.asarray(track, dtype=np.float64)
    if len(track) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(track, axis=0), axis=-1).mean())
