"""Landmark masks (DFL parity, real-face coverage) and the erode/feather slider helpers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from helpers import largest_face_landmarks

from workbench import align, masks
from workbench.face_constants import MEAN_FACE_68
from workbench.images import read_image


def synthetic_face(size: int = 256, rng: np.random.Generator | None = None) -> np.ndarray:
    """The mean face placed in a FULL crop of ``size`` px, with optional jitter."""
    unit = size / (1 + 2 * np.sqrt(2) * align.FACE_TYPE_PADDING["full"])
    pts = (size - unit) / 2 + unit * MEAN_FACE_68
    if rng is not None:
        pts = pts + rng.normal(0, size / 100, pts.shape)
    return pts


# DFL reference (facelib/LandmarksProcessor), transcribed; np.int -> int64 truncation, int32 for OpenCV.
def dfl_expand_eyebrows(lmrks, eyebrows_expand_mod=1.0):
    lmrks = np.array(lmrks.copy(), dtype=np.int64)
    ml_pnt = (lmrks[36] + lmrks[0]) // 2
    mr_pnt = (lmrks[16] + lmrks[45]) // 2
    ql_pnt = (lmrks[36] + ml_pnt) // 2
    qr_pnt = (lmrks[45] + mr_pnt) // 2
    bot_l = np.array((ql_pnt, lmrks[36], lmrks[37], lmrks[38], lmrks[39]))
    bot_r = np.array((lmrks[42], lmrks[43], lmrks[44], lmrks[45], qr_pnt))
    top_l = lmrks[17:22]
    top_r = lmrks[22:27]
    lmrks[17:22] = top_l + eyebrows_expand_mod * 0.5 * (top_l - bot_l)
    lmrks[22:27] = top_r + eyebrows_expand_mod * 0.5 * (top_r - bot_r)
    return lmrks


def dfl_hull_mask(image_shape, image_landmarks, eyebrows_expand_mod=1.0):
    hull_mask = np.zeros(image_shape[0:2] + (1,), dtype=np.float32)
    lmrks = dfl_expand_eyebrows(image_landmarks, eyebrows_expand_mod)
    r_jaw = (lmrks[0:9], lmrks[17:18])
    l_jaw = (lmrks[8:17], lmrks[26:27])
    r_cheek = (lmrks[17:20], lmrks[8:9])
    l_cheek = (lmrks[24:27], lmrks[8:9])
    nose_ridge = (lmrks[19:25], lmrks[8:9])
    r_eye = (lmrks[17:22], lmrks[27:28], lmrks[31:36], lmrks[8:9])
    l_eye = (lmrks[22:27], lmrks[27:28], lmrks[31:36], lmrks[8:9])
    nose = (lmrks[27:31], lmrks[31:36])
    for item in [r_jaw, l_jaw, r_cheek, l_cheek, nose_ridge, r_eye, l_eye, nose]:
        merged = np.concatenate(item).astype(np.int32)
        cv2.fillConvexPoly(hull_mask, cv2.convexHull(merged), (1,))
    return hull_mask[:, :, 0]


def dfl_part_mask(image_shape, image_landmarks, parts):
    h, w = image_shape[:2]
    hull_mask = np.zeros((h, w, 1), dtype=np.float32)
    image_landmarks = image_landmarks.astype(np.int64).astype(np.int32)
    for part in parts:
        cv2.fillConvexPoly(hull_mask, cv2.convexHull(image_landmarks[part]), (1,))
    dilate = h // 32
    hull_mask = cv2.dilate(
        hull_mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (dilate, dilate)), iterations=1
    )
    blur = h // 16
    blur = blur + (1 - blur % 2)
    return cv2.GaussianBlur(hull_mask, (blur, blur), 0)


def test_expand_eyebrows_matches_dfl(rng):
    for _ in range(20):
        lm = synthetic_face(512, rng)
        before = lm.copy()
        for mod in (0.0, 1.0, 1.7):
            ours = masks.expand_eyebrows(lm, mod)
            assert ours.dtype == np.int32 and ours.shape == (68, 2)
            np.testing.assert_array_equal(ours, dfl_expand_eyebrows(lm, mod))
        np.testing.assert_array_equal(lm, before)  # input untouched
    lm = synthetic_face(256)
    up = masks.expand_eyebrows(lm, 1.0)
    assert np.all(up[17:27, 1] < np.trunc(lm[17:27, 1]))  # brows moved up (y decreases)
    np.testing.assert_array_equal(up[:17], np.trunc(lm[:17]))  # everything else is only truncated


@pytest.mark.parametrize("size", [64, 256, 512])
def test_hull_mask_matches_dfl(size, rng):
    for _ in range(5):
        lm = synthetic_face(size, rng)
        for mod in (1.0, 0.5):
            ours = masks.hull_mask((size, size), lm, eyebrows_expand_mod=mod)
            assert ours.dtype == np.float32 and ours.shape == (size, size)
            np.testing.assert_array_equal(ours, dfl_hull_mask((size, size), lm, mod))
    assert set(np.unique(ours)) <= {0.0, 1.0}


@pytest.mark.parametrize("size", [64, 256, 512])
def test_eye_and_mouth_masks_match_dfl(size, rng):
    lm = synthetic_face(size, rng)
    eyes = masks.eye_mask((size, size, 3), lm)  # a trailing channel count is accepted
    mouth = masks.mouth_mask((size, size), lm)
    np.testing.assert_allclose(
        eyes, np.clip(dfl_part_mask((size, size), lm, [slice(36, 42), slice(42, 48)]), 0, 1)
    )
    np.testing.assert_allclose(mouth, np.clip(dfl_part_mask((size, size), lm, [slice(60, 68)]), 0, 1))
    for m in (eyes, mouth):
        assert m.dtype == np.float32 and m.min() >= 0.0 and m.max() <= 1.0


def test_eyes_mouth_mask_definition(rng):
    lm = synthetic_face(256, rng)
    hull = masks.hull_mask((256, 256), lm)
    expected = np.clip(masks.eye_mask((256, 256), lm) + masks.mouth_mask((256, 256), lm), 0, 1) * (hull != 0)
    expected /= expected.max()
    em = masks.eyes_mouth_mask((256, 256), lm)
    np.testing.assert_allclose(em, expected, atol=1e-6)
    assert em.max() == pytest.approx(1.0)
    # An explicit face mask (e.g. XSeg) restricts it instead of the hull.
    top_only = np.zeros((256, 256), np.float32)
    top_only[:128] = 1.0
    em_top = masks.eyes_mouth_mask((256, 256), lm, top_only)
    assert em_top[128:].max() == 0.0 and em_top.max() == pytest.approx(1.0)
    assert masks.eyes_mouth_mask((256, 256), lm, np.zeros((256, 256))).max() == 0.0
    with pytest.raises(ValueError):
        masks.eyes_mouth_mask((256, 256), lm, np.zeros((128, 128)))


def test_mask_input_validation():
    lm = synthetic_face(128)
    with pytest.raises(ValueError):
        masks.hull_mask((128, 128), lm[:50])
    with pytest.raises(ValueError):
        masks.eye_mask((0, 128), lm)
    bad = lm.copy()
    bad[3, 0] = np.inf
    with pytest.raises(ValueError):
        masks.mouth_mask((128, 128), bad)


# ---------------------------------------------------------------------------------------------------------
# slider helpers
# ---------------------------------------------------------------------------------------------------------


def disk(radius: int, size: int = 201) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    cv2.circle(m, (size // 2, size // 2), radius, 1.0, -1)
    return m


@pytest.mark.parametrize("pixels", [5, 12, -5, -12])
def test_erode_dilate_moves_the_edge(pixels):
    base = disk(50)
    out = masks.erode_dilate(base, pixels)
    assert out.dtype == np.float32 and out.shape == base.shape
    radius = np.sqrt(out.sum() / np.pi)
    assert radius == pytest.approx(50 - pixels, abs=1.0)


def test_erode_dilate_details():
    base = disk(50)
    same = masks.erode_dilate(base, 0)
    np.testing.assert_array_equal(same, base)
    assert same is not base
    u8 = (base * 255).astype(np.uint8)
    np.testing.assert_array_equal(masks.erode_dilate(u8, 3), masks.erode_dilate(base, 3))
    full = np.ones((50, 50), np.float32)
    assert masks.erode_dilate(full, 5).min() == 1.0  # the image border is not background
    with pytest.raises(ValueError):
        masks.erode_dilate(np.zeros((4, 4, 3)), 2)


def test_feather_softens_the_edge():
    base = disk(50)
    soft = masks.feather(base, 8)
    assert soft.dtype == np.float32 and soft.min() >= 0.0 and soft.max() <= 1.0
    assert soft[100, 100] == pytest.approx(1.0, abs=1e-4)  # deep inside stays 1
    assert soft[0, 0] == 0.0
    edge_row = soft[100, 100 + 40 : 100 + 61]
    assert np.all(np.diff(edge_row) <= 1e-6)  # monotone fall-off across the edge
    partial = ((soft > 0.02) & (soft < 0.98)).sum()
    assert partial > ((base > 0) & (base < 1)).sum() + 1000
    assert soft.sum() == pytest.approx(base.sum(), rel=0.02)  # blur moves mass, it does not add any
    np.testing.assert_array_equal(masks.feather(base, 0), base)
    with pytest.raises(ValueError):
        masks.feather(base, -1)


# ---------------------------------------------------------------------------------------------------------
# real face
# ---------------------------------------------------------------------------------------------------------


dlib_landmarks = largest_face_landmarks


@pytest.fixture(scope="module")
def aligned_obama(data_file):
    image = read_image(data_file("stills/obama/obama1.jpg"))
    lm = dlib_landmarks(image)
    mat = align.transform_matrix(lm, 256, "whole_face")
    return align.warp_face(image, mat, 256), align.transform_points(lm, mat)


def test_real_face_hull_covers_face_not_background(aligned_obama):
    face, lm = aligned_obama
    hull = masks.hull_mask(face.shape, lm)
    # Inside: nose tip, between the eyes, mouth centre, chin (a little above landmark 8).
    for x, y in (lm[30], lm[27], lm[62], lm[8] + (lm[57] - lm[8]) * 0.3):
        assert hull[int(y), int(x)] == 1.0
    # The background corners of a WHOLE_FACE crop are outside.
    for y, x in ((2, 2), (2, 253), (253, 2), (253, 253)):
        assert hull[y, x] == 0.0
    # The face fills a sensible share of a whole_face crop (DFL's unit square is ~22% of it).
    assert 0.15 < hull.mean() < 0.45
    # Every landmark except the raised brows is on or inside the mask.
    inside = [hull[min(255, int(y)), min(255, int(x))] for x, y in lm[np.r_[0:17, 27:68]]]
    assert np.mean(inside) > 0.95
    # Skin dominates inside the mask; the backdrop (blue) dominates outside.
    r, b = face[..., 0], face[..., 2]
    assert (r - b)[hull > 0].mean() > 0.1
    assert (r - b)[hull == 0].mean() < (r - b)[hull > 0].mean() - 0.1


def test_real_face_eye_and_mouth_masks_inside_hull(aligned_obama):
    face, lm = aligned_obama
    hull = masks.hull_mask(face.shape, lm)
    eyes = masks.eye_mask(face.shape, lm)
    mouth = masks.mouth_mask(face.shape, lm)
    for m in (eyes, mouth):
        assert m.max() > 0.9
        assert (m * (1 - hull)).sum() / m.sum() < 0.01
    for idx in (range(36, 42), range(42, 48)):
        cx, cy = lm[list(idx)].mean(0)
        assert eyes[int(cy), int(cx)] > 0.9
    mx, my = lm[60:68].mean(0)
    assert mouth[int(my), int(mx)] > 0.9
    assert eyes[int(my), int(mx)] < 0.05 and mouth[int(lm[27][1]), int(lm[27][0])] < 0.05
    em = masks.eyes_mouth_mask(face.shape, lm)
    assert em.max() == pytest.approx(1.0) and em[hull == 0].max() == 0.0
