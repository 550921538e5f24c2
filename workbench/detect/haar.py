"""Viola-Jones (2001): OpenCV's Haar cascade frontal-face detector + dlib's 68-point predictor.

Uses ``haarcascade_frontalface_default.xml`` that the ``opencv-python`` 4.x wheel ships in ``cv2.data``.
OpenCV 5 dropped ``CascadeClassifier`` and the cascade files, which is why the project pins ``opencv-python<5``.
A cascade is a chain of boosted classifiers on rectangle (Haar-like) features computed from an integral image:
most windows are rejected by the first few stages, which made it real-time in 2001. It only knows upright,
frontal faces and has more false positives than HOG.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import EngineUnavailableError
from .base import Box, BoxCalibration, as_dlib_image, shape_predictor
from .calibrated import CalibratedPredictor

CASCADE_FILE = "haarcascade_frontalface_default.xml"


def haar_cascade_path(filename: str = CASCADE_FILE) -> Path:
    """Path of a cascade file shipped with opencv-python (``cv2.data.haarcascades``)."""
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if folder is None or not hasattr(cv2, "CascadeClassifier"):
        raise EngineUnavailableError(
            f"this OpenCV ({cv2.__version__}) has no Haar cascades (OpenCV 5 removed them)",
            hint="pip install 'opencv-python>=4.9,<5'",
        )
    path = Path(folder) / filename
    if not path.is_file():
        raise EngineUnavailableError(f"Haar cascade {filename} is missing", path, "reinstall opencv-python<5")
    return path


class HaarEngine(CalibratedPredictor):
    """OpenCV Haar cascade detector + dlib's 68-point predictor on a calibrated box.

    Args:
        device: ignored (CPU only).
        scale_factor: image pyramid step (1.1 = 10 % per level; smaller finds more, slower).
        min_neighbors: overlapping raw hits needed to keep a face (higher = fewer false faces). The score of a
            face is its number of neighbours (OpenCV's ``detectMultiScale2``), so ``min_neighbors`` is its floor.
        min_size: smallest face searched, in pixels.
        guard: drop candidates that fail the false-face check (:mod:`.guard`) in ``find``/``detect_faces``;
            ``detect`` always returns the raw cascade hits.
    """

    name = "haar"
    # Fitted by `python -m workbench.bench detect --calibrate` on ../shared/data: the median offset and scale
    # taking each raw box onto the overlapping (IoU > 0.4) dlib HOG box, over 108 pairs from the stills,
    # the dlib landmark photos and every 30th frame of the videos.
    # Haar boxes are ~12 % larger than HOG's and reach higher (more forehead).
    calibration = BoxCalibration(dx=-0.0035, dy=0.0751, sx=0.8817, sy=0.8817)

    def __init__(self, device: str = "cpu", scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 30,
                 guard: bool = True):
        self._cascade = cv2.CascadeClassifier(str(haar_cascade_path()))
        if self._cascade.empty():
            raise EngineUnavailableError("OpenCV could not load the Haar cascade", haar_cascade_path())
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = int(min_size)
        self.guard = bool(guard)
        shape_predictor()

    def detect(self, image: np.ndarray) -> list[tuple[Box, float]]:
        grey = cv2.cvtColor(as_dlib_image(image), cv2.COLOR_RGB2GRAY)
        grey = cv2.equalizeHist(grey)  # the cascade was trained on histogram-equalised faces
        rects, neighbours = self._cascade.detectMultiScale2(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        return [((float(x), float(y), float(x + w), float(y + h)), float(n))
                for (x, y, w, h), n in zip(np.asarray(rects).reshape(-1, 4), np.asarray(neighbours).ravel())]
