"""YuNet (libfacedetection, 2023): a tiny anchor-free CNN detector from the ``yuface`` wheel, + dlib's predictor.

The weights are compiled into the wheel, so nothing is downloaded. ``yuface`` publishes wheels for
Python <= 3.11 only, so this engine is optional: where the wheel is missing it fails at construction with
:class:`~workbench.errors.EngineUnavailableError` and an install hint. YuNet's OpenMP loop uses every core by
default, which made calls up to 10x slower on a shared 2-core machine; the library's own OpenMP runtime is
therefore initialised single-threaded (``OMP_NUM_THREADS=1`` only while it loads, so torch is unaffected).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import EngineUnavailableError
from .base import Box, BoxCalibration, as_dlib_image, shape_predictor
from .calibrated import CalibratedPredictor

# yuface warns (and slows down) above 960 px; detection runs on a copy at most this large.
MAX_SIDE = 960


@functools.lru_cache(maxsize=1)
def import_yuface() -> Any:
    """Import yuface with its bundled OpenMP runtime set to one thread.

    Raises:
        EngineUnavailableError: yuface is not installed (no wheel for this Python).
    """
    spec = importlib.util.find_spec("yuface")
    if spec is None:
        raise EngineUnavailableError(
            "the YuNet engine needs the optional package yuface, which is not installed",
            hint="pip install yuface (wheels exist for Python <= 3.11 only); or use the engines "
            "'auto', 'dlib' or 'mtcnn'",
        )
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # read once by yuface's own libgomp when it loads
    try:
        import yuface
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous
    _limit_bundled_openmp(Path(list(spec.submodule_search_locations)[0]))
    return yuface


def _limit_bundled_openmp(package_dir: Path) -> None:
    """Also call omp_set_num_threads(1) on yuface's vendored libgomp, in case it was loaded before."""
    for lib in sorted((package_dir.parent / "yuface.libs").glob("libgomp*.so*")):
        try:
            ctypes.CDLL(str(lib)).omp_set_num_threads(1)
        except (OSError, AttributeError):
            pass


class YunetEngine(CalibratedPredictor):
    """YuNet detector (libfacedetection via ``yuface``, single-threaded) + dlib's 68-point predictor.

    Args:
        device: ignored (CPU only).
        threshold: minimum confidence in [0, 1] (YuNet reports 0..100; 0.5 = yuface's default).
        guard: drop candidates that fail the false-face check in ``find``/``detect_faces`` (YuNet scores dog
            faces 0.66-0.85).
    """

    name = "yunet"
    # Fitted by `python -m workbench.bench detect --calibrate` on ../shared/data: the median offset and scale
    # taking each raw box onto the overlapping (IoU > 0.4) dlib HOG box, over 114 pairs from the stills,
    # the dlib landmark photos and every 30th frame of the videos.
    # YuNet's boxes are taller and narrower than HOG's (forehead to chin) and sit higher.
    calibration = BoxCalibration(dx=-0.013, dy=0.0529, sx=1.0882, sy=0.8222)

    def __init__(self, device: str = "cpu", threshold: float = 0.5, guard: bool = True):
        self._yuface = import_yuface()
        self.threshold = float(threshold)
        self.guard = bool(guard)
        shape_predictor()

    def detect(self, image: np.ndarray) -> list[tuple[Box, float]]:
        return [(box, score) for box, score, _ in self.detect_points(image)]

    def detect_points(self, image: np.ndarray) -> list[tuple[Box, float, np.ndarray]]:
        """Boxes, confidences in [0, 1] and (5, 2) points (eyes, nose tip, mouth corners; image-left first)."""
        rgb = as_dlib_image(image)
        h, w = rgb.shape[:2]
        scale = min(1.0, MAX_SIDE / max(h, w))
        if scale < 1.0:
            rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        confs, boxes, points = self._yuface.detect(bgr, conf=self.threshold)
        out = []
        for conf, (x, y, bw, bh), pts in zip(np.asarray(confs, np.float64),
                                             np.asarray(boxes, np.float64).reshape(-1, 4),
                                             np.asarray(points, np.float64).reshape(-1, 10)):
            box = (x / scale, y / scale, (x + bw) / scale, (y + bh) / scale)
            out.append((box, float(conf) / 100.0, (pts.reshape(5, 2) / scale).astype(np.float32)))
        return out
