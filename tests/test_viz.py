"""Drawing helpers: new float32 RGB arrays, inputs untouched, marks where they should be."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import align, viz
from workbench.face_constants import MEAN_FACE_68

GREEN = (0.0, 1.0, 0.0)


@pytest.fixture
def canvas() -> np.ndarray:
    return np.full((240, 320, 3), 0.25, np.float32)


@pytest.fixture
def face_lm() -> np.ndarray:
    return MEAN_FACE_68 * 120 + np.array([100.0, 50.0])


def assert_new_rgb(out: np.ndarray, like: np.ndarray) -> None:
    assert out is not like
    assert out.dtype == np.float32 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape[:2] == like.shape[:2]
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_landmark_group_names_cover_68_points():
    indices = sorted(i for r in viz.LANDMARK_GROUP_NAMES.values() for i in r)
    assert indices == list(range(68))
    assert viz.LANDMARK_GROUP_NAMES["right_eye"] == range(36, 42)
    assert viz.LANDMARK_GROUP_NAMES["mouth"] == range(48, 68)
    with pytest.raises(TypeError):
        viz.LANDMARK_GROUP_NAMES["extra"] = range(0)  # read-only


def test_draw_landmarks(canvas, face_lm):
    before = canvas.copy()
    out = viz.draw_landmarks(canvas, face_lm, color=GREEN, radius=2)
    assert_new_rgb(out, canvas)
    np.testing.assert_array_equal(canvas, before)
    for x, y in face_lm[[0, 8, 30, 36, 48, 66]]:
        np.testing.assert_allclose(out[int(round(y)), int(round(x))], GREEN, atol=0.05)
    changed = np.abs(out - canvas).sum(-1) > 0.1
    dots_only = np.abs(viz.draw_landmarks(canvas, face_lm, radius=2, connect=False) - canvas).sum(-1) > 0.1
    assert changed.sum() > dots_only.sum() > 0  # connecting adds the outline strokes
    # Far from the face nothing is drawn.
    assert not changed[:, :60].any() and not changed[:40].any()
    # Halfway along the jaw segment 7-8 lies on a line.
    mid = (face_lm[7] + face_lm[8]) / 2
    assert changed[
        int(round(mid[1])) - 1 : int(round(mid[1])) + 2, int(round(mid[0])) - 1 : int(round(mid[0])) + 2
    ].any()


def test_draw_landmarks_accepts_grey_and_uint8(face_lm):
    grey = np.zeros((240, 320), np.float32)
    out = viz.draw_landmarks(grey, face_lm)
    assert out.shape == (240, 320, 3) and out.dtype == np.float32
    u8 = np.zeros((240, 320, 3), np.uint8)
    assert viz.draw_landmarks(u8, face_lm).max() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        viz.draw_landmarks(grey, np.zeros((68, 3)))


def test_draw_box(canvas):
    out = viz.draw_box(canvas, (50, 40, 200, 180), color=(1.0, 0.0, 0.0), thickness=2, label="face 0.98")
    assert_new_rgb(out, canvas)
    np.testing.assert_allclose(out[110, 50], (1, 0, 0), atol=0.05)  # left edge
    np.testing.assert_allclose(out[180, 120], (1, 0, 0), atol=0.05)  # bottom edge
    np.testing.assert_allclose(out[110, 120], canvas[110, 120])  # inside untouched
    assert (np.abs(out[:38, 50:200] - canvas[:38, 50:200]).sum(-1) > 0.1).sum() > 20  # the label above
    with pytest.raises(ValueError):
        viz.draw_box(canvas, (1, 2, 3))


def test_draw_crop_square_marks_the_top(canvas, face_lm):
    mat = align.transform_matrix(face_lm, 256, "full")
    corners = align.crop_corners(mat, 256)
    out = viz.draw_crop_square(canvas, corners, color=(0.0, 0.0, 1.0), thickness=1)
    assert_new_rgb(out, canvas)
    drawn = np.abs(out - canvas).sum(-1) > 0.1
    mid_top = (corners[0] + corners[1]) / 2
    assert drawn[int(round(mid_top[1])) - 1 : int(round(mid_top[1])) + 2, int(round(mid_top[0]))].any()
    # The tick is inside the top-left corner of the square: (0.06, 0.06) of the way in is on its hypotenuse.
    u, v = corners[1] - corners[0], corners[3] - corners[0]

    def near(p):
        x, y = int(round(p[0])), int(round(p[1]))
        return drawn[y - 1 : y + 2, x - 1 : x + 2].any()

    assert near(corners[0] + 0.075 * u + 0.05 * v)  # on the tick's edge (0.05,0)-(0.1,0.1)
    assert not near(corners[3] - 0.075 * v + 0.05 * u)  # the bottom-left corner has no tick
    with pytest.raises(ValueError):
        viz.draw_crop_square(canvas, corners[:3])


def test_overlay_mask_formula(canvas):
    mask = np.zeros((240, 320), np.float32)
    mask[:, 160:] = 1.0
    mask[:, 100:160] = 0.5
    out = viz.overlay_mask(canvas, mask, color=(1.0, 0.0, 0.0), alpha=0.4)
    assert_new_rgb(out, canvas)
    np.testing.assert_allclose(out[10, 10], canvas[10, 10])
    np.testing.assert_allclose(out[10, 200], 0.25 * 0.6 + np.array([1, 0, 0]) * 0.4, atol=1e-6)
    np.testing.assert_allclose(out[10, 120], 0.25 * 0.8 + np.array([1, 0, 0]) * 0.2, atol=1e-6)
    with pytest.raises(ValueError):
        viz.overlay_mask(canvas, mask[:100])
    with pytest.raises(ValueError):
        viz.overlay_mask(canvas, mask, alpha=1.5)


def test_label_image(canvas):
    out = viz.label_image(canvas, "src 000123.png")
    assert_new_rgb(out, canvas)
    top = np.abs(out[:30] - canvas[:30]).sum(-1) > 0.05
    assert top.mean() > 0.5  # the banner
    np.testing.assert_array_equal(out[60:], canvas[60:])  # the rest untouched
    assert (out[:30].max(-1) > 0.9).any()  # white text on the banner
    np.testing.assert_array_equal(viz.label_image(canvas, ""), canvas)


def test_image_grid_mixed_sizes_and_labels():
    a = np.full((64, 80, 3), 0.2, np.float32)
    b = np.full((32, 40), 0.8, np.float32)  # grey, smaller
    c = np.full((128, 160, 3), 255, np.uint8)  # uint8, larger
    grid = viz.image_grid([a, b, c], ncols=2, pad=3, pad_value=0.5)
    assert grid.shape == (2 * (64 + 3) + 3, 2 * (80 + 3) + 3, 3) and grid.dtype == np.float32
    np.testing.assert_allclose(grid[3 + 30, 3 + 40], 0.2)
    np.testing.assert_allclose(grid[3 + 30, 3 + 80 + 3 + 40], 0.8, atol=1e-6)
    np.testing.assert_allclose(grid[3 + 64 + 3 + 30, 3 + 40], 1.0)
    np.testing.assert_allclose(grid[0, 0], 0.5)  # padding
    np.testing.assert_allclose(grid[-10, -10], 0.5)  # the empty 4th cell is padding colour
    labelled = viz.image_grid([a, b, c], ncols=3, labels=["a", "b", ""])
    assert labelled.shape == (64 + 4, 3 * (80 + 2) + 2, 3)
    assert not np.allclose(labelled[2:20, 2:82], 0.2)  # label banner drawn
    np.testing.assert_allclose(labelled[2:20, 2 + 2 * 82 : 2 * 82 + 80], 1.0)  # empty label: no banner
    assert viz.image_grid([a], ncols=4).shape == (68, 84, 3)  # ncols capped at the image count
    with pytest.raises(ValueError):
        viz.image_grid([], ncols=2)
    with pytest.raises(ValueError):
        viz.image_grid([a, b], ncols=2, labels=["only one"])
    with pytest.raises(ValueError):
        viz.image_grid([a], ncols=0)


def test_loss_plot():
    history = {"src": list(np.exp(-np.arange(200) / 50) + 0.1), "dst": [0.5, 0.4, float("nan"), 0.3]}
    img = viz.loss_plot(history, size=(480, 240), title="SAEHD")
    assert img.shape == (240, 480, 3) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert img.std() > 0.05  # something is drawn
    # Matplotlib's default first two line colours (C0 blue, C1 orange) both appear.
    blue = (np.abs(img - np.array([0x1F, 0x77, 0xB4]) / 255).max(-1) < 0.08).sum()
    orange = (np.abs(img - np.array([0xFF, 0x7F, 0x0E]) / 255).max(-1) < 0.08).sum()
    assert blue > 50 and orange > 10
    log = viz.loss_plot(history, size=(300, 200), log_y=True)
    assert log.shape == (200, 300, 3)
    empty = viz.loss_plot({}, size=(200, 120))
    assert empty.shape == (120, 200, 3)
    with pytest.raises(ValueError):
        viz.loss_plot(history, size=(10, 10))


def test_series_plot_draws_a_single_point_on_a_numeric_step_axis():
    from workbench import viz

    def blue(img):  # matplotlib's first colour, C0
        return int((np.abs(img * 255 - np.array([31, 119, 180])).sum(axis=-1) < 40).sum())

    empty = viz.series_plot({"ssim_src": []}, size=(320, 200))
    one = viz.series_plot({"ssim_src": [(500, 0.42)]}, size=(320, 200))
    two = viz.series_plot({"ssim_src": [(500, 0.42), (1000, 0.61)]}, size=(320, 200))
    assert one.shape == (200, 320, 3) and blue(empty) < 40  # the legend swatch only
    assert blue(one) > blue(empty) + 60  # a marker where a line would need two points
    assert blue(two) > blue(empty) + 60
