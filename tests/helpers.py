"""Small helpers shared by test modules (imported as ``from helpers import ...``)."""

from __future__ import annotations

import numpy as np


def largest_face_landmarks(image: np.ndarray) -> np.ndarray:
    """68 landmarks (float64, frame px) of the largest face found by the default offline engine."""
    from workbench.detect import detect_faces

    faces = detect_faces(image, "dlib", detect_max_side=640)
    assert faces, "the dlib engine found no face"
    return faces[0].landmarks.astype(np.float64)
