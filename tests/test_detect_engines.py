"""Tests for the seed engines (Haar, MTCNN, YuNet), the combined default engine and its false-face guard."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest

from workbench import detect
from workbench.detect import (
    BoxCalibration,
    as_dlib_image,
    detect_faces,
    fit_box_calibration,
    five_points,
    load_engine,
    nms,
    rotate_by_angle,
)
from workbench.errors import EngineUnavailableError
from workbench.images import read_image, to_float

HAS_YUFACE = importlib.util.find_spec("yuface") is not None
SEED_ENGINES = ["haar", "mtcnn", pytest.param("yunet", marks=pytest.mark.skipif(
    not HAS_YUFACE, reason="yuface (optional, Python <= 3.11 wheels) is not installed")), "auto"]


def _iod(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[36] - points[45]))


@pytest.fixture(scope="module")
def portrait(data_file):
    image = read_image(data_file("stills/obama/obama_small.jpg"))
    hog = detect_faces(image, "dlib")
    assert len(hog) == 1
    return image, hog[0].landmarks.astype(np.float64)


@pytest.mark.parametrize("name", SEED_ENGINES)
def test_engine_finds_portrait_and_no_dogs(name, portrait, data_file):
    image, hog_points = portrait
    faces = detect_faces(image, name)
    assert len(faces) == 1
    face = faces[0]
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
    # Calibrated box: the predictor's points agree with HOG's on the same face (measured 0.01-0.03 eye distances).
    error = np.linalg.norm(face.landmarks - hog_points, axis=1).mean() / _iod(hog_points)
    assert error < 0.06, f"{name}: landmarks {error:.3f} eye distances from HOG's"
    assert detect_faces(read_image(data_file("stills/edge/dogs.jpg")), name, detect_max_side=640) == []


def test_mtcnn_five_points_match_68_point_centres(portrait, data_file):
    engine = load_engine("mtcnn")
    for image, reference in [portrait, (read_image(data_file("stills/biden/biden2.jpg")), None)]:
        if reference is None:
            reference = detect_faces(image, "dlib")[0].landmarks.astype(np.float64)
        found = engine.detect_points(image)
        assert len(found) == 1
        box, score, points = found[0]
        assert points.shape == (5, 2) and score > 0.95
        centres = five_points(reference)
        per_point = np.linalg.norm(points - centres, axis=1) / _iod(reference)
        # Measured: 0.02-0.08 eye distances (the two models define the mouth corner slightly differently).
        assert per_point.max() < 0.15, per_point
        assert box[0] < centres[:, 0].min() and centres[:, 0].max() < box[2]


def test_mtcnn_weights_load_with_weights_only(monkeypatch):
    torch = pytest.importorskip("torch")
    from workbench.detect import mtcnn_nets

    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    pnet, rnet, onet = mtcnn_nets.load_mtcnn_nets()
    assert calls == [True, True, True]
    assert not any(p.requires_grad for p in onet.parameters())
    with torch.inference_mode():
        reg, prob = pnet(torch.zeros(1, 3, 12, 12))
        assert reg.shape == (1, 4, 1, 1) and torch.allclose(prob.sum(1), torch.ones(1, 1, 1))
        reg, points, prob = onet(torch.zeros(2, 3, 48, 48))
        assert reg.shape == (2, 4) and points.shape == (2, 10) and prob.shape == (2, 2)
    # facenet-pytorch itself is never imported (its modules need torchvision).
    import sys

    assert "facenet_pytorch" not in sys.modules


def test_missing_optional_engines_fail_fast(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def without(*names):
        return lambda name, *a, **k: None if name in names else real_find_spec(name, *a, **k)

    monkeypatch.setattr(importlib.util, "find_spec", without("yuface", "facenet_pytorch"))
    detect.import_yuface.cache_clear()
    try:
        start = time.perf_counter()
        with pytest.raises(EngineUnavailableError, match="pip install yuface") as info:
            detect.YunetEngine()
        assert "3.11" in str(info.value)
        with pytest.raises(EngineUnavailableError, match="--no-deps facenet-pytorch"):
            detect.MtcnnEngine()
        assert time.perf_counter() - start < 2.0
        # The combined engine picks MTCNN when yuface is absent, so it fails with MTCNN's hint here.
        assert detect.auto.default_fallback() == "mtcnn"
    finally:
        detect.import_yuface.cache_clear()


def test_haar_cascade_from_opencv():
    path = detect.haar_cascade_path()
    assert path.name == "haarcascade_frontalface_default.xml" and path.stat().st_size > 100_000


def test_fallback_finds_tilted_face_where_hog_misses(data_file):
    upright = as_dlib_image(read_image(data_file("stills/obama/obama1.jpg")))
    reference = detect_faces(to_float(upright), "dlib", detect_max_side=640)[0].landmarks.astype(np.float64)
    turned, back = rotate_by_angle(upright, 60)
    turned = to_float(turned)
    assert detect_faces(turned, "dlib", detect_max_side=640) == []  # HOG alone misses the tilted head
    faces = detect_faces(turned, "auto", detect_max_side=640)
    assert len(faces) == 1 and faces[0].engine != "dlib"
    # Map the fitted points back to the upright photo and compare with HOG's fit there.
    points = faces[0].landmarks.astype(np.float64) @ back[:, :2].T + back[:, 2]
    error = np.linalg.norm(points - reference, axis=1).mean() / _iod(reference)
    assert error < 0.08, f"tilted-face landmarks {error:.3f} eye distances off"


def test_fallback_finds_profile_where_hog_misses(data_file):
    from workbench.video import read_frame

    frame = read_frame(data_file("videos/fr_short_hamilton_clip.mp4"), 30).image  # the pianist, turned ~45+ deg
    assert detect_faces(frame, "dlib") == []
    faces = detect_faces(frame, "auto")
    assert faces and all(f.engine in ("yunet", "mtcnn") for f in faces)
    for face in faces:
        x0, y0, x1, y1 = face.box
        assert x0 - 0.2 * face.width < face.landmarks[30, 0] < x1 + 0.2 * face.width  # nose tip near its box


def test_box_iou_reference_values():
    from workbench.detect import box_iou

    assert box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)  # 1 shared of 4 + 4 - 1
    assert box_iou((0, 0, 2, 2), (0, 0, 2, 2)) == 1.0
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert box_iou((1, 1, 1, 1), (1, 1, 1, 1)) == 0.0  # empty boxes: no division by zero


def test_nms_matches_brute_force(rng):
    boxes = rng.uniform(0, 100, (200, 2))
    boxes = np.concatenate([boxes, boxes + rng.uniform(5, 40, (200, 2))], axis=1)
    scores = rng.random(200)
    for mode in ("union", "min"):
        keep = nms(boxes, scores, 0.4, mode)
        expected, alive = [], np.ones(200, bool)
        for i in np.argsort(-scores):
            if not alive[i]:
                continue
            expected.append(i)
            for j in range(200):
                if alive[j] and j != i:
                    iw = max(0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]))
                    ih = max(0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]))
                    a = np.prod(boxes[i, 2:] - boxes[i, :2])
                    b = np.prod(boxes[j, 2:] - boxes[j, :2])
                    over = iw * ih / (min(a, b) if mode == "min" else a + b - iw * ih)
                    if over > 0.4:
                        alive[j] = False
            alive[i] = False
        assert keep.tolist() == expected
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).size == 0


def test_box_calibration_fit_round_trip(rng):
    truth = BoxCalibration(dx=0.03, dy=0.07, sx=0.9, sy=0.8)
    xy = rng.uniform(0, 500, (30, 2))
    wh = rng.uniform(40, 200, (30, 2))
    det = np.concatenate([xy, xy + wh], axis=1)
    hog = np.array([truth.apply(tuple(b)) for b in det])
    fitted = fit_box_calibration(det, hog)
    assert fitted == pytest.approx(truth, abs=1e-4) or np.allclose(
        [fitted.dx, fitted.dy, fitted.sx, fitted.sy], [0.03, 0.07, 0.9, 0.8], atol=1e-4)
    with pytest.raises(ValueError):
        fit_box_calibration(det[:3], hog[:2])
