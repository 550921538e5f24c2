"""The engine registry and the detection pipeline: ``detect_faces`` (boxes, scores, 68 landmarks), selection."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, EngineUnavailableError
from .auto import AutoEngine
from .base import (
    NUM_LANDMARKS,
    ROTATION_ORDER,
    Box,
    DetectedFace,
    FaceEngine,
    Found,
    as_dlib_image,
    downscale_for_detection,
    rotate_image,
    unrotate_box,
    unrotate_points,
    validate_image,
)
from .dlib_engines import DlibCnnEngine, DlibHogEngine
from .face_alignment_engine import FaceAlignmentEngine, face_alignment_checkpoint_dir
from .haar import HaarEngine
from .mtcnn import MtcnnEngine
from .yunet import YunetEngine

# The default: HOG first, then YuNet/MTCNN and a rotation search with a false-face guard (see .auto).
DEFAULT_ENGINE = "auto"

ENGINES: dict[str, type] = {
    "auto": AutoEngine,
    "dlib": DlibHogEngine,
    "dlib_cnn": DlibCnnEngine,
    "haar": HaarEngine,
    "mtcnn": MtcnnEngine,
    "yunet": YunetEngine,
    "face_alignment": FaceAlignmentEngine,
}


@functools.lru_cache(maxsize=8)
def _load_engine_cached(name: str, device: str, options: tuple[tuple[str, Any], ...], _cache_dir: str) -> Any:
    return ENGINES[name](device=device, **dict(options))


def load_engine(name: str = DEFAULT_ENGINE, device: str = "cpu", **options: Any) -> FaceEngine:
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


def available_engines(names: Sequence[str] | None = None) -> list[str]:
    """The engines (of ``names``, default all) that load here; optional ones without their package or weights
    (``yunet`` without ``yuface``, ``face_alignment`` without cached weights) are left out."""
    out = []
    for name in names if names is not None else ENGINES:
        try:
            load_engine(name)
        except EngineUnavailableError:
            continue
        out.append(name)
    return out


def resolve_engine(engine: str | FaceEngine) -> FaceEngine:
    """An engine name -> the cached loaded engine; an engine object is returned as it is."""
    if isinstance(engine, str):
        return load_engine(engine)
    if not (hasattr(engine, "detect") and hasattr(engine, "landmarks")):
        raise TypeError(
            f"engine must be a name in {sorted(ENGINES)} or an engine object, got {type(engine).__name__}"
        )
    return engine


def detect_boxes(
    image: np.ndarray,
    engine: str | FaceEngine = DEFAULT_ENGINE,
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


def _find(eng: Any, engine_name: str, image: np.ndarray, min_size: float, max_faces: int,
          detect_max_side: int | None) -> list[Found]:
    """One upright pass: engines with their own ``find`` (the combined one) or detect + landmarks."""
    if hasattr(eng, "find"):
        found = [f for f in eng.find(image, detect_max_side=detect_max_side)
                 if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= min_size]
        found.sort(key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), reverse=True)
        return found[:max_faces] if max_faces > 0 else found
    boxes = detect_boxes(image, eng, min_size=min_size, max_faces=max_faces, detect_max_side=detect_max_side)
    return [Found(box, float(score), eng.landmarks(image, box), engine_name, 0) for box, score in boxes]


def detect_faces(
    image: np.ndarray,
    engine: str | FaceEngine = DEFAULT_ENGINE,
    *,
    min_size: float = 40,
    rotation_search: bool = False,
    max_faces: int = 0,
    detect_max_side: int | None = None,
) -> list[DetectedFace]:
    """Find faces and their 68 landmarks in one RGB frame.

    Args:
        image: (H, W, 3) float RGB in [0, 1].
        engine: an engine name from :data:`ENGINES` ("auto" default, offline) or a loaded engine.
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
        found = _find(eng, engine_name, turned, min_size, max_faces, detect_max_side)
        if not found:
            continue
        faces = []
        for box, score, points, name, angle in found:
            points = np.asarray(points, dtype=np.float32).reshape(NUM_LANDMARKS, 2)
            points = unrotate_points(points, rotation, width, height).astype(np.float32)
            faces.append(
                DetectedFace(
                    box=unrotate_box(box, rotation, width, height),
                    score=float(score),
                    landmarks=points,
                    engine=name,
                    rotation=(rotation + angle) % 360,
                )
            )
        return faces
    return []
