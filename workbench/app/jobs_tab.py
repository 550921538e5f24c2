"""The "Jobs" tab: the job queue of every project (progress, logs, cancel, device), and "run as a job" buttons.

A job runs in a process of its own started by ``workbench jobs serve`` (this tab starts one, with
``--exit-when-idle``, when none is running), so closing the browser or stopping the app never stops it.
Callbacks are plain functions over :mod:`workbench.jobs`; :func:`build_tab` lays the tab out inside
``build_app``'s ``gr.Tabs`` and :func:`wire_run_as_job` adds the buttons of the Extract, Train, Merge and Export
tabs.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import WorkbenchError
from ..jobs import JobStore, add_job, allowed_stages, cancel_job, job_progress, spawn_server
from ..jobs.server import describe, server_running, visible_gpus
from .common import guarded

COLUMNS = ["id", "project", "stage", "state", "device", "progress", "started", "ended", "command"]
LOG_LINES = 200
POLL_SECONDS = 2.0
INTRO = (
    "**Jobs** run one stage of one project in a background process of their own, across all your projects: "
    "extract the next clip while a model trains, or queue a whole evening of work. Closing this page does not "
    "stop them. A job waits for the jobs it comes *after*, and two jobs never write the same folder at once "
    "(extracting src and dst of one project may run together; two trainers of one run may not). "
    "Command line: `workbench jobs list`, `workbench jobs serve`."
)


def _store(store: JobStore | None) -> JobStore:
    return store if store is not None else JobStore()


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%H:%M:%S") if t else ""


def device_choices() -> list[str]:
    return ["auto", "cpu", *[f"cuda:{i}" for i in range(len(visible_gpus()))]]


def jobs_rows(store: JobStore | None = None) -> list[list[Any]]:
    """The queue as table rows, newest first."""
    rows = []
    for job in reversed(_store(store).list()):
        fraction, text = job_progress(job)
        progress = (f"{100 * fraction:.0f}% · " if fraction is not None else "") + text
        rows.append([job.id, Path(job.project).name, job.stage, job.state, job.assigned_device or job.device,
                     progress, _when(job.started), _when(job.ended), describe(job)])
    return rows


def _queue_note(store: JobStore) -> str:
    running = "a job server is running" if server_running(store) else "no job server is running"
    return f"Queue `{store.path}`; {running}."


def refresh(store: JobStore | None = None) -> dict[str, Any]:
    store = _store(store)
    return {"table": jobs_rows(store), "queue_note": _queue_note(store)}


def _submit(store: JobStore, project: str, stage: str, argv: list[str], device: str = "auto", priority: int = 0,
            after: list[int] | None = None, max_parallel: int = 1, start_server: bool = True) -> dict[str, Any]:
    job = add_job(store, project, stage, argv, device=device or "auto", priority=int(priority or 0),
                  after=after or [])
    started = start_server and spawn_server(store, max_parallel=max_parallel) is not None
    note = " A job server was started for it." if started else ""
    return {"status": f"Queued job **#{job.id}**: `{describe(job)}`.{note} Follow it in the Jobs tab; closing "
                      f"the page does not stop it.", **refresh(store)}


@guarded
def submit_job(root: str, stage: str, args_text: str, device: str, priority: float | None, after: str,
               max_parallel: float | None = 1, store: JobStore | None = None) -> dict[str, Any]:
    """Queue ``workbench STAGE PROJECT ARGS`` for the open project (ARGS as typed on a command line)."""
    if not root:
        raise WorkbenchError("no project is open", hint="open a project in the Project tab first")
    try:
        argv = shlex.split(args_text or "")
        deps = [int(x) for x in (after or "").replace(",", " ").split()]
    except ValueError as exc:
        raise WorkbenchError(f"cannot read the arguments ({exc})",
                             hint="arguments as on a command line; 'after' is a list of job numbers") from None
    return _submit(_store(store), root, stage, argv, device, int(priority or 0), deps, int(max_parallel or 1))


@guarded
def cancel(job_id: float | None, store: JobStore | None = None) -> dict[str, Any]:
    if not job_id:
        raise WorkbenchError("no job selected", hint="click a row of the table or type a job number")
    store = _store(store)
    job = cancel_job(store, int(job_id))
    text = "asked to stop (SIGTERM, then SIGKILL after a grace period)" if job.state == "running" else job.state
    return {"status": f"Job **#{job.id}**: {text}.", **refresh(store)}


@guarded
def show_log(job_id: float | None, store: JobStore | None = None) -> dict[str, Any]:
    if not job_id:
        return {"log": ""}
    store = _store(store)
    job = store.get(int(job_id))
    path = store.log_path(job.id)
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else "(no output yet)"
    header = f"job #{job.id} · {job.state}" + (f" · {job.reason}" if job.reason else "") + f" · {path}\n"
    return {"log": header + "\n".join(text.splitlines()[-LOG_LINES:]), "job_id": job.id}


def select_row(table: Any, index: Any, store: JobStore | None = None) -> dict[str, Any]:
    """A click on a table row picks its job and shows its log."""
    row = index[0] if isinstance(index, (list, tuple)) else index
    try:
        values = table.values.tolist() if hasattr(table, "values") else list(table)
        job_id = int(values[int(row)][0])
    except (IndexError, TypeError, ValueError):
        return {}
    return {**show_log(job_id, store=store), "job_id": job_id}


# -- "run as a job" from the other tabs -------------------------------------------------------------------------
@guarded
def extract_as_job(root: str, side: str = "both", engine: str = "dlib", face_type: str = "whole_face",
                   face_size: int = 256, target: str = "largest", reference: str | None = None,
                   reference_threshold: float = 0.6, every_nth: int = 1, smoothing: float = 0.5, workers: int = 2,
                   store: JobStore | None = None, start_server: bool = True) -> dict[str, Any]:
    """The Extract tab's settings as a queued ``workbench extract`` job."""
    from ..align import normalize_face_type

    if not root:
        raise WorkbenchError("no project is open", hint="open a project in the Project tab first")
    argv = ["--side", side, "--engine", engine, "--face-type", normalize_face_type(face_type),
            "--size", str(int(face_size)), "--target", target, "--every-nth", str(int(every_nth or 1)),
            "--workers", str(int(workers if workers is not None else 2)), "--quiet"]
    if side != "src":
        argv += ["--smoothing", str(float(smoothing))]  # the dst default; a src side ignores it anyway
    if reference:
        argv += ["--reference", str(reference), "--reference-threshold", str(float(reference_threshold))]
    return _submit(_store(store), root, "extract", argv, start_server=start_server)


def _flag(value: Any) -> str:
    if isinstance(value, bool):
        return "y" if value else "n"
    return str(value)


@guarded
def train_as_job(root: str, run: str, options: Mapping[str, Any], max_steps: int | None = None,
                 store: JobStore | None = None, start_server: bool = True) -> dict[str, Any]:
    """The Train tab's form as a queued ``workbench train`` job (a foreground trainer in the job's process;
    the run folder stays the interface, so this tab's pause/resume/stop buttons work on it)."""
    from ..commands.train import _option_specs  # the options that have a CLI flag, and their flag
    from ..train.runs import checkpoint_path

    if not root:
        raise WorkbenchError("no project is open", hint="open a project in the Project tab first")
    if not run:
        raise WorkbenchError("no run name", hint="type a run name in the Train tab")
    argv = ["--run", str(run)]
    if checkpoint_path(Path(root) / "models" / str(run)).exists():
        argv.append("--resume")
    if max_steps:
        argv += ["--steps", str(int(max_steps))]
    flags = {spec.name: spec.cli_flag for spec in _option_specs()}
    for name, value in options.items():
        if value is not None and value != "" and name in flags:
            argv += [flags[name], _flag(value)]
    return _submit(_store(store), root, "train", argv, start_server=start_server)


@guarded
def merge_as_job(root: str, run: str | None, settings: Mapping[str, Any], temporal_smoothing: float | None = None,
                 store: JobStore | None = None, start_server: bool = True) -> dict[str, Any]:
    """The Merge tab's form as a queued ``workbench merge`` job: the form is saved as the project's default
    (``merge.json``, which the merge command reads), then the whole clip is merged in the job's process."""
    from .common import is_model_file
    from .tab_merge import project_relative_model, save_merge_default

    if not root:
        raise WorkbenchError("no project is open", hint="open a project in the Project tab first")
    if not run:
        raise WorkbenchError("no trained model chosen", hint="pick a training run at the top of the Merge tab")
    saved = save_merge_default(root, settings, temporal_smoothing)
    if "merge.json" not in str(saved.get("status", "")):
        return saved  # the form was refused: its message says why
    if is_model_file(run):  # a DFM/ONNX file of the project: `workbench merge --model` (checked inside the project)
        argv = ["--model", project_relative_model(root, run)]
    else:
        argv = ["--run", str(run)]
    return _submit(_store(store), root, "merge", argv, start_server=start_server)


@guarded
def export_as_job(root: str, name: str, label: bool = True, overwrite: bool = False, crf: int = 18,
                  store: JobStore | None = None, start_server: bool = True) -> dict[str, Any]:
    """The Export tab's form as a queued ``workbench export`` job (label and provenance as in the page: the
    provenance names the model the merge recorded)."""
    if not root:
        raise WorkbenchError("no project is open", hint="open a project in the Project tab first")
    argv = ["--crf", str(int(crf)), "--quiet"]
    if name:
        argv += ["--output", str(name)]
    if not label:
        argv.append("--no-label")
    if overwrite:
        argv.append("--overwrite")
    return _submit(_store(store), root, "export", argv, start_server=start_server)


# -- layout -------------------------------------------------------------------------------------------------------
Wire = Callable[..., Any]


def build_tab(wire: Wire, root_state: Any) -> None:
    """Lay out the Jobs tab (call inside ``gr.Tabs()``); ``wire`` is ui's named-callback adapter."""
    import gradio as gr

    with gr.Tab("Jobs", id="tab-jobs") as tab:
        gr.Markdown(INTRO, elem_classes=["learn"])
        queue_note = gr.Markdown(elem_id="jobs-queue-note")
        table = gr.Dataframe(headers=COLUMNS, value=[], interactive=False, wrap=True, elem_id="jobs-table",
                             label="all jobs, newest first (click a row for its log)")
        with gr.Row():
            job_id = gr.Number(None, precision=0, label="job", elem_id="jobs-id", scale=1)
            log_btn = gr.Button("Show log", scale=1)
            cancel_btn = gr.Button("Cancel job", variant="stop", elem_id="jobs-cancel", scale=1)
            refresh_btn = gr.Button("Refresh", scale=1)
        status = gr.Markdown(elem_id="jobs-status")
        log = gr.Textbox(label="log (last lines)", lines=12, max_lines=24, interactive=False, elem_id="jobs-log")
        with gr.Accordion("Queue a stage of the open project", open=False):
            with gr.Row():
                stage = gr.Dropdown(list(allowed_stages()), value="extract", label="stage", elem_id="jobs-stage")
                args = gr.Textbox(label="arguments (as on the command line)", placeholder="--side src --every-nth 2",
                                  elem_id="jobs-args", scale=3)
            with gr.Row():
                device = gr.Dropdown(device_choices(), value="auto", label="device",
                                     info="auto: a free GPU when there is one, else the CPU")
                priority = gr.Number(0, precision=0, label="priority (higher first)")
                after = gr.Textbox(label="after jobs (numbers)", placeholder="3 4")
                parallel = gr.Number(1, precision=0, label="jobs at once (for a new server)")
            add_btn = gr.Button("Queue job", variant="primary", elem_id="jobs-add")
        # polls only once the tab has been opened: a page that never shows its Jobs tab never reads the queue
        timer = gr.Timer(POLL_SECONDS, active=False)

    out = {"table": table, "queue_note": queue_note}
    wire(tab.select, lambda: {**refresh(), "timer": gr.Timer(active=True)}, {}, {**out, "timer": timer})
    wire(refresh_btn.click, lambda: refresh(), {}, out)
    wire(timer.tick, lambda: refresh(), {}, out, show_progress="hidden", trigger_mode="once")
    wire(add_btn.click, submit_job, {"root": root_state, "stage": stage, "args_text": args, "device": device,
                                     "priority": priority, "after": after, "max_parallel": parallel},
         {"status": status, **out})
    wire(cancel_btn.click, cancel, {"job_id": job_id}, {"status": status, **out})
    wire(log_btn.click, show_log, {"job_id": job_id}, {"log": log, "status": status})
    wire(table.select, lambda table, index: select_row(table, index), {"table": table}, {"log": log, "job_id": job_id},
         select=True)


def wire_run_as_job(wire: Wire, button: Any, fn: Callable[..., dict[str, Any]], inputs: Mapping[str, Any],
                    status: Any) -> None:
    """Connect a "Run as a job" button of another tab to one of the ``*_as_job`` functions above."""
    wire(button.click, fn, inputs, {"status": status})
