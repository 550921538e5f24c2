"""Swap-quality metrics (workbench.quality) on known cases, the trainer's live identity score and `workbench evaluate`.

Faces come from the offline demo images (Grace Hopper = source, the astronaut = destination), so these tests
need no shared media.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from workbench import quality as q
from workbench.align import transform_matrix, transform_points, unwarp_face, warp_face
from workbench.errors import ProjectError
from workbench.face_constants import LANDMARKS_68_3D, mirror_landmarks
from workbench.identity import face_embedding
from workbench.masks import feather, hull_mask


@pytest.fixture(scope="module")
def demo_pair():
    """(source image, its landmarks, destination image, its landmarks) from the built-in demo images."""
    from helpers import largest_face_landmarks

    from workbench.demo_media import demo_destination_image, demo_source_image

    src, dst = demo_source_image(), demo_destination_image()
    return src, largest_face_landmarks(src), dst, largest_face_landmarks(dst)


@pytest.fixture(scope="module")
def references(demo_pair):
    """Robust references from each photo and its mirror image (two views per identity)."""
    from helpers import largest_face_landmarks

    refs = []
    for image, lm in (demo_pair[:2], demo_pair[2:]):
        flipped = np.ascontiguousarray(image[:, ::-1])
        refs.append(q.reference_from_embeddings([face_embedding(image, lm),
                                                 face_embedding(flipped, largest_face_landmarks(flipped))]))
    return refs


def paste_face(src, src_lm, dst, dst_lm):
    """A perfect 'swap': the source photo's face warped onto the destination face and blended in."""
    m_src = transform_matrix(src_lm, 256, "whole_face")
    m_dst = transform_matrix(dst_lm, 256, "whole_face")
    face = warp_face(src, m_src, 256)
    mask = feather(hull_mask((256, 256), transform_points(src_lm, m_src)), 5)
    face_f, mask_f = unwarp_face(face, m_dst, dst.shape), unwarp_face(mask, m_dst, dst.shape)[..., None]
    return np.clip(dst * (1 - mask_f) + face_f * mask_f, 0, 1).astype(np.float32)


def test_destination_frame_scores_as_destination(demo_pair, references):
    _, _, dst, dst_lm = demo_pair
    result = q.evaluate_frame(dst, dst_lm, *references)
    assert result.found
    assert result.distance_dst < 0.2 < 0.5 < result.distance_src  # its own photo: near dst, far from src
    assert result.reads_as_source is False and result.rank == 2
    assert result.pose.max_deg == pytest.approx(0.0, abs=0.5)
    summary = q.summarize([result])
    assert summary["identity"]["closer_to_src"] == 0.0 and summary["identity"]["retrieval_top1"] == 0.0
    assert summary["identity"]["reads_as_source"] is False


def test_pasted_source_face_scores_as_source(demo_pair, references):
    src, src_lm, dst, dst_lm = demo_pair
    pasted = paste_face(src, src_lm, dst, dst_lm)
    result = q.evaluate_frame(pasted, dst_lm, *references, frame=7)
    assert result.found and result.frame == 7
    assert result.distance_src < 0.4 and result.distance_dst > 0.5
    assert result.reads_as_source and result.rank == 1
    # the pasted face sits where the destination face was: pose error stays small
    assert result.pose.max_deg < 10
    summary = q.summarize([result, result])
    assert summary["identity"]["closer_to_src"] == 1.0 and summary["identity"]["retrieval_top1"] == 1.0
    assert summary["identity"]["reads_as_source"] is True
    assert summary["identity"]["stability_std"] == 0.0


def test_retrieval_rank_counts_nearer_identities():
    gallery = {"src": np.array([1.0, 0.0]), "dst": np.array([0.0, 1.0]), "photo:x": np.array([0.9, 0.1])}
    assert q.retrieval_rank(np.array([1.0, 0.0]), gallery, "src") == 1
    assert q.retrieval_rank(np.array([0.85, 0.15]), gallery, "src") == 2  # photo:x is nearer
    assert q.retrieval_rank(np.array([0.0, 1.0]), gallery, "src") == 3


def _projected_face(yaw_deg: float, size: int = 512) -> np.ndarray:
    """68 landmarks of DFL's 3D mean face turned by ``yaw_deg``, projected by a camera centred on the frame."""
    points = LANDMARKS_68_3D.astype(np.float64)
    camera = np.array([[size, 0, size / 2], [0, size, size / 2], [0, 0, 1.0]])
    distance = size / (np.ptp(points[:, 0]) / (0.3 * size))
    out, _ = cv2.projectPoints(points, np.array([0.0, math.radians(yaw_deg), 0.0]), np.array([0.0, 0.0, distance]),
                               camera, np.zeros(4))
    return out[:, 0, :]


@pytest.mark.parametrize("yaw", [10.0, 20.0])
def test_pose_error_zero_for_itself_and_twice_the_yaw_for_a_mirror(yaw):
    lm = _projected_face(yaw)
    same = q.pose_error(lm, lm, (512, 512))
    assert same.max_deg == pytest.approx(0.0, abs=1e-6)
    mirrored = q.pose_error(mirror_landmarks(lm, 512), lm, (512, 512))
    assert mirrored.yaw_deg == pytest.approx(2 * yaw, abs=3.0)  # the mean face is not perfectly symmetric
    assert mirrored.max_deg == pytest.approx(mirrored.yaw_deg)
    assert mirrored.pitch_deg < 1.5 and mirrored.roll_deg < 1.5


def _open_mouth(lm: np.ndarray, amount: float) -> np.ndarray:
    """Move the lower lip (outer 55-59, inner 65-67) and chin down by ``amount`` x mouth width."""
    out = np.array(lm, np.float64)
    width = np.linalg.norm(out[48] - out[54])
    for idx in (*range(55, 60), *range(65, 68), 7, 8, 9):
        out[idx, 1] += amount * width
    return out


def test_expression_error_grows_with_mouth_opening(demo_pair):
    lm = demo_pair[3]
    assert q.expression_error(lm, lm).total == pytest.approx(0.0, abs=1e-9)
    # position, size and in-plane rotation do not count as expression
    angle = math.radians(12)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = (lm - lm.mean(0)) @ rot.T * 1.3 + lm.mean(0) + [40.0, -25.0]
    assert q.expression_error(moved, lm).total == pytest.approx(0.0, abs=1e-6)
    errors = [q.expression_error(_open_mouth(lm, a), lm) for a in (0.05, 0.1, 0.2, 0.4)]
    totals = [e.total for e in errors]
    assert all(a < b for a, b in zip(totals, totals[1:])), totals
    assert all(e.eyes == pytest.approx(0.0, abs=1e-6) for e in errors)  # only the mouth moved
    opens = [e.mouth_open for e in errors]
    assert all(a < b for a, b in zip(opens, opens[1:])) and opens[-1] > 0.3
    assert q.mouth_open_ratio(_open_mouth(lm, 0.3)) > q.mouth_open_ratio(lm) + 0.25


def test_frame_without_a_face_is_counted(demo_pair, references):
    _, _, dst, dst_lm = demo_pair
    blank = np.full_like(dst, 0.5)
    missing = q.evaluate_frame(blank, dst_lm, *references, frame=3)
    assert not missing.found and missing.reads_as_source is None
    found = q.evaluate_frame(dst, dst_lm, *references, frame=4)
    summary = q.summarize([missing, found])
    assert summary["frames"] == 2 and summary["faces_found"] == 1 and summary["faces_not_found"] == 1
    assert summary["identity"]["closer_to_src"] == 0.0  # shares are over the faces found
    table = q.format_table(summary)
    assert re.search(r"faces found / not found\s+1 / 1", table)


def test_identity_probe_on_aligned_model_crops(demo_pair):
    """The trainer's cheap score: 64 px crops, references at the same resolution."""
    src, src_lm, dst, dst_lm = demo_pair

    def crop(image, lm, shift=0.0):
        mat = transform_matrix(lm, 64, "full")
        mat = mat + np.array([[0, 0, shift], [0, 0, 0]])
        return warp_face(image, mat, 64), transform_points(lm, mat)

    src_faces = [crop(src, src_lm, s) for s in (-1.0, 0.0, 1.0)]
    dst_faces = [crop(dst, dst_lm, s) for s in (-1.0, 0.0, 1.0)]
    probe = q.IdentityProbe(src_faces, dst_faces)
    as_dst = probe.score([f for f, _ in dst_faces], [lm for _, lm in dst_faces])
    assert as_dst["id_closer_to_src"] == 0.0 and as_dst["id_faces"] == 3
    # a "swap" that is the source face drawn on the destination geometry reads as the source
    pasted = paste_face(src, src_lm, dst, dst_lm)
    swap, swap_lm = crop(pasted, dst_lm)
    as_src = probe.score([swap], [swap_lm])
    assert as_src["id_closer_to_src"] == 1.0 and as_src["id_distance_src"] < as_src["id_distance_dst"]


def test_identity_curve_text():
    rows = [{"kind": "train", "step": 10}, {"kind": "eval", "step": 100, "id_closer_to_src": 0.25, "id_distance_src": 0.7},
            {"kind": "eval", "step": 200, "id_closer_to_src": 0.875, "id_distance_src": 0.48},
            {"kind": "eval", "step": 300, "ssim_src": 0.8}]
    curve = q.identity_curve(rows)
    assert curve == [(100, 0.25, 0.7), (200, 0.875, 0.48)]
    text = q.format_identity_curve(curve)
    assert text.startswith("looks like the source: 0.25 → 0.88") and "step 100..200" in text and "0.480" in text


# ------------------------------------------------------------------------------------------------
# a real (small) demo project: trainer score, evaluate on merged frames and on a merged sample
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_project(tmp_path_factory):
    from workbench.demo import build_demo_project
    from workbench.extract import ExtractOptions, extract_project

    project = build_demo_project(tmp_path_factory.mktemp("quality") / "demo", clip_seconds=1.0, fps=8)
    for side in ("src", "dst"):
        extract_project(project, side, ExtractOptions(size=128, every_nth=3 if side == "src" else 1),
                        progress=False)
    return project


@pytest.mark.slow
def test_trainer_writes_identity_score(small_project):
    from workbench.train import preset, read_metrics, read_status, train

    run_dir = small_project.models_dir / "tiny"
    options = preset("tiny", batch_size=4, metrics_every=5, metrics_samples=2, preview_every=0, loader_workers=0,
                     cpu_threads=1, save_every_seconds=0.0)
    train(run_dir, options, src=small_project.aligned_dir("src"), dst=small_project.aligned_dir("dst"), steps=10,
          progress=False)
    evals = [r for r in read_metrics(run_dir) if r.get("kind") == "eval"]
    assert [r["step"] for r in evals] == [5, 10]
    for row in evals:
        assert 0.0 <= row["id_closer_to_src"] <= 1.0 and row["id_faces"] >= 4
        assert 0.0 < row["id_distance_src"] < 2.0 and 0.0 < row["id_distance_dst"] < 2.0
    assert read_status(run_dir).metrics["id_closer_to_src"] == evals[-1]["id_closer_to_src"]
    assert "looks like the source" in read_status(run_dir).summary()
    out = subprocess.run([sys.executable, "-m", "workbench", "train-status", str(small_project.root)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"looks like the source: {evals[0]['id_closer_to_src']:.2f} → {evals[-1]['id_closer_to_src']:.2f}" in out.stdout


def _table_value(stdout: str, label: str) -> str:
    match = re.search(rf"^{re.escape(label)}\s+(.+)$", stdout, re.M)
    assert match, f"{label!r} not in:\n{stdout}"
    return match.group(1).strip()


@pytest.mark.slow
def test_evaluate_json_matches_table_on_merged_frames(small_project):
    from workbench.project import read_frame_index

    # "merged" frames that are the destination frames themselves: the swap must read as the destination
    merged = small_project.merged_dir
    merged.mkdir(parents=True, exist_ok=True)
    index = read_frame_index(small_project)
    for entry in index.frames:
        shutil.copyfile(small_project.frames_dir / entry.file, merged / Path(entry.file).with_suffix(".png").name)
    blank = np.zeros((8, 8, 3), np.uint8)  # one frame where nothing can be found
    cv2.imwrite(str(merged / Path(index.frames[2].file).with_suffix(".png").name),
                cv2.resize(blank, (384, 384)))
    out = subprocess.run([sys.executable, "-m", "workbench", "evaluate", str(small_project.root), "--json",
                          "--no-progress", "--frames", "0"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("closer_to_src", "median_distance_src", "median_distance_dst", "retrieval_top1"):
        assert key in data["identity"]
    assert {"median_error_deg"} <= set(data["pose"]) and {"median_error", "mouth_open_error"} <= set(data["expression"])
    assert "merged" in data["flicker"] and data["frames"] == len(index.frames)
    assert data["faces_not_found"] == 1 and data["faces_found"] == len(index.frames) - 1
    assert data["identity"]["closer_to_src"] == 0.0 and data["identity"]["median_distance_dst"] < 0.3
    assert data["pose"]["median_error_deg"] < 1.0 and data["expression"]["median_error"] < 0.01
    # the table says the same
    assert _table_value(out.stdout, "frames evaluated") == str(data["frames"])
    assert _table_value(out.stdout, "identity: closer to source").startswith("0.0%")
    assert float(_table_value(out.stdout, "identity: median distance to destination")) == pytest.approx(
        data["identity"]["median_distance_dst"], abs=1e-3)
    assert "does NOT yet read as the source" in out.stdout
    saved = json.loads((small_project.root / "evaluation.json").read_text())
    assert saved["summary"] == {k: v for k, v in data.items() if k not in ("run", "step")}
    assert saved["frames_from"] == "merged" and len(saved["per_frame"]) == data["frames"]
    assert sum(1 for f in saved["per_frame"] if not f["found"]) == 1
    shutil.rmtree(merged)


@pytest.mark.slow
def test_evaluate_merges_a_sample_with_the_run(small_project):
    from workbench.train import preset, read_status, train

    run_dir = small_project.models_dir / "sample"
    if not (run_dir / "checkpoints").exists():
        train(run_dir, preset("tiny", batch_size=4, metrics_every=0, preview_every=0, loader_workers=0, cpu_threads=1),
              src=small_project.aligned_dir("src"), dst=small_project.aligned_dir("dst"), steps=4, progress=False)
    shutil.rmtree(small_project.merged_dir, ignore_errors=True)
    for bad in ("../sample", "nope"):  # run names are plain names inside the project; unknown runs are named
        with pytest.raises(ProjectError, match="invalid run name|no training run named 'nope'"):
            q.evaluate_project(small_project, run=bad, max_frames=4)
    evaluation = q.evaluate_project(small_project, run="sample", max_frames=4)
    assert evaluation.source == "sample" and evaluation.run == "sample"
    assert evaluation.step == read_status(run_dir).step == 4
    assert evaluation.summary["frames"] == 4
    assert evaluation.settings["merge"]["default"]["resolution"] == 64
    assert not small_project.merged_dir.exists() or not any(small_project.merged_dir.glob("*.png"))
    saved = q.read_evaluation(small_project)
    assert saved["run"] == "sample" and saved["step"] == 4 and saved["frames_from"] == "sample"
