"""Extraction: a video or a folder of photos -> a folder of aligned, self-describing faces.

Order of work per frame (DFL's extractor, minus its manual mode): detect -> 68 landmarks ->
pick the target face(s) -> (videos) KLT tracking of the main face (fills missed frames, steadies jitter;
:mod:`workbench.tracking`) -> (optional) temporal smoothing of the landmarks -> similarity alignment
-> warp (Lanczos) -> write the face with its metadata. The parent decodes frames and smooths the
landmark track in frame order; detection, alignment and writing run in a persistent pool of worker
processes (one engine each), batch by batch.

Resumable: each processed frame is journalled in ``<out>/.extract_journal.jsonl``; a re-run skips
journalled frames, so an interrupted extraction continues where it stopped and faces the user
deleted while curating are not re-created.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from . import align
from .errors import ConfigError, MediaError, ProjectError, WorkbenchError
from .faceset import FaceMeta, list_face_files, write_aligned_face
from .fileutil import append_jsonl, atomic_write_json, read_jsonl
from .images import is_image_path, read_image, to_float, to_uint8, write_image
from .options import option, option_specs
from .project import FRAME_INDEX_NAME, FrameEntry, FrameIndex, Project
from .smoothing import LandmarkFilter
from .tracking import TRACKED_ENGINE, LandmarkTracker, tracked_face

JOURNAL_NAME = ".extract_journal.jsonl"
OPTIONS_NAME = ".extract_options.json"
TARGET_MODES = ("all", "largest", "center")
# DFL drops faces whose aligned square is > 4x the detector box (likely a bad landmark fit).
MAX_CROP_TO_BOX_AREA = 4.0
# Options that change which faces a frame yields: the journal records them, and a change re-processes.
DETECTION_FIELDS = ("engine", "min_face", "max_faces", "target", "reference", "reference_threshold",
                    "rotation_search", "detect_max_side")


@dataclass(frozen=True)
class ExtractOptions:
    """Options of the extraction stage (DFL defaults: whole_face, 512 px, JPEG quality 90)."""

    engine: str = option("auto",
        "Face detector + landmark engine: auto (offline default: dlib HOG, then YuNet/MTCNN and a rotation "
        "search with a false-face guard where HOG finds nothing), dlib (HOG only), dlib_cnn (slower), haar, "
        "mtcnn, yunet, face_alignment (S3FD + FAN; needs downloaded weights).")
    face_type: str = option("whole_face",
        "How much of the head the aligned crop covers: half, mid_full, full, whole_face (adds forehead), "
        "head.")
    size: int = option(512,
        "Side of the aligned face image in pixels (DFL default 512).", range=(64, 2048))
    image_format: str = option("jpg",
        "jpg (small, DFL default) or png (lossless).", choices=("jpg", "png"))
    jpeg_quality: int = option(90,
        "JPEG quality 1..100 (DFL default 90).", range=(1, 100))
    min_face: int = option(40,
        "Ignore faces whose detector box is smaller than this many pixels.", range=(1, None))
    max_faces: int = option(0,
        "Keep at most this many faces per frame, largest first (0 = all).", range=(0, None))
    target: str = option("all",
        "Which faces to keep when several are in frame: all, largest or center.", choices=TARGET_MODES)
    reference: str | None = option(None,
        "A photo of the person to keep: faces whose identity distance to it is under the threshold.")
    reference_threshold: float = option(0.6,
        "Identity distance threshold for --reference (dlib's usual 0.6; lower = stricter).")
    rotation_search: bool = option(False,
        "Also try the frame rotated by 90/270/180 degrees when no face is found (DFL).")
    detect_max_side: int | None = option(640,
        "Run the face detector on a copy shrunk to this longer side (faster); landmarks still use the full "
        "frame. HOG needs faces of ~80 px in the shrunk copy; None = full resolution.")
    smoothing: float = option(0.0,
        "Temporal smoothing of landmarks across video frames, 0 (off) .. 1 (strong); reduces jitter.", range=(0, 1))
    track: bool = option(True,
        "Videos: track the main face's landmarks with KLT optical flow from the last detection, to fill "
        "frames the detector misses (up to 10 in a row) and steady jitter; faces filled this way are marked "
        "'tracked'.")
    every_nth: int = option(1,
        "Process only every n-th video frame.", range=(1, None))
    workers: int = option(2,
        "Detection worker processes (0 = in this process).", range=(0, None))
    debug: bool = option(False,
        "Also write debug images (landmarks, box, crop square) beside the faceset.")

    def validate(self) -> ExtractOptions:
        face_type = align.normalize_face_type(self.face_type)
        if not 64 <= self.size <= 2048:
            raise ConfigError(f"face size must be 64..2048, got {self.size}")
        if self.image_format not in ("jpg", "png"):
            raise ConfigError(f"image format must be 'jpg' or 'png', got '{self.image_format}'")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"JPEG quality must be 1..100, got {self.jpeg_quality}")
        if self.target not in TARGET_MODES:
            raise ConfigError(f"target must be one of {TARGET_MODES}, got '{self.target}'")
        if not 0.0 <= self.smoothing <= 1.0:
            raise ConfigError(f"smoothing strength must be 0..1, got {self.smoothing}")
        if self.detect_max_side is not None and self.detect_max_side < 64:
            raise ConfigError(f"detect_max_side must be >= 64 or None, got {self.detect_max_side}")
        if self.every_nth < 1 or self.workers < 0 or self.max_faces < 0 or self.min_face < 1:
            raise ConfigError("every_nth >= 1, workers >= 0, max_faces >= 0 and min_face >= 1 are required")
        return ExtractOptions(**{**asdict(self), "face_type": face_type})


OPTION_SPECS = MappingProxyType(option_specs(ExtractOptions))
"""Every extraction option's :class:`workbench.options.OptionSpec` (help, range, choices)."""
OPTION_HELP = MappingProxyType({name: spec.help for name, spec in OPTION_SPECS.items()})
"""One line of help per extraction option (derived from :data:`OPTION_SPECS`)."""


@dataclass(frozen=True)
class ExtractSummary:
    """What an extraction run did; printed at the end and returned to callers."""

    source: str
    frames: int
    frames_processed: int
    frames_resumed: int
    faces: int
    frames_without_face: int
    skipped: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    rejected: int = 0
    identity_distances: tuple[float, ...] = field(default=(), repr=False)
    no_face: tuple[tuple[str, int], ...] = ()  # (frame, longest side in px the detector searched at)

    @property
    def frames_per_second(self) -> float:
        return self.frames_processed / self.seconds if self.seconds > 0 else 0.0

    def format(self) -> str:
        lines = [
            f"source:              {self.source}",
            f"frames:              {self.frames} ({self.frames_processed} processed, {self.frames_resumed} already done)",
            f"faces written:       {self.faces}",
            f"frames without face: {self.frames_without_face}",
            f"rejected faces:      {self.rejected} (bad landmark fit or identity mismatch)",
            f"skipped files:       {len(self.skipped)}",
            f"time:                {self.seconds:.1f} s ({self.frames_per_second:.1f} frames/s)",
        ]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped[:20]]
        lines += [f"  no face in {name} at the working scale ({side} px long side)" for name, side in self.no_face[:20]]
        if len(self.no_face) > 20:
            lines.append(f"  ... and {len(self.no_face) - 20} more frames without a face")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Frame:
    key: str
    stem: str
    index: int
    timestamp: float | None
    image: np.ndarray | None  # uint8 RGB; None when unreadable
    error: str | None = None


# ---------------------------------------------------------------- frame sources


def _iter_media_frames(media: Path, every_nth: int) -> Iterator[_Frame]:
    from . import video

    if media.is_dir():
        real = media.resolve()
        files = sorted(p for p in media.iterdir() if p.is_file() and not p.name.startswith("."))
        for i, path in enumerate(files):
            if not is_image_path(path):
                yield _Frame(path.name, path.stem, i, None, None, "not a photo (unsupported file type)")
                continue
            if path.is_symlink() and real not in path.resolve().parents:
                yield _Frame(path.name, path.stem, i, None, None,
                             "a link to a file outside the photo folder (not followed; copy the photo in instead)")
                continue
            try:
                yield _Frame(path.name, path.stem, i, None, to_uint8(read_image(path)))
            except MediaError as exc:
                yield _Frame(path.name, path.stem, i, None, None, exc.message)
    elif is_image_path(media):
        yield _Frame(media.name, media.stem, 0, None, to_uint8(read_image(media)))
    elif video.is_video_path(media):
        decoded = 0
        try:
            for frame in video.iter_frames(media, step=every_nth):
                decoded += 1
                yield _Frame(f"{media.name}#{frame.index}", f"{frame.index:06d}", frame.index, frame.timestamp,
                             to_uint8(frame.image))
        except MediaError as exc:
            if not decoded:
                raise
            # A truncated file: keep every frame that decoded and report where it stopped.
            yield _Frame(f"{media.name}#end", "end", -1, None, None, f"{exc.message}; the frames before it are kept")
    else:
        raise MediaError("unsupported media (neither a video, a photo nor a folder of photos)", media,
                         "use mp4/mov/mkv/avi/webm videos or jpg/png/webp/bmp/tif photos")


# ---------------------------------------------------------------- worker side


@dataclass(frozen=True)
class _StageConfig:
    """Everything a worker needs; sent once to each worker process."""

    options: ExtractOptions
    out_dir: str
    debug_dir: str | None
    frames_dir: str | None
    source_name: str
    reference_embedding: tuple[float, ...] | None


@dataclass(frozen=True)
class _WriteJob:
    """One frame's faces to align and write (landmarks already picked and smoothed by the parent)."""

    frame: _Frame
    faces: tuple[tuple[Any, float | None, np.ndarray], ...]  # (DetectedFace, identity distance, landmarks)
    frame_file: str | None  # destination frames: also save the frame as PNG under this name


@dataclass(frozen=True)
class _WriteResult:
    written: int
    rejected: int
    distances: tuple[float, ...]


# Set only inside a worker process by the pool initializer: that process's own engine. Never set in the
# parent (in-process extraction passes its engine explicitly).
_WORKER: Any = None


def _init_worker(config: _StageConfig) -> None:
    global _WORKER
    from . import detect

    _WORKER = (config, detect.load_engine(config.options.engine))


def _detect_one(config: _StageConfig, engine: Any, image_u8: np.ndarray,
                still: bool = False) -> tuple[list[tuple[Any, float | None]], int]:
    """Selected faces and the long side (px) of the last scale searched."""
    from . import detect, targets

    options = config.options
    image = to_float(image_u8)
    long_side = max(image.shape[:2])
    working = options.detect_max_side if options.detect_max_side and options.detect_max_side < long_side else None
    while True:
        faces = detect.detect_faces(image, engine, min_size=options.min_face, rotation_search=options.rotation_search,
                                    detect_max_side=working)
        # A large still shrunk to detect_max_side can make its faces smaller than the detector's minimum
        # (HOG ~80 px): search again at twice the scale, up to full resolution. Video frames keep one scale.
        if faces or not still or working is None:
            break
        working = working * 2 if working * 2 < long_side else None
    side = working or long_side
    reference = None if config.reference_embedding is None else np.asarray(config.reference_embedding, np.float32)
    selected = targets.select_faces(faces, image.shape, mode=options.target, reference=reference,
                                    threshold=options.reference_threshold, image=image)
    if options.max_faces:
        selected = selected[: options.max_faces]
    return [(s.face, s.distance) for s in selected], side


def _write_one(config: _StageConfig, job: _WriteJob) -> _WriteResult:
    options = config.options
    frame = job.frame
    if job.frame_file is not None and config.frames_dir is not None:
        write_image(Path(config.frames_dir) / job.frame_file, frame.image)
    image = to_float(frame.image)
    written, rejected, distances, debug_faces = 0, 0, [], []
    for face_index, (face, distance, landmarks) in enumerate(job.faces):
        mat = align.transform_matrix(landmarks, options.size, options.face_type)
        if _crop_too_large(mat, options, face.box):
            rejected += 1
            continue
        # Black outside the frame, as DFL: replicated edge pixels would teach the model fake texture.
        aligned = align.warp_face(image, mat, options.size, interpolation="lanczos", border="constant")
        meta = FaceMeta(
            face_type=options.face_type,
            size=options.size,
            landmarks=align.transform_points(landmarks, mat).astype(np.float32),
            source_landmarks=np.asarray(landmarks, np.float32),
            face_matrix=mat,
            source_file=config.source_name,
            frame_index=frame.index,
            face_index=face_index,
            timestamp=frame.timestamp,
            source_size=(frame.image.shape[1], frame.image.shape[0]),
            box=tuple(float(v) for v in face.box),
            score=float(face.score),
            detector=face.engine,
            landmarker=face.engine,
            identity_distance=distance,
            origin="tracked" if face.engine == TRACKED_ENGINE else "detected",
        )
        name = f"{frame.stem}_{face_index}.{options.image_format}"
        write_aligned_face(Path(config.out_dir) / name, aligned, meta, quality=options.jpeg_quality)
        if distance is not None:
            distances.append(float(distance))
        debug_faces.append((face, landmarks, mat))
        written += 1
    if options.debug and config.debug_dir and job.faces:
        _write_debug(Path(config.debug_dir) / f"{frame.stem}.jpg", image, debug_faces, options.size)
    return _WriteResult(written, rejected, tuple(distances))


def _detect_reporting(config: _StageConfig, engine: Any, item: tuple[np.ndarray, bool]) -> tuple[list, str | None, int]:
    """Detections plus an error message instead of an exception, so one bad frame never stops the run."""
    image_u8, still = item
    try:
        faces, side = _detect_one(config, engine, image_u8, still)
        return faces, None, side
    except WorkbenchError as exc:
        return [], exc.message, 0


def _detect_task(item: tuple[np.ndarray, bool]) -> tuple[list, str | None, int]:
    return _detect_reporting(*_WORKER, item)


def _write_task(job: _WriteJob) -> _WriteResult:
    return _write_one(_WORKER[0], job)


def _write_debug(path: Path, image: np.ndarray, faces: list[tuple[Any, np.ndarray, np.ndarray]], size: int) -> None:
    from . import viz

    canvas = image
    for face, landmarks, mat in faces:
        canvas = viz.draw_box(canvas, face.box)
        canvas = viz.draw_landmarks(canvas, landmarks)
        canvas = viz.draw_crop_square(canvas, align.crop_corners(mat, size))
    write_image(path, canvas, quality=50)


# ---------------------------------------------------------------- the stage


def _reference_embedding(options: ExtractOptions) -> tuple[float, ...] | None:
    if not options.reference:
        return None
    from . import identity

    image = read_image(options.reference)
    return tuple(float(v) for v in identity.reference_embedding(image, engine=options.engine))


def detection_fingerprint(options: ExtractOptions | dict) -> str:
    """The options that decide which faces a frame yields, as one string stored with each journal row."""
    values = asdict(options) if isinstance(options, ExtractOptions) else dict(options)
    return json.dumps({k: values.get(k) for k in DETECTION_FIELDS}, sort_keys=True)


def _check_previous_options(out_dir: Path, options: ExtractOptions) -> dict:
    """Refuse a change of face geometry on a non-empty faceset; returns the previous options (or {})."""
    path = out_dir / OPTIONS_NAME
    geometry = {"face_type": options.face_type, "size": options.size}
    previous: Any = {}
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = {}
    previous = previous if isinstance(previous, dict) else {}
    if previous and list_face_files(out_dir):
        old = {k: previous.get(k) for k in geometry}
        if old != geometry and all(v is not None for v in old.values()):
            raise ConfigError(
                f"this faceset was extracted as {old['face_type']} at {old['size']} px, not "
                f"{options.face_type} at {options.size} px",
                out_dir,
                "use the same --face-type/--size, or extract into an empty folder",
            )
    atomic_write_json(path, asdict(options))
    return previous


def _batches(frames: Iterator[_Frame], size: int) -> Iterator[list[_Frame]]:
    batch: list[_Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def extract_faces(
    media: str | Path,
    out_dir: str | Path,
    options: ExtractOptions = ExtractOptions(),
    *,
    frames_dir: str | Path | None = None,
    debug_dir: str | Path | None = None,
    source_name: str | None = None,
    progress: bool = True,
    batch_frames: int = 32,
) -> ExtractSummary:
    """Extract aligned faces from a video, a photo or a folder of photos into ``out_dir``.

    Args:
        media: video file, photo, or folder of photos.
        out_dir: faceset folder (created). Faces are named ``<frame>_<face>.jpg``.
        options: :class:`ExtractOptions`.
        frames_dir: when given, every frame is also saved there as PNG with a ``frames.json``
            index (timestamps kept) — the destination side needs them for merging.
        debug_dir: where debug images go when ``options.debug`` is set.
        source_name: the name recorded in each face's metadata (default: the media file name).
        progress: show a progress bar with frames/s.
        batch_frames: frames handed to the workers at a time (bounds memory on long videos).

    Returns:
        An :class:`ExtractSummary`.
    """
    options = options.validate()
    media = Path(media)
    if not media.exists():
        raise MediaError("media not found", media, "check the path")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = _check_previous_options(out_dir, options)
    journal_path = out_dir / JOURNAL_NAME
    # A frame counts as done only if it was processed with today's detection options; rows written before
    # the journal recorded them carry the options file's fingerprint.
    fingerprint = detection_fingerprint(options)
    legacy = detection_fingerprint(previous) if previous else fingerprint
    journal = {row["key"]: row.get("detect", legacy) for row in read_jsonl(journal_path)
               if isinstance(row, dict) and "key" in row}
    done = {key for key, fp in journal.items() if fp == fingerprint}
    stale_faces = _faces_by_stem(out_dir) if len(done) < len(journal) else {}
    if frames_dir is not None:
        frames_dir = Path(frames_dir)
        frames_dir.mkdir(parents=True, exist_ok=True)
    if options.debug:
        debug_dir = Path(debug_dir) if debug_dir is not None else out_dir.parent / f"{out_dir.name}_debug"
        debug_dir.mkdir(parents=True, exist_ok=True)
    config = _StageConfig(options, str(out_dir), str(debug_dir) if options.debug else None,
                          None if frames_dir is None else str(frames_dir), source_name or media.name,
                          _reference_embedding(options))
    # Fail fast (e.g. face_alignment without weights) before spawning workers or decoding video.
    from . import detect

    engine = detect.load_engine(options.engine)

    started = time.perf_counter()
    counts = {"frames": 0, "processed": 0, "resumed": 0, "faces": 0, "empty": 0, "rejected": 0}
    skipped: list[tuple[str, str]] = []
    no_face: list[tuple[str, int]] = []
    distances: list[float] = []
    frame_entries: list[FrameEntry] = []
    frame_shape = (0, 0)
    smoother = LandmarkFilter(options.smoothing)
    tracker = LandmarkTracker() if options.track else None
    from . import video

    # Probed once: the progress bar's total now, the frame index's fps and audio at the end.
    info = video.probe_video(media) if media.is_file() and video.is_video_path(media) else None
    total = None
    if media.is_dir():
        total = sum(1 for p in media.iterdir() if p.is_file() and not p.name.startswith("."))
    elif info is not None and options.every_nth == 1:
        total = info.frame_count
    bar = tqdm(total=total, unit="frame", desc="extract", disable=not progress, smoothing=0.1)
    pool = None
    if options.workers > 0:
        # spawn, never fork: the parent may be a notebook kernel holding torch/CUDA threads.
        pool = mp.get_context("spawn").Pool(options.workers, initializer=_init_worker, initargs=(config,))

    def run_map(task, local, items: list) -> Iterator:
        if pool is not None and len(items) > 1:
            return pool.imap(task, items, chunksize=2)
        return (local(item) for item in items)

    try:
        for batch in _batches(_iter_media_frames(media, options.every_nth), batch_frames):
            todo: list[_Frame] = []
            for frame in batch:
                counts["frames"] += 1
                frame_file = None
                if frame.image is not None:
                    frame_shape = frame.image.shape[:2]
                    if frames_dir is not None:
                        frame_file = f"{frame.index:06d}.png"
                        timestamp = frame.timestamp if frame.timestamp is not None else frame.index / 25.0
                        frame_entries.append(FrameEntry(frame.index, frame_file, float(timestamp)))
                if frame.key in done:
                    counts["resumed"] += 1
                    if frame_file and not (frames_dir / frame_file).exists():
                        write_image(frames_dir / frame_file, frame.image)
                    smoother.reset()
                    if tracker is not None:
                        tracker.reset()
                elif frame.image is None:
                    skipped.append((frame.key, frame.error or "unreadable"))
                else:
                    todo.append(frame)
            detections = list(run_map(_detect_task, lambda item: _detect_reporting(config, engine, item),
                                      [(f.image, f.timestamp is None) for f in todo]))
            jobs: list[_WriteJob] = []
            for frame, (faces, error, side) in zip(todo, detections):
                counts["processed"] += 1
                for old in stale_faces.get(frame.stem, ()):  # processed before with other options: old faces go
                    old.unlink(missing_ok=True)
                if error:
                    skipped.append((frame.key, error))
                    smoother.reset()
                    if tracker is not None:
                        tracker.reset()
                    continue
                if tracker is not None and frame.timestamp is not None:
                    # KLT on the main face: steadies its detection, or fills the frame when detection failed.
                    step = tracker.update(frame.image, faces[0][0].landmarks if faces else None)
                    if faces and step.landmarks is not None:
                        faces = [(faces[0][0], faces[0][1], step.landmarks), *faces[1:]]
                    elif step.origin == "tracked":
                        faces = [(tracked_face(step.landmarks), None, step.landmarks)]
                if not faces:
                    no_face.append((frame.key, int(side)))
                picked = []
                for i, (face, distance, *tracked) in enumerate(faces):
                    landmarks = tracked[0] if tracked else face.landmarks
                    if i == 0 and options.smoothing > 0 and frame.timestamp is not None:
                        landmarks = smoother.update(landmarks, frame.timestamp)
                    picked.append((face, distance, landmarks))
                if not faces:
                    smoother.reset()  # a frame without the face ends the track
                frame_file = f"{frame.index:06d}.png" if frames_dir is not None else None
                if frame_file and (frames_dir / frame_file).exists():
                    frame_file = None
                jobs.append(_WriteJob(frame, tuple(picked), frame_file))
            for job, result in zip(jobs, run_map(_write_task, lambda j: _write_one(config, j), jobs)):
                counts["faces"] += result.written
                counts["rejected"] += result.rejected
                counts["empty"] += result.written == 0
                distances.extend(result.distances)
                append_jsonl(journal_path, {"key": job.frame.key, "faces": result.written, "detect": fingerprint})
            bar.update(len(batch))
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()

    if frames_dir is not None and frame_entries:
        index = FrameIndex(
            source=config.source_name,
            fps=float(info.fps) if info else 25.0,
            has_audio=bool(info.has_audio) if info else False,
            width=int(frame_shape[1]),
            height=int(frame_shape[0]),
            frames=tuple(sorted(frame_entries, key=lambda e: e.index)),
        )
        atomic_write_json(frames_dir / FRAME_INDEX_NAME, index.to_dict())
    return ExtractSummary(
        source=str(media),
        frames=counts["frames"],
        frames_processed=counts["processed"],
        frames_resumed=counts["resumed"],
        faces=counts["faces"],
        frames_without_face=counts["empty"],
        skipped=tuple(skipped),
        seconds=time.perf_counter() - started,
        rejected=counts["rejected"],
        identity_distances=tuple(distances),
        no_face=tuple(no_face),
    )


def _faces_by_stem(out_dir: Path) -> dict[str, list[Path]]:
    """Faces as extraction names them (``<frame stem>_<n>.jpg|png``) grouped by frame stem; curated renames
    (a sort's rank prefix) do not match a frame stem and are kept."""
    import re

    pattern = re.compile(r"(.+)_\d+\.(jpg|jpeg|png)", re.IGNORECASE)
    grouped: dict[str, list[Path]] = {}
    for path in list_face_files(out_dir):
        match = pattern.fullmatch(path.name)
        if match:
            grouped.setdefault(match.group(1), []).append(path)
    return grouped


def _crop_too_large(mat: np.ndarray, options: ExtractOptions, box: tuple[float, float, float, float]) -> bool:
    """DFL's sanity check for face types up to full: the crop square may not dwarf the detector box."""
    if options.face_type not in ("half", "mid_full", "full", "full_no_align"):
        return False
    corners = align.crop_corners(mat, options.size)
    side = np.linalg.norm(corners[1] - corners[0])
    box_area = max((box[2] - box[0]) * (box[3] - box[1]), 1.0)
    return side * side > MAX_CROP_TO_BOX_AREA * box_area


def extract_project(project: Project, side: str, options: ExtractOptions | None = None, *,
                    progress: bool = True) -> ExtractSummary:
    """Extract one side of a project: ``media/<side>`` -> ``aligned/<side>`` (+ ``frames/dst`` for dst)."""
    config = project.read_config()
    if options is None:
        options = ExtractOptions(face_type=config.get("face_type", "whole_face"), size=int(config.get("face_size", 512)),
                                 image_format=config.get("image_format", "jpg"),
                                 jpeg_quality=int(config.get("jpeg_quality", 90)))
    media = project.media_path(side)
    return extract_faces(
        media,
        project.aligned_dir(side),
        options,
        frames_dir=project.frames_dir if side == "dst" else None,
        debug_dir=project.debug_dir(side),
        source_name=project.relative(media),
        progress=progress,
    )


def source_frame(project: Project, meta: FaceMeta) -> np.ndarray | None:
    """The original frame an aligned face was cut from, RGB float32 (None when it cannot be found).

    A destination face's frame is read from ``frames/dst`` (the file ``frames.json`` lists for its index);
    other faces are read back from their source media (a video frame, a photo of a folder, a single photo).
    """
    from .project import read_frame_index
    from .video import is_video_path, read_frame

    def extracted_frame() -> np.ndarray | None:
        try:
            files = {e.index: e.file for e in read_frame_index(project).frames}
        except ProjectError:
            return None
        name = files.get(int(meta.frame_index))
        path = project.frames_dir / name if name else None
        return read_image(path) if path is not None and path.is_file() else None

    try:
        media = project.resolve_inside(meta.source_file) if meta.source_file else None
    except ProjectError:
        media = None
    if project.read_config().get("dst_media") == meta.source_file:
        frame = extracted_frame()
        if frame is not None:
            return frame
    if media is None or not media.exists():
        return extracted_frame()
    if media.is_dir():
        files = sorted(p for p in media.iterdir() if p.is_file() and not p.name.startswith("."))
        idx = int(meta.frame_index)
        return read_image(files[idx]) if 0 <= idx < len(files) and is_image_path(files[idx]) else None
    if is_video_path(media):
        return read_frame(media, int(meta.frame_index)).image
    return read_image(media)
