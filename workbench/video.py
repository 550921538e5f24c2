"""Video input: probe a clip and iterate over its frames with their real timestamps.

Frames come out as RGB float32 HWC in [0, 1] (the library convention) together with their
presentation time in seconds, taken from each frame's pts. Variable-frame-rate clips (phone and
screen recordings) are therefore kept exactly: a pipeline that assumed ``index / fps`` would drift
against the audio. Display rotation (phone videos) is applied, so frames are upright.

Truncated files: a file cut short (interrupted copy or download) yields every frame that decodes; then
``iter_frames`` raises ``MediaError`` saying how many frames were read (``on_truncated="raise"``, the
default), or emits a ``TruncatedVideoWarning`` and stops (``on_truncated="warn"``), which callers can
record with ``warnings.catch_warnings(record=True)``. An MP4 whose index (``moov`` atom) is at the end
cannot be opened at all once truncated; that is a ``MediaError`` straight away.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from .errors import MediaError
from .images import is_image_path

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".wmv", ".flv", ".3gp"}
)

# Demuxers that read single pictures; a still renamed to .mp4 must not pass as a one-frame "video".
_STILL_FORMATS = frozenset(
    {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif_pipe"}
)
# Containers whose header frame count comes from a complete sample index (so fewer packets = truncated).
_INDEXED_FORMATS = ("mov", "mp4")

_OPEN_HINT = (
    "the file is corrupt, truncated (an interrupted copy or download) or not a video; re-copy or re-export it"
)


class TruncatedVideoWarning(UserWarning):
    """A video ended early (fewer frames than its header promised, or a broken last packet)."""


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` learns about a clip.

    Attributes:
        path: the file.
        width, height: frame size in pixels as displayed (after rotation metadata).
        fps: average frame rate, ``frame_count / span`` (for VFR clips this is not a frame interval).
        frame_count: number of video packets found by demuxing the file (not the header's claim).
        duration: end time of the last frame in seconds on the file's timeline (0 = container start).
        has_audio: the file has at least one audio stream.
        audio_codec: codec name of the first audio stream (e.g. "aac"), or None.
        is_vfr: frame intervals vary (variable frame rate); use the frame timestamps, not ``fps``.
        codec: video codec name (e.g. "h264").
        start_time: timestamp of the first frame in seconds (often 0; 0.033 for vr_face1).
        truncated: the file holds fewer frames than its header claims (the tail is missing).
    """

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int
    duration: float
    has_audio: bool
    audio_codec: str | None
    is_vfr: bool
    codec: str
    start_time: float = 0.0
    truncated: bool = False


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: its 0-based index, presentation time in seconds, and RGB float32 HWC image."""

    index: int
    timestamp: float
    image: np.ndarray


def is_video_path(path: str | Path) -> bool:
    """True when the file name has a video suffix the workbench reads."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise MediaError(
            "video file not found",
            path,
            "check the path; relative paths are resolved from the working folder",
        )
    if path.is_dir():
        raise MediaError(
            "expected a video file but got a folder",
            path,
            "give the video file itself (a folder of photos is handled as photos, not video)",
        )
    if path.stat().st_size == 0:
        raise MediaError("video file is empty (0 bytes)", path, "re-copy or re-export the file")
    return path


def _open(path: Path) -> av.container.InputContainer:
    """Open a container and check that it is a real video (not a still, not audio-only)."""
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"cannot open video ({exc.__class__.__name__})", path, _OPEN_HINT) from exc
    fmt_names = set(container.format.name.split(","))
    if fmt_names & _STILL_FORMATS or is_image_path(path):
        container.close()
        raise MediaError(
            "this is a still image, not a video",
            path,
            "photos are read with workbench.images.read_image; put several photos in a folder",
        )
    if not container.streams.video:
        container.close()
        raise MediaError(
            "the file has no video stream", path, "give a video file (audio-only files cannot be used)"
        )
    return container


def _start_offset(container: av.container.InputContainer) -> float:
    """The container's start time in seconds (timestamps are reported relative to it)."""
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def _expected_frames(container: av.container.InputContainer) -> int | None:
    """Frame count from the header, only where the format has a complete sample index (MP4/MOV)."""
    if not any(name in container.format.name for name in _INDEXED_FORMATS):
        return None
    frames = container.streams.video[0].frames
    return frames if frames > 0 else None


def _is_vfr(deltas: np.ndarray) -> bool:
    """Intervals vary by more than rounding jitter (1 tick, 2 % of the median)."""
    if deltas.size < 2:
        return False
    median = float(np.median(deltas))
    return bool(np.max(np.abs(deltas - median)) > max(1.5, 0.02 * median))


@dataclass(frozen=True)
class _Demuxed:
    """Everything one demux pass over the video stream tells (no decoding)."""

    ticks: np.ndarray  # sorted pts of all packets that have one, in ``time_base`` units
    time_base: Fraction
    offset: float  # container start time in seconds
    count: int  # packets with data (= frames)
    last_duration: int  # duration of the last packet in display order (0 when unknown)
    expected: int | None  # header frame count, where trustworthy
    codec: str
    rate: float
    audio_codec: str | None


def _demux(path: Path) -> _Demuxed:
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stamps: list[int] = []
        last_pts, last_duration = None, 0
        count = 0
        packets = container.demux(stream)
        try:
            for packet in packets:
                if packet.size == 0:
                    continue
                count += 1
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is not None:
                    stamps.append(ts)
                    if last_pts is None or ts > last_pts:
                        last_pts, last_duration = ts, packet.duration or 0
        except av.FFmpegError:
            pass  # a broken tail: keep what was demuxed; ``truncated`` reports it
        finally:
            packets.close()
        if count == 0:
            raise MediaError("the video stream holds no frames", path, _OPEN_HINT)
        # Read every stream attribute now: touching a PyAV stream after close() can crash the process.
        rate = stream.average_rate or stream.guessed_rate
        return _Demuxed(
            ticks=np.array(sorted(stamps), dtype=np.int64),
            time_base=stream.time_base or Fraction(1, 90000),
            offset=_start_offset(container),
            count=count,
            last_duration=int(last_duration),
            expected=_expected_frames(container),
            codec=stream.codec_context.name,
            rate=float(rate) if rate else 0.0,
            audio_codec=container.streams.audio[0].codec_context.name if container.streams.audio else None,
        )
    finally:
        container.close()


def frame_timestamps(path: str | Path) -> list[float]:
    """Presentation times (seconds, 0 = container start) of every frame, read by demuxing only (fast).

    They equal the ``VideoFrame.timestamp`` values ``iter_frames`` yields; packets without any timestamp
    (rare, some AVI files) are left out, so compare the length with ``probe_video(path).frame_count``.
    """
    d = _demux(_check_file(path))
    return [float(t * d.time_base) - d.offset for t in d.ticks.tolist()]


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's properties, counting frames by demuxing (headers can lie) and decoding the first frame.

    Raises:
        MediaError: missing, empty, non-video, still image, audio-only, or undecodable file.
    """
    path = _check_file(path)
    d = _demux(path)
    width, height = _first_frame_size(path)
    pts, tb = d.ticks, d.time_base
    deltas = np.diff(pts).astype(np.float64)
    if pts.size >= 2:
        # The last frame (in display order) lasts its packet duration, else the typical interval.
        end_ticks = int(pts[-1]) + (d.last_duration or int(np.median(deltas)))
        start = float(pts[0] * tb) - d.offset
        duration = float(end_ticks * tb) - d.offset
        span = duration - start
        fps = d.count / span if span > 0 else d.rate
    else:
        start = float(pts[0] * tb) - d.offset if pts.size else 0.0
        fps = d.rate
        duration = start + (1.0 / fps if fps > 0 else 0.0)
    return VideoInfo(
        path=path,
        width=int(width),
        height=int(height),
        fps=float(fps),
        frame_count=d.count,
        duration=float(duration),
        has_audio=d.audio_codec is not None,
        audio_codec=d.audio_codec,
        is_vfr=_is_vfr(deltas),
        codec=d.codec,
        start_time=max(0.0, float(start)),
        truncated=d.expected is not None and d.count < d.expected,
    )


def _first_frame_size(path: Path) -> tuple[int, int]:
    """Decode the first frame: proves the stream decodes and gives the displayed (rotated) size."""
    container = _open(path)
    frames = container.decode(video=0)
    try:
        frame = next(frames)
        rotated = int(round((frame.rotation or 0) / 90.0)) % 2 == 1
        return (frame.height, frame.width) if rotated else (frame.width, frame.height)
    except StopIteration:
        pass
    except av.FFmpegError as exc:
        raise MediaError(f"cannot decode the video ({exc.__class__.__name__})", path, _OPEN_HINT) from exc
    finally:
        frames.close()  # close the decode generator before its container (PyAV can crash otherwise)
        container.close()
    raise MediaError("no frame of the video could be decoded", path, _OPEN_HINT)


def _to_rgb_float(frame: av.VideoFrame) -> np.ndarray:
    image = frame.to_ndarray(format="rgb24")
    k = int(round((frame.rotation or 0) / 90.0)) % 4
    if k:
        image = np.rot90(image, k)
    return np.ascontiguousarray(image, dtype=np.float32) / np.float32(255.0)


def _truncated(path: Path, message: str, policy: str) -> None:
    hint = "the file is truncated or corrupt; re-copy or re-export it (frames before this point were read)"
    if policy == "warn":
        warnings.warn(f"{message} [{path}] ({hint})", TruncatedVideoWarning, stacklevel=3)
        return
    raise MediaError(message, path, hint)


def iter_frames(
    path: str | Path,
    start: int = 0,
    stop: int | None = None,
    step: int = 1,
    *,
    on_truncated: Literal["raise", "warn"] = "raise",
) -> Iterator[VideoFrame]:
    """Decode frames ``start:stop:step`` (indices count decoded frames in display order).

    Each ``VideoFrame.timestamp`` is the frame's pts in seconds relative to the container start, so
    variable frame rates are preserved. Skipped frames are decoded (video needs it) but not converted.

    Args:
        path: the video file.
        start, stop, step: a slice over frame indices; ``stop=None`` reads to the end.
        on_truncated: what to do after the last decodable frame of a truncated file:
            "raise" a MediaError (default) or "warn" with ``TruncatedVideoWarning`` and stop.

    Raises:
        MediaError: unreadable file (before any frame), or a truncated file with ``on_truncated="raise"``.
    """
    if start < 0 or step < 1 or (stop is not None and stop < start):
        raise ValueError(f"invalid frame range start={start} stop={stop} step={step}")
    if on_truncated not in ("raise", "warn"):
        raise ValueError(f"on_truncated must be 'raise' or 'warn', not {on_truncated!r}")
    path = _check_file(path)
    container = _open(path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    frames = container.decode(stream)
    try:
        tb = stream.time_base or Fraction(1, 90000)
        offset = _start_offset(container)
        expected = _expected_frames(container)
        rate = float(stream.average_rate or stream.guessed_rate or 30.0)
        index = -1
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.FFmpegError as exc:
                if index < 0:
                    raise MediaError(
                        f"cannot decode the video ({exc.__class__.__name__})", path, _OPEN_HINT
                    ) from exc
                _truncated(
                    path,
                    f"video stops after {index + 1} decodable frames (decoder error: {exc.strerror})",
                    on_truncated,
                )
                return
            index += 1
            if stop is not None and index >= stop:
                return
            if index < start or (index - start) % step:
                continue
            ts = float(frame.pts * tb) - offset if frame.pts is not None else index / rate
            yield VideoFrame(index=index, timestamp=ts, image=_to_rgb_float(frame))
        if index < 0:
            raise MediaError("no frame of the video could be decoded", path, _OPEN_HINT)
        if expected is not None and index + 1 < expected:
            _truncated(path, f"video is truncated: {index + 1} of {expected} frames decoded", on_truncated)
    finally:
        frames.close()  # close the decode generator before its container (PyAV can crash otherwise)
        container.close()


def read_frame(path: str | Path, index: int) -> VideoFrame:
    """Decode the single frame ``index`` (0-based, display order).

    Raises:
        MediaError: unreadable file, or ``index`` beyond the last frame.
    """
    if index < 0:
        raise MediaError(f"frame index must be >= 0, not {index}", path)
    for frame in iter_frames(path, start=index, stop=index + 1, on_truncated="warn"):
        return frame
    raise MediaError(
        f"frame {index} is beyond the end of the video",
        path,
        "use probe_video(path).frame_count to see how many frames it has",
    )
