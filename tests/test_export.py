"""Export: VFR-exact H.264 MP4 with the destination's audio, provenance tags, SYNTHETIC label; demo media."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from workbench.errors import ConfigError, ExportError
from workbench.export import (
    STATEMENT,
    Provenance,
    export_video,
    file_sha256,
    read_provenance,
)
from workbench.images import write_image
from workbench.label import draw_synthetic_label
from workbench.video import frame_timestamps, iter_frames, probe_video

FAST = {"preset": "veryfast", "progress": False}


def _audio_rms_dbfs(path: Path) -> float:
    with av.open(str(path)) as container:
        samples = np.concatenate(
            [f.to_ndarray().astype(np.float64).reshape(-1) for f in container.decode(audio=0)]
        )
    return 20 * np.log10(np.sqrt(np.mean(samples**2)) + 1e-12)


def _ffprobe_format(path: Path) -> dict:
    exe = shutil.which("ffprobe")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("ffprobe is missing (CI installs the ffmpeg package)")
        pytest.skip("ffprobe not installed here (apt-get install ffmpeg); read_provenance is tested anyway")
    out = subprocess.run(
        [exe, "-v", "error", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)["format"]


def _frames(n: int = 6, h: int = 48, w: int = 64, seed: int = 0) -> list[np.ndarray]:
    """Smooth colour gradients (video codecs keep them well), shifting a little per frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    colour = rng.uniform(0.3, 0.7, 3).astype(np.float32)
    base = 0.3 * (xx / w)[..., None] + 0.2 * (yy / h)[..., None] + colour * 0.5
    return [np.clip(base + 0.02 * i, 0, 1).astype(np.float32) for i in range(n)]


# --- real clips: VFR timing, audio sync, provenance --------------------------------------------------------


@pytest.mark.parametrize("name", ["vr_face1", "vr_face4"])
def test_reexport_keeps_timing_and_speech(data_file, tmp_path, name):
    src = data_file(f"videos/{name}.mp4")
    info = probe_video(src)
    src_times = np.array(frame_timestamps(src))
    provenance = Provenance.for_media("test re-encode (no swap)", destination=src)
    frames = (f.image for f in iter_frames(src))  # streamed: full-res float frames are 5.9 MB each
    out = export_video(
        frames,
        src_times,
        tmp_path / "out.mp4",
        audio_source=src,
        provenance=provenance,
        end_time=info.duration,
        **FAST,
    )

    got = probe_video(out)
    frame_time = 1 / 30  # both clips sit on a 1/30 s grid
    assert got.frame_count == info.frame_count
    assert (got.width, got.height) == (700, 700) and got.codec == "h264"
    assert abs(got.duration - info.duration) < frame_time
    assert got.is_vfr == info.is_vfr
    assert got.has_audio and got.audio_codec == "aac"
    assert _audio_rms_dbfs(out) > -50.0  # real speech survived the mux, not a silent track
    with av.open(str(out)) as c_out, av.open(str(src)) as c_src:
        assert abs(c_out.duration - c_src.duration) / av.time_base < frame_time
        a_out, a_src = c_out.streams.audio[0], c_src.streams.audio[0]
        assert a_out.duration * a_out.time_base == pytest.approx(
            float(a_src.duration * a_src.time_base), abs=0.03
        )

    out_times = np.array([f.timestamp for f in iter_frames(out)])
    assert len(out_times) == len(src_times) == info.frame_count
    assert np.max(np.abs(out_times - src_times)) < frame_time / 2  # VFR kept frame by frame

    record = read_provenance(out)
    assert record["destination_sha256"] == file_sha256(src)
    assert record["statement"] == STATEMENT and record["visible_label"] is True
    tags = _ffprobe_format(out)["tags"]
    assert tags["comment"] == STATEMENT
    assert tags["synthetic_media"] == "true"
    assert json.loads(tags["workbench_provenance"])["tool"] == "Face-Swap Workbench"


def test_no_audio_source_gives_file_without_audio_stream(tmp_path):
    silent_video = export_video(
        _frames(),
        [i / 10 for i in range(6)],
        tmp_path / "a.mp4",
        audio_source=None,
        provenance=Provenance(model="m"),
        **FAST,
    )
    assert not probe_video(silent_video).has_audio
    # an audio source that has no audio stream behaves the same
    again = export_video(
        _frames(),
        [i / 10 for i in range(6)],
        tmp_path / "b.mp4",
        audio_source=silent_video,
        provenance=Provenance(model="m"),
        **FAST,
    )
    info = probe_video(again)
    assert not info.has_audio and info.frame_count == 6
    assert info.duration == pytest.approx(0.6, abs=1e-3)


def test_odd_size_frames_from_paths_are_padded_to_even(tmp_path):
    paths = [write_image(tmp_path / f"{i:06d}.png", img) for i, img in enumerate(_frames(3, h=49, w=65))]
    out = export_video(
        paths,
        [0.0, 0.04, 0.08],
        tmp_path / "odd.mp4",
        provenance=Provenance(model="m"),
        label_synthetic=False,
        **FAST,
    )
    info = probe_video(out)
    assert (info.width, info.height) == (66, 50)
    decoded = next(iter_frames(out)).image
    assert np.abs(decoded[:49, :65] - _frames(1, h=49, w=65)[0]).mean() < 0.03


def test_provenance_fields_and_roundtrip(tmp_path):
    src_file, dst_file = tmp_path / "src.jpg", tmp_path / "dst.mp4"
    src_file.write_bytes(b"source bytes")
    dst_file.write_bytes(b"destination bytes")
    prov = Provenance.for_media("SAEHD-like DF 128 px, 20k iterations", source=src_file, destination=dst_file)
    assert prov.tool == "Face-Swap Workbench" and prov.version and prov.created.endswith("Z")
    assert prov.source_sha256 == file_sha256(src_file) and len(prov.destination_sha256) == 64
    assert Provenance.from_dict(prov.to_dict()) == prov
    out = export_video(
        _frames(),
        [i / 25 for i in range(6)],
        tmp_path / "p.mp4",
        provenance=prov,
        label_synthetic=False,
        **FAST,
    )
    record = read_provenance(out)
    assert Provenance.from_dict(record) == prov
    assert record["visible_label"] is False
    tags = _ffprobe_format(out)["tags"]
    assert prov.source_sha256 in tags["description"] and tags["workbench_label"] == "none"


def test_file_without_provenance_reads_empty(data_file):
    assert read_provenance(data_file("videos/lp_d18.mp4")) == {}


# --- safety: overwrite, atomic writes, bad input -----------------------------------------------------------


def test_refuses_to_overwrite(tmp_path):
    out = export_video(
        _frames(), [i / 10 for i in range(6)], tmp_path / "o.mp4", provenance=Provenance(model="m"), **FAST
    )
    before = out.read_bytes()
    with pytest.raises(ExportError, match="already exists") as exc:
        export_video(
            _frames(seed=1), [i / 10 for i in range(6)], out, provenance=Provenance(model="m"), **FAST
        )
    assert exc.value.path == out and "--overwrite" in exc.value.hint
    assert out.read_bytes() == before
    export_video(
        _frames(seed=1),
        [i / 10 for i in range(6)],
        out,
        provenance=Provenance(model="m"),
        overwrite=True,
        **FAST,
    )
    assert out.read_bytes() != before


def test_unwritable_output_and_bad_arguments(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    ts = [i / 10 for i in range(6)]
    with pytest.raises(ExportError, match="output folder"):
        export_video(_frames(), ts, blocker / "out.mp4", provenance=None, **FAST)
    with pytest.raises(ExportError, match=r"\.mp4"):
        export_video(_frames(), ts, tmp_path / "out.avi", provenance=None, **FAST)
    with pytest.raises(ConfigError):
        export_video(_frames(), ts, tmp_path / "out.mp4", provenance=None, crf=60, **FAST)
    with pytest.raises(ExportError, match="increase"):
        export_video(_frames(), [0, 0.1, 0.1, 0.2, 0.3, 0.4], tmp_path / "out.mp4", provenance=None, **FAST)
    with pytest.raises(ExportError, match="timestamps"):  # fewer frames than timestamps
        export_video(_frames(4), ts, tmp_path / "out.mp4", provenance=None, **FAST)
    with pytest.raises(ExportError, match="same size"):
        export_video(
            [*_frames(2), *_frames(1, h=32, w=32)], ts[:3], tmp_path / "out.mp4", provenance=None, **FAST
        )
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["not_a_folder"]  # failed exports leave neither the output nor temp files


# --- the visible label -------------------------------------------------------------------------------------


def test_label_is_visible_in_the_corner(tmp_path):
    frames = _frames(4, h=256, w=256)
    ts = [i / 10 for i in range(4)]
    labelled = export_video(frames, ts, tmp_path / "l.mp4", provenance=Provenance(model="m"), **FAST)
    plain = export_video(
        frames, ts, tmp_path / "p.mp4", provenance=Provenance(model="m"), label_synthetic=False, **FAST
    )
    a, b = next(iter_frames(labelled)).image, next(iter_frames(plain)).image
    corner = np.abs(a[:40, :100] - b[:40, :100]).mean()
    rest = np.abs(a[80:, 80:] - b[80:, 80:]).mean()
    assert corner > 0.1 and rest < 0.01


@pytest.mark.parametrize("shape,min_height", [((256, 256), 12), ((1080, 1920), 45)])
def test_label_size_scales_with_the_frame(shape, min_height):
    image = np.full((*shape, 3), 0.5, np.float32)
    out = draw_synthetic_label(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    bright = np.argwhere(out[..., 0] > 0.9)  # the white letters
    height = bright[:, 0].max() - bright[:, 0].min() + 1
    assert height >= min_height
    assert bright[:, 0].max() < shape[0] * 0.2 and bright[:, 1].max() < shape[1] * 0.45  # stays in the corner
    assert draw_synthetic_label((image * 255).astype(np.uint8)).dtype == np.uint8


# --- the `workbench export` command ------------------------------------------------------------------------


def test_export_command(tmp_path, capsys):
    from workbench.commands.export import register
    from workbench.demo_media import make_demo_destination
    from workbench.project import FrameEntry, FrameIndex, create_project, write_frame_index

    clip = make_demo_destination(tmp_path / "dst_clip.mp4", seconds=1.0, fps=12, size=128)
    src = tmp_path / "face.jpg"
    write_image(src, _frames(1, 64, 64)[0])
    project = create_project(tmp_path / "proj", src=src, dst=clip)
    dst = project.media_path("dst")
    entries = []
    for f in iter_frames(dst):
        name = f"{f.index:06d}.png"
        write_image(project.frames_dir / name, f.image)
        write_image(project.merged_dir / name, 1.0 - f.image)  # stand-in for a merged frame
        entries.append(FrameEntry(f.index, name, f.timestamp))
    write_frame_index(project, FrameIndex("media/dst/dst_clip.mp4", 12.0, True, 128, 128, tuple(entries)))

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["export", str(project.root), "--quiet", "--crf", "23"])
    assert args.func(args) == 0
    out = project.output_dir / "dst_clip_swap.mp4"
    printed = capsys.readouterr().out
    assert str(out) in printed and "destination_sha256" in printed
    info = probe_video(out)
    assert info.frame_count == 12 and info.has_audio
    assert info.duration == pytest.approx(1.0, abs=1 / 12)
    record = read_provenance(out)
    assert record["destination_sha256"] == file_sha256(dst) and record["source_sha256"] == file_sha256(src)

    with pytest.raises(ExportError) as exc:
        args.func(args)
    assert "--overwrite" in str(exc.value)
    args = parser.parse_args(
        ["export", str(project.root), "--quiet", "--no-label", "--overwrite", "--output", "x"]
    )
    assert args.func(args) == 0
    assert read_provenance(project.output_dir / "x.mp4")["visible_label"] is False


# --- demo media --------------------------------------------------------------------------------------------


def test_demo_destination_clip(tmp_path):
    dlib = pytest.importorskip("dlib", reason="dlib-bin is not installed")
    from workbench.demo_media import demo_source_image, make_demo_destination

    out = make_demo_destination(tmp_path / "demo.mp4")  # 4 s, 24 fps, 384 px
    info = probe_video(out)
    assert info.has_audio and info.audio_codec == "aac"
    assert info.duration == pytest.approx(4.0, abs=1 / 24) and info.frame_count == 96
    assert (info.width, info.height) == (384, 384)
    assert _audio_rms_dbfs(out) > -40.0
    with av.open(str(out)) as c:
        assert c.metadata["workbench_kind"] == "generated demo input"
    assert read_provenance(out) == {}  # an input, not face-swap output
    detector = dlib.get_frontal_face_detector()
    for frame in iter_frames(out, step=12):
        faces = detector((frame.image * 255).astype(np.uint8), 0)
        assert len(faces) == 1, f"no face in frame {frame.index}"
        box = faces[0]
        assert box.width() >= 100
        assert box.left() >= 0 and box.top() >= 0 and box.right() <= 384 and box.bottom() <= 384
    hopper = demo_source_image()
    assert hopper.shape == (600, 512, 3) and hopper.dtype == np.float32
