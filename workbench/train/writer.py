"""Callbacks that turn a :class:`Trainer` into the run-folder protocol, and a console progress line.

:class:`RunDirWriter` is the trainer's only voice: it rewrites ``status.json`` atomically (at most every
``status_every_seconds``, and at once on every state change), appends to ``metrics.jsonl``, writes preview
PNGs atomically, and turns the command files dropped in ``commands/`` into trainer calls.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileutil import append_jsonl
from ..images import write_image
from .callback import Callback
from .runs import METRICS_NAME, PREVIEWS_DIR, STATUS_NAME, _read_json, take_commands, write_status
from .trainer import Trainer


class RunDirWriter(Callback):
    """Write status, metrics and previews into a run folder and obey its command files.

    Args:
        run_dir: the run folder.
        max_steps: the session's step limit, for the ETA (``target_steps`` is used when set).
    """

    def __init__(self, run_dir: str | Path, max_steps: int | None = None):
        self.run_dir = Path(run_dir)
        self.max_steps = max_steps
        self._last_write = 0.0
        self._started = time.time()
        self.preview_step: int | None = None
        self.last_error: str | None = None
        self.metrics: dict[str, Any] = {}
        previous = _read_json(self.run_dir / STATUS_NAME)
        if isinstance(previous, dict):  # a corrupt status.json is simply rewritten
            self._started = previous.get("started") or self._started

    # -- status -------------------------------------------------------------------------------------
    def status(self, trainer: Trainer, state: str | None = None) -> dict[str, Any]:
        o = trainer.options
        limit = o.target_steps or (trainer.session_limit_step if getattr(trainer, "session_limit_step", None) else None)
        return {
            "state": state or trainer.state,
            "step": int(trainer.step),
            "target_steps": int(limit or 0),
            "it_per_s": round(trainer.it_per_s, 4),
            "losses": {k: round(v, 6) for k, v in trainer.mean_losses().items()},
            "eta_seconds": trainer.eta_seconds(limit),
            "last_save_step": trainer.last_save_step,
            "last_save_time": trainer.last_save_time,
            "last_error": self.last_error,
            "pid": os.getpid(),
            "collapse_events": trainer.collapse_events[-20:],
            "metrics": self.metrics,
            "effective_resolution": trainer.effective_resolution(),
            "device": str(trainer.device),
            "preview_step": self.preview_step,
            "started": self._started,
            "notes": trainer.notes[-10:],
            "world_size": trainer.dist.world,
            "ranks_in_sync": trainer.ranks_in_sync,
            "cpu_threads": torch.get_num_threads() if trainer.device.type == "cpu" else None,
        }

    def write(self, trainer: Trainer, state: str | None = None, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_write >= trainer.options.status_every_seconds:
            write_status(self.run_dir, self.status(trainer, state))
            self._last_write = now

    def _obey(self, trainer: Trainer) -> None:
        for command in take_commands(self.run_dir):
            {"pause": trainer.pause, "resume": trainer.resume, "save": trainer.request_save,
             "preview": trainer.request_preview, "stop": trainer.request_stop}[command]()

    # -- callbacks ----------------------------------------------------------------------------------
    def on_start(self, trainer: Trainer) -> None:
        self.last_error = None
        self._obey(trainer)
        append_jsonl(self.run_dir / METRICS_NAME, {"kind": "start", "step": trainer.step, "time": time.time(),
                                                    "resumed": trainer.resumed, "device": str(trainer.device),
                                                    "data": trainer.data.describe(), "notes": trainer.notes})
        self.write(trainer, force=True)

    def on_step_end(self, trainer: Trainer, losses: dict[str, float]) -> None:
        self._obey(trainer)
        self.write(trainer)

    def on_idle(self, trainer: Trainer) -> None:
        self._obey(trainer)
        self.write(trainer)

    def on_preview(self, trainer: Trainer, grid: np.ndarray) -> None:
        folder = self.run_dir / PREVIEWS_DIR
        write_image(folder / f"step_{trainer.step:06d}.png", grid)
        write_image(folder / "latest.png", grid)
        self.preview_step = trainer.step

    def on_metrics(self, trainer: Trainer, row: dict[str, Any]) -> None:
        append_jsonl(self.run_dir / METRICS_NAME, row)
        if row.get("kind") == "eval":
            self.metrics = {k: v for k, v in row.items() if k not in ("kind", "time")}

    def on_save(self, trainer: Trainer, path: Path | None) -> None:
        self.write(trainer, force=True)

    def on_event(self, trainer: Trainer, event: dict[str, Any]) -> None:
        if event["kind"] == "state":
            self.write(trainer, state=event["state"], force=True)
            return
        append_jsonl(self.run_dir / METRICS_NAME, {**event, "kind": "event", "event": event["kind"]})
        self.write(trainer, force=True)

    def on_end(self, trainer: Trainer, state: str, error: BaseException | None) -> None:
        if error is not None and not isinstance(error, KeyboardInterrupt):
            self.last_error = f"{type(error).__name__}: {error}"
        self.write(trainer, state=state, force=True)
        append_jsonl(self.run_dir / METRICS_NAME, {"kind": "end", "step": trainer.step, "time": time.time(),
                                                    "state": state, "error": self.last_error})


class ProgressLine(Callback):
    """DFL's console line ``[HH:MM:SS][#step][ms/it][src][dst]``, rewritten in place (for the foreground CLI)."""

    def __init__(self, stream: Any = None, every_seconds: float = 0.5):
        self.stream = stream or sys.stderr
        self.every = every_seconds
        self._last = 0.0

    def _line(self, trainer: Trainer) -> str:
        losses = trainer.mean_losses()
        ms = 1000.0 / trainer.it_per_s if trainer.it_per_s else 0.0
        eta = trainer.eta_seconds(getattr(trainer, "session_limit_step", None))
        eta_text = f"[ETA {int(eta) // 60}:{int(eta) % 60:02d}]" if eta else ""
        return (f"[{time.strftime('%H:%M:%S')}][#{trainer.step:06d}][{ms:.0f}ms][src {losses.get('src', 0):.4f}]"
                f"[dst {losses.get('dst', 0):.4f}]{eta_text}[{trainer.state}]")

    def on_step_end(self, trainer: Trainer, losses: dict[str, float]) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.stream.write("\r" + self._line(trainer) + "   ")
            self.stream.flush()

    def on_start(self, trainer: Trainer) -> None:
        for note in trainer.notes:
            self.stream.write(f"{note}\n")

    def on_event(self, trainer: Trainer, event: dict[str, Any]) -> None:
        if event["kind"] in ("skip", "rollback", "save_refused"):
            self.stream.write(f"\n{event}\n")

    def on_save(self, trainer: Trainer, path: Path | None) -> None:
        self.stream.write(f"\r{self._line(trainer)}  saved {path}\n" if path else "")

    def on_end(self, trainer: Trainer, state: str, error: BaseException | None) -> None:
        self.stream.write("\r" + self._line(trainer) + f"  {state}\n")
        self.stream.flush()
