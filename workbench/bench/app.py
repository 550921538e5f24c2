"""App latency: ``python -m workbench.bench app [--measure]``.

The numbers come from the browser test (``tests/test_app_browser.py``), which drives the real app in Chromium and
writes ``test-artifacts/app_latency.json``:

- merge-setting change -> the re-rendered frame displayed in the page (target < 0.5 s; the model prediction
  is cached per frame, so only the compositing runs);
- trainer preview write (file mtime) -> the preview displayed (target < poll interval + 0.5 s).

And from the Segment tab's browser test (``tests/test_app_browser_segment.py``, ``test-artifacts/segment_latency.json``):

- XSeg editor click -> its point drawn in the overlay (target < 0.2 s; exit status 1 when missed);
- XSeg editor click -> the saved polygons back from the server (reported beside it).

``--measure`` runs that test first (it needs the shared test media, Chromium at /usr/bin/chromium and Playwright).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULT = REPO / "test-artifacts" / "app_latency.json"
SEGMENT_RESULT = REPO / "test-artifacts" / "segment_latency.json"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.bench app", description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help="run the browser test first (about 2 minutes)")
    args = parser.parse_args(argv)
    if args.measure:
        tests = [REPO / "tests" / "test_app_browser.py", REPO / "tests" / "test_app_browser_segment.py"]
        if not all(t.is_file() for t in tests):
            print(f"the browser tests are not here ({tests[0].parent}); run from a source checkout")
            return 1
        code = subprocess.call([sys.executable, "-m", "pytest", *map(str, tests), "-q", "-s", "-p", "no:cacheprovider"],
                               cwd=REPO)
        if code:
            print(f"the browser test failed (exit {code}); no new numbers")
            return code
    if not RESULT.is_file() and not SEGMENT_RESULT.is_file():
        print(f"no measurement yet ({RESULT}): run `python -m workbench.bench app --measure` "
              "or `python -m pytest tests/test_app_browser.py tests/test_app_browser_segment.py`")
        return 1
    data = json.loads(RESULT.read_text()) if RESULT.is_file() else {}
    rows = [("merge setting -> frame shown", data["merge_setting_to_frame_s"]),
            ("trainer preview write -> shown", data["preview_write_to_display_s"])] if data else []
    segment = json.loads(SEGMENT_RESULT.read_text()) if SEGMENT_RESULT.is_file() else None
    if segment:
        rows += [("XSeg editor click -> overlay", segment["click_to_overlay_s"]),
                 ("XSeg editor click -> saved", segment["click_to_saved_s"])]
    print(f"app latency, measured {data.get('measured', (segment or {}).get('measured', '?'))} in Chromium (seconds)")
    print(f"{'':34s} {'median':>8s} {'max':>8s} {'n':>4s} {'target':>8s}  ok")
    for name, row in rows:
        ok = "yes" if row["median"] < row["target"] else "NO"
        print(f"{name:34s} {row['median']:8.3f} {row['max']:8.3f} {row['n']:4d} {row['target']:8.2f}  {ok}")
    if segment:
        load = " ".join(f"{v:.2f}" for v in segment.get("load_average", []))
        print(f"XSeg editor clicks measured {segment.get('measured', '?')}, load average {load}")
        if segment["click_to_overlay_s"]["median"] >= segment["click_to_overlay_s"]["target"]:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
