"""dlib engines: the HOG + linear-SVM detector (offline default) and the MMOD CNN, with the 68-point predictor."""

from __future__ import annotations

import threading

import numpy as np

from .base import (
    Box,
    _rect_to_box,
    as_dlib_image,
    dlib_model_path,
    import_dlib,
    predict_landmarks,
    shape_predictor,
)


class DlibHogEngine:
    """dlib HOG + linear SVM frontal-face detector and the 68-point shape predictor (offline default).

    Args:
        device: ignored (CPU only); accepted for a uniform signature.
        upsample: times dlib doubles the image before scanning. 0 finds faces >= ~80 px; 1 finds
            ~40 px faces but 4x slower and with false positives (e.g. on a mission patch).
        threshold: SVM score threshold (``adjust_threshold``); lower finds more faces and more false ones.
    """

    name = "dlib"

    def __init__(self, device: str = "cpu", upsample: int = 0, threshold: float = 0.0):
        dlib = import_dlib()
        self._dlib = dlib
        self.upsample = int(upsample)
        self.threshold = float(threshold)
        self._detector = dlib.get_frontal_face_detector()
        # dlib's detectors keep their image pyramid inside the object: two threads detecting at once on images
        # of different sizes corrupt the heap (the live endpoint beside a preview or a second live page do
        # that), and load_engine shares one engine per process. So a detection holds the engine's lock.
        self._lock = threading.Lock()
        shape_predictor()  # load (once per process) now, so a missing model file fails at construction

    def detect(self, image: np.ndarray) -> list[tuple[Box, float]]:
        pixels = as_dlib_image(image)
        with self._lock:
            rects, scores, _ = self._detector.run(pixels, self.upsample, self.threshold)
        return [(_rect_to_box(r), float(s)) for r, s in zip(rects, scores)]

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        return predict_landmarks(image, box)


class DlibCnnEngine(DlibHogEngine):
    """dlib's MMOD CNN face detector (``mmod_human_face_detector.dat``) and the 68-point predictor.

    Finds more poses than HOG but costs ~3 s per 512 px image on CPU. ``threshold`` is the minimum confidence.
    """

    name = "dlib_cnn"

    def __init__(self, device: str = "cpu", upsample: int = 0, threshold: float = 0.0):
        super().__init__(device, upsample, threshold)
        self._cnn = self._dlib.cnn_face_detection_model_v1(
            str(dlib_model_path("mmod_human_face_detector.dat"))
        )

    def detect(self, image: np.ndarray) -> list[tuple[Box, float]]:
        pixels = as_dlib_image(image)
        with self._lock:  # as the HOG detector: one image at a time through the shared dlib object
            dets = self._cnn(pixels, self.upsample)
        return [(_rect_to_box(d.rect), float(d.confidence)) for d in dets if d.confidence >= self.threshold]

