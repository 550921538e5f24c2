"""`workbench demo`: the README's main job runs offline and produces a playable video and a contact sheet."""

from __future__ import annotations

import json
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
    # the 45 s cap stops training long before the step target, and the demo says so, with how to continue
    assert re.search(r"WARNING: the time cap stopped training at step \d+ of 1200", result.stdout), result.stdout
    assert f"run `workbench demo {folder.resolve()}` again" in result.stdout
    # its summary ends with the evaluation table, also saved in evaluation.json
    assert "identity: closer to source" in result.stdout and "pose: median error, degrees" in result.stdout
    evaluation = json.loads((folder / "evaluation.json").read_text())
    assert evaluation["run"] == "demo" and evaluation["frames_from"] == "merged"
    assert evaluation["summary"]["frames"] == 48 and evaluation["step"] == steps_of(result.stdout)
    if not evaluation["summary"]["identity"]["reads_as_source"]:
        assert "WARNING: the swapped face does NOT yet look like the source" in result.stdout
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

    assert steps_of(again.stdout) > steps_of(result.stdout) > 0  # training continued from the saved checkpoint


def steps_of(text: str) -> int:
    return int(re.search(r"training:\s+(\d+) steps", text).group(1))


def test_demo_step_target_resumes_and_extends_when_the_swap_is_not_good(tmp_path):
    from types import SimpleNamespace

    from workbench.demo import DEMO_RUN, DemoResult, demo_step_target
    from workbench.train.runs import write_status

    project = SimpleNamespace(root=tmp_path)
    run_dir = tmp_path / "models" / DEMO_RUN
    assert demo_step_target(project, run_dir, 300) == 300  # nothing trained yet
    run_dir.mkdir(parents=True)
    write_status(run_dir, {"state": "stopped", "step": 120})
    assert demo_step_target(project, run_dir, 300) == 300  # stopped early by the cap: resume toward the target
    write_status(run_dir, {"state": "finished", "step": 300})
    assert demo_step_target(project, run_dir, 300) == 300  # reached, not evaluated yet: evaluate first

    def evaluated(good: bool, step: int = 300) -> None:
        summary = {"identity": {"reads_as_source": good, "closer_to_src": 1.0 if good else 0.4,
                                "median_distance_src": 0.4 if good else 0.62}}
        (tmp_path / "evaluation.json").write_text(json.dumps({"run": DEMO_RUN, "step": step, "summary": summary}))

    evaluated(False)
    assert demo_step_target(project, run_dir, 300) == 600  # reached but not recognisable: 300 more
    evaluated(True)
    assert demo_step_target(project, run_dir, 300) == 300  # good: nothing more to train
    evaluated(False, step=100)
    assert demo_step_target(project, run_dir, 300) == 300  # an evaluation of another step does not count

    bad = {"identity": {"reads_as_source": False, "closer_to_src": 0.4, "median_distance_src": 0.62}}
    result = DemoResult(project, tmp_path / "v.mp4", tmp_path / "s.png", {"train": 1.0}, 300, {}, 300, False, bad,
                        "TABLE")
    text = result.format()
    assert "WARNING: the swapped face does NOT yet look like the source" in text and "40% of frames" in text
    assert "time cap" not in text and "TABLE" in text
    capped = DemoResult(project, tmp_path / "v.mp4", tmp_path / "s.png", {}, 120, {}, 300, True,
                        {"identity": {"reads_as_source": True}}, "")
    assert capped.warnings() == [f"WARNING: the time cap stopped training at step 120 of 300 (this machine is slower "
                                 f"or busier than expected); run `workbench demo {tmp_path}` again to continue "
                                 "training where it stopped"]
