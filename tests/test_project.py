from __future__ import annotations

import json

import pytest

from workbench.errors import ProjectError
from workbench.project import (
    FrameEntry,
    FrameIndex,
    Project,
    create_project,
    read_frame_index,
    write_frame_index,
)


def test_create_layout_and_config(tmp_path, data_file):
    project = create_project(tmp_path / "p", data_file("videos/lp_d18.mp4"), data_file("videos/lp_d19.mp4"))
    for folder in (
        "media/src",
        "media/dst",
        "frames/dst",
        "aligned/src",
        "aligned/dst",
        "models",
        "merged",
        "output",
    ):
        assert (project.root / folder).is_dir(), folder
    config = json.loads((project.root / "workbench.json").read_text())
    assert config["src_media"] == "media/src/lp_d18.mp4" and config["dst_media"] == "media/dst/lp_d19.mp4"
    assert config["face_type"] == "whole_face" and config["face_size"] == 512
    assert project.media_path("dst").stat().st_size == data_file("videos/lp_d19.mp4").stat().st_size
    assert Project.open(project.root).root == project.root


def test_photo_folder_media(tmp_path, data_dir):
    project = create_project(tmp_path / "p", data_dir / "stills" / "obama")
    assert sorted(p.name for p in project.media_path("src").iterdir())[:1] == ["obama.jpg"]


def test_paths_cannot_escape(tmp_path):
    project = create_project(tmp_path / "p")
    assert project.resolve_inside("aligned/src") == project.root / "aligned" / "src"
    for bad in ("../outside.jpg", "/etc/passwd", "aligned/../../x"):
        with pytest.raises(ProjectError, match="outside the project"):
            project.resolve_inside(bad)


def test_errors_name_the_folder(tmp_path):
    with pytest.raises(ProjectError, match="not a workbench project"):
        Project.open(tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    with pytest.raises(ProjectError, match="not empty"):
        create_project(tmp_path / "busy")
    with pytest.raises(ProjectError, match="media not found"):
        create_project(tmp_path / "p2", tmp_path / "missing.mp4")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ProjectError, match="unsupported media"):
        create_project(tmp_path / "p3", tmp_path / "notes.txt")


def test_frame_index_round_trip(tmp_path):
    project = create_project(tmp_path / "p")
    with pytest.raises(ProjectError, match="no destination frames"):
        read_frame_index(project)
    index = FrameIndex(
        "media/dst/x.mp4",
        29.97,
        True,
        640,
        480,
        (FrameEntry(0, "000000.png", 0.0), FrameEntry(1, "000001.png", 0.0667)),
    )
    write_frame_index(project, index)
    assert read_frame_index(project) == index
