"""``workbench jobs serve``: run queued jobs as separate processes, each with its device and CPU share.

One server per queue (an OS file lock, ``serve.lock``, released by the kernel even after SIGKILL). Each job
runs ``python -m workbench.jobs.child JOB -- STAGE PROJECT ARGS...``, which is the ``workbench`` CLI in a new
process group with its output in ``$WORKBENCH_HOME/logs/job-N.log``; the child writes ``job-N.exit`` with its
exit code when it ends. The server keeps nothing in memory that the queue file does not also hold, so a
server killed at any moment and started again continues: jobs whose process is still alive (same pid *and*
same process start time) are adopted, finished ones are recorded from their exit file, and jobs whose process
died without one are re-queued (extraction resumes from its journal, training from its checkpoint).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..train.runs import lock_holder
from .procs import group_alive, hold_lock, process_start_time, same_process_alive, signal_group
from .stages import STAGES, cli_argv, command_line, parse_stage
from .store import FINAL_STATES, Job, JobError, JobStore

LOCK_NAME = "serve.lock"
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS")


@dataclass(frozen=True)
class ServeOptions:
    """How the server runs jobs.

    Attributes:
        max_parallel: jobs running at once.
        exit_when_idle: return when no job is queued or running.
        poll_seconds: how often the queue and the processes are checked.
        grace_seconds: after a cancel's SIGTERM, how long before SIGKILL.
        max_attempts: launches of one job before a job whose process keeps dying is marked failed.
        cpu_count: cores to share (default: the cores this process may run on).
    """

    max_parallel: int = 1
    exit_when_idle: bool = False
    poll_seconds: float = 0.5
    grace_seconds: float = 10.0
    max_attempts: int = 3
    cpu_count: int | None = None

    def cores(self) -> int:
        if self.cpu_count:
            return self.cpu_count
        with contextlib.suppress(AttributeError):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1

    def threads_per_job(self) -> int:
        """Torch/OpenMP threads per job: the cores shared evenly between the jobs that may run at once."""
        return max(1, self.cores() // max(1, self.max_parallel))


# -- scheduling (pure functions over job rows) ----------------------------------------------------------------
def blocked_by_dependency(job: Job, by_id: dict[int, Job]) -> tuple[str, str] | None:
    """``(new_state, reason)`` when a dependency failed or was cancelled (or is missing), else None."""
    for dep_id in job.after:
        dep = by_id.get(dep_id)
        if dep is None:
            return "failed", f"dependency #{dep_id} no longer exists"
        if dep.state in ("failed", "cancelled"):
            return dep.state, f"dependency #{dep_id} {dep.state}"
    return None


def pick_jobs(jobs: Sequence[Job], slots: int) -> list[Job]:
    """The queued jobs to start now: highest priority first (then oldest), dependencies done, and no
    exclusivity key shared with a running job or with another job picked in the same round."""
    by_id = {j.id: j for j in jobs}
    busy = {key for j in jobs if j.state == "running" for key in j.keys}
    picked: list[Job] = []
    for job in sorted((j for j in jobs if j.state == "queued"), key=lambda j: (-j.priority, j.id)):
        if len(picked) >= slots:
            break
        if any(by_id.get(d) is None or by_id[d].state != "done" for d in job.after):
            continue
        if busy.intersection(job.keys):
            continue
        picked.append(job)
        busy.update(job.keys)
    return picked


def visible_gpus() -> list[str]:
    """GPU ids this server may hand out: ``$CUDA_VISIBLE_DEVICES`` if set, else those nvidia-smi lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def assign_device(requested: str, running: Iterable[Job], gpus: Sequence[str]) -> str:
    """``cpu`` or ``cuda:N`` for a job; ``auto`` takes the GPU with the fewest running jobs (CPU without GPUs)."""
    if requested == "cpu":
        return "cpu"
    if requested.startswith("cuda"):
        index = int(requested.partition(":")[2] or 0)
        if index >= len(gpus):
            raise JobError(f"device {requested} does not exist here ({len(gpus)} GPU(s) visible)",
                           hint="use --device cpu, auto, or cuda:N with N below the GPU count")
        return f"cuda:{index}"
    if not gpus:
        return "cpu"
    load = {i: 0 for i in range(len(gpus))}
    for job in running:
        if job.assigned_device and job.assigned_device.startswith("cuda:"):
            index = int(job.assigned_device.split(":")[1])
            load[index] = load.get(index, 0) + 1
    return f"cuda:{min(load, key=lambda i: (load[i], i))}"


def job_environment(device: str, threads: int, gpus: Sequence[str]) -> dict[str, str]:
    """Environment for a job: its GPU as the only visible one (or none for CPU) and its CPU thread share."""
    env = {name: str(threads) for name in THREAD_ENV}
    env["CUDA_VISIBLE_DEVICES"] = gpus[int(device.split(":")[1])] if device.startswith("cuda:") else ""
    env["WORKBENCH_JOB_DEVICE"] = device
    return env


# -- the server -----------------------------------------------------------------------------------------------
def server_running(store: JobStore) -> bool:
    """True when a server holds the queue's lock."""
    return lock_holder(store.path.parent / LOCK_NAME) is not None


def exit_path(store: JobStore, job_id: int) -> Path:
    return store.logs_dir / f"job-{int(job_id)}.exit"


def job_alive(store: JobStore, job: Job) -> bool:
    """The job's process runs: it holds the job's lock, or its pid is alive with the recorded start time."""
    return lock_holder(f"{exit_path(store, job.id)}.lock") is not None or same_process_alive(job.pid, job.pid_start)


def owns_group(job: Job) -> bool:
    """Whether the process group with the job's pid as id is the job's and has members to signal.

    Either the job's process itself runs (same pid and start time), or it has ended and workers of its group
    remain: Linux never hands out a pid that is still a group's id, so such a group is the job's. A live
    process with the job's pid but another start time is a reused pid: never signalled.
    """
    if not job.pid:
        return False
    return same_process_alive(job.pid, job.pid_start) or (process_start_time(job.pid) is None
                                                          and group_alive(job.pid))


def read_exit(store: JobStore, job: Job) -> int | None:
    """The exit code the job's child wrote for its current attempt, or None."""
    try:
        data = json.loads(exit_path(store, job.id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return int(data["rc"]) if data.get("attempt") == job.attempts else None


class JobServer:
    """Runs the queue (see the module docstring). ``run()`` blocks; ``tick()`` does one round (tests)."""

    def __init__(self, store: JobStore, options: ServeOptions | None = None, *, log: Any = None):
        self.store = store
        self.options = options or ServeOptions()
        self.children: dict[int, subprocess.Popen] = {}
        self._lock_fd: int | None = None
        self._gpus: list[str] | None = None
        self._log = log if log is not None else sys.stdout

    def say(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=self._log, flush=True)

    # -- lock --------------------------------------------------------------------------------------------
    def acquire(self) -> None:
        path = self.store.path.parent / LOCK_NAME
        for attempt in range(5):  # a reader testing the lock (server_running) holds it for a few microseconds
            try:
                self._lock_fd = hold_lock(path, blocking=False)
                return
            except OSError as exc:
                if attempt == 4:
                    raise JobError("another `workbench jobs serve` is already running on this queue", path,
                                   "one server runs the whole queue; stop it first or use another $WORKBENCH_HOME"
                                   ) from exc
                time.sleep(0.05)

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def gpus(self) -> list[str]:
        if self._gpus is None:
            self._gpus = visible_gpus()
        return self._gpus

    # -- main loop ---------------------------------------------------------------------------------------
    def run(self) -> None:
        """Serve until interrupted (or idle with ``exit_when_idle``). Running jobs outlive the server."""
        self.acquire()
        try:
            adopted = [j for j in self.store.list(["running"]) if job_alive(self.store, j)]
            for job in adopted:
                self.say(f"adopted job #{job.id} (pid {job.pid}, still running)")
            self.say(f"serving {self.store.path}: up to {self.options.max_parallel} job(s) at once, "
                     f"{self.options.threads_per_job()} CPU thread(s) each")
            while True:
                active = self.tick()
                if self.options.exit_when_idle and not active:
                    self.say("queue idle: exiting")
                    return
                time.sleep(self.options.poll_seconds)
        finally:
            self.release()

    def tick(self) -> int:
        """Check running jobs, settle dependencies, start what may start. Returns queued + running jobs."""
        for job in self.store.list(["running"]):
            self._check_running(job)
        self._settle_dependencies()
        jobs = self.store.list()
        running = [j for j in jobs if j.state == "running"]
        for job in pick_jobs(jobs, self.options.max_parallel - len(running)):
            self._launch(job, running)
            running.append(self.store.get(job.id))
        return sum(1 for j in self.store.list(["queued", "running"]))

    def _settle_dependencies(self) -> None:
        changed = True
        while changed:  # a chain a -> b -> c settles in one tick
            changed = False
            jobs = self.store.list()
            by_id = {j.id: j for j in jobs}
            for job in jobs:
                if job.state != "queued":
                    continue
                verdict = blocked_by_dependency(job, by_id)
                if verdict and self.store.update(job.id, expect_state="queued", state=verdict[0], reason=verdict[1],
                                                 ended=time.time()):
                    self.say(f"job #{job.id} {verdict[0]}: {verdict[1]}")
                    changed = True

    # -- launching ---------------------------------------------------------------------------------------
    def _launch(self, job: Job, running: list[Job]) -> None:
        project = Path(job.project)
        try:
            args = parse_stage(job.stage, project, job.argv)
            argv, meta = STAGES[job.stage].prepare(job, project, args)
            device = assign_device(job.device, running, self.gpus if job.device != "cpu" else [])
        except Exception as exc:  # a project deleted since, a stage gone from the CLI, a GPU gone...
            self.store.update(job.id, expect_state="queued", state="failed", ended=time.time(),
                              reason=f"cannot start: {exc}")
            self.say(f"job #{job.id} failed to start: {exc}")
            return
        threads = self.options.threads_per_job()
        flag = STAGES[job.stage].threads_flag
        if flag and flag not in argv and not any(a.startswith(flag + "=") for a in argv):
            argv = [*argv, flag, str(threads)]
        attempt = job.attempts + 1
        log_path = self.store.log_path(job.id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        exit_path(self.store, job.id).unlink(missing_ok=True)
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])  # the children import this very copy
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(job_environment(device, threads, self.gpus))
        command = command_line(job.stage, project, argv)
        # Recorded before the process exists: a server killed between the two steps leaves a "running" job whose
        # process (if it started) holds the job's lock, so the next server adopts it instead of starting it twice.
        if not self.store.update(job.id, expect_state="queued", state="running", started=time.time(), ended=None,
                                 pid=None, pid_start=None, assigned_device=device, threads=threads, command=command,
                                 log_path=str(log_path), exit_code=None, attempts=attempt, meta=meta, reason=None):
            return  # cancelled meanwhile
        child = [sys.executable, "-m", "workbench.jobs.child", str(job.id), str(attempt),
                 str(exit_path(self.store, job.id)), "--", *cli_argv(job.stage, project, argv)]
        with open(log_path, "ab") as log:
            log.write(f"=== job #{job.id} attempt {attempt} {time.strftime('%Y-%m-%d %H:%M:%S')} on {device}, "
                      f"{threads} thread(s): {command}\n".encode())
            log.flush()
            kwargs: dict[str, Any] = {}
            if os.name == "nt":
                kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
            else:
                kwargs["start_new_session"] = True  # its own process group: cancel stops the stage's workers too
            try:
                process = subprocess.Popen(child, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           env=env, cwd=str(project), close_fds=True, **kwargs)
            except OSError as exc:
                self._set_final(self.store.get(job.id), "failed", f"cannot start its process: {exc}")
                return
        self.children[job.id] = process
        self.store.update(job.id, pid=process.pid, pid_start=process_start_time(process.pid))
        self.say(f"started job #{job.id} (pid {process.pid}, {device}): {command}")

    # -- watching ----------------------------------------------------------------------------------------
    def _check_running(self, job: Job) -> None:
        now = time.time()
        if job.cancel_requested is not None and job.pid and owns_group(job):
            if not job.meta.get("term_sent"):
                signal_group(job.pid, signal.SIGTERM)
                self.store.update(job.id, meta={**job.meta, "term_sent": now})
            elif now - float(job.meta["term_sent"]) > self.options.grace_seconds:
                signal_group(job.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
        child = self.children.get(job.id)
        if child is not None:
            rc = child.poll()
            if rc is None:
                return
            self.children.pop(job.id)
            code = read_exit(self.store, job)
            self._finish(job, code if code is not None else rc, died=code is None)
            return
        if job_alive(self.store, job):
            if not job.pid:  # started by a server killed before it recorded the pid: the lock file names it
                pid = lock_holder(f"{exit_path(self.store, job.id)}.lock")
                if pid:
                    self.store.update(job.id, pid=pid, pid_start=process_start_time(pid))
            return  # adopted: a job started by an earlier server, still working
        code = read_exit(self.store, job)
        if code is not None:
            self._finish(job, code, died=False)
            return
        # Its process is gone without an exit record: killed together with a previous server, or the machine
        # rebooted. Stray workers of its group are stopped before the stage runs again. Linux never hands out a
        # pid that is still a process group's id, so a group with the job's id is the job's own group unless a
        # live process now carries that pid (reused after the group emptied): then nothing is signalled.
        if job.pid and owns_group(job):
            signal_group(job.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
        if job.cancel_requested is not None:
            self._set_final(job, "cancelled", "cancelled while running")
        elif job.attempts >= self.options.max_attempts:
            self._set_final(job, "failed", f"its process died {job.attempts} times without finishing")
        else:
            reason = f"process {job.pid} gone without an exit code; re-queued (attempt {job.attempts + 1} next)"
            if self.store.update(job.id, expect_state="running", state="queued", pid=None, pid_start=None,
                                 reason=reason):
                self.say(f"job #{job.id}: {reason}")

    def _finish(self, job: Job, code: int, died: bool) -> None:
        if job.cancel_requested is not None:
            self._set_final(job, "cancelled", "cancelled while running", code)
        elif code == 0:
            self._set_final(job, "done", None, code)
        elif died and code < 0:
            self._set_final(job, "failed", f"killed by signal {-code}", code)
        else:
            self._set_final(job, "failed", f"exit code {code}; see `workbench jobs logs {job.id}`", code)

    def _set_final(self, job: Job, state: str, reason: str | None, code: int | None = None) -> None:
        assert state in FINAL_STATES
        if self.store.update(job.id, expect_state="running", state=state, reason=reason, exit_code=code,
                             ended=time.time()):
            self.say(f"job #{job.id} {state}" + (f": {reason}" if reason else ""))


def spawn_server(store: JobStore, max_parallel: int = 1) -> subprocess.Popen | None:
    """Start a detached ``workbench jobs serve --exit-when-idle`` unless a server already runs (the app uses it,
    so closing the browser never stops queued work). Returns the process, or None when one was running."""
    if server_running(store):
        return None
    env = dict(os.environ)
    env["WORKBENCH_HOME"] = str(store.path.parent)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    store.logs_dir.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"start_new_session": True} if os.name != "nt" else {}
    with open(store.logs_dir / "serve.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "workbench", "jobs", "serve", "--exit-when-idle", "--max-parallel", str(max_parallel)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, close_fds=True, **kwargs)


def cancel_job(store: JobStore, job_id: int) -> Job:
    """Cancel a job: a queued one at once; a running one gets SIGTERM on its process group now (the server
    escalates to SIGKILL after its grace period and records the state)."""
    job = store.request_cancel(job_id)
    if job.state == "running" and same_process_alive(job.pid, job.pid_start):
        signal_group(job.pid, signal.SIGTERM)
        store.update(job.id, meta={**job.meta, "term_sent": time.time()})
    return store.get(job_id)


def describe(job: Job) -> str:
    return job.command or shlex.join(["workbench", *cli_argv(job.stage, job.project, job.argv)])
