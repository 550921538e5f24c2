"""Choosing the target face(s) of a frame: all, the largest or the most central, optionally only the person of a
reference photo (identity embeddings from :mod:`workbench.identity`).

It sits after detection and identity in the pipeline (``detect`` -> ``identity`` -> ``targets`` -> ``align``), so
neither of those imports the other in a circle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .detect import DetectedFace
from .errors import ConfigError
from .identity import face_embedding


@dataclass(frozen=True)
class SelectedFace:
    """A face kept by :func:`select_faces`; ``distance`` is its embedding distance to the reference (or None)."""

    face: DetectedFace
    distance: float | None = None


SELECT_MODES = ("all", "largest", "center")


def select_faces(
    faces: Sequence[DetectedFace],
    image_shape: tuple[int, ...],
    mode: str = "all",
    *,
    reference: np.ndarray | None = None,
    threshold: float = 0.6,
    image: np.ndarray | None = None,
    embedder: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> list[SelectedFace]:
    """Choose the target face(s) when a frame holds several.

    Args:
        faces: detections of one frame (e.g. from :func:`detect_faces`).
        image_shape: the frame's shape (H, W[, C]); used by mode "center".
        mode: "all" (every face that passes), "largest" (the biggest box) or "center" (closest to the frame centre).
        reference: a (128,) identity embedding (:func:`~workbench.identity.reference_embedding`). When given,
            only faces whose embedding distance is under ``threshold`` pass, each with its distance recorded,
            and "all" lists them best match first.
        threshold: maximum Euclidean embedding distance (dlib's usual 0.6).
        image: the frame the faces come from; required with ``reference``.
        embedder: ``(image, landmarks68) -> embedding``; default :func:`workbench.identity.face_embedding`.

    Returns:
        SelectedFace list (empty when nothing passes).
    """
    if mode not in SELECT_MODES:
        raise ConfigError(f"unknown face selection mode '{mode}'", hint=f"choose one of {SELECT_MODES}")
    if len(image_shape) < 2:
        raise ValueError(f"image_shape must be (H, W[, C]), got {image_shape}")
    if reference is None:
        chosen = [SelectedFace(face) for face in faces]
    else:
        if image is None:
            raise ValueError(
                "select_faces needs the frame (image=...) to compare faces with a reference embedding"
            )
        if embedder is None:
            embedder = face_embedding
        reference = np.asarray(reference, dtype=np.float32).ravel()
        chosen = []
        for face in faces:
            distance = float(
                np.linalg.norm(np.asarray(embedder(image, face.landmarks), np.float32) - reference)
            )
            if distance < threshold:
                chosen.append(SelectedFace(face, distance))
        chosen.sort(key=lambda s: s.distance)
    if not chosen or mode == "all":
        return chosen
    if mode == "largest":
        return [max(chosen, key=lambda s: s.face.area)]
    cy, cx = (image_shape[0] - 1) / 2.0, (image_shape[1] - 1) / 2.0
    return [min(chosen, key=lambda s: (s.face.center[0] - cx) ** 2 + (s.face.center[1] - cy) ** 2)]
