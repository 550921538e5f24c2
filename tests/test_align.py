"""Alignment: Umeyama, DFL get_transform_mat parity, face-type geometry, warps, refit, constants."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from helpers import largest_face_landmarks

from workbench import align
from workbench.errors import ConfigError
from workbench.face_constants import (
    LANDMARK_GROUPS,
    LANDMARKS_2D,
    LANDMARKS_68_3D,
    MEAN_FACE_68,
    MIRROR_INDEX,
    MIRROR_PAIRS,
    UMEYAMA_INDICES,
    UMEYAMA_TARGET,
    mirror_landmarks,
)
from workbench.images import read_image, to_uint8

ALIGNED_TYPES = ("half", "mid_full", "full", "whole_face", "head")


def similarity(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[scale * c, -scale * s, shift[0]], [scale * s, scale * c, shift[1]]])


def place(points: np.ndarray, mat: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float64) @ mat[:, :2].T + mat[:, 2]


def mean_face_pixels(angle=0.0, scale=200.0, shift=(400.0, 300.0)) -> np.ndarray:
    return place(MEAN_FACE_68, similarity(angle, scale, shift))


# ---------------------------------------------------------------------------------------------------------
# DFL reference: get_transform_mat, transcribed literally (float32 points through cv2, as DFL computes).
# ---------------------------------------------------------------------------------------------------------


def dfl_umeyama(src, dst, estimate_scale):
    num = src.shape[0]
    dim = src.shape[1]
    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    src_demean = src - src_mean
    dst_demean = dst - dst_mean
    A = np.dot(dst_demean.T, src_demean) / num  # noqa: N806
    d = np.ones((dim,), dtype=np.double)
    if np.linalg.det(A) < 0:
        d[dim - 1] = -1
    T = np.eye(dim + 1, dtype=np.double)  # noqa: N806
    U, S, V = np.linalg.svd(A)  # noqa: N806
    rank = np.linalg.matrix_rank(A)
    if rank == 0:
        return np.nan * T
    elif rank == dim - 1:
        if np.linalg.det(U) * np.linalg.det(V) > 0:
            T[:dim, :dim] = np.dot(U, V)
        else:
            s = d[dim - 1]
            d[dim - 1] = -1
            T[:dim, :dim] = np.dot(U, np.dot(np.diag(d), V))
            d[dim - 1] = s
    else:
        T[:dim, :dim] = np.dot(U, np.dot(np.diag(d), V))
    scale = 1.0 / src_demean.var(axis=0).sum() * np.dot(S, d) if estimate_scale else 1.0
    T[:dim, dim] = dst_mean - scale * np.dot(T[:dim, :dim], src_mean.T)
    T[:dim, :dim] *= scale
    return T


def dfl_transform_points(points, mat, invert=False):
    if invert:
        mat = cv2.invertAffineTransform(mat)
    points = np.expand_dims(points, axis=1)
    points = cv2.transform(points, mat, points.shape)
    return np.squeeze(points)


def dfl_estimate_averaged_yaw(landmarks):
    landmarks = np.array(landmarks)
    left = (
        (landmarks[27][0] - landmarks[0][0])
        + (landmarks[28][0] - landmarks[1][0])
        + (landmarks[29][0] - landmarks[2][0])
    ) / 3.0
    right = (
        (landmarks[16][0] - landmarks[27][0])
        + (landmarks[15][0] - landmarks[28][0])
        + (landmarks[14][0] - landmarks[29][0])
    ) / 3.0
    return float(right - left)


DFL_PADDING = {
    "half": (0.0, False),
    "mid_full": (0.0675, False),
    "full": (0.2109375, False),
    "full_no_align": (0.2109375, True),
    "whole_face": (0.40, False),
    "head": (0.70, False),
    "head_no_align": (0.70, True),
}


def dfl_get_transform_mat(image_landmarks, output_size, face_type, scale=1.0):
    npla = np.linalg
    image_landmarks = np.asarray(image_landmarks, np.float32)
    landmarks_2d_new = UMEYAMA_TARGET.astype(np.float32)
    mat = dfl_umeyama(
        np.concatenate([image_landmarks[17:49], image_landmarks[54:55]]), landmarks_2d_new, True
    )[0:2]
    g_p = dfl_transform_points(np.float32([(0, 0), (1, 0), (1, 1), (0, 1), (0.5, 0.5)]), mat, True)
    g_c = g_p[4]
    tb_diag_vec = (g_p[2] - g_p[0]).astype(np.float32)
    tb_diag_vec /= npla.norm(tb_diag_vec)
    bt_diag_vec = (g_p[1] - g_p[3]).astype(np.float32)
    bt_diag_vec /= npla.norm(bt_diag_vec)
    padding, remove_align = DFL_PADDING[face_type]
    mod = (1.0 / scale) * (npla.norm(g_p[0] - g_p[2]) * (padding * np.sqrt(2.0) + 0.5))
    if face_type == "whole_face":
        vec = (g_p[0] - g_p[3]).astype(np.float32)
        vec_len = npla.norm(vec)
        vec /= vec_len
        g_c += vec * vec_len * 0.07
    elif face_type == "head":
        yaw = dfl_estimate_averaged_yaw(dfl_transform_points(image_landmarks, mat, False))
        hvec = (g_p[0] - g_p[1]).astype(np.float32)
        hvec_len = npla.norm(hvec)
        hvec /= hvec_len
        yaw *= np.abs(math.tanh(yaw * 2))
        g_c -= hvec * (yaw * hvec_len / 2.0)
        vvec = (g_p[0] - g_p[3]).astype(np.float32)
        vvec_len = npla.norm(vvec)
        vvec /= vvec_len
        g_c += vvec * vvec_len * 0.50
    if not remove_align:
        l_t = np.array([g_c - tb_diag_vec * mod, g_c + bt_diag_vec * mod, g_c + tb_diag_vec * mod])
    else:
        l_t = np.array(
            [
                g_c - tb_diag_vec * mod,
                g_c + bt_diag_vec * mod,
                g_c + tb_diag_vec * mod,
                g_c - bt_diag_vec * mod,
            ]
        )
        x, y = l_t[:, 0], l_t[:, 1]
        area = 0.5 * np.abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
        side = np.float32(math.sqrt(area) / 2)
        l_t = np.array([g_c + [-side, -side], g_c + [side, -side], g_c + [side, side]])
    pts2 = np.float32(((0, 0), (output_size, 0), (output_size, output_size)))
    return cv2.getAffineTransform(l_t.astype(np.float32), pts2)


def random_faces(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Plausible but messy 68-point faces: mean face + per-point noise + a fake yaw + random placement."""
    faces = []
    for _ in range(n):
        pts = MEAN_FACE_68 + rng.normal(0, 0.02, (68, 2))
        yaw = rng.uniform(-0.35, 0.35)
        pts[:, 0] += yaw * (pts[:, 0] - 0.5) * np.where(np.arange(68) < 17, 0.2, 1.0)  # jaw lags the features
        pts[27:36, 0] += yaw * 0.3
        mat = similarity(
            rng.uniform(-math.pi, math.pi), rng.uniform(40, 600), tuple(rng.uniform(-200, 2000, 2))
        )
        faces.append(place(pts, mat))
    return faces


# ---------------------------------------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------------------------------------


def test_constants_match_reference_tables():
    assert (
        LANDMARKS_2D.shape == (51, 2) and UMEYAMA_TARGET.shape == (33, 2) and LANDMARKS_68_3D.shape == (68, 3)
    )
    # Spot values copied from constants.md (landmarks_2D rows 17, 39, 54, 67; landmarks_68_3D rows 0, 30, 67).
    np.testing.assert_array_equal(LANDMARKS_2D[0], [0.000213256, 0.106454])
    np.testing.assert_array_equal(LANDMARKS_2D[39 - 17], [0.334606, 0.231733])
    np.testing.assert_array_equal(LANDMARKS_2D[54 - 17], [0.726104, 0.780233])
    np.testing.assert_array_equal(LANDMARKS_2D[67 - 17], [0.42689, 0.824182])
    np.testing.assert_array_equal(LANDMARKS_68_3D[0], [-73.393523, -29.801432, 47.667532])
    np.testing.assert_array_equal(LANDMARKS_68_3D[30], [1.226783, -8.414541, -36.948060])
    np.testing.assert_array_equal(LANDMARKS_68_3D[67], [-7.198266, 30.844876, -20.328022])
    # landmarks_2D_new = landmarks_2D rows 17..48 + 54; the last two rows are the mouth corners 48 and 54.
    assert list(UMEYAMA_INDICES) == [*range(17, 49), 54]
    np.testing.assert_array_equal(UMEYAMA_TARGET[-2:], [[0.254149, 0.780233], [0.726104, 0.780233]])
    np.testing.assert_array_equal(MEAN_FACE_68[17:], LANDMARKS_2D)
    with pytest.raises(ValueError):
        LANDMARKS_2D[0, 0] = 1.0  # read-only


def test_mirror_tables():
    assert MIRROR_PAIRS.shape == (29, 2)
    np.testing.assert_array_equal(MIRROR_INDEX[MIRROR_INDEX], np.arange(68))  # an involution
    # Mirroring the mean face about its own vertical axis keeps it (nearly) the same face.
    width = 2 * 0.490127 + 1  # x -> W - x - 1 reflects about x = 0.490127, the nose line
    mirrored = mirror_landmarks(MEAN_FACE_68, width)
    assert np.abs(mirrored[17:] - MEAN_FACE_68[17:]).max() < 0.01
    covered = sorted(i for s in LANDMARK_GROUPS.values() for i in range(68)[s])
    assert covered == list(range(68))


# ---------------------------------------------------------------------------------------------------------
# face types
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alias, expected",
    [
        ("h", "half"),
        ("half_face", "half"),
        ("MF", "mid_full"),
        ("midfull_face", "mid_full"),
        ("f", "full"),
        ("full_face", "full"),
        ("wf", "whole_face"),
        ("whole-face", "whole_face"),
        ("head", "head"),
        ("full_face_no_align", "full_no_align"),
        ("head_no_align", "head_no_align"),
        (4, "whole_face"),
        (10, "head"),
    ],
)
def test_normalize_face_type_aliases(alias, expected):
    assert align.normalize_face_type(alias) == expected


@pytest.mark.parametrize("bad", ["wholeface_xl", "", "mark_only", 99, None])
def test_normalize_face_type_rejects_unknown(bad):
    with pytest.raises(ConfigError) as info:
        align.normalize_face_type(bad)
    for name in align.FACE_TYPES:
        assert name in str(info.value)


def test_padding_table():
    assert set(align.FACE_TYPE_PADDING) == set(align.FACE_TYPES)
    expected = {"half": 1.0, "mid_full": 1.1909, "full": 1.5966, "whole_face": 2.1314, "head": 2.9799}
    for name, ratio in expected.items():
        assert 1 + 2 * math.sqrt(2) * align.FACE_TYPE_PADDING[name] == pytest.approx(ratio, abs=1e-4)


# ---------------------------------------------------------------------------------------------------------
# umeyama
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "angle, scale, shift", [(0.0, 1.0, (0, 0)), (0.7, 2.5, (-40, 13)), (-2.9, 0.3, (512, 7))]
)
def test_umeyama_recovers_known_similarity(angle, scale, shift):
    src = mean_face_pixels(0.2, 180.0, (300.0, 250.0))
    truth = similarity(angle, scale, shift)
    dst = place(src, truth)
    est = align.umeyama(src, dst, estimate_scale=True)
    assert est.shape == (3, 3)
    np.testing.assert_allclose(est[:2], truth, atol=1e-6)
    np.testing.assert_allclose(est[2], [0, 0, 1])
    # The reverse fit is the inverse transform.
    back = align.umeyama(dst, src)
    np.testing.assert_allclose(back[:2], align.invert_affine(truth), atol=1e-6)


def test_umeyama_rigid_and_reflection_guard():
    src = mean_face_pixels()
    truth = similarity(0.4, 1.0, (5, -3))
    np.testing.assert_allclose(
        align.umeyama(src, place(src, truth), estimate_scale=False)[:2], truth, atol=1e-6
    )
    # A mirrored target cannot be reached by a rotation: the fit must stay a proper rotation (det > 0).
    mirrored = src * [-1, 1]
    est = align.umeyama(src, mirrored)
    assert np.linalg.det(est[:2, :2]) > 0


def test_umeyama_matches_dfl_reference(rng):
    for face in random_faces(rng, 20):
        src = face[UMEYAMA_INDICES]
        np.testing.assert_allclose(
            align.umeyama(src, UMEYAMA_TARGET), dfl_umeyama(src, UMEYAMA_TARGET, True), atol=1e-12
        )


def test_umeyama_errors():
    with pytest.raises(ValueError):
        align.umeyama(np.zeros((5, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError):
        align.umeyama(np.ones((5, 2)), np.random.default_rng(0).random((5, 2)))  # all sources coincide
    with pytest.raises(ValueError):
        align.umeyama(np.zeros((1, 2)), np.zeros((1, 2)))


# ---------------------------------------------------------------------------------------------------------
# transform_matrix: reference numbers, DFL parity, equivariance
# ---------------------------------------------------------------------------------------------------------

UNIT_SQUARE_AT_256 = {
    "half": ((0.0, 256.0), (0.0, 256.0)),
    "mid_full": ((20.5, 235.5), (20.5, 235.5)),
    "full": ((47.8, 208.2), (47.8, 208.2)),
    "whole_face": ((67.9, 188.1), (76.4, 196.5)),
}


@pytest.mark.parametrize("face_type", list(UNIT_SQUARE_AT_256))
@pytest.mark.parametrize("angle", [0.0, 0.6, -2.2])
def test_unit_square_lands_where_dfl_puts_it(face_type, angle):
    frame_from_unit = similarity(angle, 230.0, (640.0, 360.0))
    landmarks = place(MEAN_FACE_68, frame_from_unit)
    mat = align.transform_matrix(landmarks, 256, face_type)
    square = align.transform_points(place([(0, 0), (1, 0), (1, 1), (0, 1)], frame_from_unit), mat)
    (x0, x1), (y0, y1) = UNIT_SQUARE_AT_256[face_type]
    # constants.md gives one decimal: allow half a unit of the last digit plus float noise.
    expected = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    np.testing.assert_allclose(square, expected, atol=0.051)


@pytest.mark.parametrize("face_type", align.FACE_TYPES)
def test_crop_side_follows_padding(face_type):
    frame_from_unit = similarity(0.0, 200.0, (500.0, 400.0))
    mat = align.transform_matrix(place(MEAN_FACE_68, frame_from_unit), 256, face_type)
    corners = align.crop_corners(mat, 256)
    side = np.linalg.norm(corners[1] - corners[0])
    ratio = 1 + 2 * math.sqrt(2) * align.FACE_TYPE_PADDING[face_type]
    assert side == pytest.approx(200.0 * ratio, rel=1e-9)
    assert np.linalg.norm(corners[3] - corners[0]) == pytest.approx(side, rel=1e-9)


def test_scale_zooms_about_the_crop_centre():
    lm = mean_face_pixels(0.3)
    base = align.crop_corners(align.transform_matrix(lm, 256, "full"), 256)
    zoomed = align.crop_corners(align.transform_matrix(lm, 256, "full", scale=1.25), 256)
    np.testing.assert_allclose(zoomed.mean(0), base.mean(0), atol=1e-9)
    assert np.linalg.norm(zoomed[1] - zoomed[0]) == pytest.approx(np.linalg.norm(base[1] - base[0]) / 1.25)


@pytest.mark.parametrize("face_type", align.FACE_TYPES)
def test_transform_matrix_matches_dfl_get_transform_mat(face_type, rng):
    """Parity with a literal transcription of DFL: crops agree to well under a pixel (here < 0.01 px)."""
    worst = 0.0
    for face in random_faces(rng, 40):
        for size, scale in ((256, 1.0), (512, 0.8)):
            ours = align.transform_matrix(face, size, face_type, scale=scale)
            ref = dfl_get_transform_mat(face, size, face_type, scale=scale)
            # Compare where each matrix sends the landmarks (face px) and where the crop corners sit (frame px).
            d_face = np.abs(align.transform_points(face, ours) - align.transform_points(face, ref)).max()
            d_frame = np.abs(align.crop_corners(ours, size) - align.crop_corners(ref, size)).max()
            worst = max(worst, d_face, d_frame)
    assert worst < 0.01, f"max deviation from DFL: {worst:.4g} px"


@pytest.mark.parametrize("face_type", ALIGNED_TYPES)
def test_transform_matrix_is_equivariant_to_similarities(face_type, rng):
    """Moving, turning or zooming the face in the frame must give the same crop."""
    for face in random_faces(rng, 10):
        s = similarity(rng.uniform(-3, 3), rng.uniform(0.3, 3.0), tuple(rng.uniform(-500, 500, 2)))
        mat = align.transform_matrix(face, 256, face_type)
        mat_moved = align.transform_matrix(place(face, s), 256, face_type)
        np.testing.assert_allclose(align.compose_affine(s, mat_moved), mat, atol=1e-6)


@pytest.mark.parametrize("face_type", ["full_no_align", "head_no_align"])
def test_no_align_types_are_upright_with_the_aligned_area(face_type, rng):
    aligned_name = face_type.replace("_no_align", "")
    for face in random_faces(rng, 5):
        mat = align.transform_matrix(face, 256, face_type)
        assert abs(mat[0, 1]) < 1e-9 and abs(mat[1, 0]) < 1e-9 and mat[0, 0] == pytest.approx(mat[1, 1])
        # Same area as the aligned crop (same padding); head_no_align skips head's centre shifts.
        a = align.crop_corners(mat, 256)
        b = align.crop_corners(align.transform_matrix(face, 256, aligned_name), 256)
        assert np.linalg.norm(a[1] - a[0]) == pytest.approx(np.linalg.norm(b[1] - b[0]), rel=1e-9)
        # Translation/zoom equivariance still holds (rotation does not, by design).
        s = similarity(0.0, 1.7, (33.0, -12.0))
        np.testing.assert_allclose(
            align.compose_affine(s, align.transform_matrix(place(face, s), 256, face_type)), mat, atol=1e-6
        )


def test_crop_pixels_agree_after_moving_the_frame():
    """Pixel-level equivariance: warp a textured frame by a similarity, crop both, compare."""
    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frame = np.stack([0.5 + 0.5 * np.sin(xx / 17.0), 0.5 + 0.5 * np.cos(yy / 23.0), (xx + yy) / (h + w)], -1)
    face = mean_face_pixels(0.1, 150.0, (250.0, 150.0))
    s = similarity(0.35, 1.2, (60.0, -40.0))
    moved = cv2.warpAffine(frame, s, (w, h), flags=cv2.INTER_CUBIC)
    a = align.warp_face(frame, align.transform_matrix(face, 128, "full"), 128, interpolation="cubic")
    b = align.warp_face(
        moved, align.transform_matrix(place(face, s), 128, "full"), 128, interpolation="cubic"
    )
    assert np.abs(a - b)[8:-8, 8:-8].mean() < 0.01


def test_transform_matrix_validation():
    lm = mean_face_pixels()
    with pytest.raises(ConfigError):
        align.transform_matrix(lm, 256, "bogus")
    with pytest.raises(ValueError):
        align.transform_matrix(lm[:60], 256, "full")
    with pytest.raises(ValueError):
        align.transform_matrix(lm, 0, "full")
    with pytest.raises(ValueError):
        align.transform_matrix(lm, 256, "full", scale=0)
    bad = lm.copy()
    bad[20] = np.nan
    with pytest.raises(ValueError):
        align.transform_matrix(bad, 256, "full")


def test_head_shifts_with_yaw():
    lm = mean_face_pixels(0.0, 200.0, (400.0, 300.0))
    turned = lm.copy()
    turned[27:36, 0] += 40.0  # nose toward the image right: yaw proxy goes negative
    assert align.estimate_averaged_yaw(turned) < align.estimate_averaged_yaw(lm)
    c0 = align.crop_corners(align.transform_matrix(lm, 256, "head"), 256).mean(0)
    c1 = align.crop_corners(align.transform_matrix(turned, 256, "head"), 256).mean(0)
    # The head crop follows the back of the head, i.e. moves opposite to the nose (to the left here)
    # beyond what the (small) change in the similarity fit explains.
    f0 = align.crop_corners(align.transform_matrix(lm, 256, "head_no_align"), 256).mean(0)
    f1 = align.crop_corners(align.transform_matrix(turned, 256, "head_no_align"), 256).mean(0)
    assert (c1[0] - c0[0]) < (f1[0] - f0[0]) - 1.0


def test_estimate_averaged_yaw_flips_with_mirror():
    lm = mean_face_pixels(0.0)
    lm[27:36, 0] -= 25.0
    yaw = align.estimate_averaged_yaw(lm)
    assert yaw > 0
    assert align.estimate_averaged_yaw(mirror_landmarks(lm, 1000)) == pytest.approx(-yaw)


# ---------------------------------------------------------------------------------------------------------
# point and matrix helpers
# ---------------------------------------------------------------------------------------------------------


def test_point_helpers_round_trip():
    mat = align.transform_matrix(mean_face_pixels(0.5), 256, "whole_face")
    pts = np.random.default_rng(3).uniform(0, 1000, (50, 2))
    back = align.transform_points(align.transform_points(pts, mat), mat, invert=True)
    np.testing.assert_allclose(back, pts, atol=1e-9)
    np.testing.assert_allclose(
        align.compose_affine(mat, align.invert_affine(mat)), [[1, 0, 0], [0, 1, 0]], atol=1e-12
    )
    np.testing.assert_allclose(align.invert_affine(mat), cv2.invertAffineTransform(mat), atol=1e-9)
    assert align.transform_points(pts.astype(np.float32), mat).dtype == np.float32
    assert align.transform_points(np.array([1.0, 2.0]), mat).shape == (2,)
    corners = align.crop_corners(mat, 256)
    np.testing.assert_allclose(
        align.transform_points(corners, mat), [[0, 0], [256, 0], [256, 256], [0, 256]], atol=1e-9
    )
    with pytest.raises(ValueError):
        align.invert_affine(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        align.transform_points(pts, np.eye(4))


# ---------------------------------------------------------------------------------------------------------
# warps
# ---------------------------------------------------------------------------------------------------------


def smooth_frame(h=360, w=480) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([0.5 + 0.4 * np.sin(xx / 31.0), 0.5 + 0.4 * np.cos(yy / 27.0), 0.3 + 0.4 * (xx / w)], -1)


def test_warp_unwarp_round_trip_synthetic():
    frame = smooth_frame()
    mat = align.transform_matrix(mean_face_pixels(0.4, 120.0, (200.0, 120.0)), 256, "full")
    face = align.warp_face(frame, mat, 256, interpolation="cubic")
    assert face.shape == (256, 256, 3) and face.dtype == np.float32
    back = align.unwarp_face(face, mat, frame.shape, interpolation="cubic")
    assert back.shape == frame.shape and back.dtype == np.float32
    inside = align.coverage_mask(mat, 256, frame.shape) > 0.999
    inside = cv2.erode(inside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert inside.sum() > 10000
    assert np.abs(back - frame)[inside].max() < 0.01
    # Outside the square (beyond the 2-px reach of the cubic kernel) the unwarp is black.
    near = cv2.dilate(
        (align.coverage_mask(mat, 256, frame.shape) > 0).astype(np.uint8), np.ones((5, 5), np.uint8)
    )
    assert np.abs(back)[near == 0].max() == 0.0


def test_coverage_mask_area():
    mat = align.transform_matrix(mean_face_pixels(0.8, 100.0, (240.0, 180.0)), 200, "whole_face")
    cov = align.coverage_mask(mat, 200, (480, 640))
    assert cov.shape == (480, 640) and cov.dtype == np.float32
    frame_area = 200 * 200 / abs(np.linalg.det(mat[:, :2]))
    assert cov.sum() == pytest.approx(frame_area, rel=0.01)


def test_warp_options_and_inputs():
    frame = smooth_frame()
    # A face near the top-left corner: its whole_face crop leaves the frame.
    mat = align.transform_matrix(mean_face_pixels(0.0, 150.0, (60.0, 40.0)), 128, "whole_face")
    rep = align.warp_face(frame, mat, 128, border="replicate")
    const = align.warp_face(frame, mat, 128, border="constant")
    assert const[0, 0].max() == 0.0 and rep[0, 0].min() > 0.0
    for interp in align.INTERPOLATIONS:
        out = align.warp_face(frame, mat, 128, interpolation=interp)
        assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(
        align.warp_face(to_uint8(frame), mat, 128), align.warp_face(frame, mat, 128), atol=3 / 255
    )
    mask = align.warp_face(frame[:, :, 0], mat, 128)
    assert mask.shape == (128, 128)
    stack = np.concatenate([frame, frame[:, :, :1], frame], axis=2)  # 7 channels
    wide = align.warp_face(stack, mat, 128, interpolation="linear")
    assert wide.shape == (128, 128, 7)
    np.testing.assert_allclose(
        wide[:, :, 4:], align.warp_face(frame, mat, 128, interpolation="linear"), atol=1e-6
    )
    single = align.warp_face(frame[:, :, :1], mat, 128)
    assert single.shape == (128, 128, 1)
    with pytest.raises(ConfigError):
        align.warp_face(frame, mat, 128, interpolation="bicubic-ish")
    with pytest.raises(ConfigError):
        align.warp_face(frame, mat, 128, border="wrap")


# ---------------------------------------------------------------------------------------------------------
# real photo (dlib 68-point landmarks)
# ---------------------------------------------------------------------------------------------------------


dlib_landmarks = largest_face_landmarks


@pytest.fixture(scope="module")
def obama(data_file):
    image = read_image(data_file("stills/obama/obama1.jpg"))
    return image, dlib_landmarks(image)


def test_real_photo_eyes_level_and_in_place(obama):
    image, lm = obama
    mat = align.transform_matrix(lm, 256, "full")
    al = align.transform_points(lm, mat)
    right_eye, left_eye = al[36:42].mean(0), al[42:48].mean(0)  # subject's right eye is on the image left
    tilt = math.degrees(math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]))
    assert abs(tilt) < 3.0
    # Where the mean face puts the eye centres in a FULL crop at 256: 47.83 + 160.34 * unit coordinate.
    unit = 256 / (1 + 2 * math.sqrt(2) * align.FACE_TYPE_PADDING["full"])
    margin = (256 - unit) / 2
    exp_r = margin + unit * LANDMARKS_2D[36 - 17 : 42 - 17].mean(0)
    exp_l = margin + unit * LANDMARKS_2D[42 - 17 : 48 - 17].mean(0)
    assert np.abs(right_eye - exp_r).max() < 6.0  # this face is turned ~16 degrees, so allow 2% of the crop
    assert np.abs(left_eye - exp_l).max() < 6.0
    # FULL keeps every inner feature but may clip the jaw outline of a turned face; WHOLE_FACE keeps it all.
    assert np.all((al[17:] >= 0) & (al[17:] <= 256))
    wf = align.transform_points(lm, align.transform_matrix(lm, 256, "whole_face"))
    assert np.all((wf >= 10) & (wf <= 246))


def test_real_photo_round_trip(obama):
    image, lm = obama
    mat = align.transform_matrix(lm, 512, "full")
    face = align.warp_face(image, mat, 512)
    back = align.unwarp_face(face, mat, image.shape)
    # Compare inside the face (hull of the landmarks) where the crop is at least the frame's resolution.
    inside = np.zeros(image.shape[:2], np.uint8)
    cv2.fillConvexPoly(inside, cv2.convexHull(lm.astype(np.int32)), 1)
    inside = inside.astype(bool)
    err = np.abs(back - image)[inside]
    assert err.mean() < 0.01
    assert np.percentile(err, 99) < 0.06


def test_refit_whole_face_to_full_matches_direct_crop(obama):
    image, lm = obama
    wf_mat = align.transform_matrix(lm, 512, "whole_face")
    wf_face = align.warp_face(image, wf_mat, 512)
    wf_lm = align.transform_points(lm, wf_mat).astype(np.float32)  # stored as float32, as in FaceMeta
    fit = align.refit_face(wf_face, wf_lm, "f", 256)
    assert fit.image.shape == (256, 256, 3) and fit.image.dtype == np.float32
    assert fit.landmarks.shape == (68, 2) and fit.matrix.shape == (2, 3)
    direct_mat = align.transform_matrix(lm, 256, "full")
    np.testing.assert_allclose(align.compose_affine(wf_mat, fit.matrix), direct_mat, atol=1e-3)
    np.testing.assert_allclose(fit.landmarks, align.transform_points(lm, direct_mat), atol=0.01)
    direct = align.warp_face(image, direct_mat, 256)
    diff = np.abs(fit.image - direct)
    assert diff.mean() < 0.01
    assert np.percentile(diff, 99) < 0.08


def test_refit_to_wider_type_leaves_black_border(obama):
    image, lm = obama
    full_mat = align.transform_matrix(lm, 256, "full")
    full_face = align.warp_face(image, full_mat, 256)
    fit = align.refit_face(full_face, align.transform_points(lm, full_mat), "head", 256)
    assert fit.image[0, 0].max() == 0.0  # outside what the FULL crop saw
    assert fit.image[128, 128].max() > 0.0
