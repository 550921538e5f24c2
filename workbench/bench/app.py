"""App latency: ``python -m workbench.bench app [--measure]``.

The numbers come from the browser test (``tests/test_app_browser.py``), which drives the real app in Chromium and
writes ``test-artifacts/app_latency.json``:

- merge-setting change -> the re-rendered frame displayed in the page (target < 0.5 s; the model prediction
  is cached per frame, so only the compositing runs);
- trainer preview write (file mtime) -> the preview displayed (target < poll interval + 0.5 s).

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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.bench app", description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help="run the browser test first (about 2 minutes)")
    args = parser.parse_args(argv)
    if args.measure:
        test = REPO / "tests" / "test_app_browser.py"
        if not test.is_file():
            print(f"the browser test is not here ({test}); run from a source checkout")
            return 1
        code = subprocess.call([sys.executable, "-m", "pytest", str(test), "-q", "-s", "-p", "no:cacheprovider"],
                               cwd=REPO)
        if code:
            print(f"the browser test failed (exit {code}); no new numbers")
            return code
    if not RESULT.is_file():
        print(f"no measurement yet ({RESULT}): run `python -m workbench.bench app --measure` "
              "or `python -m pytest tests/test_app_browser.py`")
        return 1
    data = json.loads(RESULT.read_text())
    rows = [("merge setting -> frame shown", data["merge_setting_to_frame_s"]),
            ("trainer preview write -> shown", data["preview_write_to_display_s"])]
    print(f"app latency, measured {data.get('measured', '?')} in Chromium (seconds)")
    print(f"{'':34s} {'median':>8s} {'max':>8s} {'n':>4s} {'target':>8s}  ok")
    for name, row in rows:
        ok = "yes" if row["median"] < row["target"] else "NO"
        print(f"{name:34s} {row['median']:8.3f} {row['max']:8.3f} {row['n']:4d} {row['target']:8.2f}  {ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
