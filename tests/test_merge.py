"""Merger tests on real frames (lp_d18) with dlib landmarks and a deterministic test predictor."""

from __future__ import annotations

import importlib.util
import json

import cv2
import numpy as np
import pytest

from workbench import align, masks, merge
from workbench.errors import ConfigError, MergeError
from workbench.images import read_image, to_float, to_uint8, write_image
from workbench.merge import MergeConfig, MergeSettings, RangeOverride

RES = 96
N_FRAMES = 6


def _dlib_predictor_path() -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    assert spec is not None and spec.submodule_search_locations
    return spec.submodule_search_locations[0] + "/models/shape_predictor_68_face_landmarks.dat"


@pytest.fixture(scope="module")
def clip(data_file) -> tuple[np.ndarray, np.ndarray]:
    """The first frames of lp_d18 (480x480 RGB uint8) and their dlib 68-point landmarks."""
    av = pytest.importorskip("av")
    dlib = pytest.importorskip("dlib")
    with av.open(str(data_file("videos/lp_d18.mp4"))) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(N_FRAMES), container.decode(video=0))]
    detector = dlib.get_frontal_face_detector()
    shaper = dlib.shape_predictor(_dlib_predictor_path())
    lms = []
    for f in frames:
        rects = detector(f, 0)
        assert len(rects) == 1
        shape = shaper(f, rects[0])
        lms.append(np.array([(p.x, p.y) for p in shape.parts()], np.float32))
    return np.stack(frames), np.stack(lms)


class FakeModel:
    """Deterministic stand-in for a trained model: mirrored, colour-shifted crop, and two DIFFERENT masks.

    Both masks start from the landmark hull, fixed in crop space (the first frame's aligned landmarks), as a
    model's learned masks would be roughly fixed for aligned faces. The swapped-face mask (prd) drops the
    bottom quarter of the crop, the destination-face mask (dst) the left fifth, so a merger that swaps or
    mixes up the two masks gives a visibly different working mask.
    """

    def __init__(self, hull: np.ndarray):
        self.hull = hull.astype(np.float32)
        res = self.hull.shape[0]
        self.prd_mask = self.hull.copy()
        self.prd_mask[int(0.75 * res):] = 0.0
        self.dst_mask = self.hull.copy()
        self.dst_mask[:, :int(0.2 * res)] = 0.0
        self.calls = 0
        self.faces_seen = 0

    def swap(self, face: np.ndarray) -> np.ndarray:
        shifted = face[:, ::-1] * np.array([0.7, 0.9, 1.1], np.float32) + 0.05
        return np.clip(shifted, 0, 1).astype(np.float32)

    def __call__(self, face: np.ndarray) -> merge.Prediction:
        self.calls += 1
        self.faces_seen += 1
        return self.swap(face), self.prd_mask, self.dst_mask

    def predict_batch(self, faces: np.ndarray):
        self.calls += 1
        self.faces_seen += len(faces)
        n = len(faces)
        return (
            np.stack([self.swap(f) for f in faces]),
            np.repeat(self.prd_mask[None], n, 0),
            np.repeat(self.dst_mask[None], n, 0),
        )


@pytest.fixture(scope="module")
def settings() -> MergeSettings:
    return MergeSettings(resolution=RES, face_type="full")


@pytest.fixture(scope="module")
def model(clip, settings) -> FakeModel:
    frames, lms = clip
    _, mat = merge.crop_for_model(frames[0], lms[0], settings)
    return FakeModel(masks.hull_mask((RES, RES), align.transform_points(lms[0], mat)))


def _changed(out: np.ndarray, frame: np.ndarray) -> np.ndarray:
    return np.any(out != to_float(frame), axis=-1)


def _far_outside(mask: np.ndarray, px: int = 3) -> np.ndarray:
    grown = cv2.dilate((mask > 0).astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8))
    return grown == 0


# --------------------------------------------------------------------------------------------- settings


def test_settings_defaults_are_dfl_constructor_defaults():
    s = MergeSettings()
    assert (s.mode, s.mask_mode, s.color_transfer, s.sharpen_mode) == (
        "overlay",
        "learned-prd*learned-dst",
        "rct",
        "none",
    )
    assert s.masked_hist_match is True and s.hist_match_threshold == 238
    for name in (
        "erode",
        "blur",
        "motion_blur",
        "output_face_scale",
        "blursharpen_amount",
        "super_resolution_power",
        "image_denoise_power",
        "bicubic_degrade_power",
        "color_degrade_power",
    ):
        assert getattr(s, name) == 0
    assert set(merge.FIELD_HELP) == set(s.to_dict())


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("erode", 401, "-400..400"),
        ("blur", -1, "0..400"),
        ("motion_blur", 101, "0..100"),
        ("output_face_scale", -51, "-50..50"),
        ("hist_match_threshold", 256, "0..255"),
        ("blursharpen_amount", 101, "-100..100"),
        ("image_denoise_power", 501, "0..500"),
        ("color_degrade_power", 1.5, "whole number"),
        ("mode", "blend", "overlay"),
        ("mask_mode", "xyz", "learned-dst"),
        ("color_transfer", "foo", "rct"),
        ("sharpen_mode", "unsharp", "gaussian"),
        ("face_type", "torso", "face_type"),
    ],
)
def test_settings_validation_names_field_and_range(name, value, needle):
    with pytest.raises(ConfigError) as info:
        MergeSettings(**{name: value})
    assert name in str(info.value) and needle in str(info.value)


def test_settings_dict_round_trip_and_aliases():
    s = MergeSettings(
        mode="seamless", erode=-20, blur=33, color_transfer="mkl-m", face_type="wf", resolution=96
    )
    assert s.face_type == "whole_face"
    again = MergeSettings.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s and again.fingerprint() == s.fingerprint()
    assert MergeSettings.from_dict({"blur": 10}) == MergeSettings(blur=10)
    with pytest.raises(ConfigError, match="unknown merge setting"):
        MergeSettings.from_dict({"blurr": 10})


# --------------------------------------------------------------------------------------------- merge_face


@pytest.mark.parametrize("mode", merge.MODES)
def test_every_mode_runs(clip, model, settings, mode):
    frames, lms = clip
    out, mask = merge.merge_face(frames[0], lms[0], model, settings.replace(mode=mode))
    if mode == "raw-predict":
        assert out.shape == (RES, RES, 3) and mask.shape == (RES, RES)
        return
    assert out.shape == frames[0].shape and out.dtype == np.float32 and mask.shape == frames[0].shape[:2]
    assert 0 <= out.min() and out.max() <= 1 and mask.max() == pytest.approx(1.0, abs=0.02)
    if mode == "original":
        assert np.array_equal(out, to_float(frames[0])) and np.array_equal(to_uint8(out), frames[0])
    else:
        assert _changed(out, frames[0]).sum() > 5000
    if mode not in ("original", "raw-rgb"):
        assert not _changed(out, frames[0])[_far_outside(mask)].any()


@pytest.mark.parametrize("mask_mode", merge.LEARNED_MASK_MODES)
def test_every_mask_mode_runs(clip, model, settings, mask_mode):
    frames, lms = clip
    out, mask = merge.merge_face(frames[0], lms[0], model, settings.replace(mask_mode=mask_mode))
    area = (mask > 0).sum()
    assert area > 10000
    assert not _changed(out, frames[0])[_far_outside(mask)].any()
    if mask_mode == "full":  # the whole face square
        assert area > (mask.shape[0] * mask.shape[1]) * 0.25


def test_each_mask_mode_uses_the_right_learned_mask(clip, model, settings):
    """raw-predict returns the working mask in face space (no erode/blur): it must be exactly the mode's mask."""
    frames, lms = clip
    prd, dst = model.prd_mask, model.dst_mask
    face_lm = align.transform_points(lms[0], merge.crop_for_model(frames[0], lms[0], settings)[1])
    expected = {
        "full": np.ones_like(prd),
        "dst": masks.hull_mask((RES, RES), face_lm),
        "learned-prd": prd,
        "learned-dst": dst,
        "learned-prd*learned-dst": prd * dst,
        "learned-prd+learned-dst": np.clip(prd + dst, 0, 1),
    }
    assert set(expected) == set(merge.LEARNED_MASK_MODES)
    assert np.abs(prd - dst).mean() > 0.05  # the double can tell the two masks apart
    for mode, want in expected.items():
        _, wrk = merge.merge_face(frames[0], lms[0], model, settings.replace(mode="raw-predict", mask_mode=mode))
        assert wrk.shape == (RES, RES)
        others = [k for k in expected if k != mode and np.abs(expected[k] - want).mean() > 0.02]
        err = np.abs(wrk - want).mean()
        assert err < 0.02, (mode, err)
        assert all(np.abs(wrk - expected[k]).mean() > err for k in others), mode


def test_segmentation_mask_modes_need_a_segmenter(clip, model, settings):
    frames, lms = clip
    s = settings.replace(mask_mode="xseg-prd*xseg-dst")
    with pytest.raises(ConfigError, match="segmentation"):
        merge.merge_face(frames[0], lms[0], model, s)
    disc = np.zeros((64, 64), np.float32)
    cv2.circle(disc, (32, 32), 20, 1.0, -1)
    out, mask = merge.merge_face(frames[0], lms[0], model, s, segment=lambda face, landmarks: disc)
    assert 0 < (mask > 0).sum() < (mask.size // 2)


def test_prediction_cache_gives_the_same_result(clip, model, settings):
    frames, lms = clip
    face, mat = merge.crop_for_model(frames[1], lms[1], settings)
    assert face.shape == (RES, RES, 3) and mat.shape == (2, 3)
    live, live_mask = merge.merge_face(frames[1], lms[1], model, settings)
    before = model.calls
    cached, cached_mask = merge.merge_face(frames[1], lms[1], None, settings, prediction=model(face))
    assert model.calls == before + 1
    assert np.array_equal(live, cached) and np.array_equal(live_mask, cached_mask)
    with pytest.raises(MergeError):
        merge.merge_face(frames[1], lms[1], None, settings)


def test_wrong_prediction_size_is_a_clear_error(clip, model, settings):
    frames, lms = clip
    with pytest.raises(MergeError, match="resolution"):
        merge.merge_face(frames[0], lms[0], model, settings.replace(resolution=128))


def test_erode_shrinks_and_dilate_grows_the_changed_area(clip, model, settings):
    frames, lms = clip
    areas = {}
    for ero in (-60, 0, 60):
        out, mask = merge.merge_face(frames[0], lms[0], model, settings.replace(erode=ero))
        areas[ero] = int(_changed(out, frames[0]).sum())
        assert (mask > 0).sum() >= areas[ero] * 0.95
    assert areas[60] < areas[0] * 0.9 < areas[-60] * 0.9


def test_blur_softens_the_mask_edge(clip, model, settings):
    frames, lms = clip
    _, sharp = merge.merge_face(frames[0], lms[0], model, settings)
    _, soft = merge.merge_face(frames[0], lms[0], model, settings.replace(blur=80))
    partial = lambda m: int(((m > 0.02) & (m < 0.98)).sum())  # noqa: E731
    assert partial(soft) > 3 * partial(sharp)
    # the gradient at the edge is gentler
    grad = lambda m: float(np.abs(np.diff(m, axis=1)).max())  # noqa: E731
    assert grad(soft) < 0.5 * grad(sharp)


def test_output_face_scale_changes_the_area(clip, model, settings):
    frames, lms = clip
    area = {}
    for sc in (-20, 0, 20):
        _, mask = merge.merge_face(frames[0], lms[0], model, settings.replace(output_face_scale=sc))
        area[sc] = float(mask.sum())
    # DFL's sign: the crop square is scaled by 1/(1 + 0.01 s), so positive values paste a smaller face
    assert area[20] < area[0] < area[-20]
    assert area[0] / area[20] == pytest.approx(1.2**2, rel=0.1)


def test_seamless_keeps_the_frame_outside_the_mask(clip, model, settings):
    frames, lms = clip
    for mode in ("seamless", "seamless-hist-match"):
        out, mask = merge.merge_face(frames[2], lms[2], model, settings.replace(mode=mode))
        assert np.array_equal(out[mask == 0], to_float(frames[2])[mask == 0])
        assert _changed(out, frames[2])[mask > 0.5].mean() > 0.5


def test_hist_match_threshold_and_masked_variant_change_the_result(clip, model, settings):
    frames, lms = clip
    s = settings.replace(mode="hist-match", color_transfer="none")
    full, _ = merge.merge_face(frames[0], lms[0], model, s.replace(hist_match_threshold=255))
    weak, _ = merge.merge_face(frames[0], lms[0], model, s.replace(hist_match_threshold=200))
    unmasked, _ = merge.merge_face(frames[0], lms[0], model, s.replace(masked_hist_match=False))
    masked, _ = merge.merge_face(frames[0], lms[0], model, s)
    assert weak.mean() < full.mean()  # a lower threshold maps onto the darker part of the distribution
    assert not np.array_equal(unmasked, masked)


@pytest.mark.parametrize(
    "changes",
    [
        dict(motion_blur=60),
        dict(sharpen_mode="box", blursharpen_amount=3),
        dict(sharpen_mode="gaussian", blursharpen_amount=3),
        dict(blursharpen_amount=-40),
        dict(color_transfer="idt"),
        dict(color_transfer="mkl-m"),
        dict(color_transfer="lct"),
    ],
)
def test_face_post_effects_change_only_the_face(clip, model, settings, changes):
    frames, lms = clip
    base, mask = merge.merge_face(frames[0], lms[0], model, settings)
    out, mask2 = merge.merge_face(
        frames[0],
        lms[0],
        model,
        settings.replace(**changes),
        motion=(25.0, 30.0),
        rng=np.random.default_rng(0),
    )
    assert np.array_equal(mask, mask2)
    assert np.abs(out - base)[mask > 0.5].mean() > 1e-3
    assert not _changed(out, frames[0])[_far_outside(mask)].any()


@pytest.mark.parametrize(
    "changes", [dict(image_denoise_power=100), dict(bicubic_degrade_power=60), dict(color_degrade_power=100)]
)
def test_frame_degradations_reach_the_background(clip, model, settings, changes):
    frames, lms = clip
    out, mask = merge.merge_face(frames[0], lms[0], model, settings.replace(**changes))
    assert _changed(out, frames[0])[_far_outside(mask)].mean() > 0.05


def test_super_resolution_hook(clip, model, settings):
    frames, lms = clip
    s = settings.replace(super_resolution_power=50)
    with pytest.raises(ConfigError, match="super-resolution"):
        merge.merge_face(frames[0], lms[0], model, s)
    up = lambda f: cv2.resize(f, (4 * RES, 4 * RES), interpolation=cv2.INTER_CUBIC)  # noqa: E731
    out, mask = merge.merge_face(frames[0], lms[0], model, s, super_resolution=up)
    assert out.shape == frames[0].shape and (mask > 0).sum() > 10000


def test_motion_vectors_follow_the_face(clip):
    _, lms = clip
    track = [[lms[0] + np.array([5.0 * i, 0.0], np.float32)] for i in range(5)]
    mv = merge.motion_vectors(track)
    assert mv[0] == (0.0, 0.0) and mv[-1] == (0.0, 0.0)
    power, angle = mv[2]
    assert power == pytest.approx(10.0, abs=0.01) and angle == pytest.approx(0.0, abs=0.01)
    assert merge.motion_vectors([[lms[0]], [lms[0], lms[1]]]) == [None, None]
    assert merge.motion_blur_kernel_size(10.0, 50) == 6 and merge.motion_blur_kernel_size(1.0, 50) == 0


def test_image_operations_follow_dfl_formulas(rng):
    flat = np.full((32, 32, 3), 0.4, np.float32)
    for mode in ("box", "gaussian"):  # sharpening kernels sum to 1: a flat image stays flat
        assert np.allclose(merge.blursharpen(flat, mode, 5), flat, atol=1e-6)
    assert np.allclose(merge.blursharpen(flat, "none", 5), flat)
    edge = np.zeros((16, 16, 3), np.float32)
    edge[:, 8:] = 0.5
    box = merge.blursharpen(edge, "box", 1)
    kernel = -np.full((3, 3), 1 / 9, np.float32)
    kernel[1, 1] += 2.0  # delta + (delta - box) * 1
    assert np.allclose(box, cv2.filter2D(edge, -1, kernel), atol=1e-6) and box.max() > 0.5
    noisy = rng.random((32, 32, 3)).astype(np.float32)
    assert merge.blursharpen(noisy, "box", -10).std() < noisy.std()  # one full 5x5 median pass
    assert np.array_equal(merge.denoise(noisy, 0), noisy)
    assert merge.denoise(noisy, 50).std() < noisy.std()
    assert merge.bicubic_degrade(noisy, 50).shape == noisy.shape
    reduced = merge.reduce_colors(rng.random((64, 64, 3)))
    assert len(np.unique(to_uint8(reduced).reshape(-1, 3), axis=0)) <= 256
    assert merge.seamless_mask(np.full((4, 4), 0.05, np.float32)) is None
    assert merge.seamless_mask(np.array([[0.0, 0.15], [0.5, 1.0]], np.float32)).tolist() == [[False, True], [True, True]]


# --------------------------------------------------------------------------------------------- merge_frame


def test_frame_without_faces_is_an_unchanged_copy(clip, model, settings):
    frames, _ = clip
    calls = model.calls
    out, mask = merge.merge_frame(frames[3], [], model, settings)
    assert np.array_equal(out, to_float(frames[3])) and not mask.any() and model.calls == calls


def test_two_faces_are_composited(clip, model, settings):
    frames, lms = clip
    wide = np.concatenate([frames[0], frames[1]], axis=1)
    faces = [lms[0], lms[1] + np.array([480, 0], np.float32)]
    out, mask = merge.merge_frame(wide, faces, model, settings)
    left, right = mask[:, :480], mask[:, 480:]
    assert (left > 0).sum() > 10000 and (right > 0).sum() > 10000
    ch = _changed(out, wide)
    assert ch[:, :480].sum() > 5000 and ch[:, 480:].sum() > 5000
    assert not ch[_far_outside(mask)].any()


# --------------------------------------------------------------------------------------------- overrides


def test_overrides_apply_per_frame_range_and_round_trip(tmp_path):
    config = MergeConfig(MergeSettings(blur=10)).with_override(10, 20, erode=30, mode="seamless")
    config = config.with_override(15, None, erode=-5)
    assert config.settings_for(0) == MergeSettings(blur=10)
    assert config.settings_for(10).erode == 30 and config.settings_for(10).mode == "seamless"
    assert config.settings_for(15).erode == -5 and config.settings_for(15).mode == "seamless"  # later wins
    assert config.settings_for(25).erode == -5 and config.settings_for(25).mode == "overlay"
    carried = config.with_settings(40, 41, MergeSettings(blur=10, color_transfer="lct"))
    assert carried.overrides[-1] == RangeOverride(40, 41, {"color_transfer": "lct"})
    path = tmp_path / "merge.json"
    carried.save(path)
    again = MergeConfig.load(path)
    assert again == carried
    assert json.loads(path.read_text())["overrides"][0] == {
        "start": 10,
        "stop": 20,
        "changes": {"erode": 30, "mode": "seamless"},
    }


def test_bad_overrides_and_files_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="erode"):
        MergeConfig().with_override(0, 5, erode=999)
    with pytest.raises(ConfigError, match="stop"):
        RangeOverride(5, 5, {})
    bad = tmp_path / "merge.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError) as info:
        MergeConfig.load(bad)
    assert info.value.path == bad


# --------------------------------------------------------------------------------------------- temporal


def test_smoothing_reduces_jitter_of_a_noisy_track(clip):
    _, lms = clip
    rng = np.random.default_rng(0)
    truth = [lms[0].copy() for _ in range(60)]
    noisy = [t + rng.normal(0, 1.5, t.shape).astype(np.float32) for t in truth]
    assert merge.smooth_landmark_tracks(noisy, 0.0)[5] == pytest.approx(noisy[5])
    smooth = merge.smooth_landmark_tracks(noisy, 0.5)
    err = lambda tr: float(np.mean([np.abs(a - b).mean() for a, b in zip(tr, truth)][10:]))  # noqa: E731
    jit = lambda tr: float(np.mean([np.abs(b - a).mean() for a, b in zip(tr[:-1], tr[1:])]))  # noqa: E731
    assert jit(smooth) < 0.4 * jit(noisy)
    assert err(smooth) < 0.6 * err(noisy)


def test_smoothing_follows_a_step_within_a_couple_of_frames(clip):
    _, lms = clip
    step = np.array([60.0, 0.0], np.float32)
    track = [lms[0] + (step if i >= 20 else 0) for i in range(40)]
    smooth = merge.smooth_landmark_tracks(track, 0.5)
    lag = [float(np.abs(smooth[i] - track[i]).mean(axis=0)[0]) for i in range(20, 26)]
    assert lag[2] < 0.15 * 60 and lag[4] < 0.03 * 60
    # gaps split the track and stay None
    gappy = merge.smooth_landmark_tracks([lms[0], None, lms[1], lms[2]], 0.5)
    assert gappy[1] is None and gappy[0] == pytest.approx(lms[0])


def test_flicker_metric_zero_for_static_and_higher_for_noise(clip):
    frames, _ = clip
    mask = np.zeros(frames[0].shape[:2], np.float32)
    mask[100:300, 100:300] = 1
    static = [frames[0]] * 5
    assert merge.flicker_metric(static, [mask] * 5) == 0.0
    rng = np.random.default_rng(0)
    noisy = [np.clip(to_float(frames[0]) + rng.normal(0, 0.05, frames[0].shape), 0, 1) for _ in range(5)]
    value = merge.flicker_metric(noisy, [mask] * 5)
    assert value > 0.02
    # only the face region counts: noise outside the mask is ignored
    outside = [to_float(frames[0]).copy() for _ in range(5)]
    for f in outside:
        f[350:] = rng.random(f[350:].shape)
    assert merge.flicker_metric(outside, [mask] * 5) == 0.0
    assert merge.flicker_metric(outside) > 0.05


# --------------------------------------------------------------------------------------------- project


def _make_project(root, clip, no_face_index: int):
    from workbench.faceset import FaceMeta, write_aligned_face
    from workbench.project import FrameEntry, FrameIndex, Project, write_frame_index

    frames, lms = clip
    root.mkdir()
    (root / "workbench.json").write_text(json.dumps({"schema_version": 1, "name": "t", "face_type": "full"}))
    project = Project.open(root)
    entries = []
    for i, frame in enumerate(frames):
        name = f"{i:06d}.png"
        write_image(project.frames_dir / name, frame)
        entries.append(FrameEntry(i, name, i / 30.0))
        if i == no_face_index:
            continue
        mat = align.transform_matrix(lms[i], 64, "whole_face")
        meta = FaceMeta(
            face_type="whole_face",
            size=64,
            landmarks=align.transform_points(lms[i], mat),
            source_landmarks=lms[i],
            face_matrix=mat,
            source_file=f"frames/dst/{name}",
            frame_index=i,
            face_index=0,
            timestamp=i / 30.0,
            source_size=(480, 480),
        )
        write_aligned_face(
            project.aligned_dir("dst") / f"{i:06d}_0.jpg", align.warp_face(frame, mat, 64), meta
        )
    write_frame_index(project, FrameIndex("media/dst/clip.mp4", 30.0, False, 480, 480, tuple(entries)))
    return project


def test_merge_project_writes_resumes_and_re_merges_changed_ranges(tmp_path, clip, settings):
    frames, lms = clip
    project = _make_project(tmp_path / "proj", clip, no_face_index=3)
    _, mat = merge.crop_for_model(frames[0], lms[0], settings)
    model = FakeModel(masks.hull_mask((RES, RES), align.transform_points(lms[0], mat)))
    config = MergeConfig(settings, temporal_smoothing=0.3)

    summary = merge.merge_project(project, model, config, workers=2, progress=False, batch_size=4)
    assert (summary.frames, summary.merged, summary.resumed) == (N_FRAMES, N_FRAMES, 0)
    assert summary.faces_merged == N_FRAMES - 1 and summary.frames_without_faces == 1
    assert model.faces_seen == N_FRAMES - 1 and model.calls == 2  # batched: frames 0-3, 4-5
    assert summary.flicker_dst is not None and summary.flicker_merged is not None
    assert summary.flicker_merged > 0 and "flicker" in summary.format()
    for i in range(N_FRAMES):
        out = project.merged_dir / f"{i:06d}.png"
        mask = project.merged_masks_dir / f"{i:06d}.png"
        assert out.is_file() and mask.is_file()
    # the frame without a face is copied byte for byte, with an empty mask
    assert (project.merged_dir / "000003.png").read_bytes() == (
        project.frames_dir / "000003.png"
    ).read_bytes()
    assert read_image(project.merged_masks_dir / "000003.png").max() == 0
    merged0 = to_uint8(read_image(project.merged_dir / "000000.png"))
    merged1 = to_uint8(read_image(project.merged_dir / "000001.png"))
    assert (merged0 != frames[0]).any()
    assert not list(project.merged_dir.glob(".*tmp*"))

    # resume: nothing new to merge
    again = merge.merge_project(project, model, config, workers=2, progress=False)
    assert (again.merged, again.resumed, again.faces_merged) == (0, N_FRAMES, 0)
    assert model.faces_seen == N_FRAMES - 1

    # an override for frames 1..2 re-merges only those frames
    changed = config.with_override(1, 3, erode=40)
    third = merge.merge_project(project, model, changed, workers=1, progress=False)
    assert (third.merged, third.resumed) == (2, N_FRAMES - 2)
    assert np.array_equal(to_uint8(read_image(project.merged_dir / "000000.png")), merged0)
    assert not np.array_equal(to_uint8(read_image(project.merged_dir / "000001.png")), merged1)

    # overwrite: everything again
    fourth = merge.merge_project(project, model, changed, workers=2, progress=False, resume=False)
    assert fourth.merged == N_FRAMES


def test_merge_project_needs_aligned_faces(tmp_path, clip, model, settings):
    from workbench.project import FrameEntry, FrameIndex, Project, write_frame_index

    root = tmp_path / "empty"
    root.mkdir()
    (root / "workbench.json").write_text("{}")
    project = Project.open(root)
    write_image(project.frames_dir / "000000.png", clip[0][0])
    write_frame_index(project, FrameIndex("", 30.0, False, 480, 480, (FrameEntry(0, "000000.png", 0.0),)))
    with pytest.raises(MergeError, match="aligned destination faces"):
        merge.merge_project(project, model, MergeConfig(settings), progress=False)


def test_adapt_to_predictor_takes_model_facts(model):
    model_with_facts = FakeModel(model.hull)
    model_with_facts.resolution, model_with_facts.face_type = RES, "whole_face"
    config = MergeConfig(MergeSettings(resolution=128)).with_override(0, 2, resolution=256, blur=5)
    adapted = merge.adapt_to_predictor(config, model_with_facts)
    assert adapted.settings_for(0).resolution == RES and adapted.settings_for(0).blur == 5
    assert adapted.settings_for(5).face_type == "whole_face"
    assert merge.adapt_to_predictor(config, model) is config  # no facts: unchanged


def test_merge_command(tmp_path, clip, model, monkeypatch, capsys):
    from workbench import cli
    from workbench.commands import merge as merge_command

    root = tmp_path / "proj"
    project = _make_project(root, clip, no_face_index=0)
    assert cli.main(["merge", str(root), "--no-progress"]) == 2  # no trained model yet
    assert "no trained model" in capsys.readouterr().err
    from workbench.train.runs import checkpoint_path

    run_dir = project.models_dir / "run1"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    checkpoint_path(run_dir).write_bytes(b"weights")  # the loader is replaced below
    (project.models_dir / "untrained").mkdir()  # newer, but without a model: never picked by default
    (project.models_dir / "untrained" / "config.json").write_text("{}")
    model.resolution, model.face_type = RES, "full"
    loaded = []
    monkeypatch.setattr(merge_command, "load_predictor", lambda run_dir, device: loaded.append(run_dir) or model)
    try:
        code = cli.main(["merge", str(root), "--mode", "seamless", "--erode", "10", "--smooth", "0.4", "--save",
                         "--no-progress", "--workers", "1"])
    finally:
        del model.resolution, model.face_type
    assert code == 0 and loaded == [project.models_dir / "run1"]
    out = capsys.readouterr().out
    assert "frames without faces (copied unchanged): 1" in out and "flicker" in out
    saved = MergeConfig.load(project.merge_settings_path)
    assert saved.default.mode == "seamless" and saved.default.erode == 10 and saved.temporal_smoothing == 0.4
    assert len(list(project.merged_dir.glob("*.png"))) == N_FRAMES
    assert cli.main(["merge", str(root), "--run", "nope", "--no-progress"]) == 2
    assert "run1" in capsys.readouterr().err
