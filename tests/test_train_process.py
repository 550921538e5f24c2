"""The background trainer as a real process: start(), command files, SIGKILL safety, DDP under torchrun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_fixtures import fast_options, make_faceset, one_torch_thread  # noqa: F401  (fixtures)

from workbench.errors import TrainingError
from workbench.train import (
    Trainer,
    latest_preview,
    load_checkpoint,
    prepare_run,
    read_metrics,
    read_status,
    send_command,
    start,
    wait_for_state,
)
from workbench.train.runs import checkpoint_path

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX signals and flock")
ENV = {"OMP_NUM_THREADS": "1"}  # the test machine is shared; one thread per trainer process


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    base = tmp_path_factory.mktemp("synth")
    return make_faceset(base / "src", 8, seed=1), make_faceset(base / "dst", 8, seed=2)


def _wait(predicate, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _log(run: Path) -> str:
    path = run / "trainer.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


# (6) ------------------------------------------------------------------------------------------------------------
def test_commands_and_state_transitions(synth, tmp_path):
    src, dst = synth
    run = tmp_path / "run"
    handle = start(run, fast_options(preview_every=5), src=src, dst=dst, env=ENV)
    try:
        assert handle.pid > 0 and handle.is_alive()
        # a second trainer on the same folder is refused with a clear error
        _wait(lambda: read_status(run).state == "running" or not handle.is_alive(), what="running\n" + _log(run))
        assert handle.is_alive(), _log(run)
        with pytest.raises(TrainingError, match="already running"):
            start(run, fast_options(), src=src, dst=dst)
        _wait(lambda: read_status(run).step >= 5, what="5 steps")
        send_command(run, "pause")
        paused = wait_for_state(run, "paused", timeout=60)
        time.sleep(0.5)
        assert read_status(run).step == paused.step  # really paused
        assert paused.alive and paused.pid == handle.pid and paused.is_active
        send_command(run, "preview")
        send_command(run, "resume")
        wait_for_state(run, "running", timeout=60)
        step = read_status(run).step
        _wait(lambda: read_status(run).step > step + 3, what="steps after resume")
        send_command(run, "save")
        send_command(run, "stop")
        assert handle.wait(timeout=120) == 0, _log(run)
    finally:
        if handle.is_alive():
            handle.process.kill()
    final = read_status(run)
    assert final.state == "stopped" and not final.alive and final.last_save_step == final.step
    assert latest_preview(run) is not None
    states = [r.get("state") for r in read_metrics(run) if r.get("kind") == "end"]
    assert states == ["stopped"]
    assert load_checkpoint(run)["step"] == final.step
    assert not list((run / "commands").iterdir())


# (4) ------------------------------------------------------------------------------------------------------------
def test_sigkill_at_any_moment_leaves_a_loadable_checkpoint(synth, tmp_path):
    """Saving every step, the process is killed (-9) while it writes checkpoints; the latest loads and resumes."""
    src, dst = synth
    run = tmp_path / "run"
    options = fast_options(save_every_steps=1)
    handle = start(run, options, src=src, dst=dst, env=ENV)
    try:
        _wait(lambda: read_status(run).step >= 6 or not handle.is_alive(), what="6 steps\n" + _log(run))
        assert handle.is_alive(), _log(run)
        os.kill(handle.pid, signal.SIGKILL)
        handle.wait(timeout=30)
    finally:
        if handle.is_alive():
            handle.process.kill()
    status = read_status(run)
    assert status.stale and status.state in ("running", "saving")  # the file still says it runs: the pid is dead
    killed_at = load_checkpoint(checkpoint_path(run))["step"]
    assert killed_at >= 5
    handle = start(run, options.replace(save_every_steps=0), src=src, dst=dst, max_steps=4, env=ENV)
    assert handle.wait(timeout=120) == 0, _log(run)
    final = read_status(run)
    assert final.state == "stopped" and final.step == killed_at + 4
    assert load_checkpoint(run)["step"] == killed_at + 4
    assert not list((run / "checkpoints").glob(".*tmp*"))  # temp files of the killed write were cleaned up


def test_sigterm_saves_and_stops(synth, tmp_path):
    src, dst = synth
    run = tmp_path / "run"
    handle = start(run, fast_options(), src=src, dst=dst, env=ENV)
    _wait(lambda: read_status(run).step >= 3 or not handle.is_alive(), what="3 steps\n" + _log(run))
    handle.process.terminate()
    assert handle.wait(timeout=60) == 0, _log(run)
    final = read_status(run)
    assert final.state == "stopped" and load_checkpoint(run)["step"] == final.step


def test_bad_run_is_reported_in_status(synth, tmp_path):
    src, dst = synth
    run = tmp_path / "run"
    Trainer(fast_options(), src, dst, run_dir=run).run(steps=1)
    prepare_run(run, fast_options(), src=src, dst=dst)
    # another config in config.json (as if edited by hand): the child reports the mismatch in status.json
    import json

    data = json.loads((run / "config.json").read_text())
    data["options"]["ae_dims"] = 64
    (run / "config.json").write_text(json.dumps(data))
    proc = subprocess.run([sys.executable, "-m", "workbench.train", str(run)], capture_output=True, text=True,
                          env={**os.environ, **ENV}, timeout=120)
    assert proc.returncode == 2 and "ae_dims" in proc.stderr
    status = read_status(run)
    assert status.state == "error" and "ae_dims" in status.last_error


# (5) ------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one_process(synth, tmp_path):
    """torchrun, 2 CPU processes (gloo), global batch 4: identical weights on both ranks, and the same
    weights as one process training on the same global batch."""
    src, dst = synth
    options = fast_options(batch_size=4, optimizer="adabelief", lr=1e-3, random_src_flip=True,
                           precision="fp32")  # fp32 tolerance; auto is bf16 on AVX512-BF16 CPUs
    prepare_run(tmp_path / "ddp", options, src=src, dst=dst, max_steps=4)
    package_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, **ENV, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "workbench.train", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    status = read_status(tmp_path / "ddp")
    assert status.state == "stopped" and status.step == 4
    events = [r for r in read_metrics(tmp_path / "ddp") if r.get("event") == "ranks_in_sync"]
    assert events and events[-1]["ok"] is True and len(events[-1]["checksums"]) == 2

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = Trainer(options, src, dst, run_dir=tmp_path / "single")
        single.run(steps=4)
    finally:
        torch.set_num_threads(old)
    ddp_weights = load_checkpoint(tmp_path / "ddp")["model"]
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp_weights[name], value, rtol=1e-4, atol=1e-5, msg=name)
