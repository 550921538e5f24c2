"""The Jobs tab in Chromium: the queue of every project, cancel, "Run as a job" from the Extract tab, the log.

A queued job of a second project is cancelled from the page; then the Extract tab's "Run as a job" queues a
real extraction of two stills, which starts a detached job server; the Jobs tab shows it running and done
(progress from the extraction journal) and its log. The queue lives in a temporary ``$WORKBENCH_HOME``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from test_app_browser import CHROMIUM, _need, _tab, served_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "app"


def test_jobs_tab_in_the_browser(tmp_path, data_dir, monkeypatch, request):
    _need(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import expect
    except ImportError:
        _need(False, "the playwright package is missing")
    from workbench.app import build_app
    from workbench.cli import main as cli_main
    from workbench.jobs import JobStore, add_job, server_running

    home = tmp_path / "home"
    monkeypatch.setenv("WORKBENCH_HOME", str(home))  # the page's queue and the server it starts
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    proj, other = tmp_path / "stills_proj", tmp_path / "other_proj"
    assert cli_main(["new", str(proj), "--src", str(data_dir / "stills" / "biden"), "--face-size", "96"]) == 0
    assert cli_main(["new", str(other), "--src", str(data_dir / "stills" / "obama"), "--face-size", "96"]) == 0
    store = JobStore()
    waiting = add_job(store, other, "sort", ["--side", "src", "--by", "blur"], device="cpu")
    demo = build_app(proj)
    with served_page(demo) as page:
        try:
            _tab(page, "Jobs")
            table = page.locator("#jobs-table")
            expect(table).to_contain_text("other_proj", timeout=30_000)
            expect(table).to_contain_text("queued")
            expect(page.locator("#jobs-queue-note")).to_contain_text("no job server is running")

            # cancel the other project's queued job from the page
            box = page.locator("#jobs-id input[type=number]").first
            box.fill(str(waiting.id))
            page.locator("#jobs-cancel").click()
            expect(page.locator("#jobs-status")).to_contain_text(f"#{waiting.id}")
            expect(table).to_contain_text("cancelled", timeout=30_000)
            assert store.get(waiting.id).state == "cancelled"

            # run an extraction of the open project as a job: a server starts, the job runs and finishes
            _tab(page, "2 · Extract")
            page.get_by_label("src", exact=True).first.check()
            page.locator("#extract-job-btn").click()
            expect(page.locator("#extract-status")).to_contain_text("Queued job", timeout=30_000)
            job = store.list()[-1]
            assert job.stage == "extract" and job.project == str(proj.resolve())
            assert "--side src" in " ".join(job.argv) or job.argv[:2] == ("--side", "src")
            _tab(page, "Jobs")
            expect(table).to_contain_text("stills_proj")
            expect(table).to_contain_text("done", timeout=180_000)
            expect(table).to_contain_text("100% · done")
            box.fill(str(job.id))
            page.get_by_role("button", name="Show log").click()
            expect(page.locator("#jobs-log textarea")).to_have_value(
                re.compile("faces written:\\s+2"), timeout=30_000)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "jobs_tab.png"), full_page=True)
        except BaseException:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            raise
        assert store.get(job.id).state == "done"
        assert len(list((proj / "aligned" / "src").glob("*.jpg"))) == 2
        deadline = time.monotonic() + 30
        while server_running(store) and time.monotonic() < deadline:  # it exits when the queue is idle
            time.sleep(0.2)
        assert not server_running(store)
