"""Session fixtures for the model-export and live tests: a small model trained for a few steps on real faces
(lp_d18 -> lp_d19, via train_fixtures.faceset_pair) inside a project whose destination frames are lp_d19's
first frames, padded to 640x480 (the live target size).

Test modules import ``faceset_pair`` from train_fixtures and ``trained_project``/``dst_frames`` from here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

N_FRAMES = 6
RUN = "run1"
TRAIN_STEPS = 60


def model_options(**overrides):
    """df-ud at 64 px with narrow layers: the tiny preset's shape, small enough to train in seconds."""
    from train_fixtures import fast_options

    base = dict(resolution=64, ae_dims=64, e_dims=16, d_dims=16, d_mask_dims=8, batch_size=4, face_type="full")
    base.update(overrides)
    return fast_options(**base)


def read_frames(video: Path, count: int, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """The first ``count`` frames of a video, centred on a grey ``size`` canvas (RGB uint8)."""
    import av

    w, h = size
    frames = []
    with av.open(str(video)) as container:
        for _, f in zip(range(count), container.decode(video=0)):
            rgb = f.to_ndarray(format="rgb24")
            canvas = np.full((h, w, 3), 96, np.uint8)
            y0, x0 = (h - rgb.shape[0]) // 2, (w - rgb.shape[1]) // 2
            canvas[y0:y0 + rgb.shape[0], x0:x0 + rgb.shape[1]] = rgb
            frames.append(canvas)
    return np.stack(frames)


@pytest.fixture(scope="session")
def dst_frames(data_file) -> np.ndarray:
    """lp_d19's first frames at 640x480 (RGB uint8)."""
    return read_frames(data_file("videos/lp_d19.mp4"), N_FRAMES)


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory, faceset_pair, dst_frames) -> Path:
    """A project with destination frames, aligned dst faces (dlib landmarks) and run ``run1`` trained a few
    steps. Returns the project root."""
    return build_trained_project(tmp_path_factory.getbasetemp() / "export_model_project", faceset_pair, dst_frames)


def build_trained_project(root: Path, faceset_pair: tuple[Path, Path], dst_frames: np.ndarray) -> Path:
    """Build (once: a marker file) the project described in :func:`trained_project` at ``root``."""
    import torch
    from helpers import largest_face_landmarks

    from workbench import align
    from workbench.faceset import FaceMeta, write_aligned_face
    from workbench.images import write_image
    from workbench.project import FrameEntry, FrameIndex, Project, write_frame_index
    from workbench.train import Trainer

    marker = root / "ready.json"
    if marker.exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    (root / "workbench.json").write_text(json.dumps({"schema_version": 1, "name": "t", "face_type": "full"}))
    project = Project.open(root)
    entries = []
    for i, frame in enumerate(dst_frames):
        name = f"{i:06d}.png"
        write_image(project.frames_dir / name, frame)
        entries.append(FrameEntry(i, name, i / 30.0))
        lm = largest_face_landmarks(frame.astype(np.float32) / 255.0).astype(np.float32)
        mat = align.transform_matrix(lm, 64, "full")
        meta = FaceMeta(face_type="full", size=64, landmarks=align.transform_points(lm, mat), source_landmarks=lm,
                        face_matrix=mat, source_file=f"frames/dst/{name}", frame_index=i, face_index=0,
                        timestamp=i / 30.0, source_size=(640, 480))
        write_aligned_face(project.aligned_dir("dst") / f"{i:06d}_0.png", align.warp_face(frame, mat, 64), meta)
    write_frame_index(project, FrameIndex("media/dst/clip.mp4", 30.0, False, 640, 480, tuple(entries)))
    src, dst = faceset_pair
    torch.manual_seed(0)
    Trainer(model_options(lr=1e-3), src, dst, run_dir=project.models_dir / RUN).run(steps=TRAIN_STEPS)
    marker.write_text("{}")
    return root


def exported_dfm(project: Path) -> Path:
    """``output/run1.dfm`` of a trained project: the run exported once, then reused by later tests."""
    from workbench.export_model import export_run

    dfm = project / "output" / f"{RUN}.dfm"
    if not dfm.exists():
        dfm.parent.mkdir(parents=True, exist_ok=True)
        export_run(project / "models" / RUN, dfm)
    return dfm
