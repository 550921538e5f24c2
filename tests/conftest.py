"""Shared fixtures. Real media come from ../shared/data (or $WORKBENCH_TEST_DATA).

Without that folder, tests that need it are skipped with a clear reason on a user's machine,
and they FAIL when the ``CI`` environment variable is set, so CI never passes on skipped data tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from workbench.testdata import ENV_VAR, shared_data_dir

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _missing_data(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so tests that need real media must not be skipped)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real-media folder; skip (or fail under CI) when absent."""
    path = shared_data_dir()
    if path is None:
        _missing_data(f"real test media not found: put them in ../shared/data or set {ENV_VAR}")
    return path


@pytest.fixture(scope="session")
def data_file(data_dir):
    """Return a function mapping a relative name to a file in the shared media folder."""

    def get(relative: str) -> Path:
        path = data_dir / relative
        if not path.exists():
            _missing_data(f"test media file missing: {path}")
        return path

    return get


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
