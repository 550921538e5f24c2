"""Aligned faces carry their metadata inside the file; the folder is the faceset."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from workbench.errors import MetadataError
from workbench.faceset import (
    INDEX_NAME,
    SCHEMA_VERSION,
    FaceMeta,
    load_aligned_face,
    move_to_trash,
    read_face_meta,
    scan_faceset,
    write_aligned_face,
)


def make_meta(rng, frame_index=0, face_index=0, size=64) -> FaceMeta:
    return FaceMeta(
        face_type="whole_face",
        size=size,
        landmarks=rng.uniform(0, size, (68, 2)).astype(np.float32),
        source_landmarks=rng.uniform(0, 500, (68, 2)).astype(np.float32),
        face_matrix=rng.normal(size=(2, 3)),
        source_file="media/dst/clip.mp4",
        frame_index=frame_index,
        face_index=face_index,
        timestamp=frame_index / 30.0,
        source_size=(640, 480),
        box=(10.0, 20.0, 110.0, 140.0),
        score=0.93,
        detector="dlib",
        landmarker="dlib",
        identity_distance=0.41,
    )


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_metadata_round_trip(tmp_path, rng, suffix):
    meta = make_meta(rng)
    image = rng.uniform(0, 1, (64, 64, 3)).astype(np.float32)
    path = write_aligned_face(tmp_path / f"000000_0{suffix}", image, meta)
    back = read_face_meta(path)
    assert back.to_dict() == meta.to_dict() | {
        "landmarks": np.round(meta.landmarks.astype(float), 3).tolist(),
        "source_landmarks": np.round(meta.source_landmarks.astype(float), 3).tolist(),
    }
    assert np.abs(back.landmarks - meta.landmarks).max() < 1e-3
    assert np.allclose(back.face_matrix, meta.face_matrix)
    pixels, meta2 = load_aligned_face(path)
    assert pixels.shape == (64, 64, 3) and meta2.frame_index == 0
    if suffix == ".png":
        assert np.abs(pixels - image).max() <= 0.5 / 255 + 1e-6
    # metadata is JSON, readable by anyone (no pickle)
    with Image.open(path) as img:
        raw = img.text["workbench"] if suffix == ".png" else img.info["comment"].decode()
    assert json.loads(raw)["workbench"]["schema_version"] == SCHEMA_VERSION == 2


def test_scan_survives_delete_rename_and_broken_files(tmp_path, rng):
    folder = tmp_path / "aligned"
    image = np.full((64, 64, 3), 0.5, np.float32)
    for i in range(5):
        write_aligned_face(folder / f"{i:06d}_0.jpg", image, make_meta(rng, frame_index=i))
    first = scan_faceset(folder)
    assert len(first) == 5 and first.broken == () and (folder / INDEX_NAME).exists()
    # a user deletes one face and renames another in a file manager
    (folder / "000002_0.jpg").unlink()
    os.rename(folder / "000004_0.jpg", folder / "my favourite.jpg")
    # ...drops in an unrelated photo and a corrupt file
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "holiday.jpg")
    (folder / "zero.png").write_bytes(b"")
    scan = scan_faceset(folder)
    assert [r.meta.frame_index for r in scan.faces] == [0, 1, 3, 4]
    assert sorted(p.name for p, _ in scan.broken) == ["holiday.jpg", "zero.png"]
    assert all(reason for _, reason in scan.broken)
    # the cached index is a cache only: same answer with and without it
    assert [r.path for r in scan_faceset(folder, use_cache=False).faces] == [r.path for r in scan.faces]


def test_corrupted_metadata_is_reported_by_name(tmp_path, rng):
    path = write_aligned_face(tmp_path / "f.png", np.zeros((64, 64, 3), np.float32), make_meta(rng))
    img = Image.open(path)
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("workbench", '{"workbench": {"face_type": "full", "landmarks": [[1, 2]]}}')
    img.save(tmp_path / "bad.png", pnginfo=info)
    with pytest.raises(MetadataError, match="bad.png"):
        read_face_meta(tmp_path / "bad.png")
    scan = scan_faceset(tmp_path)
    assert len(scan.faces) == 1 and scan.broken[0][0].name == "bad.png"


def test_newer_schema_refused_with_hint(tmp_path, rng):
    data = make_meta(rng).to_dict() | {"schema_version": 99}
    with pytest.raises(MetadataError, match="newer"):
        FaceMeta.from_dict(data, tmp_path / "x.jpg")


def test_resized_file_rescales_geometry(tmp_path, rng):
    meta = make_meta(rng, size=64)
    path = write_aligned_face(tmp_path / "f.jpg", np.zeros((64, 64, 3), np.float32), meta)
    # someone resizes the image in an editor and keeps the comment
    with Image.open(path) as img:
        comment = img.info["comment"]
        img.resize((128, 128)).save(tmp_path / "big.jpg", comment=comment)
    _, meta2 = load_aligned_face(tmp_path / "big.jpg")
    assert meta2.size == 128
    assert np.allclose(meta2.landmarks, np.round(meta.landmarks, 3) * 2, atol=1e-2)
    # the landmarks in the pixels of any other drawing size of the face (a model's input, a 512 px view)
    for size in (32, 256):
        at = meta.landmarks_at(size)
        assert at.dtype == np.float32 and np.allclose(at, meta.landmarks * size / 64)
    assert np.allclose(meta2.landmarks_at(64), meta.landmarks, atol=1e-2)


def test_move_to_trash_never_overwrites(tmp_path, rng):
    src = tmp_path / "a"
    src.mkdir()
    for _ in range(2):
        write_aligned_face(src / "x.jpg", np.zeros((64, 64, 3), np.float32), make_meta(rng))
        move_to_trash(src / "x.jpg", tmp_path / "trash")
    assert sorted(p.name for p in (tmp_path / "trash").iterdir()) == ["x.jpg", "x_1.jpg"]
    shutil.rmtree(src)
