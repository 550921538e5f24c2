"""A persistent job queue across projects: one job = one CLI stage on one project, run by ``workbench jobs serve``.

    from workbench.jobs import JobStore, add_job
    store = JobStore()                                   # $WORKBENCH_HOME/jobs.sqlite (default ~/.workbench)
    job = add_job(store, "proj", "extract", ["--side", "src"], device="cpu")
    add_job(store, "proj", "train", ["--steps", "2000"], after=[job.id])

The queue is SQLite (transactions, WAL, versioned schema: :mod:`.store`); what each stage writes, how its
progress is read and how it resumes is in :mod:`.stages`; the server that runs jobs as separate processes,
adopts them after a crash and stops them on cancel is :mod:`.server`. No torch import here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .server import JobServer, ServeOptions, cancel_job, server_running, spawn_server
from .stages import STAGES, allowed_stages, exclusivity_keys, job_progress, parse_stage
from .store import STATES, Job, JobError, JobStore, workbench_home

DEVICES_HELP = "cpu, cuda:N or auto (a free GPU when there is one, else CPU)"


def check_device(device: str) -> str:
    """``cpu``, ``auto`` or ``cuda:N``; anything else is a JobError."""
    if device in ("cpu", "auto") or (device.startswith("cuda:") and device[5:].isdigit()) or device == "cuda":
        return "cuda:0" if device == "cuda" else device
    raise JobError(f"unknown device '{device}'", hint=f"use {DEVICES_HELP}")


def add_job(store: JobStore, project: str | Path, stage: str, argv: Sequence[str] = (), *, device: str = "auto",
            priority: int = 0, after: Sequence[int] = ()) -> Job:
    """Validate a stage command with the CLI's own parser and queue it.

    Args:
        project: the project folder (must exist; stored as an absolute path).
        stage: a queueable CLI stage (see :func:`allowed_stages`).
        argv: the stage's arguments after PROJECT, as on the command line.
        device: ``cpu``, ``cuda:N`` or ``auto``.
        priority: higher runs first among the jobs that may start.
        after: job ids that must finish (done) first; if one fails or is cancelled, so is this job.
    """
    from ..project import Project

    root = Project.open(project).root
    device = check_device(device)
    args = parse_stage(stage, root, list(argv))
    if getattr(args, "background", False):
        raise JobError("a job runs its stage in its own background process already: drop --background",
                       hint="a training job's run folder stays the interface: `workbench train-cmd PROJECT stop`")
    keys = exclusivity_keys(stage, root, args)
    return store.add(str(root), stage, list(argv), device=device, priority=priority, after=after, keys=keys)


__all__ = ["STAGES", "STATES", "Job", "JobError", "JobServer", "JobStore", "ServeOptions", "add_job",
           "allowed_stages", "cancel_job", "check_device", "exclusivity_keys", "job_progress", "parse_stage",
           "server_running", "spawn_server", "workbench_home"]
