"""The shared run loop (workbench.train.loop): a small honest task drives every branch of the protocol, and the
loop stays simple (mccabe complexity <= 10 for the loop and both trainers' run())."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from workbench.train.callback import Callback
from workbench.train.device import DistContext
from workbench.train.loop import LOG_EVERY, RunControl, RunLoop

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Opts:
    target_steps: int = 0
    preview_every: int = 0
    metrics_every: int = 0
    save_every_seconds: float = 0.0


class CountingTask(RunControl):
    """A task whose 'model' is a number: each step adds 1, the loss is 1/step; saves, previews and evaluations
    are recorded with the step they saw."""

    def __init__(self, options: Opts, callbacks=(), fail_at: int | None = None):
        self.options, self.callbacks, self.fail_at = options, list(callbacks), fail_at
        self.dist = DistContext()
        self._init_control()
        self.step = 0
        self.saves: list[int] = []

    def train_step(self) -> dict[str, float]:
        if self.step == self.fail_at:
            raise ValueError("boom")
        self.step += 1
        return {"loss": 1.0 / self.step}

    def evaluate(self) -> dict[str, float]:
        return {"score": float(self.step)}

    def preview(self) -> np.ndarray:
        return np.full((2, 2, 3), self.step / 100, np.float32)

    def save(self) -> None:
        self.saves.append(self.step)
        self.last_save_step = self.step

    def mean_losses(self) -> dict[str, float]:
        return {"loss": float(np.mean([r["loss"] for r in self._recent]))} if self._recent else {}


class Recorder(Callback):
    def __init__(self, on_step=None):
        self.events: list[tuple] = []
        self.on_step = on_step

    def on_start(self, t):
        self.events.append(("start", t.step))

    def on_step_end(self, t, losses):
        self.events.append(("step", t.step))
        if self.on_step:
            self.on_step(t)

    def on_idle(self, t):
        self.events.append(("idle", t.step))
        t.resume()

    def on_preview(self, t, grid):
        self.events.append(("preview", t.step, round(float(grid.mean()) * 100)))

    def on_metrics(self, t, row):
        self.events.append((row["kind"], row["step"]))

    def on_event(self, t, event):
        if event["kind"] == "state":
            self.events.append(("state", event["state"]))

    def on_end(self, t, state, error):
        self.events.append(("end", state, type(error).__name__ if error else None))

    def of(self, kind):
        return [e for e in self.events if e[0] == kind]


def test_steps_limit_previews_metrics_and_the_final_save():
    rec = Recorder()
    task = CountingTask(Opts(preview_every=5, metrics_every=4), [rec])
    result = RunLoop(task, steps=12).run()
    assert (result.state, result.step, result.steps_run) == ("stopped", 12, 12)
    assert result.losses["loss"] == pytest.approx(np.mean([1 / i for i in range(1, 13)]))
    assert rec.of("preview") == [("preview", 1, 1), ("preview", 5, 5), ("preview", 10, 10)]  # first one at once
    assert rec.of("eval") == [("eval", 4), ("eval", 8), ("eval", 12)] and task.last_metrics["score"] == 12.0
    assert rec.of("train") == [("train", LOG_EVERY)]
    assert task.saves == [12] and task.session_limit_step == 12
    assert rec.events[0] == ("state", "running") and rec.events[1] == ("start", 0)
    assert rec.events[-1] == ("end", "stopped", None) and task.state == "stopped"
    # a second session continues the count; nothing new to save when no step ran
    assert RunLoop(task, steps=3).run().step == 15 and task.saves == [12, 15]
    assert RunLoop(task, steps=0).run().steps_run == 0 and task.saves == [12, 15]


def test_target_steps_finish_and_stop_request():
    task = CountingTask(Opts(target_steps=7))
    assert RunLoop(task).run().state == "finished" and task.step == 7
    assert RunLoop(task).run().steps_run == 0  # already there

    stopper = Recorder(on_step=lambda t: t.request_stop() if t.step == 3 else None)
    task = CountingTask(Opts(), [stopper])
    assert RunLoop(task).run().state == "stopped" and task.step == 3 and task.saves == [3]


def test_pause_idles_then_resumes_and_commands_are_obeyed():
    def control(t):
        if t.step == 2:
            t.pause()
        if t.step == 4:
            t.request_save()
            t.request_preview()

    rec = Recorder(on_step=control)
    task = CountingTask(Opts(), [rec])
    RunLoop(task, steps=6).run()
    states = [e[1] for e in rec.of("state")]
    assert states[:3] == ["running", "paused", "running"] and rec.of("idle") == [("idle", 2)]
    assert task.saves == [4, 6] and ("preview", 4, 4) in rec.events


def test_errors_end_the_session_as_error_and_reach_the_callbacks():
    rec = Recorder()
    task = CountingTask(Opts(), [rec], fail_at=5)
    with pytest.raises(ValueError, match="boom"):
        RunLoop(task, steps=10).run()
    assert task.state == "error" and rec.events[-1] == ("end", "error", "ValueError") and task.saves == []

    class Interrupted(CountingTask):
        def train_step(self):
            if self.step == 2:
                raise KeyboardInterrupt
            return super().train_step()

    task = Interrupted(Opts())
    assert RunLoop(task, steps=10).run().state == "stopped" and task.saves == [2]  # Ctrl-C saves


def test_collapse_events_are_kept_and_bounded():
    task = CountingTask(Opts())
    for i in range(60):
        task._event({"kind": "skip", "step": i})
    task._event({"kind": "state", "state": "running"})
    assert len(task.collapse_events) == 50 and task.collapse_events[-1]["step"] == 59


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (pip install -e '.[test]')")
def test_the_loop_and_both_trainers_run_stay_simple():
    files = ["workbench/train/loop.py", "workbench/train/trainer.py", "workbench/segment/trainer.py"]
    result = subprocess.run(["ruff", "check", "--select", "C901", "--config", "lint.mccabe.max-complexity = 10",
                             "--output-format", "json", "--exit-zero", *files], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    too_complex = [(Path(r["filename"]).name, r["message"]) for r in json.loads(result.stdout)]
    offending = [(f, m) for f, m in too_complex if f == "loop.py" or m.startswith("`run`")]
    assert offending == []


@pytest.mark.parametrize("which", ["face", "xseg"])
def test_a_second_background_trainer_leaves_the_running_ones_status_alone(tmp_path, which):
    """Both entry points share train.foreground.background_main: a trainer that finds the run folder locked
    exits with 2 and does not overwrite the status of the trainer that holds it (XSeg's own copy used to)."""
    from workbench.train.runs import RunLock, read_status, write_status

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if which == "face":
        from train_fixtures import make_faceset

        from workbench.train import prepare_run, preset
        from workbench.train.foreground import main

        faces = make_faceset(tmp_path / "faces", 8)
        prepare_run(run_dir, preset("tiny"), src=faces, dst=faces)
    else:
        from workbench.segment.trainer import XSegOptions, main, write_xseg_config

        write_xseg_config(run_dir, XSegOptions(), [tmp_path], None, None)
    with RunLock(run_dir):
        write_status(run_dir, {"state": "running", "step": 7, "pid": 1})
        assert main([str(run_dir)]) == 2
        status = read_status(run_dir)
        assert (status.state, status.step, status.last_error) == ("running", 7, None)
    (run_dir / "config.json").write_text("{not json")
    assert main([str(run_dir)]) == 2 and read_status(run_dir).state == "error"  # an unreadable config is shown
