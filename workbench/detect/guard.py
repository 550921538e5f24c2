"""False-face guard for detectors that fire on non-faces (YuNet scored dog faces 0.66-0.85).

Two checks on a candidate face whose 68 points dlib's predictor has placed:

1. **Second opinion.** The 68 points define a similarity transform onto MTCNN's mean 5-point layout; the
   48x48 crop it cuts is what MTCNN's O-Net would see for a real face there, and O-Net's face probability is
   the score. A dog's muzzle aligned "as a face" by a predictor that always draws a face shape looks nothing
   like the faces O-Net learned.
2. **Fit agreement.** When the detector gives its own 5 points (MTCNN, YuNet), they must agree with the eye,
   nose and mouth centres of the 68-point fit (mean distance as a fraction of the eye distance).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from .base import five_points

# Mean O-Net points as fractions of its 48x48 crop (eyes, nose tip, mouth corners; image-left first), measured
# on the shared stills (face probability > 0.9): where a real face sits in the crop O-Net classifies.
ONET_TEMPLATE = np.array([[0.389, 0.387], [0.718, 0.395], [0.581, 0.583], [0.390, 0.752], [0.707, 0.758]])
ONET_SIZE = 48


@dataclass(frozen=True)
class GuardVerdict:
    """Scores of one candidate: O-Net face probability and 5-point disagreement (fraction of eye distance)."""

    face_probability: float
    point_error: float | None

    def passes(self, min_probability: float, max_point_error: float) -> bool:
        return self.face_probability >= min_probability and (
            self.point_error is None or self.point_error <= max_point_error)


@contextlib.contextmanager
def torch_single_thread() -> Iterator[None]:
    """Run tiny nets on one thread: on a loaded 2-core machine torch's 2 threads made MTCNN 4x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@functools.lru_cache(maxsize=1)
def _onet():
    from .mtcnn_nets import load_mtcnn_nets

    return load_mtcnn_nets()[2]


def aligned_crop(image_u8: np.ndarray, landmarks68: np.ndarray, size: int = ONET_SIZE) -> np.ndarray:
    """The ``size`` x ``size`` crop that puts the 68-point fit's 5 centres onto :data:`ONET_TEMPLATE`."""
    src = five_points(landmarks68).astype(np.float32)
    dst = (ONET_TEMPLATE * size).astype(np.float32)
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if matrix is None:
        matrix = cv2.getAffineTransform(src[:3], dst[:3])
    return cv2.warpAffine(image_u8, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)


def face_probabilities(image_u8: np.ndarray, landmarks: list[np.ndarray]) -> np.ndarray:
    """O-Net's face probability for each 68-point fit (one batch)."""
    import torch

    if not landmarks:
        return np.zeros(0)
    crops = np.stack([aligned_crop(image_u8, lm) for lm in landmarks])
    x = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() - 127.5) * 0.0078125
    with torch.inference_mode(), torch_single_thread():
        _, _, prob = _onet()(x)
    return prob[:, 1].numpy().astype(np.float64)


def point_error(landmarks68: np.ndarray, points5: np.ndarray) -> float:
    """Mean distance between a detector's 5 points and the 68-point fit's, in eye distances."""
    fit = five_points(landmarks68).astype(np.float64)
    iod = max(float(np.linalg.norm(fit[1] - fit[0])), 1.0)
    return float(np.linalg.norm(fit - np.asarray(points5, np.float64).reshape(5, 2), axis=1).mean() / iod)


def check_faces(image_u8: np.ndarray, landmarks: list[np.ndarray],
                points5: list[np.ndarray | None]) -> list[GuardVerdict]:
    """A :class:`GuardVerdict` for each candidate (``points5`` entries may be None for box-only detectors)."""
    probs = face_probabilities(image_u8, landmarks)
    return [GuardVerdict(float(p), None if pts is None else point_error(lm, pts))
            for p, lm, pts in zip(probs, landmarks, points5)]
