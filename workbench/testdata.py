"""Where the real test media live (``../shared/data`` beside the checkout, or ``$WORKBENCH_TEST_DATA``)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "WORKBENCH_TEST_DATA"


def shared_data_dir() -> Path | None:
    """Return the shared test-media folder, or None when it is absent (a user's fresh clone)."""
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override).expanduser()
        return path if path.is_dir() else None
    repo_root = Path(__file__).resolve().parent.parent
    for candidate in (repo_root.parent / "shared" / "data", repo_root / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return None
