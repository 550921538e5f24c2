"""The run-folder protocol without training: commands, status, the live-trainer lock, run listing, start checks."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from train_fixtures import fast_options, make_faceset

from workbench.errors import ConfigError, TrainingError
from workbench.train import (
    COMMANDS,
    latest_preview,
    list_runs,
    prepare_run,
    read_metrics,
    read_status,
    send_command,
    trainer_pid,
)
from workbench.train.runs import RunLock, take_commands, write_status


def test_commands_are_taken_in_order_and_deleted(tmp_path):
    for name in ("pause", "save", "resume"):
        send_command(tmp_path, name)
        time.sleep(0.01)
    (tmp_path / "commands" / "bogus").write_text("x")
    (tmp_path / "commands" / "123_stop").write_text("")  # a user's `touch` with a prefix works too
    assert take_commands(tmp_path) == ["pause", "save", "resume", "stop"]
    assert list((tmp_path / "commands").iterdir()) == []
    assert take_commands(tmp_path) == []
    with pytest.raises(TrainingError, match="unknown trainer command"):
        send_command(tmp_path, "explode")
    assert set(COMMANDS) == {"pause", "resume", "save", "preview", "stop"}


def test_status_round_trip_and_defaults(tmp_path):
    empty = read_status(tmp_path)
    assert empty.state == "new" and empty.step == 0 and not empty.alive and latest_preview(tmp_path) is None
    write_status(tmp_path, {"state": "running", "step": 12, "it_per_s": 3.5, "losses": {"src": 0.5, "dst": 0.25},
                            "pid": 999_999_999, "collapse_events": [{"kind": "skip", "step": 3}], "extra": 1})
    status = read_status(tmp_path)
    assert (status.state, status.step, status.it_per_s) == ("running", 12, 3.5)
    assert status.losses["src"] == 0.5 and status.collapse_events[0]["step"] == 3
    assert status.stale and not status.is_active  # claims to run but no process holds the folder
    assert "crashed" in status.summary()
    with pytest.raises(TypeError):
        status.losses["src"] = 1.0  # read-only snapshot
    assert read_metrics(tmp_path) == []


def test_lock_detects_a_live_trainer_and_releases_on_death(tmp_path):
    assert trainer_pid(tmp_path) is None
    with RunLock(tmp_path):
        assert trainer_pid(tmp_path) == os.getpid()
        with pytest.raises(TrainingError, match="already running"):
            RunLock(tmp_path).acquire()
    assert trainer_pid(tmp_path) is None
    # a process that dies (SIGKILL) never leaves the folder locked
    code = f"from workbench.train.runs import RunLock; RunLock({str(tmp_path)!r}).acquire(); import time; time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        while trainer_pid(tmp_path) != proc.pid and time.monotonic() < deadline:
            time.sleep(0.05)
        assert trainer_pid(tmp_path) == proc.pid
    finally:
        proc.kill()
        proc.wait()
    assert trainer_pid(tmp_path) is None


def test_prepare_run_checks_inputs(tmp_path):
    options = fast_options(batch_size=4)
    with pytest.raises(TrainingError, match="no facesets"):
        prepare_run(tmp_path / "run", options)
    with pytest.raises(TrainingError, match="does not exist"):
        prepare_run(tmp_path / "run", options, src=tmp_path / "nope", dst=tmp_path / "nope")
    src = make_faceset(tmp_path / "src", 3)
    dst = make_faceset(tmp_path / "dst", 6, seed=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match="has 0 face"):
        prepare_run(tmp_path / "run", options, src=tmp_path / "empty", dst=dst)
    with pytest.raises(TrainingError, match="needs at least 4") as info:
        prepare_run(tmp_path / "run", options, src=src, dst=dst)
    assert "--batch-size 3" in str(info.value)
    config = prepare_run(tmp_path / "run", options.replace(batch_size=2), src=src, dst=dst)
    assert (tmp_path / "run" / "config.json").exists() and config.src_dir == src.resolve()
    with RunLock(tmp_path / "run"), pytest.raises(TrainingError, match="already running"):
        prepare_run(tmp_path / "run", options.replace(batch_size=2), src=src, dst=dst)


def test_list_runs(tmp_path):
    models = tmp_path / "models"
    for name in ("b", "a"):
        (models / name).mkdir(parents=True)
        write_status(models / name, {"state": "stopped", "step": 5})
    (models / "not_a_run").mkdir()
    runs = list_runs(tmp_path)
    assert [r.name for r in runs] == ["a", "b"] and all(r.state == "stopped" for r in runs)
    assert list_runs(tmp_path / "nowhere") == []


def test_latest_run_is_the_most_recent_activity_and_every_front_end_uses_it(tmp_path):
    import json

    from workbench.commands.merge import find_run
    from workbench.commands.train import _pick_run
    from workbench.export import describe_model
    from workbench.project import Project, create_project
    from workbench.train.runs import checkpoint_path, latest_run

    project = create_project(tmp_path / "p")
    models = project.models_dir
    now = time.time()

    def make(name: str, status_age: float, ckpt_age: float | None) -> None:
        run_dir = models / name
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_text(json.dumps({"options": {"archi": "df", "resolution": 64}}))
        (run_dir / "status.json").write_text(json.dumps({"state": "stopped", "step": 7, "updated": now - status_age}))
        if ckpt_age is not None:
            ckpt = checkpoint_path(run_dir)
            ckpt.parent.mkdir(parents=True)
            ckpt.write_bytes(b"x")
            os.utime(ckpt, (now - ckpt_age, now - ckpt_age))
        os.utime(run_dir, (now - 1000, now - 1000))  # folder times must not matter

    assert latest_run(project) is None
    make("old", status_age=500, ckpt_age=10)  # its model was saved last
    make("fresh", status_age=50, ckpt_age=400)
    make("nomodel", status_age=5, ckpt_age=None)  # most recent activity, but nothing to merge with
    assert latest_run(project).name == "nomodel"
    assert latest_run(project, require_checkpoint=True).name == "old"
    assert _pick_run(models, None).name == "nomodel"
    assert find_run(models, None).name == "old"
    assert describe_model(Project.open(project.root)).startswith("workbench run 'old' (archi=df, resolution=64)")
    assert describe_model(project, "fresh").startswith("workbench run 'fresh'")
    with pytest.raises(ConfigError, match="plain folder name"):  # a hostile run name is refused, never looked up
        describe_model(project, "../p")
