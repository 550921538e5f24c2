"""What the queue knows about each CLI stage: the folders it writes, where its progress is, how it resumes.

:data:`STAGES` is a plain registry. A stage can be queued only when it is in the registry *and* the
``workbench`` CLI has that command at run time (:func:`allowed_stages`), so a stage another package adds
later (or one missing from this checkout) never breaks the queue.

Exclusivity keys name what a job writes (``PROJECT::aligned/src``, ``PROJECT::models/RUN``...). The server
never runs two jobs that share a key; jobs on other folders of the same project run side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .store import Job, JobError

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _sides(args: argparse.Namespace, default: str = "both") -> tuple[str, ...]:
    side = getattr(args, "side", None) or default
    return ("src", "dst") if side == "both" else (side,)


def _train_run(args: argparse.Namespace) -> str:
    name = getattr(args, "run", None) or getattr(args, "preset", None) or "tiny"
    if not RUN_NAME.match(name):
        raise JobError(f"run name '{name}' is not a plain name", hint="use letters, digits, '.', '_' or '-'")
    return name


# -- exclusivity keys ----------------------------------------------------------------------------------------
def _extract_keys(args: argparse.Namespace) -> set[str]:
    sides = _sides(args)
    return {f"aligned/{s}" for s in sides} | ({"frames/dst"} if "dst" in sides else set())


def _xseg_keys(args: argparse.Namespace) -> set[str]:
    action = getattr(args, "xseg_command", None) or getattr(args, "action", None) or ""
    if action == "train":
        return {"models/xseg"}
    return {f"aligned/{s}" for s in _sides(args)}


KeysFn = Callable[[argparse.Namespace], set[str]]


# -- progress (0..1 or None), read from each stage's own files, never from logs -----------------------------
def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def _train_progress(job: Job, project: Path, args: argparse.Namespace) -> tuple[float | None, str]:
    status = _read_json(project / "models" / _train_run(args) / "status.json")
    if not status or (job.started and (status.get("updated") or 0) < job.started - 1.0):
        return None, "starting"  # status.json from an earlier session
    step, target = int(status.get("step") or 0), int(status.get("target_steps") or 0)
    text = f"step {step}" + (f"/{target}" if target else "") + f" ({status.get('state', '?')})"
    if status.get("it_per_s"):
        text += f", {status['it_per_s']:.2f} it/s"
    return (min(1.0, step / target) if target else None), text


def _extract_progress(job: Job, project: Path, args: argparse.Namespace) -> tuple[float | None, str]:
    from ..extract import JOURNAL_NAME

    totals = job.meta.get("extract_total") or {}
    done = total = 0
    for side in _sides(args):
        done += _count_lines(project / "aligned" / side / JOURNAL_NAME)
        total += int(totals.get(side) or 0)
    if not total:
        return None, f"{done} frames"
    return min(1.0, done / total), f"{done}/{total} frames"


def _merge_progress(job: Job, project: Path, args: argparse.Namespace) -> tuple[float | None, str]:
    frames = _read_json(project / "frames" / "dst" / "frames.json").get("frames") or []
    merged = project / "merged"
    done = sum(1 for p in merged.iterdir() if p.is_file() and not p.name.startswith(".")) if merged.is_dir() else 0
    if not frames:
        return None, f"{done} frames"
    return min(1.0, done / len(frames)), f"{done}/{len(frames)} frames"


ProgressFn = Callable[[Job, Path, argparse.Namespace], tuple[float | None, str]]


# -- what to do before each launch (first one, or after a crash) ---------------------------------------------
def _extract_prepare(job: Job, project: Path, args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """Count each side's frames once (for progress); extraction resumes from its journal by itself."""
    meta = dict(job.meta)
    if "extract_total" not in meta:
        totals = {}
        for side in _sides(args):
            with contextlib.suppress(Exception):
                totals[side] = _media_frame_count(project, side) // max(1, int(getattr(args, "every_nth", 1) or 1))
        meta["extract_total"] = totals
    return list(job.argv), meta


def _media_frame_count(project: Path, side: str) -> int:
    from ..project import Project
    from ..video import is_video_path

    media = Project.open(project).media_path(side)
    if media.is_dir():
        return sum(1 for p in media.iterdir() if p.is_file() and not p.name.startswith("."))
    if is_video_path(media):
        import cv2  # the container's frame count: cheap, and good enough for a progress bar

        cap = cv2.VideoCapture(str(media))
        try:
            return int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        finally:
            cap.release()
    return 1


def _option_value(argv: Sequence[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _without_option(argv: Sequence[str], flag: str) -> list[str]:
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == flag and i + 1 < len(argv):
            skip = True
            continue
        if a.startswith(flag + "="):
            continue
        out.append(a)
    return out


def _train_prepare(job: Job, project: Path, args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """A trainer is a foreground ``workbench train`` in the job's process; a relaunch resumes its checkpoint.

    ``--steps N`` means N steps for the job as a whole: the step at the first launch is remembered, and a
    relaunch after a crash trains only the steps still missing (same target as an uninterrupted run).
    """
    if getattr(args, "background", False):
        raise JobError("a training job runs the trainer itself: drop --background",
                       hint="the run folder stays the interface: `workbench train-cmd PROJECT pause|resume|stop`")
    meta = dict(job.meta)
    run_dir = project / "models" / _train_run(args)
    status = _read_json(run_dir / "status.json")
    has_checkpoint = (run_dir / "checkpoints" / "latest.pt").exists()
    meta.setdefault("base_step", int(status.get("step") or 0))
    argv = list(job.argv)
    if job.attempts > 0:  # a relaunch: continue the checkpoint the last attempt saved
        if "--resume" not in argv and has_checkpoint:
            argv.append("--resume")
        steps = _option_value(argv, "--steps")
        if steps is not None:
            # the trainer restarts from its last checkpoint, not from the last step it reported
            resume_step = int(status.get("last_save_step") or 0) if has_checkpoint else 0
            remaining = max(0, int(steps) - (resume_step - int(meta["base_step"])))
            argv = _without_option(argv, "--steps") + ["--steps", str(remaining)]
    return argv, meta


def _unchanged(job: Job, project: Path, args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    return list(job.argv), dict(job.meta)


PrepareFn = Callable[[Job, Path, argparse.Namespace], tuple[list[str], dict[str, Any]]]


@dataclass(frozen=True)
class StageSpec:
    """How the queue handles one CLI stage.

    Attributes:
        keys: the project folders a job of this stage writes (its exclusivity keys), from its parsed args.
        progress: ``(fraction or None, text)`` from the stage's own progress files.
        prepare: the argv and meta for the next launch (e.g. a trainer relaunched after a crash resumes).
        words_before_project: CLI words between the stage name and PROJECT (``xseg train PROJECT``: 1).
        threads_flag: a flag that sets the stage's worker count, filled with the job's CPU share when
            the user did not give it.
    """

    keys: KeysFn
    progress: ProgressFn | None = None
    prepare: PrepareFn = _unchanged
    words_before_project: int = 0
    threads_flag: str | None = None


STAGES: dict[str, StageSpec] = {
    "extract": StageSpec(_extract_keys, _extract_progress, _extract_prepare, threads_flag="--workers"),
    "sort": StageSpec(lambda a: {f"aligned/{s}" for s in _sides(a, "src")}),
    "train": StageSpec(lambda a: {f"models/{_train_run(a)}"}, _train_progress, _train_prepare),
    "xseg": StageSpec(_xseg_keys, words_before_project=1),
    "merge": StageSpec(lambda a: {"merged"}, _merge_progress),
    # evaluate reads the merged frames (and merges a sample when there are none): exclusive with merge
    "evaluate": StageSpec(lambda a: {"evaluation", "merged"}),
    "export": StageSpec(lambda a: {"output"}),
}


def cli_commands() -> dict[str, argparse.ArgumentParser]:
    """The subcommands the ``workbench`` CLI has in this checkout, by name."""
    from ..cli import build_parser

    parser = build_parser()
    for action in parser._actions:  # argparse keeps subparsers as a private action; there is no public accessor
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def allowed_stages() -> tuple[str, ...]:
    """Registry stages that the CLI really has now (xseg/evaluate appear when their commands exist)."""
    commands = cli_commands()
    return tuple(name for name in STAGES if name in commands)


def cli_argv(stage: str, project: str | Path, argv: Sequence[str]) -> list[str]:
    """``[STAGE, (words,) PROJECT, ARGS...]`` as the CLI expects them."""
    n = STAGES[stage].words_before_project
    return [stage, *argv[:n], str(project), *argv[n:]]


def parse_stage(stage: str, project: str | Path, argv: Sequence[str]) -> argparse.Namespace:
    """Parse a stage's arguments with the CLI's own parser; a bad argument is a JobError with argparse's text."""
    from ..cli import build_parser

    allowed = allowed_stages()
    if stage not in allowed:
        raise JobError(f"'{stage}' cannot be queued", hint=f"stages: {', '.join(allowed)}")
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return build_parser().parse_args(cli_argv(stage, project, argv))
    except SystemExit as exc:
        message = err.getvalue().strip().splitlines()
        raise JobError(f"bad arguments for `workbench {stage}`: {message[-1] if message else exc}",
                       hint=f"check `workbench {stage} --help`") from None


def exclusivity_keys(stage: str, project: str | Path, args: argparse.Namespace) -> set[str]:
    """``PROJECT::folder`` for every folder the job writes."""
    return {f"{Path(project)}::{key}" for key in STAGES[stage].keys(args)}


def job_progress(job: Job) -> tuple[float | None, str]:
    """A job's progress: 1.0 when done, the stage's own progress source while running."""
    if job.state == "done":
        return 1.0, "done"
    if job.state != "running":
        return None, job.state if not job.reason else f"{job.state}: {job.reason.splitlines()[0]}"
    spec = STAGES.get(job.stage)
    if spec is None or spec.progress is None:
        return None, "running"
    try:
        args = parse_stage(job.stage, job.project, job.argv)
        return spec.progress(job, Path(job.project), args)
    except Exception as exc:  # progress is informative only; a broken source must not break a listing
        return None, f"running (progress unavailable: {exc})"


def command_line(stage: str, project: str | Path, argv: Sequence[str]) -> str:
    return shlex.join(["workbench", *cli_argv(stage, project, argv)])
