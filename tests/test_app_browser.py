"""End to end in a real browser: Debian's Chromium, driven by Playwright, against the app on a free localhost port.

One walk through the whole pipeline on a small project (two 36-frame clips of lp_d18 / lp_d19, 128 px faces,
the ``tiny`` preset): bad inputs first (a corrupt upload, merging before a model exists), then extraction and
the gallery, training with a live step counter and preview, pause/resume/stop, a merge-setting change that
re-renders the frame, the colour-transfer grid, merging every frame, and the exported video.

It also measures two latencies and prints them (and writes ``test-artifacts/app_latency.json``):
- a merge-setting change -> the new frame in the page (target < 0.5 s);
- a trainer preview write -> its display (target < poll interval + 0.5 s).

Screenshots of the page are kept under ``test-artifacts/app/`` (gitignored) when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import statistics
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "app"
POLL_SECONDS = 1.0
MERGE_TARGET_S = 0.5


def _need(condition: bool, reason: str) -> None:
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: browser tests must run)")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served_page(demo, viewport: tuple[int, int] = (1400, 1100)):
    """Serve the Gradio ``demo`` on a free local port and open it in headless Chromium; yields the page.

    The browser closes, then the app, however the block ends."""
    from playwright.sync_api import sync_playwright

    from workbench.app import launch_options

    port = _free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                **launch_options(demo))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}).new_page()
            page.set_default_timeout(60_000)
            try:
                page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
                yield page
            finally:
                browser.close()
    finally:
        demo.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory, data_file):
    """The app on a fresh small project (media only), served from a background thread."""
    _need(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _need(False, "the playwright package is missing")
    from test_app_callbacks import FACE_SIZE, make_clips

    from workbench.app import build_app, launch_options
    from workbench.project import create_project

    base = tmp_path_factory.mktemp("browser")
    src, dst = make_clips(tmp_path_factory.getbasetemp() / "app_project" / "clips", data_file)
    project = create_project(base / "proj", src, dst, face_type="whole_face", face_size=FACE_SIZE)
    demo = build_app(project.root, poll_seconds=POLL_SECONDS)
    port = _free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                **launch_options(demo))
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "root": project.root, "base": base}
    finally:
        _stop_trainers(project.root)
        demo.close()


def _stop_trainers(root: Path) -> None:
    """Never leave a background trainer behind: ask it to stop, then end it by its pid."""
    import signal

    from workbench.train import list_runs, read_status, send_command

    for status in list_runs(root):
        if not status.is_active:
            continue
        send_command(status.run_dir, "stop")
        deadline = time.time() + 30
        while time.time() < deadline and read_status(status.run_dir).is_active:
            time.sleep(0.5)
        if status.pid and read_status(status.run_dir).is_active:
            with contextlib.suppress(OSError):
                os.kill(status.pid, signal.SIGTERM)


@pytest.fixture
def page(app, request, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.workbench_errors = errors  # type: ignore[attr-defined]
        try:
            yield page
        finally:
            failed = getattr(request.node, "_app_failed", False)
            if failed:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                for folder in (ARTIFACTS, tmp_path):
                    with contextlib.suppress(Exception):
                        page.screenshot(path=str(folder / f"{request.node.name}.png"), full_page=True)
            browser.close()


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _img_src(page, selector: str) -> str | None:
    loc = page.locator(f"{selector} img")
    return loc.first.get_attribute("src") if loc.count() else None


def _wait_src_change(page, selector: str, old: str | None, timeout: float = 60_000) -> str:
    page.wait_for_function(
        """([sel, old]) => { const i = document.querySelector(sel + ' img');
                             return i && i.src && i.complete && i.naturalWidth > 0 && i.getAttribute('src') !== old; }""",
        arg=[selector, old], timeout=timeout, polling=10)
    return _img_src(page, selector)


def _watch_images(page) -> None:
    """Record (time, src) of every image shown in the preview and merged-frame components."""
    page.evaluate("""() => {
        window.__shown = [];
        const seen = new Set();
        const scan = () => {
          for (const sel of ['#train-preview', '#merged-frame']) {
            const img = document.querySelector(sel + ' img');
            if (!img || !img.getAttribute('src')) continue;
            const key = sel + '|' + img.getAttribute('src');
            if (seen.has(key)) continue;
            const record = () => { if (!seen.has(key)) { seen.add(key);
                window.__shown.push({sel, src: img.getAttribute('src'), t: Date.now()}); } };
            if (img.complete && img.naturalWidth > 0) record(); else img.addEventListener('load', record, {once: true});
          }
        };
        new MutationObserver(scan).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                          attributeFilter: ['src']});
        scan();
    }""")


def _set_number(page, selector: str, value: str) -> None:
    box = page.locator(f"{selector} input[type=number]").first
    box.fill(value)
    box.press("Enter")


def test_whole_pipeline_in_the_browser(app, page, request, tmp_path):
    try:
        _walk(app, page, tmp_path)
    except BaseException:
        request.node._app_failed = True
        raise


def _walk(app, page, tmp_path) -> None:
    from gradio.processing_utils import hash_file
    from playwright.sync_api import expect

    root: Path = app["root"]
    page.goto(app["url"], wait_until="load")
    expect(page.locator("#overview table")).to_contain_text("destination media", timeout=90_000)
    expect(page.locator("#consent-rule")).to_contain_text("Only use faces you have the right to use")
    expect(page.locator("#project-label")).to_contain_text("proj")

    # --- bad input: a corrupt "video" upload is refused with a visible message, nothing is copied
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(os.urandom(8192))
    page.locator("#src-upload input[type=file]").set_input_files(str(corrupt))
    expect(page.locator("#project-status")).to_contain_text("cannot", timeout=30_000)
    expect(page.locator(".toast-wrap").first).to_contain_text("cannot open video")
    assert sorted(p.name for p in (root / "media" / "src").iterdir()) == ["d18.mp4"]
    expect(page.locator("#src-upload")).not_to_contain_text("broken.mp4")  # the refused file is not kept

    # --- bad input: merging before a model exists
    _tab(page, "4 · Merge")
    expect(page.locator("#merge-info")).to_contain_text("No trained model yet")
    page.locator("#merge-all-btn").click()
    expect(page.locator("#merge-status")).to_contain_text("no training run selected")

    # --- extract both sides, see the gallery, click a face to see it on its frame
    _tab(page, "2 · Extract")
    page.locator("#extract-btn").click()
    expect(page.locator("#extract-status")).to_contain_text("destination", timeout=240_000)
    expect(page.locator("#extract-status")).to_contain_text("faces written")
    expect(page.locator("#gallery-info")).to_contain_text("36 source faces", timeout=30_000)
    thumbs = page.locator("#face-gallery .thumbnail-item")
    expect(thumbs.first).to_be_visible()
    assert thumbs.count() == 36
    thumbs.nth(2).click()
    expect(page.locator("#frame-view img")).to_be_visible(timeout=30_000)
    expect(page.locator("#selected-faces")).to_contain_text("000002_0")
    page.get_by_label("landmarks", exact=True).check()
    expect(page.locator("#face-gallery img").first).to_have_attribute("src", re.compile(r"\.webp"), timeout=30_000)
    _shot(page, tmp_path, "extract")
    # a selection belongs to its faceset: the dst faceset has a file of the same name, which must not be selected
    page.locator("#gallery-side").get_by_label("dst", exact=True).check()
    expect(page.locator("#gallery-info")).to_contain_text("destination faces", timeout=30_000)
    expect(page.locator("#selected-faces")).not_to_contain_text("000002_0")
    page.locator("#gallery-side").get_by_label("src", exact=True).check()
    expect(page.locator("#gallery-info")).to_contain_text("source faces", timeout=30_000)

    # --- train: start the background trainer; the step counter and the preview come alive
    _tab(page, "3 · Train")
    run_box = page.locator("#run-name input")
    expect(run_box).to_have_value("tiny")
    _set_number(page, "#opt-batch_size", "4")
    _set_number(page, "#opt-preview_every", "2")
    _set_number(page, "#opt-metrics_every", "4")
    _watch_images(page)
    page.locator("#start-btn").click()
    expect(page.locator("#train-action")).to_contain_text("Started the trainer", timeout=30_000)
    page.locator("#start-btn").click()  # starting twice: refused with a message, no second trainer
    expect(page.locator("#train-action")).to_contain_text(re.compile("already training|starting up"))
    expect(page.locator("#train-step")).to_contain_text(re.compile(r"Step [1-9]"), timeout=240_000)
    watched_since = time.time()
    first = _wait_src_change(page, "#train-preview", None, timeout=240_000)
    second = _wait_src_change(page, "#train-preview", first, timeout=180_000)
    assert first != second
    expect(page.locator("#train-status")).to_contain_text("running")
    expect(page.locator("#loss-plot")).to_be_visible()
    _shot(page, tmp_path, "train")
    shown = [(item, watched_since) for item in page.evaluate("() => window.__shown")]

    # --- closing the page does not stop training; a new page re-attaches to the running trainer
    page.reload(wait_until="load")
    expect(page.locator("#overview table")).to_contain_text("training runs", timeout=90_000)
    _tab(page, "3 · Train")
    expect(page.locator("#run-name input")).to_have_value("tiny", timeout=30_000)
    expect(page.locator("#train-status")).to_contain_text("running", timeout=30_000)
    expect(page.locator("#train-action")).to_contain_text("Re-attached to the running trainer")
    _watch_images(page)
    watched_since = time.time()
    _wait_src_change(page, "#train-preview", None, timeout=60_000)
    _wait_src_change(page, "#train-preview", _img_src(page, "#train-preview"), timeout=180_000)
    page.locator("#pause-btn").click()
    expect(page.locator("#train-status")).to_contain_text("paused", timeout=60_000)
    step_paused = _step(page)
    time.sleep(2 * POLL_SECONDS + 0.5)
    assert _step(page) == step_paused
    page.locator("#resume-btn").click()
    expect(page.locator("#train-status")).to_contain_text("running", timeout=60_000)
    _wait_src_change(page, "#train-preview", _img_src(page, "#train-preview"), timeout=180_000)
    page.locator("#stop-btn").click()
    expect(page.locator("#train-status")).to_contain_text("stopped", timeout=120_000)
    # the plots are drawn with real lines on a step axis (held-out SSIM is logged every 4 steps)
    _wait_lines(page, "#metrics-plot")
    _shot(page, tmp_path, "train-stopped")
    # a new run name shows no preview of the previous run
    run_box.fill("fresh")
    run_box.press("Enter")
    expect(page.locator("#preview-info")).to_contain_text("No preview yet", timeout=30_000)
    expect(page.locator("#train-preview img")).to_have_count(0)
    run_box.fill("tiny")
    run_box.press("Enter")
    expect(page.locator("#train-status")).to_contain_text("stopped", timeout=30_000)
    shown += [(item, watched_since) for item in page.evaluate("() => window.__shown")]
    preview_latencies = _preview_latencies(shown, root / "models" / "tiny" / "previews", hash_file)
    assert preview_latencies, "no preview display could be matched to its file"

    # --- merge: the frame re-renders on a setting change; colour grid; merge all frames
    _tab(page, "4 · Merge")
    expect(page.locator("#merge-run input")).to_have_value("tiny", timeout=30_000)
    expect(page.locator("#merged-frame img")).to_be_visible(timeout=120_000)
    expect(page.locator("#merge-info")).to_contain_text("1 face(s)")
    merge_latencies = []
    for value in ("40", "-30", "80", "10", "120"):
        old = _img_src(page, "#merged-frame")
        t0 = time.time()
        _set_number(page, "#set-erode", value)
        _wait_src_change(page, "#merged-frame", old, timeout=60_000)
        merge_latencies.append(time.time() - t0)
    old = _img_src(page, "#merged-frame")
    page.locator("#set-color_transfer input").click()
    page.get_by_role("option", name="mkl", exact=True).click()
    _wait_src_change(page, "#merged-frame", old, timeout=60_000)
    page.locator("#grid-btn").click()
    expect(page.locator("#color-grid img")).to_be_visible(timeout=120_000)
    expect(page.locator("#merge-status")).to_contain_text("colour transfers")
    _shot(page, tmp_path, "merge")
    page.locator("#merge-all-btn").click()
    expect(page.locator("#merge-status")).to_contain_text("frames: 36", timeout=300_000)
    assert len(list((root / "merged").glob("*.png"))) == 36

    # --- export: the video plays in the page, can be downloaded, and shows its provenance
    _tab(page, "5 · Export")
    page.locator("#export-btn").click()
    expect(page.locator("#export-status")).to_contain_text("Wrote", timeout=180_000)
    expect(page.locator("#export-video video")).to_be_attached(timeout=60_000)
    expect(page.locator("#export-download")).to_be_visible()
    expect(page.locator("#provenance")).to_contain_text("Face-Swap Workbench")
    assert (root / "output" / "d19_swap.mp4").is_file()
    _shot(page, tmp_path, "export")
    # creating a project from the page opens it without a raw Gradio error
    _tab(page, "1 · Project")
    page.locator("#new-name textarea, #new-name input").first.fill("second")
    page.get_by_role("button", name="Create project").click()
    expect(page.locator("#project-status")).to_contain_text("Created project", timeout=60_000)
    expect(page.locator("#project-label")).to_contain_text("second", timeout=60_000)
    time.sleep(2 * POLL_SECONDS)
    assert "not in the list of choices" not in page.locator("body").inner_text()
    assert not page.workbench_errors, page.workbench_errors  # type: ignore[attr-defined]

    _report(merge_latencies, preview_latencies)
    assert statistics.median(merge_latencies) < 3.0  # the 0.5 s target is reported, not enforced on a busy CI box


def _preview_latencies(shown: list[tuple[dict, float]], previews: Path, hash_file) -> list[float]:
    """Seconds from each preview file's write (mtime) to the moment the page displayed it.

    ``shown`` holds (display record, time the page started watching); previews written before a page started
    watching (shown at once when it loads) are not latencies and are left out.
    """
    by_hash = {hash_file(p): p.stat().st_mtime for p in previews.glob("step_*.png")}
    latencies = []
    for item, since in shown:
        if item["sel"] != "#train-preview":
            continue
        match = re.search(r"/([0-9a-f]{64})/", item["src"])
        if match and match.group(1) in by_hash and by_hash[match.group(1)] > since:
            latencies.append(item["t"] / 1000.0 - by_hash[match.group(1)])
    return latencies


def _wait_lines(page, selector: str, timeout: float = 60_000) -> None:
    """Wait until the plot image shows a curve: enough pixels of matplotlib's first series colour (C0)."""

    from workbench.images import decode_image_bytes

    deadline = time.time() + timeout / 1000
    count = 0
    while time.time() < deadline:
        img = page.locator(f"{selector} img")
        if img.count():
            rgb = decode_image_bytes(img.first.screenshot())
            r, b = rgb[..., 0] * 255.0, rgb[..., 2] * 255.0
            count = int(((b - r > 50) & (b > 120)).sum())  # C0 blue, also where the line is anti-aliased
            if count > 150:
                return
        time.sleep(1.0)
    raise AssertionError(f"{selector} shows no curve ({count} line pixels)")


def _step(page) -> int:
    match = re.search(r"Step (\d+)", page.locator("#train-step").inner_text())
    assert match, page.locator("#train-step").inner_text()
    return int(match.group(1))


def _shot(page, folder: Path, name: str) -> None:
    """A full-page screenshot kept with the test's temporary files (and in test-artifacts/ on failure)."""
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _report(merge: list[float], preview: list[float]) -> None:
    result = {
        "merge_setting_to_frame_s": {"median": statistics.median(merge), "max": max(merge), "n": len(merge),
                                     "target": MERGE_TARGET_S},
        "preview_write_to_display_s": {"median": statistics.median(preview), "max": max(preview), "n": len(preview),
                                       "target": POLL_SECONDS + 0.5, "poll_interval": POLL_SECONDS},
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    ARTIFACTS.parent.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS.parent / "app_latency.json").write_text(json.dumps(result, indent=2))
    print("\napp latency (s): merge setting -> frame median {:.3f} max {:.3f} (target {}); "
          "preview write -> display median {:.3f} max {:.3f} (target {})".format(
              result["merge_setting_to_frame_s"]["median"], result["merge_setting_to_frame_s"]["max"],
              MERGE_TARGET_S, result["preview_write_to_display_s"]["median"],
              result["preview_write_to_display_s"]["max"], POLL_SECONDS + 0.5))
