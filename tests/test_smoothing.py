from __future__ import annotations

import numpy as np

from workbench.smoothing import jitter, smooth_landmark_track


def _face(rng):
    base = rng.uniform(100, 200, (68, 2))
    base[36], base[45] = (120, 150), (180, 150)  # 60 px between the outer eye corners
    return base


def test_reduces_jitter_of_a_still_face(rng):
    base = _face(rng)
    track = base[None] + rng.normal(0, 1.0, (120, 68, 2))
    smoothed = smooth_landmark_track(track, strength=0.5)
    assert smoothed.shape == track.shape and smoothed.dtype == np.float32
    assert jitter(smoothed) < 0.3 * jitter(track)
    # and it stays centred on the true position
    assert np.abs(smoothed[30:].mean(axis=0) - base).mean() < 0.3


def test_follows_fast_motion_without_lag(rng):
    base = _face(rng)
    track = np.repeat(base[None], 60, axis=0)
    track[30:] += (40.0, 0.0)  # the head jumps by 2/3 of a face width
    smoothed = smooth_landmark_track(track, strength=0.5)
    error = np.abs(smoothed[:, :, 0] - track[:, :, 0]).mean(axis=1)
    assert error[33:].max() < 1.0  # caught up within 3 frames
    assert error[:30].max() < 1e-4  # float32 rounding only


def test_zero_strength_is_identity_and_vfr_timestamps(rng):
    track = _face(rng)[None] + rng.normal(0, 1, (10, 68, 2))
    assert np.allclose(smooth_landmark_track(track, strength=0.0), track)
    times = np.cumsum(rng.choice([1 / 30, 2 / 30], size=10))
    out = smooth_landmark_track(track, times, strength=0.7)
    assert np.isfinite(out).all()
