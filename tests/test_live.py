"""The live swap pipeline on a sequence of real frames (no browser): tracking, swap, label, recording."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from model_fixtures import RUN, dst_frames, exported_dfm, read_frames, trained_project  # noqa: F401  (fixtures)
from train_fixtures import faceset_pair, one_torch_thread  # noqa: F401  (fixtures)

from workbench.errors import ConfigError, ExportError
from workbench.export import read_provenance
from workbench.label import draw_synthetic_label
from workbench.live import LandmarkTracker, LiveOptions, LiveRecorder, LiveSwapper
from workbench.masks import hull_mask
from workbench.merge import MergeSettings
from workbench.train import load_predictor

N = 16


@pytest.fixture(scope="module")
def frames(data_file) -> np.ndarray:
    """16 frames of lp_d19 (a moving head) at 640x480."""
    return read_frames(data_file("videos/lp_d19.mp4"), N)


@pytest.fixture(scope="module")
def predictor(trained_project):  # noqa: F811
    return load_predictor(trained_project / "models" / RUN, precision="fp32")


def _label_box(shape: tuple[int, ...]) -> tuple[slice, slice]:
    """Generous bounds of the corner label (5 % text + padding at the top left)."""
    h, w = shape[:2]
    return slice(0, int(0.15 * min(h, w))), slice(0, int(0.45 * min(h, w)))


def test_live_pipeline_swaps_inside_the_face_only_and_labels(frames, predictor):
    swapper = LiveSwapper(predictor, MergeSettings(), LiveOptions(detect_every=6))
    assert swapper.settings.resolution == 64 and swapper.settings.face_type == "full"  # from the model
    results = list(swapper.run(frames))
    assert len(results) == N and all(r.faces == 1 for r in results)
    # detection ran on the first frame and then about every 6th frame, not on every frame
    detected = [i for i, r in enumerate(results) if r.detected]
    assert detected[0] == 0 and 2 <= len(detected) <= 5, detected
    ly, lx = _label_box(frames[0].shape)
    for frame, r in zip(frames, results):
        assert r.image.shape == frame.shape and r.image.dtype == np.uint8
        inside = r.mask > 0.5
        assert inside.sum() > 2000  # a face-sized area
        diff = np.abs(r.swapped.astype(int) - frame.astype(int)).max(-1)
        assert diff[inside].mean() > 5  # the face changed
        outside = cv2.dilate((r.mask > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
        assert np.array_equal(r.swapped[outside], frame[outside])  # nothing else did
        # the displayed frame is the swapped one with the SYNTHETIC label, which the recording gets at export
        assert np.array_equal(r.image, draw_synthetic_label(r.swapped))
        away = np.ones(frame.shape[:2], bool)
        away[ly, lx] = False
        assert np.array_equal(r.image[away], r.swapped[away])
        assert np.abs(r.image[ly, lx].astype(int) - r.swapped[ly, lx].astype(int)).max() > 100  # white letters
        assert set(r.timings_ms) == {"track", "swap", "label", "total"} and r.timings_ms["total"] > 0
    assert swapper.fps > 0 and swapper.latency_ms > 0


def test_tracking_between_detections_follows_the_face(frames):
    """Landmarks carried between detections stay within a few pixels of a fresh detection on every frame."""
    tracked = LandmarkTracker(detect_every=100, detect_max_side=320)
    fresh = LandmarkTracker(detect_every=1, detect_max_side=320)
    errors = []
    for frame in frames:
        a, b = tracked.update(frame), fresh.update(frame)
        assert len(a) == len(b) == 1
        errors.append(float(np.linalg.norm(a[0] - b[0], axis=1).mean()))
    assert tracked.detections == 1 and fresh.detections == N
    iod = float(np.linalg.norm(b[0][45] - b[0][36]))  # inter-ocular distance, px
    assert max(errors) < 0.08 * iod, (errors, iod)


def test_side_by_side_and_frames_without_a_face(frames, predictor):
    swapper = LiveSwapper(predictor, options=LiveOptions(side_by_side=True))
    r = swapper.process(frames[0])
    h, w = frames[0].shape[:2]
    assert r.image.shape == (h, 2 * w, 3)
    assert np.array_equal(r.image[:, :w], frames[0])  # the original half is untouched
    assert np.array_equal(r.image[:, w:], draw_synthetic_label(r.swapped))
    blank = np.full_like(frames[0], 128)
    empty = swapper.process(blank)
    assert empty.faces == 0 and np.array_equal(empty.swapped, blank) and empty.mask.max() == 0
    assert not np.array_equal(empty.image[:, w:], blank)  # labelled even without a face
    with pytest.raises(ConfigError):
        swapper.process(np.zeros((10, 10), np.uint8))
    with pytest.raises(ConfigError, match="detect_every"):
        LiveOptions(detect_every=0)


def test_xseg_mask_modes_segment_each_tracked_face(frames, predictor):
    """With an xseg-* mask mode the live view asks the segmenter, with the face's landmarks, and pastes only
    where it says: a fake XSeg that keeps the upper half of the face (a hand over the mouth) leaves the lower
    half of the frame's face untouched."""
    calls = []

    def upper_half(face, landmarks):
        calls.append((face.shape, np.asarray(landmarks).shape))
        mask = hull_mask(face.shape[:2], np.asarray(landmarks))  # the face the landmarks outline ...
        mask[int(np.asarray(landmarks)[33, 1]):] = 0.0  # ... above the nose tip only
        return mask

    hull = LiveSwapper(predictor, MergeSettings(mask_mode="dst", erode=0, blur=0), LiveOptions(detect_every=6))
    xseg = LiveSwapper(predictor, MergeSettings(mask_mode="xseg-dst", erode=0, blur=0), LiveOptions(detect_every=6),
                       segment=upper_half)
    for i, frame in enumerate(frames[:3]):
        # one clock for both (the landmark smoothing depends on the time between frames)
        a, b = hull.process(frame, timestamp=i / 30), xseg.process(frame, timestamp=i / 30)
        assert a.faces == b.faces == 1
        assert 0.2 * (a.mask > 0.5).sum() < (b.mask > 0.5).sum() < 0.8 * (a.mask > 0.5).sum()
        assert ((b.mask > 0.5) & ~(a.mask > 0.1)).sum() == 0  # only inside the hull's face
        lower = (a.mask > 0.5) & (b.mask == 0)
        assert lower.sum() > 500 and np.array_equal(b.swapped[lower], frame[lower])  # the "hand" stays
    assert calls and all(lm == (68, 2) for _, lm in calls)
    with pytest.raises(ConfigError, match="segmentation"):
        LiveSwapper(predictor, MergeSettings(mask_mode="xseg-dst")).process(frames[0])


def test_recording_only_when_asked_and_exported_with_provenance(frames, predictor, tmp_path):
    swapper = LiveSwapper(predictor)
    recorder = LiveRecorder()
    for i, r in enumerate(swapper.run(frames[:4])):
        assert recorder.add(r.swapped, i / 10) is False  # not recording: nothing kept
    assert recorder.frames == []
    with pytest.raises(ExportError, match="nothing recorded"):
        recorder.save(tmp_path / "none.mp4", "run1")
    recorder.start()
    for i, r in enumerate(swapper.run(frames[:6])):
        assert recorder.add(r.swapped, i / 10)
    out = recorder.save(tmp_path / "live.mp4", "run1")
    assert out.is_file() and recorder.frames == []
    record = read_provenance(out)
    assert record["visible_label"] is True and "live webcam" in record["model"]
    import av

    with av.open(str(out)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    ly, lx = _label_box(first.shape)
    assert first[ly, lx].max() > 200  # the label is burnt in


def _shown_image(data_url: str) -> np.ndarray:
    """The RGB picture of a live answer (a JPEG data URL)."""
    import base64

    import cv2

    prefix = "data:image/jpeg;base64,"
    assert data_url and data_url.startswith(prefix), str(data_url)[:80]
    return cv2.imdecode(np.frombuffer(base64.b64decode(data_url[len(prefix):]), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def _jpeg_data_url(rgb: np.ndarray, quality: int = 95) -> str:
    import base64

    import cv2

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def test_live_frames_through_the_unqueued_http_endpoint(trained_project, frames):  # noqa: F811
    """The page posts webcam JPEGs to gradio_api/run/live_jpeg: swapped frames come back for a configured session;
    a wrong key, garbage and oversized input get messages, never a traceback."""
    import requests
    from test_app_browser import _free_port

    from workbench.app import build_app, launch_options
    from workbench.app.common import MODEL_FILE_PREFIX
    from workbench.app.context import AppContext
    from workbench.app.live_tab import MAX_FRAME_DATA_URL, LiveSessions, live_configure, live_jpeg

    ctx, sessions = AppContext(trained_project.parent), LiveSessions()
    model = f"{MODEL_FILE_PREFIX}output/{RUN}.dfm"
    exported_dfm(trained_project)
    key = live_configure(ctx, sessions, str(trained_project), model, False, {"mode": "overlay"}, None)["live_key"]
    direct = live_jpeg(ctx, sessions, _jpeg_data_url(frames[0]), key)
    assert _shown_image(direct["image"]).shape == frames[0].shape and "fps" in direct["stats"]
    for bad in ("", "data:image/jpeg;base64,!!!", "data:image/jpeg;base64,aGVsbG8=", "x" * (MAX_FRAME_DATA_URL + 1)):
        answer = live_jpeg(ctx, sessions, bad, key)
        assert answer["image"] is None and "⚠️" in answer["stats"], (bad[:30], answer)
    assert "no model selected" in live_jpeg(ctx, sessions, _jpeg_data_url(frames[0]), "not-a-key")["stats"]

    # the running app serves it where the page's script posts (the browser test streams through it end to end)
    demo = build_app(trained_project)
    port = _free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                **launch_options(demo))
    try:
        url = f"http://127.0.0.1:{port}/gradio_api/run/live_jpeg"
        reply = requests.post(url, json={"data": [_jpeg_data_url(frames[1]), "no-such-session"]}, timeout=60)
        assert reply.status_code == 200
        answer = reply.json()["data"][0]
        assert answer["image"] is None and "no model selected" in answer["stats"]
    finally:
        demo.close()


def test_live_tab_callbacks_without_a_browser(trained_project, frames, tmp_path):  # noqa: F811
    """The Live tab's plain functions: model list, model export, one streamed frame, recording to output/."""
    from workbench.app.common import MODEL_FILE_PREFIX
    from workbench.app.context import AppContext
    from workbench.app.live_tab import (
        LiveSessions,
        export_model_cb,
        live_configure,
        live_frame,
        live_model_choices,
        start_recording,
        stop_recording,
    )

    root = str(trained_project)
    ctx = AppContext(trained_project.parent)
    out = export_model_cb(root, RUN, "onnx", overwrite=True)
    assert "loads in onnxruntime" in out["status"], out
    choices = live_model_choices(root)
    assert f"{MODEL_FILE_PREFIX}output/{RUN}.onnx" in choices
    assert "exists" in export_model_cb(root, RUN, "onnx")["status"]  # no silent overwrite
    assert "no training run" in export_model_cb(root, "", "dfm")["status"].lower()

    sessions = LiveSessions()
    settings = {"mode": "overlay", "erode": 0, "blur": 0}
    model = f"{MODEL_FILE_PREFIX}output/{RUN}.onnx"
    # a frame before the page configured a session: a message, and no session is made for it
    early = live_frame(ctx, sessions, frames[0], None)
    assert early["image"] is None and "no model selected" in early["stats"]
    assert not sessions._lru.data
    key = live_configure(ctx, sessions, root, model, False, settings, None)["live_key"]
    first = live_frame(ctx, sessions, frames[0], key)
    assert set(first) == {"image", "stats"} and 'id="live-timing"' in first["stats"] and "fps" in first["stats"]
    shown = _shown_image(first["image"])
    assert shown.shape == frames[0].shape
    assert np.abs(shown.astype(int) - frames[0].astype(int)).mean() > 1  # swapped and labelled, not the input
    configured = live_configure(ctx, sessions, root, model, True, settings, key)
    assert configured["live_key"] == key and f"Model: model file {RUN}.onnx" in configured["live_stats"]
    assert f'data-live-key="{key}"' in configured["live_stats"]  # how the page's frame script finds its session
    again = live_frame(ctx, sessions, frames[1], key)
    assert _shown_image(again["image"]).shape == (480, 1280, 3)  # side by side, same session
    untrained = live_configure(ctx, sessions, root, model, False, {**settings, "mask_mode": "xseg-dst"}, key)
    assert "need a trained XSeg model" in untrained["live_stats"]  # said when chosen, not a failure per frame
    bad = live_configure(ctx, sessions, root, f"{MODEL_FILE_PREFIX}../../etc/passwd", False, settings, key)
    assert "outside the project" in bad["live_stats"]
    refused = live_frame(ctx, sessions, frames[1], key)
    assert refused["image"] is None and "outside the project" in refused["stats"]
    live_configure(ctx, sessions, root, model, False, settings, key)

    # the stand-alone /live page: no form, the project's saved merge settings (merge.json)
    from workbench.app.live_tab import live_page_project
    from workbench.merge import MergeConfig, MergeSettings

    (trained_project / "merge.json").unlink(missing_ok=True)
    page_key = live_configure(ctx, sessions, root, model, False, None, None)["live_key"]
    assert sessions.find(page_key).settings == MergeConfig().default  # no merge.json: the defaults
    try:
        MergeConfig(MergeSettings().replace(blur=37, mode="overlay")).save(trained_project / "merge.json")
        live_configure(ctx, sessions, root, model, False, None, page_key)
        assert sessions.find(page_key).settings.blur == 37
        assert sessions.find(page_key).swapper.settings.blur == 37
    finally:
        (trained_project / "merge.json").unlink(missing_ok=True)
    assert _shown_image(live_frame(ctx, sessions, frames[0], page_key)["image"]).shape == frames[0].shape
    assert live_page_project(ctx, trained_project.name) == {"root": str(trained_project.resolve())}
    assert live_page_project(ctx, "../etc") == {"root": None}

    assert "Nothing is being recorded" in stop_recording(sessions, root, key)["status"]
    start_recording(sessions, key)
    for f in frames[2:6]:
        live_frame(ctx, sessions, f, key)
    saved = stop_recording(sessions, root, key)["status"]
    assert "Saved" in saved and "provenance" in saved
    videos = sorted((trained_project / "output").glob("live_*.mp4"))
    assert videos and read_provenance(videos[-1])["visible_label"] is True
