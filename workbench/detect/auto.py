"""The default engine: dlib HOG first, then a stronger detector and a rotation search, with a false-face guard.

HOG (2005) is fast and precise on upright frontal faces, which are most frames of most videos, so it runs
first and alone whenever it finds a face: on such frames the combined engine costs what HOG costs. Where HOG
finds nothing (a turned or tilted head, a small face, a sideways photo), the fallback detector runs: YuNet when
the optional ``yuface`` wheel is installed, else MTCNN. Its tilted faces are fitted upright
(:func:`.calibrated.fit_landmarks`), and if it finds nothing either, the frame is turned by 90, 270 and 180
degrees (DeepFaceLab's rotation-search order) and searched again for faces of at least
:data:`ROTATED_MIN_SIZE` px under the guard's strict thresholds. Every fallback candidate must pass the false-face guard (:mod:`.guard`): YuNet
alone scores dog faces 0.66-0.85; guarded, ``dogs.jpg`` gives no face.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from ..errors import ConfigError
from .base import (
    Box,
    Found,
    as_dlib_image,
    downscale_for_detection,
    predict_landmarks,
    rotate_image,
    unrotate_box,
    unrotate_points,
)
from .dlib_engines import DlibHogEngine

FALLBACKS = ("yunet", "mtcnn")
SEARCH_ROTATIONS = (90, 270, 180)
# The rotation search is for sideways or upside-down frames (a phone held the wrong way), whose faces are big.
# Small faces found only in a turned frame are mostly not worth the risk: dogs.jpg holds a ~40 px printed face
# on a magazine cover lying sideways, which MTCNN and YuNet both find (O-Net: 0.999) once the photo is turned
# 90 degrees. Turned passes therefore keep only faces at least this many pixels wide.
ROTATED_MIN_SIZE = 64


def default_fallback() -> str:
    """YuNet where its optional wheel is installed (faster, finds more profiles), else MTCNN."""
    return "yunet" if importlib.util.find_spec("yuface") is not None else "mtcnn"


class AutoEngine:
    """HOG, then a guarded YuNet/MTCNN pass, then a rotation search; landmarks from dlib's predictor.

    Args:
        device: ignored (CPU).
        fallback: "yunet", "mtcnn" or None (= :func:`default_fallback`).
        rotation_search: turn the frame by 90/270/180 degrees when nothing is found upright.
        upsample: HOG's upsampling (0: faces >= ~80 px; the fallback finds smaller ones).
    """

    name = "auto"

    def __init__(self, device: str = "cpu", fallback: str | None = None, rotation_search: bool = True,
                 upsample: int = 0):
        fallback = fallback or default_fallback()
        if fallback not in FALLBACKS:
            raise ConfigError(f"unknown fallback detector '{fallback}'", hint=f"choose one of {FALLBACKS}")
        from .mtcnn import MtcnnEngine
        from .yunet import YunetEngine

        self.hog = DlibHogEngine(upsample=upsample)
        self.fallback = YunetEngine() if fallback == "yunet" else MtcnnEngine()
        self.rotation_search = bool(rotation_search)

    def detect(self, image: np.ndarray) -> list[tuple[Box, float]]:
        """Boxes in HOG's framing (fallback boxes calibrated), so :meth:`landmarks` fits them directly."""
        return [(f.box, f.score) for f in self.find(image)]

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        return predict_landmarks(image, box)

    def find(self, image: np.ndarray, detect_max_side: int | None = None) -> list[Found]:
        """Faces with 68 landmarks; each :class:`Found` names the detector that found it ("dlib", "yunet"...)."""
        frame = as_dlib_image(image)
        small, scale = downscale_for_detection(frame, detect_max_side)
        hog = [(tuple(v / scale for v in box), score) for box, score in self.hog.detect(small)]
        if hog:
            return [Found(box, score, predict_landmarks(frame, box), self.hog.name, 0) for box, score in hog]
        found = self._fallback(frame, detect_max_side)
        if found or not self.rotation_search:
            return found
        height, width = frame.shape[:2]
        for rotation in SEARCH_ROTATIONS:
            turned = np.ascontiguousarray(rotate_image(frame, rotation))
            found = [f for f in self._fallback(turned, detect_max_side, strict=True)
                     if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= ROTATED_MIN_SIZE]
            if found:
                return [Found(unrotate_box(f.box, rotation, width, height), f.score,
                              unrotate_points(f.landmarks, rotation, width, height).astype(np.float32),
                              f.engine, rotation) for f in found]
        return []

    def _fallback(self, frame: np.ndarray, detect_max_side: int | None, strict: bool = False) -> list[Found]:
        calibration = self.fallback.calibration
        return [Found(calibration.apply(f.box), f.score, f.landmarks, f.engine, f.rotation)
                for f in self.fallback.find(frame, detect_max_side=detect_max_side, strict=strict)]
