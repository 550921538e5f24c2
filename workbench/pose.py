"""Head pose (pitch, yaw, roll) from 68 landmarks, as DFL computes it for sorting and yaw balancing.

DFL fits its 3D mean face (:data:`~workbench.face_constants.LANDMARKS_68_3D`) to 33 landmarks with
``cv2.solvePnP`` - jaw and brows 0..26 plus the lower nose 30..35, leaving out the nose bridge (whose
depth the mean shape gets wrong most often), the eyes and the mouth (which move with expression). The
camera is a pinhole whose focal length equals the image size, centred, without distortion.

Angles are radians. For a face looking straight at the camera all three are near 0. Signs (checked by
projecting the 3D mean shape): pitch > 0 when the face looks up, yaw > 0 when the nose points toward the
image's left, roll > 0 when the face is turned clockwise in the image. Mirroring the image flips the
signs of yaw and roll. DFL's sort tools assume 2DFAN yaw stays within about [-1.2, 1.2].
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

from .face_constants import LANDMARKS_68_3D

# Rows DFL feeds to solvePnP (both the 3D model and the 2D landmarks).
PNP_INDICES: np.ndarray = np.r_[np.arange(0, 27), np.arange(30, 36)]
PNP_INDICES.setflags(write=False)


class HeadPose(NamedTuple):
    """Pitch, yaw, roll in radians, DFL's signs, each clipped to [-pi/2, pi/2]."""

    pitch: float
    yaw: float
    roll: float


def _rotation_to_euler(rot: np.ndarray) -> tuple[float, float, float]:
    # DFL core/mathlib.rotationMatrixToEulerAngles: x-y-z angles; the singular branch handles gimbal lock.
    sy = math.sqrt(rot[0, 0] * rot[0, 0] + rot[1, 0] * rot[1, 0])
    if sy >= 1e-6:
        x = math.atan2(rot[2, 1], rot[2, 2])
        y = math.atan2(-rot[2, 0], sy)
        z = math.atan2(rot[1, 0], rot[0, 0])
    else:
        x = math.atan2(-rot[1, 2], rot[1, 1])
        y = math.atan2(-rot[2, 0], sy)
        z = 0.0
    return x, y, z


def _solve_pose(landmarks: np.ndarray, width: float, height: float, focal: float) -> HeadPose:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2), got {lm.shape}")
    if not np.all(np.isfinite(lm)):
        raise ValueError("landmarks contain NaN or infinite values")
    camera = np.array([[focal, 0, width / 2.0], [0, focal, height / 2.0], [0, 0, 1]], dtype=np.float64)
    obj = LANDMARKS_68_3D[PNP_INDICES].astype(np.float32)
    img = lm[PNP_INDICES].astype(np.float32)
    dist = np.zeros((4, 1))
    ok, rvec, tvec = cv2.solvePnP(obj, img, camera, dist)  # DFL's call: default iterative solver
    if not ok or tvec[2, 0] <= 0:
        # The iterative solver's linear start can land on the mirror-image solution with the face BEHIND
        # the camera (it reprojects almost as well), which reads as a +-180 degree roll. DFL keeps that
        # result; we restart from the globally optimal SQPnP pose and refine with the same iterative
        # solver, so valid faces get the answer DFL gets whenever DFL's answer is physically possible.
        ok, rvec, tvec = cv2.solvePnP(obj, img, camera, dist, flags=cv2.SOLVEPNP_SQPNP)
        if ok:
            ok, rvec, tvec = cv2.solvePnP(obj, img, camera, dist, rvec, tvec, useExtrinsicGuess=True)
    if not ok:
        raise ValueError("solvePnP failed on these landmarks")
    pitch, yaw, roll = _rotation_to_euler(cv2.Rodrigues(rvec)[0])
    half_pi = math.pi / 2.0
    clip = lambda a: float(min(max(a, -half_pi), half_pi))  # noqa: E731
    # DFL negates pitch so that a face looking up gets a positive pitch.
    return HeadPose(-clip(pitch), clip(yaw), clip(roll))


def estimate_pitch_yaw_roll(aligned_landmarks: np.ndarray, size: int = 256) -> HeadPose:
    """DFL's ``estimate_pitch_yaw_roll`` on an aligned face's landmarks.

    Args:
        aligned_landmarks: (68, 2) landmarks in the aligned face's pixels.
        size: side of the aligned face (the focal length and twice the principal point).

    Returns:
        :class:`HeadPose` ``(pitch, yaw, roll)`` in radians: DFL returns ``(-pitch, yaw, roll)`` of the
        solvePnP rotation, each clipped to [-pi/2, pi/2].
    """
    if not size > 0:
        raise ValueError(f"size must be > 0, got {size}")
    return _solve_pose(aligned_landmarks, float(size), float(size), float(size))


def head_pose(frame_landmarks: np.ndarray, image_size: tuple[int, int]) -> HeadPose:
    """Head pose straight from frame landmarks (no alignment needed).

    The same solve as :func:`estimate_pitch_yaw_roll` with the camera centred on the frame and a focal
    length of ``max(width, height)``. Pitch and yaw agree with the aligned-face estimate to within a few
    degrees for faces near the frame centre; roll here includes the face's tilt in the frame, which the
    aligned crop has removed.

    Args:
        frame_landmarks: (68, 2) landmarks in frame pixels.
        image_size: (width, height) of the frame.

    Returns:
        :class:`HeadPose` in radians.
    """
    if len(image_size) != 2 or min(image_size) <= 0:
        raise ValueError(f"image_size must be (width, height) with positive sides, got {image_size}")
    w, h = float(image_size[0]), float(image_size[1])
    return _solve_pose(frame_landmarks, w, h, max(w, h))
