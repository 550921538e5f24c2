"""Video input: probing, frame iteration with real (VFR) timestamps, and clear errors for bad files."""

from __future__ import annotations

import warnings
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from workbench.errors import MediaError
from workbench.video import (
    TruncatedVideoWarning,
    VideoFrame,
    VideoInfo,
    frame_timestamps,
    is_video_path,
    iter_frames,
    probe_video,
    read_frame,
)


def _remux_faststart(src: Path, dst: Path) -> Path:
    """Copy a video's streams into an MP4 with the index (moov) first, as a web/streaming file would be."""
    with (
        av.open(str(src)) as inp,
        av.open(str(dst), "w", format="mp4", options={"movflags": "+faststart"}) as out,
    ):
        mapping = {
            s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")
        }
        for packet in inp.demux(*[inp.streams[i] for i in mapping]):
            if packet.dts is None:
                continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
    return dst


def _truncate(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


# --- probe -------------------------------------------------------------------------------------------------


def test_probe_vfr_clip(data_file):
    info = probe_video(data_file("videos/vr_face1.mp4"))
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height) == (700, 700)
    assert info.frame_count == 135
    assert info.fps == pytest.approx(22.131, abs=0.01)
    assert info.is_vfr
    assert info.has_audio and info.audio_codec == "aac"
    assert info.codec == "h264"
    assert info.start_time == pytest.approx(0.033, abs=1e-3)
    assert info.duration == pytest.approx(6.133, abs=1e-3)
    assert not info.truncated


def test_probe_cfr_clip(data_file):
    info = probe_video(data_file("videos/lp_d18.mp4"))
    assert (info.width, info.height, info.frame_count) == (480, 480, 216)
    assert info.fps == pytest.approx(30.0, abs=1e-6)
    assert not info.is_vfr
    assert info.duration == pytest.approx(7.2, abs=1e-6)
    assert info.has_audio  # digitally silent, but the stream exists


# --- frames ------------------------------------------------------------------------------------------------


def test_iter_frames_keeps_variable_frame_times(data_file):
    first, indices, stamps = None, [], []
    for frame in iter_frames(data_file("videos/vr_face1.mp4")):  # keep one image only: 5.9 MB each
        first = first or frame
        indices.append(frame.index)
        stamps.append(frame.timestamp)
    assert indices == list(range(135))
    assert isinstance(first, VideoFrame)
    assert first.image.shape == (700, 700, 3) and first.image.dtype == np.float32
    assert 0.0 <= first.image.min() and first.image.max() <= 1.0
    times = np.array(stamps)
    deltas = np.diff(times)
    assert times[0] == pytest.approx(0.033, abs=1e-3)  # the first frame is not at 0: keep its real time
    assert np.all(deltas > 0)
    # frames sit on a 1/30 s grid with gaps: both 1/30 s and 2/30 s intervals occur (a CFR assumption drifts)
    assert np.any(np.isclose(deltas, 1 / 30, atol=1e-3)) and np.any(np.isclose(deltas, 2 / 30, atol=1e-3))
    assert not np.allclose(times, times[0] + np.arange(135) / 22.131, atol=1 / 60)
    assert frame_timestamps(data_file("videos/vr_face1.mp4")) == pytest.approx(times.tolist(), abs=1e-9)


def test_iter_frames_slice_and_read_frame(data_file):
    path = data_file("videos/lp_d18.mp4")
    frames = list(iter_frames(path, start=10, stop=40, step=10))
    assert [f.index for f in frames] == [10, 20, 30]
    assert [f.timestamp for f in frames] == pytest.approx([10 / 30, 20 / 30, 30 / 30], abs=1e-6)
    single = read_frame(path, 20)
    assert single.index == 20
    np.testing.assert_array_equal(single.image, frames[1].image)
    last = read_frame(path, 215)
    assert last.timestamp == pytest.approx(215 / 30, abs=1e-6)
    with pytest.raises(MediaError, match="beyond the end"):
        read_frame(path, 216)
    with pytest.raises(ValueError):
        list(iter_frames(path, step=0))


def test_rotation_metadata_is_applied(tmp_path):
    path = tmp_path / "rotated.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 16, "yuv420p"
        stream.set_display_rotation(90)  # a phone held upright: stored landscape, shown portrait
        image = np.zeros((16, 32, 3), np.uint8)
        image[:, :8] = 255  # white strip on the left of the stored picture
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    info = probe_video(path)
    assert (info.width, info.height) == (16, 32)
    upright = read_frame(path, 0).image
    assert upright.shape == (32, 16, 3)
    assert (
        upright[-6:].mean() > 0.8 and upright[:20].mean() < 0.2
    )  # 90 deg counter-clockwise: strip at the bottom


# --- errors ------------------------------------------------------------------------------------------------


def test_missing_empty_and_non_video_files(tmp_path):
    cases = {
        tmp_path / "missing.mp4": "not found",
        tmp_path / "empty.mp4": "empty",
        tmp_path / "notes.mp4": "cannot open video",
        tmp_path: "folder",
    }
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("these are meeting notes, not a video\n" * 20)
    for path, words in cases.items():
        with pytest.raises(MediaError, match=words) as exc:
            probe_video(path)
        assert exc.value.path == path and exc.value.hint
        with pytest.raises(MediaError):
            list(iter_frames(path))


def test_audio_only_file_is_rejected(tmp_path):
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=44100, layout="mono")
        t = np.arange(44100, dtype=np.float32) / 44100
        frame = av.AudioFrame.from_ndarray(
            (0.2 * np.sin(2 * np.pi * 440 * t))[None], format="flt", layout="mono"
        )
        frame.sample_rate = 44100
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(MediaError, match="no video stream"):
        probe_video(path)


@pytest.mark.parametrize("name", ["photo.jpg", "photo_renamed.mp4", "photo.png"])
def test_stills_are_not_videos(tmp_path, name):
    fmt = "PNG" if name.endswith(".png") else "JPEG"
    path = tmp_path / name
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(path, format=fmt)
    with pytest.raises(MediaError, match="still image") as exc:
        probe_video(path)
    assert exc.value.path == path


def test_truncated_file_with_index_at_end_fails_clearly(data_file, tmp_path):
    # lp_d18 has its moov atom at the end: cut in half, nothing describes the frames any more
    path = _truncate(data_file("videos/lp_d18.mp4"), tmp_path / "cut.mp4", 0.5)
    with pytest.raises(MediaError, match="cannot open video") as exc:
        probe_video(path)
    assert "truncated" in exc.value.hint
    with pytest.raises(MediaError):
        next(iter_frames(path))


def test_truncated_file_yields_decodable_frames_then_raises_or_warns(data_file, tmp_path):
    full = _remux_faststart(data_file("videos/lp_d18.mp4"), tmp_path / "faststart.mp4")
    assert probe_video(full).frame_count == 216 and not probe_video(full).truncated
    path = _truncate(full, tmp_path / "cut.mp4", 0.5)

    info = probe_video(path)
    assert info.truncated and 0 < info.frame_count < 216

    seen: list[int] = []
    with pytest.raises(MediaError, match="truncated") as exc:
        for frame in iter_frames(path):  # default policy: frames first, then a clear error
            seen.append(frame.index)
    assert exc.value.path == path
    assert 50 < len(seen) < 216 and seen == list(range(len(seen)))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = list(iter_frames(path, on_truncated="warn"))
    assert len(frames) == len(seen)
    assert any(issubclass(w.category, TruncatedVideoWarning) for w in caught)


def test_is_video_path():
    assert is_video_path("clip.MP4") and is_video_path(Path("a/b.mov")) and is_video_path("x.webm")
    assert not is_video_path("face.jpg") and not is_video_path("notes.txt")
