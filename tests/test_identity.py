"""Tests for workbench.identity: dlib ResNet embeddings and reference-based target selection."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.detect import detect_faces
from workbench.errors import MediaError
from workbench.identity import (
    SAME_PERSON_THRESHOLD,
    embedding_distance,
    face_embedding,
    reference_embedding,
)
from workbench.images import read_image
from workbench.targets import select_faces


@pytest.fixture(scope="module")
def two_people(data_file):
    image = read_image(data_file("stills/multi/two_people.jpg"))
    faces = detect_faces(image)
    assert len(faces) == 2
    return image, faces


def test_embedding_shape_and_self_distance(two_people):
    image, faces = two_people
    a = face_embedding(image, faces[0].landmarks)
    assert a.shape == (128,) and a.dtype == np.float32
    assert 0.5 < np.linalg.norm(a) < 1.5
    assert embedding_distance(a, a) == 0.0
    b = face_embedding(image, faces[1].landmarks)
    assert embedding_distance(a, b) == pytest.approx(embedding_distance(b, a))
    # uint8 frames give the same vector as float ones
    u8 = np.rint(image * 255).astype(np.uint8)
    assert embedding_distance(a, face_embedding(u8, faces[0].landmarks)) < 1e-5


def test_embedding_validation(two_people):
    image, faces = two_people
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        face_embedding(image, faces[0].landmarks[:5])
    with pytest.raises(ValueError, match="NaN"):
        face_embedding(image, np.full((68, 2), np.nan))
    with pytest.raises(ValueError, match="differ in size"):
        embedding_distance(np.zeros(128), np.zeros(64))


@pytest.mark.parametrize(
    ("reference", "expected_side"),
    [("stills/obama/obama1.jpg", "left"), ("stills/biden/biden2.jpg", "right")],
)
def test_reference_picks_the_right_person(data_file, two_people, reference, expected_side):
    image, faces = two_people
    ref = reference_embedding(data_file(reference))
    distances = [embedding_distance(face_embedding(image, f.landmarks), ref) for f in faces]
    closest = faces[int(np.argmin(distances))]
    other = faces[int(np.argmax(distances))]
    side = "left" if closest.center[0] < other.center[0] else "right"
    print(
        f"\n{reference}: distances {[round(d, 3) for d in distances]} (x centres "
        f"{[round(f.center[0]) for f in faces]}), closest on the {side}"
    )
    assert side == expected_side  # face_recognition's docs: Obama left, Biden right in this photo
    assert min(distances) < SAME_PERSON_THRESHOLD < max(distances)

    chosen = select_faces(faces, image.shape, reference=ref, image=image)
    assert len(chosen) == 1
    assert chosen[0].face == closest
    assert chosen[0].distance == pytest.approx(min(distances), abs=1e-5)
    # A loose threshold keeps both, best match first, each with its distance recorded.
    both = select_faces(faces, image.shape, reference=ref, threshold=2.0, image=image)
    assert [s.face for s in both] == [closest, other]
    assert [s.distance for s in both] == pytest.approx(sorted(distances), abs=1e-5)


def test_reference_embedding_accepts_array_and_errors_without_face(data_file):
    path = data_file("stills/obama/obama_small.jpg")
    from_path = reference_embedding(path)
    from_array = reference_embedding(read_image(path))
    assert embedding_distance(from_path, from_array) < 1e-6
    with pytest.raises(MediaError, match="no face") as info:
        reference_embedding(data_file("stills/edge/dogs.jpg"))
    assert info.value.path is not None and info.value.path.name == "dogs.jpg"
