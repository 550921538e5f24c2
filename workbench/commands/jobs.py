"""`workbench jobs add|list|cancel|logs|serve`: a persistent queue of stage commands across projects."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "jobs", help="queue stage commands across projects and run them in the background",
        description="A persistent job queue in $WORKBENCH_HOME/jobs.sqlite (default ~/.workbench). "
        "`workbench jobs serve` runs the jobs as separate processes, each with its device and CPU share.")
    sub = p.add_subparsers(dest="jobs_command", metavar="ACTION")

    a = sub.add_parser("add", help="queue one stage command on one project",
                       description="Queue `workbench STAGE PROJECT ARGS...` (STAGE: extract, sort, train, merge, "
                       "export, and xseg/evaluate when installed). Example: "
                       "workbench jobs add proj --device cpu -- train --run r1 --steps 2000")
    a.add_argument("project", help="project folder")
    _add_options(a)
    a.add_argument("stage_args", nargs=argparse.REMAINDER, metavar="-- STAGE ARGS",
                   help="the stage and its arguments as on the command line, after --")
    a.set_defaults(func=run_add)

    ls = sub.add_parser("list", help="show the queue (all projects)")
    ls.add_argument("--json", action="store_true", help="one JSON array of jobs")
    ls.add_argument("--state", action="append", choices=("queued", "running", "done", "failed", "cancelled"),
                    help="only jobs in this state (repeatable)")
    ls.set_defaults(func=run_list)

    c = sub.add_parser("cancel", help="cancel a job (running: SIGTERM to its process group, then SIGKILL)")
    c.add_argument("job", type=int)
    c.set_defaults(func=run_cancel)

    lg = sub.add_parser("logs", help="print a job's log")
    lg.add_argument("job", type=int)
    lg.add_argument("--tail", type=int, default=0, help="only the last N lines")
    lg.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    lg.set_defaults(func=run_logs)

    s = sub.add_parser("serve", help="run the queue: jobs as separate processes (Ctrl-C leaves them running)",
                       description="Runs queued jobs. One server per queue. Killing it (even with SIGKILL) loses "
                       "nothing: started again, it adopts jobs still running and re-queues those that died.")
    s.add_argument("--max-parallel", type=int, default=1, help="jobs at once (CPU threads are shared between them)")
    s.add_argument("--exit-when-idle", action="store_true", help="exit when nothing is queued or running")
    s.add_argument("--poll", type=float, default=0.5, help="seconds between checks (default 0.5)")
    s.add_argument("--grace", type=float, default=10.0, help="seconds between a cancel's SIGTERM and SIGKILL")
    s.set_defaults(func=run_serve)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda:N or auto (a free GPU, else CPU; default)")
    parser.add_argument("--priority", type=int, default=0, help="higher starts first (default 0)")
    parser.add_argument("--after", type=int, action="append", default=[], metavar="JOB",
                        help="start only after job JOB is done (repeatable); if it fails or is cancelled, so is this one")
    parser.add_argument("--json", action="store_true", help="print the new job as JSON")


def _split_add_args(args: argparse.Namespace) -> tuple[argparse.Namespace, list[str]]:
    """Options may come after PROJECT (``jobs add P --device cpu -- train ...``), where argparse's REMAINDER has
    taken them: parse the part before ``--`` again with the same options."""
    from ..jobs import JobError

    rest = list(args.stage_args)
    if "--" not in rest:
        return args, rest
    cut = rest.index("--")
    options = argparse.ArgumentParser(prog="workbench jobs add PROJECT", add_help=False, exit_on_error=False)
    _add_options(options)
    try:
        parsed = options.parse_args(rest[:cut])
    except argparse.ArgumentError as exc:
        raise JobError(f"bad option for `workbench jobs add`: {exc}", hint="see `workbench jobs add --help`") from None
    merged = vars(args).copy()
    for name, value in vars(parsed).items():
        default = options.get_default(name)
        if value != default:
            merged[name] = value if name != "after" else [*args.after, *value]
    return argparse.Namespace(**merged), rest[cut + 1:]


def _store():
    from ..jobs import JobStore

    return JobStore()


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%m-%d %H:%M:%S") if t else "-"


def job_row(job) -> dict:
    """A job as the list shows it (also the --json schema)."""
    from ..jobs import job_progress
    from ..jobs.server import describe

    fraction, text = job_progress(job)
    return {"id": job.id, "project": job.project, "stage": job.stage, "command": describe(job),
            "device": job.device, "assigned_device": job.assigned_device, "threads": job.threads,
            "state": job.state, "progress": None if fraction is None else round(fraction, 4), "progress_text": text,
            "priority": job.priority, "after": list(job.after), "created": job.created, "started": job.started,
            "ended": job.ended, "log": job.log_path, "pid": job.pid, "attempts": job.attempts,
            "exit_code": job.exit_code, "reason": job.reason}


def run_add(args: argparse.Namespace) -> int:
    from ..jobs import JobError, add_job, server_running

    args, rest = _split_add_args(args)
    if not rest:
        raise JobError("no stage given", hint="e.g. workbench jobs add PROJECT -- extract --side src")
    store = _store()
    job = add_job(store, args.project, rest[0], rest[1:], device=args.device, priority=args.priority,
                  after=args.after)
    if args.json:
        print(json.dumps(job_row(job)))
    else:
        print(f"queued job #{job.id}: {job_row(job)['command']} (device {job.device}, priority {job.priority})")
        if not server_running(store):
            print("  no server is running: start one with `workbench jobs serve`")
    return 0


def run_list(args: argparse.Namespace) -> int:
    store = _store()
    rows = [job_row(j) for j in store.list(args.state)]
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print(f"no jobs in {store.path}")
        return 0
    print(f"{'id':>4}  {'state':<9} {'device':<7} {'progress':<28} {'started':<14} {'ended':<14} command")
    for r in rows:
        pct = f"{100 * r['progress']:.0f}% " if r["progress"] is not None else ""
        print(f"{r['id']:>4}  {r['state']:<9} {(r['assigned_device'] or r['device']):<7} "
              f"{(pct + r['progress_text'])[:28]:<28} {_when(r['started']):<14} {_when(r['ended']):<14} {r['command']}")
        if r["state"] in ("failed", "cancelled") and r["reason"]:
            print(f"      {r['reason']}")
    print(f"queue: {store.path}; logs: {store.logs_dir}")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    from ..jobs import cancel_job

    job = cancel_job(_store(), args.job)
    if job.state == "running":
        print(f"job #{job.id}: asked to stop (SIGTERM sent; SIGKILL follows after the grace period)")
    else:
        print(f"job #{job.id}: {job.state}" + (f" ({job.reason})" if job.reason else ""))
    return 0


def run_logs(args: argparse.Namespace) -> int:
    store = _store()
    job = store.get(args.job)
    path = store.log_path(job.id)
    if not path.exists():
        print(f"job #{job.id} has no log yet ({job.state})")
        return 0
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    sys.stdout.write("\n".join(lines[-args.tail:] if args.tail else lines) + "\n")
    offset = len(text.encode("utf-8", errors="replace"))
    while args.follow and not store.get(job.id).final:
        time.sleep(0.5)
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
        offset += len(chunk)
        sys.stdout.write(chunk.decode("utf-8", errors="replace"))
        sys.stdout.flush()
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from ..jobs import JobServer, ServeOptions

    options = ServeOptions(max_parallel=max(1, args.max_parallel), exit_when_idle=args.exit_when_idle,
                           poll_seconds=args.poll, grace_seconds=args.grace)
    try:
        JobServer(_store(), options).run()
    except KeyboardInterrupt:
        print("server stopped; running jobs keep running and the next `workbench jobs serve` adopts them")
    return 0
