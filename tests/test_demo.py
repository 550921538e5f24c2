"""`workbench demo`: the README's main job runs offline and produces a playable video and a contact sheet."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from workbench.export import read_provenance
from workbench.images import read_image
from workbench.video import iter_frames, probe_video


@pytest.mark.slow
def test_demo_runs_offline_end_to_end(tmp_path):
    folder = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "workbench", "demo", str(folder), "--minutes", "0.75", "--seconds", "2", "--quiet"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "synthetic media" in result.stdout
    video = folder / "output" / "demo_swap.mp4"
    sheet = folder / "output" / "contact_sheet.png"
    info = probe_video(video)
    source = probe_video(next((folder / "media" / "dst").glob("*.mp4")))
    assert info.frame_count == source.frame_count == 48
    assert abs(info.duration - source.duration) <= 1.0 / 24 + 1e-3
    assert info.has_audio and info.codec == "h264"
    frames = [f.image for f in iter_frames(video)]
    assert len(frames) == 48 and frames[0].shape == (384, 384, 3)
    assert np.abs(frames[0] - frames[-1]).mean() > 0.01  # the camera moves: not a frozen frame
    provenance = read_provenance(video)
    assert provenance["tool"] == "Face-Swap Workbench" and "synthetic" in provenance["statement"]
    grid = read_image(sheet)
    assert grid.shape[0] >= 512 and grid.shape[1] >= 1024
    # a second run resumes instead of starting again
    again = subprocess.run(
        [sys.executable, "-m", "workbench", "demo", str(folder), "--minutes", "0.1", "--seconds", "2", "--quiet"],
        capture_output=True, text=True, timeout=900,
    )
    assert again.returncode == 0, again.stderr[-3000:]

    def steps(text: str) -> int:
        return int(re.search(r"training:\s+(\d+) steps", text).group(1))

    assert steps(again.stdout) > steps(result.stdout) > 0  # training continued from the saved checkpoint
