"""The Train tab in Chromium on a small synthetic project: after the first training step no "starting" text is
left on the page (neither the live status nor an earlier "starting up" refusal of a second Start click).

Reproduced before the fix: a second Start click while the trainer loaded got "already training (pid None)",
and that warning stayed above the status for the whole run."""

from __future__ import annotations

import json
import re
import time

import pytest
from test_app_browser import CHROMIUM, POLL_SECONDS, _need, _set_number, _tab, served_page
from train_fixtures import make_faceset

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_no_starting_text_once_training_runs(tmp_path, monkeypatch):
    _need(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import expect
    except ImportError:
        _need(False, "the playwright package is missing")
    from pathlib import Path

    from workbench.app import build_app
    from workbench.train import read_status, send_command

    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))  # the trainer runs this checkout
    root = tmp_path / "proj"
    root.mkdir()
    (root / "workbench.json").write_text(json.dumps({"schema_version": 1, "name": "t"}))
    make_faceset(root / "aligned" / "src", 8, size=64, seed=1)
    make_faceset(root / "aligned" / "dst", 8, size=64, seed=2)
    demo = build_app(root, poll_seconds=POLL_SECONDS)
    run_dir = root / "models" / "tiny"
    with served_page(demo) as page:
        try:
            _tab(page, "3 · Train")
            expect(page.locator("#run-name input")).to_have_value("tiny", timeout=30_000)
            for name, value in (("batch_size", "4"), ("metrics_every", "0"), ("preview_every", "5")):
                _set_number(page, f"#opt-{name}", value)
            page.get_by_text("All other options").click()
            for name, value in (("metrics_samples", "2"), ("loader_workers", "0"), ("cpu_threads", "1")):
                _set_number(page, f"#opt-{name}", value)
            page.locator("#start-btn").click()
            expect(page.locator("#train-action")).to_contain_text("Started the trainer", timeout=30_000)
            page.locator("#start-btn").click()  # too early: refused while the trainer starts up
            expect(page.locator("#train-action")).to_contain_text(re.compile("starting up|already training"))
            assert "pid None" not in page.locator("#train-action").inner_text()  # it was "already training"
            expect(page.locator("#train-step")).to_contain_text(re.compile(r"Step [1-9]"), timeout=240_000)
            time.sleep(3 * POLL_SECONDS)  # a few polls after the first step
            assert "starting" not in page.locator("#train-status").inner_text()
            assert "starting up" not in page.locator("#train-action").inner_text(), \
                page.locator("#train-action").inner_text()
            expect(page.locator("#train-status")).to_contain_text("running")
        finally:
            if read_status(run_dir).is_active:
                send_command(run_dir, "stop")
                deadline = time.monotonic() + 120
                while read_status(run_dir).is_active and time.monotonic() < deadline:
                    time.sleep(0.5)
