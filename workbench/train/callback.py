"""The trainer's observer interface (:class:`Callback`) and what a run returns (:class:`TrainResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .trainer import Trainer


class Callback:
    """Hooks called by :meth:`Trainer.run` (all optional). ``trainer`` exposes step, losses, model, ..."""

    def on_start(self, trainer: Trainer) -> None: ...
    def on_step_end(self, trainer: Trainer, losses: dict[str, float]) -> None: ...
    def on_idle(self, trainer: Trainer) -> None: ...  # called about 5x/s while paused
    def on_preview(self, trainer: Trainer, grid: np.ndarray) -> None: ...
    def on_metrics(self, trainer: Trainer, row: dict[str, Any]) -> None: ...
    def on_save(self, trainer: Trainer, path: Path | None) -> None: ...
    def on_event(self, trainer: Trainer, event: dict[str, Any]) -> None: ...
    def on_end(self, trainer: Trainer, state: str, error: BaseException | None) -> None: ...


@dataclass(frozen=True)
class TrainResult:
    """How a :meth:`Trainer.run` call ended."""

    state: str  # stopped | finished | error
    step: int
    steps_run: int
    seconds: float
    losses: dict[str, float] = field(default_factory=dict)
    error: str | None = None
