"""Face detection and 68-point landmarks: DFL's extraction stages 1 (rects) and 2 (landmarks).

Three engines share one small interface (``detect`` -> boxes with scores, ``landmarks`` -> (68, 2)):

- ``"dlib"`` (default, offline): dlib's HOG frontal-face detector at upsample 0 plus the 68-point
  shape predictor from ``face-recognition-models``. About 20 ms for a 512x480 frame on one CPU core.
  HOG finds faces down to about 80 px; upsampling finds smaller ones but adds false positives.
- ``"dlib_cnn"`` (offline): dlib's MMOD CNN detector (more poses, ~3 s per image on CPU) plus the same predictor.
- ``"face_alignment"``: the detectors and FAN network DFL itself uses (S3FD + 2DFAN4, via the
  ``face-alignment`` package). Its weights are downloaded on first use, so offline it only works when the
  files already sit in ``$TORCH_HOME/hub/checkpoints``; otherwise it fails at once with
  :class:`~workbench.errors.EngineUnavailableError`.

Boxes are ``(x0, y0, x1, y1)`` in frame pixels with ``x1 = x0 + width`` (dlib's inclusive right edge plus one).
Landmarks are (68, 2) float32 pixel coordinates in iBUG 300-W order (x right, y down).

The dlib 68-point model was trained on iBUG 300-W, whose licence excludes commercial use.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from .errors import ConfigError, EngineUnavailableError

Box = tuple[float, float, float, float]

# DFL's rotation search order (mainscripts/Extractor.py rects_stage): degrees the frame is turned CLOCKWISE.
ROTATION_ORDER = (0, 90, 270, 180)
NUM_LANDMARKS = 68

# face-alignment 1.5.0: cached file names in torch.hub.get_dir()/checkpoints (basename of each download URL).
FAN_2D_FILE = "2DFAN4-11f355bf06.pth.tar"
FA_DETECTOR_FILES: dict[str, tuple[str, ...]] = {
    "sfd": ("s3fd-619a316812.pth",),
    "blazeface": ("blazeface.pth", "anchors.npy"),
    "retinaface": ("retinaface_mobilenet0.25.pth",),
    "scrfd": ("scrfd_2.5g_bnkps.onnx",),
    "yunet": ("face_detection_yunet_2023mar.onnx",),
    "dlib": (),  # on CPU face-alignment uses dlib's HOG detector, which needs no file
}
FA_BASE_URL = "https://www.adrianbulat.com/downloads/python-fan/"


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
        score: detector confidence (dlib HOG: SVM margin, > 0; CNN/S3FD: confidence).
        landmarks: (68, 2) float32, frame pixels, iBUG 68-point order.
        engine: name of the engine that found it.
        rotation: degrees the frame was turned clockwise for the pass that found the face (0, 90, 180 or 270).
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


# --------------------------------------------------------------------------------------------- engines


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
        self._predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))

    def detect(self, image: np.ndarray) -> list[tuple[Box, float]]:
        rects, scores, _ = self._detector.run(as_dlib_image(image), self.upsample, self.threshold)
        return [(_rect_to_box(r), float(s)) for r, s in zip(rects, scores)]

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        return _shape_to_array(self._predictor(as_dlib_image(image), _box_to_rect(self._dlib, box)))


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
        dets = self._cnn(as_dlib_image(image), self.upsample)
        return [(_rect_to_box(d.rect), float(d.confidence)) for d in dets if d.confidence >= self.threshold]


def face_alignment_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (torch.hub's cache, where face-alignment looks for its weights).

    Mirrors ``torch.hub.get_dir()`` without importing torch (seconds on a busy CPU) unless it is already loaded.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        return Path(torch.hub.get_dir()) / "checkpoints"
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def face_alignment_missing_files(face_detector: str = "sfd") -> list[str]:
    """Names of the weight files face-alignment would have to download for this detector (empty = ready)."""
    if face_detector not in FA_DETECTOR_FILES:
        raise ConfigError(
            f"unknown face-alignment detector '{face_detector}'",
            hint=f"choose one of {sorted(FA_DETECTOR_FILES)}",
        )
    folder = face_alignment_checkpoint_dir()
    needed = (FAN_2D_FILE, *FA_DETECTOR_FILES[face_detector])
    return [name for name in needed if not (folder / name).is_file()]


class FaceAlignmentEngine:
    """face-alignment's detector (S3FD by default) + 2DFAN4 landmarks, eager mode (``compile=False``).

    Args:
        device: torch device, e.g. "cpu" or "cuda".
        face_detector: "sfd" (S3FD, DFL's detector), "blazeface", "retinaface", "scrfd", "yunet" or "dlib".
        flip_input: also run FAN on the mirrored crop and average (2 forward passes, slightly more accurate).
        allow_download: let face-alignment download missing weights (needs internet, e.g. on Colab).
            When False (default) missing files raise EngineUnavailableError before anything is built.

    Raises:
        EngineUnavailableError: face-alignment is not installed, or its weight files are not cached.
    """

    name = "face_alignment"

    def __init__(
        self,
        device: str = "cpu",
        face_detector: str = "sfd",
        flip_input: bool = True,
        allow_download: bool = False,
    ):
        if importlib.util.find_spec("face_alignment") is None:
            raise EngineUnavailableError(
                "the face-alignment package is not installed",
                hint="pip install face-alignment==1.5.0, or use the offline engine 'dlib'",
            )
        missing = face_alignment_missing_files(face_detector)
        if missing and not allow_download:
            folder = face_alignment_checkpoint_dir()
            raise EngineUnavailableError(
                f"face-alignment weights are not in the torch hub cache (missing: {', '.join(missing)})",
                folder,
                "use the offline engine 'dlib' (the default), or put the files into "
                f"$TORCH_HOME/hub/checkpoints/ (here {folder}); the FAN and S3FD files download from "
                f"{FA_BASE_URL}<name>. With internet (e.g. Colab) pass allow_download=True.",
            )
        extra = {"scrfd": "onnxruntime"}.get(face_detector)
        if extra and importlib.util.find_spec(extra) is None:
            raise EngineUnavailableError(
                f"face-alignment's '{face_detector}' detector needs {extra}", hint=f"pip install {extra}"
            )
        import face_alignment

        kwargs = {}
        if face_detector == "dlib" and "cuda" in device:  # on CUDA it would download the MMOD file; use ours
            kwargs["path_to_detector"] = str(dlib_model_path("mmod_human_face_detector.dat"))
        self.device = device
        self.face_detector = face_detector
        self._fa = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D,
            device=device,
            flip_input=flip_input,
            face_detector=face_detector,
            face_detector_kwargs=kwargs,
            compile=False,
        )

    def detect(self, image: np.ndarray) -> list[tuple[Box, float]]:
        found = self._fa.face_detector.detect_from_image(as_dlib_image(image).copy())
        out = []
        for det in found:
            det = np.asarray(det, dtype=np.float64).ravel()
            score = float(det[4]) if det.size > 4 else 1.0
            out.append(((float(det[0]), float(det[1]), float(det[2]), float(det[3])), score))
        return out

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        det = np.array([*box, 1.0], dtype=np.float64)  # float32 breaks face_alignment.utils.transform
        result = self._fa.get_landmarks_from_image(as_dlib_image(image), detected_faces=[det])
        return np.asarray(result[0], dtype=np.float32)[:, :2].reshape(NUM_LANDMARKS, 2)


ENGINES: dict[str, type] = {
    "dlib": DlibHogEngine,
    "dlib_cnn": DlibCnnEngine,
    "face_alignment": FaceAlignmentEngine,
}


@functools.lru_cache(maxsize=8)
def _load_engine_cached(name: str, device: str, options: tuple[tuple[str, Any], ...], _cache_dir: str) -> Any:
    return ENGINES[name](device=device, **dict(options))


def load_engine(name: str = "dlib", device: str = "cpu", **options: Any) -> FaceEngine:
    """Build (or fetch from the per-process cache) a detection + landmark engine.

    Args:
        name: a key of :data:`ENGINES`.
        device: "cpu" or a torch device (only face_alignment uses it).
        **options: engine constructor options (hashable values), e.g. ``upsample=1`` or ``face_detector="blazeface"``.

    Raises:
        ConfigError: unknown engine name.
        EngineUnavailableError: the engine's package or weights are missing (never cached, so retrying works).
    """
    if name not in ENGINES:
        raise ConfigError(f"unknown detection engine '{name}'", hint=f"choose one of {sorted(ENGINES)}")
    # face-alignment weights depend on $TORCH_HOME, so it is part of the cache key.
    cache_dir = str(face_alignment_checkpoint_dir()) if name == "face_alignment" else ""
    return _load_engine_cached(name, device, tuple(sorted(options.items())), cache_dir)


def resolve_engine(engine: str | FaceEngine) -> FaceEngine:
    """An engine name -> the cached loaded engine; an engine object is returned as it is."""
    if isinstance(engine, str):
        return load_engine(engine)
    if not (hasattr(engine, "detect") and hasattr(engine, "landmarks")):
        raise TypeError(
            f"engine must be a name in {sorted(ENGINES)} or an engine object, got {type(engine).__name__}"
        )
    return engine


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


def detect_boxes(
    image: np.ndarray,
    engine: str | FaceEngine = "dlib",
    *,
    min_size: float = 40,
    max_faces: int = 0,
    detect_max_side: int | None = None,
) -> list[tuple[Box, float]]:
    """Stage 1 only: face boxes (largest first) in ``image``'s own pixel coordinates.

    ``image`` may be float RGB or uint8 RGB (it is not validated here; :func:`detect_faces` does that).
    With ``detect_max_side`` the detector runs on a copy whose longer side is at most that many pixels and
    the boxes are scaled back. Boxes whose shorter side is under ``min_size`` (full-resolution px) are dropped,
    then only the ``max_faces`` largest are kept (0 = all).
    """
    eng = resolve_engine(engine)
    small, scale = downscale_for_detection(image, detect_max_side)
    found = []
    for box, score in eng.detect(small):
        if scale != 1.0:
            box = (box[0] / scale, box[1] / scale, box[2] / scale, box[3] / scale)
        if min(box[2] - box[0], box[3] - box[1]) >= min_size:
            found.append((box, score))
    found.sort(key=lambda bs: (bs[0][2] - bs[0][0]) * (bs[0][3] - bs[0][1]), reverse=True)
    return found[:max_faces] if max_faces > 0 else found


def detect_faces(
    image: np.ndarray,
    engine: str | FaceEngine = "dlib",
    *,
    min_size: float = 40,
    rotation_search: bool = False,
    max_faces: int = 0,
    detect_max_side: int | None = None,
) -> list[DetectedFace]:
    """Find faces and their 68 landmarks in one RGB frame.

    Args:
        image: (H, W, 3) float RGB in [0, 1].
        engine: an engine name from :data:`ENGINES` ("dlib" default, offline) or a loaded engine.
        min_size: drop faces whose box's shorter side is under this many pixels (DFL: 40).
        rotation_search: if no face is found upright, turn the frame clockwise by 90, 270 then 180 degrees
            (DFL's order) and stop at the first rotation that finds a face. Landmarks and boxes are
            always returned in the original, unrotated frame.
        max_faces: keep only the N largest faces (0 = all; DFL's ``max_faces_from_image``).
        detect_max_side: run the detector on a copy shrunk to this longer side (faster; HOG at upsample 0
            still needs faces of ~80 px in the shrunk copy); landmarks always use the full-resolution frame.

    Returns:
        DetectedFace list, largest box first (empty when there is no face).

    Raises:
        TypeError / ValueError: bad image or option values.
        ConfigError / EngineUnavailableError: unknown or unavailable engine.

    Example:
        >>> faces = detect_faces(read_image("photo.jpg"))  # doctest: +SKIP
        >>> faces[0].landmarks.shape
        (68, 2)
    """
    image = validate_image(image)
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0, got {min_size}")
    if max_faces < 0:
        raise ValueError(f"max_faces must be >= 0 (0 = all), got {max_faces}")
    if detect_max_side is not None and detect_max_side < 32:
        raise ValueError(f"detect_max_side must be None or >= 32, got {detect_max_side}")
    eng = resolve_engine(engine)
    engine_name = getattr(eng, "name", type(eng).__name__)
    height, width = image.shape[:2]
    frame = as_dlib_image(image)  # convert once; every engine accepts uint8 RGB
    for rotation in ROTATION_ORDER if rotation_search else (0,):
        turned = np.ascontiguousarray(rotate_image(frame, rotation))
        boxes = detect_boxes(
            turned, eng, min_size=min_size, max_faces=max_faces, detect_max_side=detect_max_side
        )
        if not boxes:
            continue
        faces = []
        for box, score in boxes:
            points = np.asarray(eng.landmarks(turned, box), dtype=np.float32).reshape(NUM_LANDMARKS, 2)
            points = unrotate_points(points, rotation, width, height).astype(np.float32)
            faces.append(
                DetectedFace(
                    box=unrotate_box(box, rotation, width, height),
                    score=float(score),
                    landmarks=points,
                    engine=engine_name,
                    rotation=rotation,
                )
            )
        return faces
    return []
