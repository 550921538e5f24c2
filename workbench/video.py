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

import contextlib
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
from tqdm.auto import tqdm

from .errors import ExportError, MediaError
from .fileutil import atomic_path
from .images import is_image_path, read_image, to_uint8

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


# ----------------------------------------------------------------------------------------------------------
# Video output: H.264 MP4 with per-frame timestamps and the source's audio

TIME_BASE = Fraction(1, 90000)
OUTPUT_SUFFIXES = (".mp4", ".m4v")
AAC_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000})
_OVERWRITE_HINT = (
    "pass overwrite=True (CLI: --overwrite) or choose another output name (CLI: --output NAME.mp4)"
)


def write_video(
    frames: Iterable[np.ndarray | str | Path],
    timestamps: Sequence[float],
    out_path: str | Path,
    *,
    audio_source: str | Path | None = None,
    tags: Mapping[str, str] | None = None,
    frame_filter: Callable[[np.ndarray], np.ndarray] | None = None,
    crf: int = 18,
    overwrite: bool = False,
    progress: bool = True,
    end_time: float | None = None,
    preset: str = "medium",
) -> Path:
    """Write frames as an H.264 (yuv420p, +faststart) MP4 with per-frame timestamps and the source's audio.

    Timing: every frame is written with its own presentation time on a fine 1/90000 s time base, so a
    variable-frame-rate source keeps its exact frame times and the copied audio stays in sync; B-frames are
    off so decode order equals display order. Audio: the first audio stream of ``audio_source`` is copied when
    it is AAC, otherwise re-encoded to AAC; packets starting after the last video frame ends are dropped.

    Args:
        frames: RGB images (float32 [0,1] or uint8, HWC) or image file paths, one per timestamp.
        timestamps: presentation time of each frame in seconds (strictly increasing).
        out_path: the .mp4 to write (atomically: a temp file beside it, renamed at the end).
        audio_source: a media file with the audio to copy; None, or a file without audio: no audio stream.
        tags: container metadata tags.
        frame_filter: applied to each RGB uint8 frame before encoding (e.g. a visible label).
        crf, preset: x264 constant rate factor (0..51) and speed preset.
        overwrite: replace an existing ``out_path``; otherwise an existing file is an error.
        progress: show a tqdm progress bar.
        end_time: when the last frame stops showing (default: one typical frame interval later).

    Raises:
        ExportError: existing output without ``overwrite``, unwritable folder, bad frames or timestamps, or an
            encoder failure. MediaError: unreadable audio source.
    """
    out_path = Path(out_path)
    _check_output(out_path, overwrite)
    ticks, durations = _ticks(list(timestamps), end_time)
    video_end = (ticks[-1] + durations[-1]) / TIME_BASE.denominator
    audio_path: Path | None = None
    if audio_source is not None:
        audio_path = Path(audio_source)
        if not audio_path.is_file():
            raise MediaError("audio source not found", audio_path, "give the destination video file")
        if not _AudioTrack.has_audio(audio_path):
            audio_path = None
    duration_of = dict(zip(ticks, durations))
    fps_guess = Fraction(len(ticks) / video_end).limit_denominator(1001) if video_end > 0 else Fraction(30)
    try:
        with atomic_path(out_path) as tmp:
            _encode(frames, ticks, duration_of, tmp, dict(tags or {}), audio_path, video_end, frame_filter,
                    int(crf), preset, fps_guess, progress)
    except OSError as exc:
        raise ExportError(
            f"cannot write the video ({exc.__class__.__name__}: {exc})",
            out_path,
            "check free disk space and that the folder is writable",
        ) from exc
    return out_path


def _check_output(out_path: Path, overwrite: bool) -> None:
    if out_path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ExportError(
            f"the output must be an .mp4 file, not '{out_path.suffix}'",
            out_path,
            "choose a name ending in .mp4",
        )
    if out_path.is_dir():
        raise ExportError("the output path is a folder", out_path, "give a file name ending in .mp4")
    if out_path.exists() and not overwrite:
        raise ExportError("output file already exists", out_path, _OVERWRITE_HINT)
    parent = out_path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(
            f"cannot create the output folder ({exc.strerror or exc})",
            parent,
            "choose a writable output location",
        ) from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError("the output folder is not writable", parent, "choose a writable output location")


def _as_rgb_uint8(item: np.ndarray | str | Path, index: int) -> np.ndarray:
    if isinstance(item, (str, Path)):
        item = read_image(item)
    arr = np.asarray(item)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ExportError(f"frame {index} has shape {arr.shape}; expected an RGB image (H, W, 3)")
    arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        arr = to_uint8(arr.astype(np.float32, copy=False))
    return arr


def _even(arr: np.ndarray) -> np.ndarray:
    """H.264 yuv420p needs even sides: replicate the last row/column when a side is odd."""
    pad_h, pad_w = arr.shape[0] % 2, arr.shape[1] % 2
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return arr


def _ticks(timestamps: Sequence[float], end_time: float | None) -> tuple[list[int], list[int]]:
    """Frame pts and durations on the 1/90000 time base; validates monotonic timestamps."""
    ticks = [round(float(t) * TIME_BASE.denominator) for t in timestamps]
    if not ticks:
        raise ExportError("no frames to export", hint="merge some frames first")
    if not all(np.isfinite(timestamps)) or ticks[0] < 0:
        raise ExportError("frame timestamps must be finite and >= 0 seconds")
    deltas = np.diff(ticks)
    if deltas.size and deltas.min() <= 0:
        bad = int(np.argmin(deltas)) + 1
        raise ExportError(
            f"frame timestamps must increase; frame {bad} is at {timestamps[bad]:.6f} s, "
            f"not after {timestamps[bad - 1]:.6f} s"
        )
    typical = int(np.median(deltas)) if deltas.size else TIME_BASE.denominator // 30
    if end_time is not None:
        last = round(float(end_time) * TIME_BASE.denominator) - ticks[-1]
        if last <= 0:
            raise ExportError(
                f"end_time {end_time:.6f} s is not after the last frame ({timestamps[-1]:.6f} s)"
            )
    else:
        last = typical
    return ticks, [*(int(d) for d in deltas), int(last)]


class _AudioTrack:
    """Feeds the first audio stream of a file into the output: packet copy for AAC, else AAC re-encode."""

    def __init__(self, source: Path, output: av.container.OutputContainer, end_time: float):
        try:
            self.input = av.open(str(source))
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise MediaError(
                f"cannot open the audio source ({exc.__class__.__name__})",
                source,
                "give the destination video (or any media file with an audio stream)",
            ) from exc
        self.stream = self.input.streams.audio[0]
        self.copy = self.stream.codec_context.name == "aac"
        offset = self.input.start_time / av.time_base if self.input.start_time is not None else 0.0
        self.tb = self.stream.time_base
        self.shift = round(offset / self.tb) if self.tb else 0  # align with video times (0 = container start)
        self.end = end_time
        if self.copy:
            self.out = output.add_stream_from_template(self.stream)
            self.items: Iterator[Any] = self.input.demux(self.stream)
        else:
            rate = self.stream.rate if self.stream.rate in AAC_RATES else 48000
            layout = "mono" if self.stream.channels == 1 else "stereo"
            self.out = output.add_stream("aac", rate=rate, layout=layout)
            self.out.bit_rate = 192000
            self.items = self.input.decode(self.stream)
        self.output = output
        self.pending: Any = None
        self.done = False

    @staticmethod
    def has_audio(source: Path) -> bool:
        try:
            with av.open(str(source)) as container:
                return bool(container.streams.audio)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise MediaError(
                f"cannot open the audio source ({exc.__class__.__name__})",
                source,
                "give the destination video (or any media file with an audio stream)",
            ) from exc

    def _next(self) -> Any:
        while True:
            try:
                item = next(self.items)
            except (StopIteration, av.FFmpegError):
                return None  # a broken audio tail ends the track; the video is still written
            if self.copy and (item.size == 0 or item.dts is None):
                continue
            return item

    def _start(self, item: Any) -> float:
        pts = item.pts if item.pts is not None else 0
        return float((pts - self.shift) * self.tb)

    def feed(self, until: float) -> None:
        """Write audio that starts before ``until`` seconds (and before the video end)."""
        while not self.done:
            item = self.pending if self.pending is not None else self._next()
            self.pending = None
            if item is None or self._start(item) >= self.end:
                self.done = True
                break
            if self._start(item) >= until:
                self.pending = item
                break
            if self.copy:
                item.pts = item.pts - self.shift if item.pts is not None else None
                item.dts = item.dts - self.shift
                item.stream = self.out
                self.output.mux(item)
            else:
                item.pts = None  # the AAC encoder re-times samples from 0
                self.output.mux(self.out.encode(item))

    def finish(self) -> None:
        self.feed(float("inf"))
        if not self.copy:
            self.output.mux(self.out.encode(None))

    def close(self) -> None:
        self.items.close()
        self.input.close()


def _encode(
    frames: Iterable[np.ndarray | str | Path],
    ticks: list[int],
    duration_of: dict[int, int],
    tmp: Path,
    tags: dict[str, str],
    audio_path: Path | None,
    video_end: float,
    frame_filter: Callable[[np.ndarray], np.ndarray] | None,
    crf: int,
    preset: str,
    fps_guess: Fraction,
    progress: bool,
) -> None:
    output = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart+use_metadata_tags"})
    audio: _AudioTrack | None = None
    stream = None
    size: tuple[int, int] | None = None
    count = 0

    def mux_video(packets: list[av.Packet]) -> None:
        for packet in packets:
            packet.duration = duration_of.get(packet.pts, 0)
            output.mux(packet)

    try:
        for key, value in tags.items():
            output.metadata[key] = value
        bar = tqdm(total=len(ticks), desc="export", unit="frame", disable=not progress)
        for index, item in enumerate(frames):
            if index >= len(ticks):
                raise ExportError(
                    f"more frames than timestamps ({len(ticks)})", hint="give exactly one timestamp per frame"
                )
            rgb = _as_rgb_uint8(item, index)
            if size is None:
                size = (rgb.shape[0], rgb.shape[1])
                even = _even(rgb)
                stream = output.add_stream(
                    "libx264", rate=fps_guess, options={"crf": str(crf), "preset": preset, "bf": "0"}
                )
                stream.width, stream.height = even.shape[1], even.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.time_base = TIME_BASE
                stream.codec_context.time_base = TIME_BASE
                if audio_path is not None:
                    audio = _AudioTrack(audio_path, output, video_end)
            elif rgb.shape[:2] != size:
                raise ExportError(
                    f"frame {index} is {rgb.shape[1]}x{rgb.shape[0]} but frame 0 is "
                    f"{size[1]}x{size[0]}; all frames must have the same size"
                )
            if frame_filter is not None:
                rgb = frame_filter(rgb)
            frame = av.VideoFrame.from_ndarray(_even(rgb), format="rgb24").reformat(format="yuv420p")
            frame.pts = ticks[index]
            frame.time_base = TIME_BASE
            mux_video(stream.encode(frame))
            if audio is not None:
                audio.feed(ticks[index] / TIME_BASE.denominator + 0.5)
            count += 1
            bar.update(1)
        bar.close()
        if count != len(ticks):
            raise ExportError(
                f"got {count} frames for {len(ticks)} timestamps", hint="give exactly one timestamp per frame"
            )
        mux_video(stream.encode(None))
        if audio is not None:
            audio.finish()
    except av.FFmpegError as exc:
        raise ExportError(f"the encoder failed ({exc})", hint="check the frames and free disk space") from exc
    except BaseException:
        if audio is not None:
            audio.close()
        with contextlib.suppress(Exception):  # the first error is the one to report
            output.close()
        raise
    if audio is not None:
        audio.close()
    output.close()
