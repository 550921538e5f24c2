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
    if strength <= 0 or len(track) < 2:
        return track.astype(np.float32)
    if timestamps is None:
        timestamps = np.arange(len(track)) / 30.0
    timestamps = np.asarray(timestamps, dtype=np.float64)
    # Face scale per frame: outer eye corners for 68-point sets, otherwise the landmark spread.
    if track.shape[1] == 68:
        scale = np.linalg.norm(track[:, 45] - track[:, 36], axis=-1)
    else:
        scale = track.std(axis=1).mean(axis=-1)
    scale = np.maximum(scale, 1.0)
    min_cutoff = strength_to_cutoff(strength)
    out = np.empty_like(track)
    out[0] = track[0]
    speed = np.zeros(track.shape[1:], dtype=np.float64)
    for t in range(1, len(track)):
        dt = max(timestamps[t] - timestamps[t - 1], 1e-3)
        raw_speed = (track[t] - out[t - 1]) / dt / scale[t]
        a_d = _alpha(derivative_cutoff, dt)
        speed = a_d * raw_speed + (1 - a_d) * speed
        # One cut-off per face (not per point) keeps the face shape rigid while smoothing.
        cutoff = min_cutoff + beta * float(np.linalg.norm(speed, axis=-1).mean())
        a = _alpha(cutoff, dt)
        out[t] = a * track[t] + (1 - a) * out[t - 1]
    return out.astype(np.float32)


def jitter(track: np.ndarray) -> float:
    """Mean frame-to-frame landmark displacement (pixels), a simple jitter measure."""
    track = np.asarray(track, dtype=np.float64)
    if len(track) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(track, axis=0), axis=-1).mean())
