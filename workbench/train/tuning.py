"""CPU thread tuning while training (:class:`CpuThreadTuner`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .trainer import Trainer
from .callback import Callback


class CpuThreadTuner(Callback):
    """``cpu_threads=0`` on CPU: time a few steps with 1 thread and with all threads, keep the faster, re-check.

    On a busy machine (other processes on the cores) OpenMP threads wait for each other at every
    convolution, and one thread can be several times faster than two; on an idle machine all cores win.
    Measured here on a shared 2-core VM: tiny preset 5.3 it/s on 1 thread vs 0.6 it/s on 2 under load.
    """

    def __init__(self, max_threads: int, trial_steps: int = 4, retune_seconds: float = 120.0):
        self.candidates = sorted({1, max_threads} | ({max_threads // 2} if max_threads >= 4 else set()))
        self.trial_steps = trial_steps
        self.retune_seconds = retune_seconds
        self.times: dict[int, float] = {}
        self.chosen: int | None = None
        self._trial: list[int] = []
        self._samples: list[float] = []
        self._last: float | None = None
        self._chosen_at = 0.0

    def _start_trial(self) -> None:
        self._trial = list(self.candidates)
        self._samples = []
        torch.set_num_threads(self._trial[0])
        self._last = None

    def on_start(self, trainer: Trainer) -> None:
        self._start_trial()

    def on_step_end(self, trainer: Trainer, losses: dict[str, float]) -> None:
        now = time.monotonic()
        last, self._last = self._last, now
        if last is None:
            return  # the first step after a switch also pays for the switch: not timed
        if not self._trial:
            if now - self._chosen_at > self.retune_seconds:
                self._start_trial()
            return
        self._samples.append(now - last)
        if len(self._samples) < self.trial_steps:
            return
        self.times[self._trial.pop(0)] = float(np.median(self._samples))
        self._samples = []
        self._last = None
        if self._trial:
            torch.set_num_threads(self._trial[0])
            return
        self.chosen = min(self.times, key=self.times.get)
        torch.set_num_threads(self.chosen)
        self._chosen_at = now
        trainer._event({"kind": "cpu_threads", "step": trainer.step, "threads": self.chosen,
                        "seconds_per_step": {str(k): round(v, 4) for k, v in self.times.items()}})
