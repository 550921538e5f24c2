"""Extraction end to end on real media: video and photo folders, resume, bad input, identity filter."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

import workbench.extract as extract_module
from workbench.errors import ConfigError, MediaError
from workbench.extract import ExtractOptions, extract_faces, extract_project
from workbench.faceset import load_aligned_face, scan_faceset
from workbench.project import create_project, read_frame_index

SMALL = ExtractOptions(size=128, workers=0)


@pytest.fixture(scope="module")
def dst_project(tmp_path_factory, data_file):
    root = tmp_path_factory.mktemp("extract") / "p"
    project = create_project(root, dst=data_file("videos/lp_d18.mp4"), face_size=128)
    summary = extract_project(project, "dst", ExtractOptions(size=128, every_nth=6, smoothing=0.5, workers=2,
                                                             debug=True), progress=False)
    return project, summary


def test_video_extraction_writes_faces_frames_and_index(dst_project):
    project, summary = dst_project
    assert summary.frames == 36 and summary.frames_processed == 36
    assert summary.faces >= 35 and summary.frames_without_face <= 1 and summary.skipped == ()
    scan = scan_faceset(project.aligned_dir("dst"))
    assert len(scan) == summary.faces and scan.broken == ()
    image, meta = load_aligned_face(scan.faces[0].path)
    assert image.shape == (128, 128, 3) and meta.face_type == "whole_face" and meta.size == 128
    assert meta.source_file == "media/dst/lp_d18.mp4" and meta.detector == "dlib"
    # landmarks in face space are the frame landmarks pushed through the stored matrix
    pushed = meta.source_landmarks @ meta.face_matrix[:, :2].T + meta.face_matrix[:, 2]
    assert np.abs(pushed - meta.landmarks).max() < 0.01
    # eyes of an aligned whole_face sit level in the upper half
    eyes = meta.landmarks[36:48]
    assert abs(meta.landmarks[36:42, 1].mean() - meta.landmarks[42:48, 1].mean()) < 3
    assert 40 < eyes[:, 1].mean() < 70
    index = read_frame_index(project)
    assert len(index.frames) == 36 and index.fps == pytest.approx(30.0) and index.width == 480
    assert [f.index for f in index.frames[:3]] == [0, 6, 12]
    assert index.frames[1].timestamp == pytest.approx(0.2, abs=1e-3)
    assert (project.frames_dir / index.frames[5].file).exists()
    assert len(list(project.debug_dir("dst").glob("*.jpg"))) == summary.faces


def test_rerun_resumes_without_redoing_work(dst_project):
    project, first = dst_project
    removed = sorted(project.aligned_dir("dst").glob("*.jpg"))[0]
    removed.unlink()  # the user curated this face away; a re-run must not bring it back
    again = extract_project(project, "dst", ExtractOptions(size=128, every_nth=6, workers=2), progress=False)
    assert again.frames_resumed == 36 and again.frames_processed == 0 and again.faces == 0
    assert not removed.exists()


def test_interrupted_extraction_resumes(tmp_path, data_dir, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("obama.jpg", "obama1.jpg", "obama2.jpg", "obama_small.jpg"):
        shutil.copy(data_dir / "stills" / "obama" / name, photos / name)
    out = tmp_path / "faces"
    real_write = extract_module.write_aligned_face
    calls = {"n": 0}

    def crashing_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C while the third face was being written
        return real_write(*args, **kwargs)

    monkeypatch.setattr(extract_module, "write_aligned_face", crashing_write)
    with pytest.raises(KeyboardInterrupt):
        extract_faces(photos, out, SMALL, progress=False)
    assert len(list(out.glob("*.jpg"))) == 2
    assert not [p for p in out.iterdir() if "tmp" in p.name]  # no partial file left behind
    monkeypatch.setattr(extract_module, "write_aligned_face", real_write)
    resumed = extract_faces(photos, out, SMALL, progress=False)
    assert resumed.frames_resumed == 2 and resumed.faces == 2
    assert sorted(p.stem for p in out.glob("*.jpg")) == ["obama1_0", "obama2_0", "obama_0", "obama_small_0"]


def test_bad_input_is_skipped_and_summarised(tmp_path, data_dir):
    photos = tmp_path / "mixed"
    photos.mkdir()
    shutil.copy(data_dir / "stills" / "edge" / "dogs.jpg", photos / "dogs.jpg")
    shutil.copy(data_dir / "stills" / "edge" / "32bit.png", photos / "rgba.png")
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.txt").write_text("not media")
    data = (data_dir / "stills" / "obama" / "obama1.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(data[: len(data) // 4])
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(photos / "tiny.png")
    Image.fromarray(np.full((2400, 3000, 3), 128, np.uint8)).save(photos / "huge.png")
    summary = extract_faces(photos, tmp_path / "out", SMALL, progress=False)
    skipped = dict(summary.skipped)
    assert set(skipped) == {"empty.jpg", "notes.txt", "truncated.jpg", "tiny.png"}
    assert "empty" in skipped["empty.jpg"] and "not a photo" in skipped["notes.txt"]
    assert summary.faces == 1  # the RGBA portrait
    assert summary.frames_without_face == 2  # dogs and the huge grey image
    assert "skipped files:       4" in summary.format()


def test_reference_identity_keeps_the_right_person(tmp_path, data_file):
    options = ExtractOptions(size=128, workers=0, reference=str(data_file("stills/obama/obama1.jpg")))
    summary = extract_faces(data_file("stills/multi/two_people.jpg"), tmp_path / "out", options, progress=False)
    assert summary.faces == 1
    (face,) = scan_faceset(tmp_path / "out").faces
    assert face.meta.identity_distance is not None and face.meta.identity_distance < 0.6
    assert face.meta.box[0] < 1126 / 2  # Obama stands on the left of the photo


def test_option_and_media_errors(tmp_path, data_file):
    with pytest.raises(ConfigError):
        ExtractOptions(face_type="nose").validate()
    with pytest.raises(ConfigError):
        ExtractOptions(target="everyone").validate()
    with pytest.raises(MediaError, match="missing.mp4"):
        extract_faces(tmp_path / "missing.mp4", tmp_path / "o", SMALL)
    out = tmp_path / "o2"
    extract_faces(data_file("stills/obama/obama1.jpg"), out, SMALL, progress=False)
    with pytest.raises(ConfigError, match="same --face-type"):
        extract_faces(data_file("stills/obama/obama2.jpg"), out, ExtractOptions(size=256, workers=0))
    assert json.loads((out / ".extract_options.json").read_text())["size"] == 128
