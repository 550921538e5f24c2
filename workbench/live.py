"""Live face swap: a stream of camera frames in, swapped and labelled frames out (the app's Live tab uses it).

Per frame: find the face (a full detection only every ``detect_every`` frames or when the track is lost; in
between the 68 landmarks are re-fitted inside a box carried over from the previous frame), align, run the
model, merge with the usual :class:`workbench.merge.MergeSettings`, draw the SYNTHETIC label. The tracker sits
behind a two-method interface (:class:`FaceTracker`) so a better one (e.g. KLT optical flow) can replace
:class:`LandmarkTracker` without touching the rest.

Nothing is stored: :class:`LiveRecorder` keeps frames only after the user presses record, and writes them with
the normal export (:func:`workbench.export.export_video`: provenance tags + the visible label).

Example:
    >>> swapper = LiveSwapper(load_onnx_predictor("model.dfm"), MergeSettings())     # doctest: +SKIP
    >>> for result in swapper.run(frames): show(result.image)                         # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from .errors import ConfigError

Box = tuple[float, float, float, float]


class FaceTracker(Protocol):
    """What the live pipeline needs from face finding: landmarks per face for each new frame."""

    def update(self, frame: np.ndarray) -> list[np.ndarray]:
        """(68, 2) landmarks in frame pixels for each face in ``frame`` (RGB uint8), in a stable order."""
        ...

    def reset(self) -> None:
        """Forget the current tracks (a new stream)."""
        ...


@dataclass(frozen=True)
class LiveOptions:
    """Live pipeline knobs.

    Attributes:
        detect_every: run the full face detector every N frames (and whenever a track is lost).
        detect_max_side: detect on a copy shrunk to this long side (landmarks come from the full frame).
        max_faces: faces swapped per frame (largest first).
        side_by_side: output "original | swapped" side by side.
        smoothing: One-Euro landmark smoothing strength 0..1 against jitter (0 = off).
    """

    detect_every: int = 8
    detect_max_side: int = 320
    max_faces: int = 1
    side_by_side: bool = False
    smoothing: float = 0.3

    def __post_init__(self) -> None:
        if not 1 <= int(self.detect_every) <= 1000:
            raise ConfigError(f"detect_every must be 1..1000, not {self.detect_every}")
        if not 64 <= int(self.detect_max_side) <= 4096:
            raise ConfigError(f"detect_max_side must be 64..4096, not {self.detect_max_side}")
        if not 1 <= int(self.max_faces) <= 8:
            raise ConfigError(f"max_faces must be 1..8, not {self.max_faces}")
        if not 0.0 <= float(self.smoothing) <= 1.0:
            raise ConfigError(f"smoothing must be 0..1, not {self.smoothing}")


def _landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) of the landmarks."""
    return np.concatenate([landmarks.min(0), landmarks.max(0)]).astype(np.float64)


PATCH = 24  # side of the grey face thumbnail compared between frames


def _face_patch(grey: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
    """The landmark box of a grey frame resized to PATCH x PATCH, zero-mean and unit-norm (None if flat)."""
    x0, y0, x1, y1 = _landmark_box(landmarks)
    h, w = grey.shape
    xa, ya = int(max(0, np.floor(x0))), int(max(0, np.floor(y0)))
    xb, yb = int(min(w, np.ceil(x1))), int(min(h, np.ceil(y1)))
    if xb - xa < 4 or yb - ya < 4:
        return None
    patch = cv2.resize(grey[ya:yb, xa:xb], (PATCH, PATCH), interpolation=cv2.INTER_AREA).astype(np.float32)
    patch -= patch.mean()
    norm = float(np.linalg.norm(patch))
    return patch / norm if norm > 1e-3 * PATCH * PATCH * 255 else None


class LandmarkTracker:
    """Minimal tracking: detect every N frames; in between, re-fit the landmarks in a box that follows them.

    At each detection the detector box is stored relative to its landmarks' bounding box (offset and scale in
    units of that box), so the box carried to the next frame looks like one the detector would give, which is
    what the shape predictor was trained on. Cost between detections: one shape-predictor call per face
    (about 3 ms) instead of a detection (about 20 ms at 640x480). A track whose landmark box jumps or
    collapses, or whose grey thumbnail no longer correlates with the previous frame's (normalised cross-correlation
    under ``min_similarity``), is dropped and the frame is detected again.
    """

    min_similarity = 0.6

    def __init__(self, engine: Any = "dlib", detect_every: int = 8, detect_max_side: int = 320,
                 max_faces: int = 1):
        from .detect import resolve_engine

        self.engine = resolve_engine(engine)
        self.detect_every = int(detect_every)
        self.detect_max_side = int(detect_max_side)
        self.max_faces = int(max_faces)
        self.detections = 0
        self.reset()

    def reset(self) -> None:
        # (landmarks, box relative to the landmark box, grey face thumbnail)
        self._tracks: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        self._since_detect = 0

    @property
    def detected_last(self) -> bool:
        """Whether the last update ran the full detector."""
        return self._since_detect == 0

    def _detect(self, frame: np.ndarray) -> list[np.ndarray]:
        from .detect import downscale_for_detection

        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        small, scale = downscale_for_detection(frame, self.detect_max_side)
        found = sorted(self.engine.detect(small), key=lambda bs: -(bs[0][2] - bs[0][0]) * (bs[0][3] - bs[0][1]))
        self._tracks = []
        for box, _score in found[: self.max_faces]:
            full = np.asarray(box, np.float64) / scale
            lm = np.asarray(self.engine.landmarks(frame, tuple(full)), np.float32)
            lb = _landmark_box(lm)
            size = np.maximum(lb[2:] - lb[:2], 1.0)
            relative = np.concatenate([(full[:2] - lb[:2]) / size, (full[2:] - lb[2:]) / size])
            self._tracks.append((lm, relative, _face_patch(grey, lm)))
        self.detections += 1
        self._since_detect = 0
        return [t[0] for t in self._tracks]

    def _follow(self, frame: np.ndarray) -> list[np.ndarray] | None:
        h, w = frame.shape[:2]
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        tracks = []
        for lm, relative, patch in self._tracks:
            lb = _landmark_box(lm)
            size = np.maximum(lb[2:] - lb[:2], 1.0)
            box = np.concatenate([lb[:2] + relative[:2] * size, lb[2:] + relative[2:] * size])
            new = np.asarray(self.engine.landmarks(frame, tuple(box)), np.float32)
            nb = _landmark_box(new)
            new_size = np.maximum(nb[2:] - nb[:2], 1.0)
            grew = float(np.max(new_size / size))
            shrank = float(np.min(new_size / size))
            moved = float(np.linalg.norm((nb[:2] + nb[2:]) / 2 - (lb[:2] + lb[2:]) / 2) / size.mean())
            inside = nb[0] > -0.2 * new_size[0] and nb[1] > -0.2 * new_size[1] and nb[2] < w + 0.2 * new_size[0] \
                and nb[3] < h + 0.2 * new_size[1]
            if grew > 1.35 or shrank < 0.7 or moved > 0.5 or not inside:
                return None  # lost: the predictor fitted something else
            # the predictor always fits 68 points, even on a wall: the face must still look like the last one
            new_patch = _face_patch(grey, new)
            if patch is None or new_patch is None or float((patch * new_patch).sum()) < self.min_similarity:
                return None
            tracks.append((new, relative, new_patch))
        self._tracks = tracks
        self._since_detect += 1
        return [t[0] for t in tracks]

    def update(self, frame: np.ndarray) -> list[np.ndarray]:
        if self._tracks and self._since_detect + 1 < self.detect_every:
            followed = self._follow(frame)
            if followed is not None:
                return followed
        return self._detect(frame)


@dataclass(frozen=True)
class LiveResult:
    """One processed frame.

    Attributes:
        image: the displayed RGB uint8 frame (swapped, labelled; side by side when asked).
        swapped: the swapped frame without label (what a recording stores; the export draws the label).
        mask: HW float32 frame mask of where the face was pasted.
        faces: number of faces swapped.
        detected: whether the full detector ran on this frame.
        timings_ms: per stage: track, swap (crop + model + merge), label, total.
    """

    image: np.ndarray
    swapped: np.ndarray
    mask: np.ndarray
    faces: int
    detected: bool
    timings_ms: dict[str, float] = field(default_factory=dict)


def side_by_side(original: np.ndarray, swapped: np.ndarray) -> np.ndarray:
    """"original | swapped" in one RGB uint8 image (the swapped half carries the label)."""
    return np.concatenate([original, swapped], axis=1)


class LiveSwapper:
    """Swap faces in a stream of frames with any merge predictor (a run's torch model or an ONNX/DFM file).

    Args:
        predict: the merger's predictor (``workbench.train.load_predictor`` or ``export_model.OnnxPredictor``).
        settings: merge settings; ``resolution`` and ``face_type`` are taken from the predictor when it knows them.
        options: :class:`LiveOptions`.
        tracker: a :class:`FaceTracker`; default :class:`LandmarkTracker` with the dlib engine.
        segment: the merger's segmenter (an XSeg model) for the ``xseg-*`` mask modes; it gets each tracked
            face's landmarks, so an occluder in front of the face stays in front in the live view too.
    """

    def __init__(self, predict: Any, settings: Any = None, options: LiveOptions | None = None,
                 tracker: FaceTracker | None = None, segment: Any = None):
        from .merge import MergeConfig, MergeSettings, adapt_to_predictor

        self.predict = predict
        self.segment = segment
        self.options = options or LiveOptions()
        base = settings if settings is not None else MergeSettings()
        self.settings = adapt_to_predictor(MergeConfig(base), predict).default
        self.tracker = tracker or LandmarkTracker(detect_every=self.options.detect_every,
                                                  detect_max_side=self.options.detect_max_side,
                                                  max_faces=self.options.max_faces)
        self._filters: list[Any] = []
        self._times: deque[float] = deque(maxlen=30)
        self._latency: deque[float] = deque(maxlen=30)
        self.frames = 0

    def set_settings(self, settings: Any) -> None:
        """New merge settings from the page (model facts kept)."""
        self.settings = settings.replace(resolution=self.settings.resolution, face_type=self.settings.face_type)

    def reset(self) -> None:
        self.tracker.reset()
        self._filters = []
        self._times.clear()
        self._latency.clear()

    def _smooth(self, faces: list[np.ndarray], now: float) -> list[np.ndarray]:
        from .smoothing import LandmarkFilter

        if self.options.smoothing <= 0:
            return faces
        if len(self._filters) != len(faces):  # faces came or went: new tracks
            self._filters = [LandmarkFilter(self.options.smoothing) for _ in faces]
        return [f.update(lm, now) for f, lm in zip(self._filters, faces)]

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> LiveResult:
        """Swap the faces of one RGB frame (uint8 or float [0,1])."""
        from .images import to_uint8
        from .label import draw_synthetic_label
        from .merge import merge_frame

        t0 = time.perf_counter()
        rgb = to_uint8(np.asarray(frame))
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ConfigError(f"a live frame must be RGB (H, W, 3), got shape {rgb.shape}")
        rgb = np.ascontiguousarray(rgb)
        faces = self.tracker.update(rgb)
        detected = bool(getattr(self.tracker, "detected_last", False))
        faces = self._smooth(list(faces), t0 if timestamp is None else timestamp)
        t1 = time.perf_counter()
        if faces:
            out, mask = merge_frame(rgb, faces, self.predict, self.settings, segment=self.segment)
            swapped = to_uint8(out)
        else:
            swapped, mask = rgb.copy(), np.zeros(rgb.shape[:2], np.float32)
        t2 = time.perf_counter()
        labelled = draw_synthetic_label(swapped)
        image = side_by_side(rgb, labelled) if self.options.side_by_side else labelled
        t3 = time.perf_counter()
        self.frames += 1
        self._times.append(t3)
        self._latency.append(t3 - t0)
        timings = {"track": (t1 - t0) * 1e3, "swap": (t2 - t1) * 1e3, "label": (t3 - t2) * 1e3,
                   "total": (t3 - t0) * 1e3}
        return LiveResult(image, swapped, mask, len(faces), detected, timings)

    def run(self, frames: Iterable[np.ndarray]) -> Iterator[LiveResult]:
        """:meth:`process` every frame of a sequence, in order."""
        for frame in frames:
            yield self.process(frame)

    @property
    def fps(self) -> float:
        """Frames per second over the last 30 frames (0 before two frames)."""
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)

    @property
    def latency_ms(self) -> float:
        """Mean processing time per frame over the last 30 frames, in ms."""
        return 1e3 * float(np.mean(self._latency)) if self._latency else 0.0


class LiveRecorder:
    """Frames kept only while recording; saved with the normal export (provenance tags and visible label).

    ``max_seconds`` bounds memory (a 640x480 RGB frame is 0.9 MB; 60 s at 10 fps is about 550 MB).
    """

    def __init__(self, max_seconds: float = 60.0):
        self.max_seconds = float(max_seconds)
        self.frames: list[np.ndarray] = []
        self.timestamps: list[float] = []
        self.recording = False

    def start(self) -> None:
        self.frames, self.timestamps, self.recording = [], [], True

    def add(self, swapped: np.ndarray, timestamp: float) -> bool:
        """Keep a frame while recording; returns False (and stops) once ``max_seconds`` is reached."""
        if not self.recording:
            return False
        if self.timestamps and timestamp - self.timestamps[0] > self.max_seconds:
            self.recording = False
            return False
        if self.timestamps and timestamp <= self.timestamps[-1]:
            timestamp = self.timestamps[-1] + 1e-3  # strictly increasing for the encoder
        if self.frames and swapped.shape != self.frames[0].shape:
            return True  # the camera changed size mid-recording: skip, the encoder needs one size
        self.frames.append(np.asarray(swapped, np.uint8).copy())
        self.timestamps.append(float(timestamp))
        return True

    def stop(self) -> None:
        self.recording = False

    def save(self, out_path: str | Path, model_description: str) -> Path:
        """Write the recorded frames with :func:`workbench.export.export_video` (label + provenance) and forget
        them.

        Raises:
            ExportError: nothing was recorded, or the encoder failed.
        """
        from .errors import ExportError
        from .export import Provenance, export_video

        self.recording = False
        if len(self.frames) < 2:
            raise ExportError("nothing recorded (press record while the camera runs)", out_path)
        t0 = self.timestamps[0]
        path = export_video(self.frames, [t - t0 for t in self.timestamps], out_path,
                            provenance=Provenance(model=f"{model_description} (live webcam recording)"),
                            label_synthetic=True, progress=False, preset="veryfast")
        self.frames, self.timestamps = [], []
        return path


def resize_for_live(frame: np.ndarray, max_side: int = 640) -> np.ndarray:
    """Shrink a camera frame so its long side is at most ``max_side`` (the live budget is set for 640x480)."""
    h, w = frame.shape[:2]
    if max(h, w) <= max_side:
        return frame
    s = max_side / max(h, w)
    return cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
