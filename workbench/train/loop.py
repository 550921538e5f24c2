"""The background-run loop shared by the face trainer and the XSeg trainer.

Both trainers speak the same run-folder protocol through callbacks (:class:`workbench.train.writer.RunDirWriter`
reads their state and obeys the command files): :class:`RunControl` is that control surface (pause, resume,
save, preview, stop, the state and speed figures), and :class:`RunLoop` drives one training session of such a
trainer, the *task*, in small named steps:

* each round: follow the control flags (``sync_control``: rank 0's decision under DDP), stop, idle while
  paused, end at ``target_steps`` (state ``finished``) or at the session's step/time limit;
* one step (``loop_step``), then every ``LOG_EVERY`` steps a "train" metrics row, a preview when asked for or
  every ``preview_every`` steps, an "eval" row (``evaluate``) every ``metrics_every`` steps, and a save when
  asked for or when ``save_due``;
* at the end ``finish_session`` (the face trainer's final preview and DDP check), a last save, and ``on_end``
  for the callbacks, also after Ctrl-C (saved, ``stopped``) or an error (``save_after_error``, ``error``).

A task provides ``options`` (``target_steps``, ``preview_every``, ``metrics_every``), ``step``, ``callbacks``,
``dist``, ``train_step``, ``evaluate``, ``preview``, ``save`` and ``mean_losses``; the hooks above have
defaults in :class:`RunControl`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .callback import TrainResult

LOG_EVERY = 10  # steps between "train" rows in metrics.jsonl
IDLE_SECONDS = 0.2  # how often a paused trainer looks at the command files


class RunControl:
    """The control surface callbacks steer, and the figures they read; a trainer inherits it.

    Call :meth:`_init_control` in the constructor. Hooks a trainer may override: :meth:`loop_step`,
    :meth:`sync_control`, :meth:`wants_first_preview`, :meth:`save_due`, :meth:`before_session`,
    :meth:`finish_session`, :meth:`save_after_error`.
    """

    callbacks: list[Any]
    step: int
    options: Any

    def _init_control(self, speed_window: int = 50) -> None:
        self.state = "starting"
        self.paused = False
        self._stop = self._save_req = self._preview_req = False
        self._preview_step: int | None = None  # the step of the last preview grid drawn
        self._step_times: deque[float] = deque(maxlen=speed_window)
        self._recent: deque[dict[str, float]] = deque(maxlen=50)
        self.session_limit_step: int | None = None
        self.last_save_step: int | None = None
        self.last_save_time: float | None = None
        self.last_metrics: dict[str, Any] = {}
        self.collapse_events: list[dict[str, Any]] = []

    # ---- commands (from the run folder's command files, a notebook, a signal handler) ----
    def request_stop(self) -> None:
        self._stop = True

    def request_save(self) -> None:
        self._save_req = True

    def request_preview(self) -> None:
        self._preview_req = True

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    # ---- state and events ----
    def _set_state(self, state: str) -> None:
        self.state = state
        self._event({"kind": "state", "state": state})

    def _event(self, event: dict[str, Any]) -> None:
        if event["kind"] in ("skip", "rollback", "save_refused"):
            self.collapse_events.append(event)
            self.collapse_events = self.collapse_events[-50:]
        for cb in self.callbacks:
            cb.on_event(self, event)

    def _write_checkpoint(self, path: Any, checkpoint: dict[str, Any],
                          after_write: Callable[[Path], None] | None = None) -> Path:
        """Save ``checkpoint`` atomically to ``path`` while the state reads "saving"; tell the callbacks."""
        from .checkpoint import save_checkpoint  # torch: imported only by a trainer that saves

        previous = self.state
        self._set_state("saving")
        written = save_checkpoint(path, checkpoint)
        if after_write is not None:
            after_write(written)
        self.last_save_step, self.last_save_time = self.step, time.time()
        self._set_state(previous if previous != "saving" else "running")
        for cb in self.callbacks:
            cb.on_save(self, written)
        return written

    def _emit_preview(self) -> None:
        grid = self.preview()  # type: ignore[attr-defined]
        self._preview_step = self.step
        for cb in self.callbacks:
            cb.on_preview(self, grid)

    # ---- speed ----
    @property
    def it_per_s(self) -> float:
        if len(self._step_times) < 2:
            return 0.0
        span = self._step_times[-1] - self._step_times[0]
        return (len(self._step_times) - 1) / span if span > 0 else 0.0

    def eta_seconds(self, limit_step: int | None = None) -> float | None:
        target = limit_step or self.options.target_steps
        if not target or self.it_per_s <= 0:
            return None
        return max(0.0, (target - self.step) / self.it_per_s)

    # ---- hooks of the loop (defaults: a single-process trainer without extras) ----
    def loop_step(self) -> dict[str, float]:
        """One training step for the loop; returns the loss terms."""
        return self.train_step()  # type: ignore[attr-defined]

    def sync_control(self) -> None:
        """Make every process follow the same control flags (DDP); nothing to do alone."""

    def wants_first_preview(self) -> bool:
        """Whether a session starts with a preview."""
        return True

    def save_due(self, seconds_since_save: float) -> bool:
        """Whether a periodic save is due now."""
        every = self.options.save_every_seconds
        return bool(every and seconds_since_save >= every)

    def before_session(self) -> bool:
        """Work before the first step; True when it saved (the save timer restarts)."""
        return False

    def finish_session(self, start_step: int) -> None:
        """Work after the last step of a session, before the final save."""

    def save_after_error(self, exc: BaseException) -> None:
        """What to save when the session ends with an error (default: nothing)."""


class RunLoop:
    """One training session of a :class:`RunControl` task, until ``steps`` more steps, ``seconds``,
    ``target_steps`` or a stop request. The task is saved at the end; callbacks see ``on_end``."""

    def __init__(self, task: Any, steps: int | None = None, seconds: float | None = None):
        self.task = task
        self.steps, self.seconds = steps, seconds
        self.t0 = self.last_save = time.monotonic()
        self.start_step = task.step

    def run(self) -> TrainResult:
        task = self.task
        error: BaseException | None = None
        state = "stopped"
        self._begin()
        try:
            if task.before_session():
                self.last_save = time.monotonic()
            state = self._loop()
            task.finish_session(self.start_step)
            self._save_if_unsaved()
        except KeyboardInterrupt as exc:  # Ctrl-C in the foreground: save and stop cleanly
            error, state = exc, "stopped"
            self._save_if_unsaved()
        except BaseException as exc:
            error, state = exc, "error"
            task.save_after_error(exc)
            raise
        finally:
            task.state = state
            for cb in task.callbacks:
                cb.on_end(task, state, error)
        return TrainResult(state, task.step, task.step - self.start_step, time.monotonic() - self.t0,
                           task.mean_losses(), None if error is None else str(error))

    # ---- the named steps ----
    def _begin(self) -> None:
        task = self.task
        task.session_limit_step = self.start_step + self.steps if self.steps else None
        task._set_state("running")
        task._preview_req = task._preview_req or task.wants_first_preview()
        for cb in task.callbacks:
            cb.on_start(task)

    def _loop(self) -> str:
        """Rounds until the session ends; returns the final state ("stopped" or "finished")."""
        task = self.task
        while True:
            task.sync_control()
            if task._stop:
                return "stopped"
            if task.paused:
                self._idle()
                continue
            if task.state == "paused":
                task._set_state("running")
            end = self._limit_reached()
            if end is not None:
                return end
            self._one_step()

    def _idle(self) -> None:
        task = self.task
        if task.state != "paused":
            task._set_state("paused")
        for cb in task.callbacks:
            cb.on_idle(task)
        time.sleep(IDLE_SECONDS)

    def _limit_reached(self) -> str | None:
        task = self.task
        if task.options.target_steps and task.step >= task.options.target_steps:
            return "finished"
        if self.steps is not None and task.step - self.start_step >= self.steps:
            return "stopped"
        if self.seconds is not None and time.monotonic() - self.t0 >= self.seconds:
            return "stopped"
        return None

    def _one_step(self) -> None:
        task = self.task
        vals = task.loop_step()
        task._step_times.append(time.monotonic())
        task._recent.append(vals)
        for cb in task.callbacks:
            cb.on_step_end(task, vals)
        if task.dist.is_main:
            self._report(vals)
        self._save_when_due()

    def _report(self, vals: dict[str, float]) -> None:
        """The metrics rows and previews of this step (rank 0 only)."""
        task, o = self.task, self.task.options
        if task.step % LOG_EVERY == 0:
            lr = {"lr": vals["lr"]} if "lr" in vals else {}
            row = {"kind": "train", "step": task.step, "time": time.time(), "it_per_s": task.it_per_s, **lr,
                   **{f"loss_{k}": v for k, v in task.mean_losses().items()}}
            for cb in task.callbacks:
                cb.on_metrics(task, row)
        if task._preview_req or (o.preview_every and task.step % o.preview_every == 0):
            task._preview_req = False
            task._emit_preview()
        if o.metrics_every and task.step % o.metrics_every == 0:
            row = {"kind": "eval", "step": task.step, "time": time.time(), **task.evaluate()}
            task.last_metrics = row
            for cb in task.callbacks:
                cb.on_metrics(task, row)

    def _save_when_due(self) -> None:
        task = self.task
        if task._save_req or task.save_due(time.monotonic() - self.last_save):
            task._save_req = False
            task.save()
            self.last_save = time.monotonic()

    def _save_if_unsaved(self) -> None:
        if self.task.last_save_step != self.task.step:
            self.task.save()
