"""Running a trainer on a run folder inside this process (the CLI's foreground mode and ``python -m workbench.train``)."""

from __future__ import annotations

import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import WorkbenchError
from .callback import Callback, TrainResult
from .device import DistContext
from .runs import RunConfig, RunLock, prepare_run, read_run_config, write_status
from .trainer import Trainer
from .writer import ProgressLine, RunDirWriter


def _install_stop_signals(trainer: Any) -> list[tuple[int, Any]]:
    """SIGTERM (and SIGHUP) ask the trainer to save and stop instead of dying mid-step."""
    previous = []
    if threading.current_thread() is not threading.main_thread():
        return previous
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            previous.append((sig, signal.signal(sig, lambda *_: trainer.request_stop())))
    return previous


def _remove_stale_temp_files(run_dir: Path) -> None:
    """Temp files of writes interrupted by a kill (never the real files, which are renamed into place)."""
    for folder in (run_dir / "checkpoints", run_dir / "checkpoints" / "backups", run_dir / "previews", run_dir):
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp-*"):
                tmp.unlink(missing_ok=True)


def run_locked(run_dir: Path, make_callbacks: Callable[[], list[Callback]],
               build: Callable[[list[Callback]], Any], *, steps: int | None, seconds: float | None,
               is_main: bool = True) -> TrainResult:
    """One training session on a run folder, for any trainer on :mod:`workbench.train.loop` (face or XSeg).

    Rank 0 (``is_main``) holds the run lock (a second trainer on the folder gets a TrainingError and leaves its
    status alone) and clears temporary files of writes a kill interrupted; then the callbacks are made, the
    trainer is built (a failure is written to status.json as an error), SIGTERM/SIGHUP become a save-and-stop,
    and one session runs.
    """
    lock = RunLock(run_dir) if is_main else None
    if lock is not None:
        lock.acquire()  # raises TrainingError when another trainer holds the folder: its status stays untouched
    try:
        if lock is not None:
            _remove_stale_temp_files(run_dir)
        callbacks = make_callbacks()
        try:
            trainer = build(callbacks)
        except BaseException as exc:
            if is_main:
                write_status(run_dir, {"state": "error", "step": 0, "pid": None, "started": time.time(),
                                       "last_error": f"{type(exc).__name__}: {exc}"})
            raise
        previous = _install_stop_signals(trainer)
        try:
            return trainer.run(steps=steps, seconds=seconds)
        finally:
            for sig, handler in previous:
                signal.signal(sig, handler)
    finally:
        if lock is not None:
            lock.release()


def run_config(run_dir: str | Path, config: RunConfig, *, progress: bool = False,
               callbacks: list[Callback] | None = None, loss_hook: Any = None) -> TrainResult:
    """Train on ``run_dir`` with an already written config (holds the run lock; rank 0 writes the folder)."""
    run_dir = Path(run_dir)
    dctx = DistContext.from_env(config.options.device)

    def make_callbacks() -> list[Callback]:
        cbs: list[Callback] = []
        if dctx.is_main:
            cbs.append(RunDirWriter(run_dir, config.max_steps))
            if progress:
                cbs.append(ProgressLine())
        return cbs + list(callbacks or [])

    def build(cbs: list[Callback]) -> Trainer:
        return Trainer(config.options, config.src_dir, config.dst_dir, run_dir=run_dir, callbacks=cbs,
                       pretrained=config.pretrained, loss_hook=loss_hook, dist_context=dctx)

    return run_locked(run_dir, make_callbacks, build, steps=config.max_steps, seconds=config.max_seconds,
                      is_main=dctx.is_main)


def train(run_dir: str | Path, options: Any, *, src: str | Path | None = None, dst: str | Path | None = None,
          steps: int | None = None, seconds: float | None = None, pretrained: str | Path | None = None,
          progress: bool = True, callbacks: list[Callback] | None = None) -> TrainResult:
    """Train in this process (blocking) with the full run-folder protocol; the foreground twin of ``start``.

    Args as :func:`workbench.train.start`; ``progress`` prints DFL's console line to stderr.
    """
    config = prepare_run(run_dir, options, src=src, dst=dst, pretrained=pretrained, max_steps=steps,
                         max_seconds=seconds)
    return run_config(run_dir, config, progress=progress, callbacks=callbacks)


def main(argv: list[str] | None = None) -> int:
    """``python -m workbench.train RUN_DIR``: the background trainer's entry point (also under torchrun)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m workbench.train",
                                     description="Train on a run folder prepared by workbench.train.start().")
    parser.add_argument("run_dir")
    parser.add_argument("--progress", action="store_true", help="print a progress line to stderr")
    args = parser.parse_args(argv)
    return background_main(Path(args.run_dir), read_run_config,
                           lambda run_dir, config: run_config(run_dir, config, progress=args.progress), "training")


def background_main(run_dir: Path, read_config: Callable[[Path], Any],
                    session: Callable[[Path, Any], TrainResult], what: str) -> int:
    """The body of a background trainer's entry point (``python -m workbench.train`` or ``workbench.segment``).

    An unreadable config is written to status.json as the error; any later WorkbenchError was written there
    by the session already, or must not be (another trainer holds the folder: its status is its own). Exit
    status: 0 stopped or finished, 2 a WorkbenchError, 1 anything else (with its traceback in the log).
    """
    try:
        config = read_config(run_dir)
    except WorkbenchError as exc:
        write_status(run_dir, {"state": "error", "step": 0, "pid": None, "last_error": str(exc)})
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = session(run_dir, config)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BaseException:
        traceback.print_exc()
        return 1
    print(f"{what} {result.state} at step {result.step} ({result.steps_run} steps in {result.seconds:.1f} s)",
          file=sys.stderr)
    return 0 if result.state in ("stopped", "finished") else 1
