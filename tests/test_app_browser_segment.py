"""The Segment tab in a real browser (Chromium via Playwright): draw an XSeg polygon with real clicks, see it
saved in the face file, reload the page and find it again, with the overlay visible in a screenshot; keyboard
navigation, the labelled filter and "copy the previous face's polygons".

Prints the click -> redraw latency measured in the page (the issue's budget is < 200 ms per click on 2 cores).
"""

from __future__ import annotations

import io
import shutil
import statistics
import time

import numpy as np
import pytest
from test_app_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _free_port, _img_src, _need, _wait_src_change
from train_fixtures import faceset_pair  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def seg_app(tmp_path_factory, faceset_pair):  # noqa: F811
    """A project whose dst faceset holds 4 real lp_d19 faces, a tiny trained XSeg model, and the app serving it."""
    _need(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _need(False, "the playwright package is missing")
    from workbench.app import build_app, launch_options
    from workbench.project import create_project
    from workbench.segment.trainer import XSegOptions, XSegTrainer, default_run_dir

    project = create_project(tmp_path_factory.mktemp("segment") / "proj", face_size=64)
    dst = project.aligned_dir("dst")
    for path in sorted(faceset_pair[1].glob("*.png"))[:4]:
        shutil.copy2(path, dst / path.name)
    run = default_run_dir(project)
    (run / "checkpoints").mkdir(parents=True)
    trainer = XSegTrainer(XSegOptions(resolution=32, channels=(8, 16), bottleneck=16, batch_size=2, heldout=0,
                                      cpu_threads=1), [faceset_pair[1]], run_dir=run)
    for _ in range(3):
        trainer.train_step()
    trainer.save()
    demo = build_app(project.root)
    port = _free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                **launch_options(demo))
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "root": project.root, "dst": dst}
    finally:
        demo.close()


@pytest.fixture
def seg_page(seg_app, request):
    import contextlib

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()
        page.set_default_timeout(60_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.workbench_errors = errors  # type: ignore[attr-defined]
        try:
            yield page
        finally:
            if getattr(request.node, "_app_failed", False):
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            browser.close()


def _open_segment(page, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(url, wait_until="load")
    page.get_by_role("tab", name="2b · Segment").click()
    expect(page.locator("#seg-info")).to_contain_text("face 1/4", timeout=60_000)


def _green_pixels(png: bytes) -> int:
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((rgb[..., 1] > rgb[..., 0] + 80) & (rgb[..., 1] > rgb[..., 2] + 80)).sum())


def test_draw_a_polygon_reload_and_see_it_again(seg_app, seg_page, request):
    try:
        _walk(seg_app, seg_page)
    except BaseException:
        request.node._app_failed = True
        raise


def _walk(app, page) -> None:
    from playwright.sync_api import expect

    from workbench.faceset import read_face_meta, scan_faceset

    _open_segment(page, app["url"])
    view = page.locator("#seg-view img").first
    expect(view).to_be_visible()
    before = _green_pixels(view.screenshot())
    box = view.bounding_box()
    assert box["width"] >= 400 and box["height"] >= 400  # a large view (512 px image)
    corners = ((0.3, 0.3), (0.7, 0.3), (0.7, 0.7), (0.3, 0.7))
    latencies = []
    for k, (fx, fy) in enumerate(corners, start=1):
        old = _img_src(page, "#seg-view")
        t0 = time.perf_counter()
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        _wait_src_change(page, "#seg-view", old, timeout=30_000)  # the redrawn view is loaded and shown
        latencies.append(1000 * (time.perf_counter() - t0))
        expect(page.locator("#seg-info")).to_contain_text(f"drawing: {k} point(s)", timeout=30_000)
    page.locator("#seg-close").click()
    expect(page.locator("#seg-info")).to_contain_text("1 include, 0 exclude")
    # the open polygon's line ("drawing: 4 point(s)") also counts it as an include: wait for the close itself
    expect(page.locator("#seg-info")).not_to_contain_text("drawing:", timeout=30_000)
    print(f"\nSegment tab click -> redraw in the browser: median {statistics.median(latencies):.0f} ms, "
          f"max {max(latencies):.0f} ms over {len(latencies)} clicks")

    # saved in the face file at once, in aligned-face pixels (64 px faces)
    first = scan_faceset(app["dst"]).faces[0]
    polys = read_face_meta(first.path).seg_polys
    assert len(polys) == 1 and polys[0].kind == "include" and polys[0].closed
    pts = np.asarray(polys[0].points)
    assert np.allclose(pts, np.array(corners) * 64, atol=3), pts

    # reload the page: the polygon is still there, and the screenshot shows the green label overlay
    page.reload(wait_until="load")
    page.get_by_role("tab", name="2b · Segment").click()
    expect(page.locator("#seg-info")).to_contain_text("1 include, 0 exclude", timeout=60_000)
    expect(page.locator("#seg-info")).to_contain_text("XSeg prediction")
    shot = page.locator("#seg-view img").first.screenshot()
    assert _green_pixels(shot) > before + 2000  # tinted label + outline
    page.screenshot(path=str(app["root"] / "segment_tab.png"))

    # keyboard: D next, A previous; the labelled filter; copy the previous face's polygons
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("d")
    expect(page.locator("#seg-info")).to_contain_text("face 2/4")
    expect(page.locator("#seg-info")).to_contain_text("0 include, 0 exclude")
    page.locator("#seg-copy").click()
    expect(page.locator("#seg-info")).to_contain_text("1 include, 0 exclude")
    page.keyboard.press("a")
    expect(page.locator("#seg-info")).to_contain_text("face 1/4")
    page.locator("#seg-filter input").first.click()
    page.get_by_role("option", name="unlabelled").click()
    expect(page.locator("#seg-info")).to_contain_text("face 1/2")
    assert not page.workbench_errors, page.workbench_errors
