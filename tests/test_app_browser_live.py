"""The Live tab in Chromium with a fake webcam: frames arrive, the face is swapped, the label is visible, a recording
goes through the normal export. Also measures frames/s and camera-frame -> display latency (printed, written to
``test-artifacts/live_latency.json``; timing is reported, not asserted: the shared CPU's load decides it).

The fake camera plays a y4m clip made at test time from ``videos/lp_d19.mp4`` (640x480, 30 fps) whose frames carry
their number in a black/white strip along the bottom edge (tests/fake_camera.py). Reading the strip from the
output image and, at the same instant, from the camera preview gives the latency in clip frames.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fake_camera import DECODE_JS, FPS, STRIP, stamp, write_y4m
from model_fixtures import RUN, dst_frames, exported_dfm, read_frames, trained_project  # noqa: F401  (fixtures)
from test_app_browser import CHROMIUM, CHROMIUM_ARGS, _free_port, _need
from train_fixtures import faceset_pair  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CLIP_FRAMES = 90
MIN_FRAMES = 20

WATCH_JS = """(decodeSrc) => {
  const decode = eval(decodeSrc);
  window.__live = [];
  const seen = new Set();
  const scan = () => {
    const img = document.querySelector('#live-out img');
    if (!img || !img.getAttribute('src')) return;
    const src = img.getAttribute('src');
    if (seen.has(src)) return;
    seen.add(src);
    const record = () => {
      const cam = document.querySelector('#live-cam video');
      const timing = document.querySelector('#live-timing');
      window.__live.push({t: Date.now(), src, out: decode(img), cam: cam ? decode(cam) : null,
                          received: timing ? parseFloat(timing.dataset.received) : null,
                          processing: timing ? parseFloat(timing.dataset.processing) : null,
                          faces: timing ? parseInt(timing.dataset.faces || '0') : null});
    };
    if (img.complete && img.naturalWidth > 0) record(); else img.addEventListener('load', record, {once: true});
  };
  new MutationObserver(scan).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                    attributeFilter: ['src']});
}"""

FETCH_JS = """async (src) => { const r = await fetch(src); const b = new Uint8Array(await r.arrayBuffer());
  let s = ''; for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode.apply(null, b.subarray(i, i + 8192));
  return btoa(s); }"""


@pytest.fixture(scope="module")
def live_app(tmp_path_factory, trained_project, data_file):  # noqa: F811
    _need(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _need(False, "the playwright package is missing")
    from workbench.app import build_app, launch_options

    exported_dfm(trained_project)
    frames = read_frames(data_file("videos/lp_d19.mp4"), CLIP_FRAMES)
    clip = write_y4m(list(frames), tmp_path_factory.mktemp("camera") / "clip.y4m")
    demo = build_app(trained_project)
    port = _free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                **launch_options(demo))
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "root": trained_project, "clip": clip, "frames": frames}
    finally:
        demo.close()


def _label_region(shape) -> tuple[slice, slice]:
    h, w = shape[:2]
    return slice(0, int(0.15 * min(h, w))), slice(0, int(0.45 * min(h, w)))


def _check_swapped(image: np.ndarray, source: np.ndarray) -> dict[str, float]:
    """The output differs from the camera frame inside the face, matches it outside, and carries the label."""
    from helpers import largest_face_landmarks

    from workbench.label import draw_synthetic_label
    from workbench.masks import hull_mask

    lm = largest_face_landmarks(source.astype(np.float32) / 255.0)
    hull = hull_mask(source.shape[:2], lm) > 0.5
    inside = cv2.erode(hull.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    outside = cv2.dilate(hull.astype(np.uint8), np.ones((61, 61), np.uint8)) == 0
    ly, lx = _label_region(source.shape)
    outside[ly, lx] = False
    outside[-STRIP - 4:] = False  # the frame-number strip: sharp edges, chroma-subsampled by the camera path
    diff = np.abs(image.astype(np.float32) - source.astype(np.float32)).mean(-1)
    labelled = draw_synthetic_label(source)
    label_vs_labelled = float(np.abs(image[ly, lx].astype(float) - labelled[ly, lx].astype(float)).mean())
    label_vs_source = float(np.abs(image[ly, lx].astype(float) - source[ly, lx].astype(float)).mean())
    return {"inside": float(diff[inside].mean()), "outside": float(diff[outside].mean()),
            "label_vs_labelled": label_vs_labelled, "label_vs_source": label_vs_source}


def _stream(page, model: str) -> tuple[list[dict], float]:
    """Pick the model, start the fake webcam and collect MIN_FRAMES displayed frames (each with the strip number
    read from the output and, at that instant, from the camera preview)."""
    page.locator("#live-model input").click()
    page.get_by_role("option", name=model).click()
    page.evaluate(WATCH_JS, DECODE_JS)
    page.locator("#live-start").click()
    t_start = time.time()
    page.wait_for_function(f"window.__live && window.__live.filter(r => r.out).length >= {MIN_FRAMES}",
                           timeout=180_000, polling=200)
    window_s = time.time() - t_start
    # a strip read while the <img> swaps its picture can pass the 4 check bits with a number the clip never had:
    # such reads are not frames of the clip
    return [r for r in page.evaluate("window.__live") if r["out"] and r["out"]["n"] < CLIP_FRAMES], window_s


def _shown(page, row: dict) -> np.ndarray:
    data = base64.b64decode(page.evaluate(FETCH_JS, row["src"]))
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def _last_with_face(rows: list[dict]) -> dict:
    """The last displayed frame in which the tracker had the face; most frames must have it (a frame where the
    tracker lost the face, e.g. where the looping clip jumps, is shown unswapped, as it should be)."""
    with_face = [r for r in rows if r["faces"]]
    assert len(with_face) >= 0.75 * len(rows), [(r["out"]["n"], r["faces"]) for r in rows]
    return with_face[-1]


def _check_row(live_app, image: np.ndarray, row: dict) -> dict[str, float]:
    """The output shows camera frame n (read from its strip), the face swapped, the rest unchanged, the label."""
    source = stamp(live_app["frames"][row["out"]["n"]], row["out"]["n"])
    if row["out"]["mirrored"]:
        source = np.ascontiguousarray(source[:, ::-1])
    assert image.shape == source.shape
    check = _check_swapped(image, source)
    seen = {k: row[k] for k in ("out", "cam", "faces", "processing")}
    assert check["inside"] > 12, (check, seen)
    assert check["outside"] < 6, (check, seen)
    assert check["label_vs_labelled"] < 12 < check["label_vs_source"], (check, seen)
    return check


def _page_timing(page) -> dict:
    """The page script's own split of a frame (ms, medians): grab + JPEG encode, and the request (server included)."""
    timings = page.evaluate("window.__wbLive ? window.__wbLive.timings : []")
    if not timings:
        return {}
    return {f"page_{k}_ms_median": round(float(np.median([t[k] for t in timings])), 1) for k in timings[0]}


def _timing(rows: list[dict], window_s: float, check: dict) -> dict:
    """Frames/s of distinct displayed frames and camera -> display latency in clip frames."""
    from workbench.app.live_tab import MIN_FRAME_INTERVAL_S

    times = [r["t"] for r in rows]
    fps = (len(times) - 1) / max((times[-1] - times[0]) / 1000.0, 1e-3)
    lat = [((r["cam"]["n"] - r["out"]["n"]) % CLIP_FRAMES) * 1000.0 / FPS for r in rows if r["cam"]]
    assert lat, "the frame-number strip could not be read from the camera preview"
    server_to_display = [r["t"] - r["received"] for r in rows if r["received"]]
    return {"frames": len(rows), "first_frames_s": round(window_s, 2), "display_fps": round(fps, 2),
            "camera_to_display_ms_median": float(np.median(lat)),
            "camera_to_display_ms_p90": float(np.percentile(lat, 90)), "min_frame_interval_s": MIN_FRAME_INTERVAL_S,
            "server_receive_to_display_ms_median": float(np.median(server_to_display)) if server_to_display else None,
            "processing_ms_median": float(np.median([r["processing"] for r in rows if r["processing"]])),
            "frames_with_face": sum(1 for r in rows if r["faces"]), "load_average": os.getloadavg()[0], "check": check}


def test_live_tab_with_a_fake_camera(live_app):
    """The Merge tab with the DFM; the Live tab (swap, label, record); then the stand-alone /live page, timed."""
    from playwright.sync_api import expect, sync_playwright

    from workbench.export import read_provenance

    args = CHROMIUM_ARGS + ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                            f"--use-file-for-fake-video-capture={live_app['clip']}"]
    model = f"file: output/{RUN}.dfm"
    report: dict[str, dict] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        context = browser.new_context(viewport={"width": 1400, "height": 1100}, permissions=["camera"])
        page = context.new_page()
        page.set_default_timeout(60_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(live_app["url"])
            # the Merge tab merges with the exported file too: pick it, the page names it and shows the frame
            page.get_by_role("tab", name="4 · Merge").click()
            page.locator("#merge-run input").click()
            page.get_by_role("option", name=model).click()
            expect(page.locator("#merge-info")).to_contain_text(f"Model: model file output/{RUN}.dfm", timeout=120_000)
            expect(page.locator("#merge-info")).to_contain_text("onnxruntime")
            expect(page.locator("#merged-frame img")).to_be_visible()

            page.get_by_role("tab", name="6 · Live").click()
            page.wait_for_timeout(500)
            assert page.get_by_role("tab", name="6 · Live").count() == 1  # the frame endpoint adds no tab
            rows, window_s = _stream(page, model)
            check = _check_row(live_app, _shown(page, _last_with_face(rows)), _last_with_face(rows))
            report["tab"] = {**_timing(rows, window_s, check), **_page_timing(page)}
            assert report["tab"].get("page_request_ms_median"), "the frames did not go through the page's script"
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "live_tab.png"), full_page=False)
            stats_text = page.locator("#live-timing").inner_text()
            assert "fps" in stats_text and "processing" in stats_text and "page round trip" in stats_text

            # record 2 s: written by the normal export into output/
            page.locator("#live-record").click()
            page.get_by_text("Recording: frames are kept").wait_for()
            time.sleep(2.0)
            page.locator("#live-stop").click()
            page.get_by_text("with the SYNTHETIC label and provenance metadata (see the Export tab)").wait_for(
                timeout=120_000)
            saved = sorted((live_app["root"] / "output").glob("live_*.mp4"))
            page.close()

            # the same view on its own small page: what the latency target is measured on
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(live_app["url"] + "live")
            expect(page.locator("#live-project input")).to_have_value(live_app["root"].name)
            rows, window_s = _stream(page, model)
            check = _check_row(live_app, _shown(page, _last_with_face(rows)), _last_with_face(rows))
            report["page"] = {**_timing(rows, window_s, check), **_page_timing(page)}
            expect(page.locator("#live-timing")).to_contain_text("fps")
        except Exception:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(Exception):
                page.screenshot(path=str(ARTIFACTS / "live_failure.png"), full_page=True)
            raise
        finally:
            browser.close()

    assert not errors, errors
    assert saved, "no recording in output/"
    record = read_provenance(saved[-1])
    assert record["visible_label"] is True and "live webcam" in record["model"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "live_latency.json").write_text(json.dumps(report, indent=1))
    print("\nlive timing (tab = the Live tab of the full page, page = /live):", json.dumps(report))
