"""The job queue: queue semantics, exclusive folders, real jobs in parallel, SIGKILL of the server, CLI JSON."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from train_fixtures import make_faceset

from workbench.cli import main as cli_main
from workbench.jobs import (
    STAGES,
    Job,
    JobError,
    JobServer,
    JobStore,
    ServeOptions,
    add_job,
    allowed_stages,
    cancel_job,
    job_progress,
)
from workbench.jobs.server import assign_device, job_environment, pick_jobs
from workbench.jobs.stages import cli_commands, parse_stage

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX process groups and signals")
REPO = Path(__file__).resolve().parents[1]
# a 32 px model with 8-channel convolutions: the machinery, not the quality (see train_fixtures.fast_options)
FAST_TRAIN = ["--resolution", "32", "--ae-dims", "32", "--e-dims", "8", "--d-dims", "8", "--d-mask-dims", "8",
              "--batch-size", "4", "--optimizer", "adam", "--warmup-steps", "0", "--preview-every", "0",
              "--metrics-every", "0", "--loader-workers", "0", "--cpu-threads", "1", "--save-every-seconds", "0"]


def _project(folder: Path, faces: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "workbench.json").write_text(json.dumps({"schema_version": 1, "face_type": "full", "face_size": 48}))
    if faces:
        make_faceset(folder / "aligned" / "src", faces, seed=1)
        make_faceset(folder / "aligned" / "dst", faces, seed=2)
    return folder


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "WORKBENCH_HOME": str(home), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, timeout=120,
                          env=_env(home))


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _job(id: int, state: str = "queued", priority: int = 0, after=(), keys=()) -> Job:
    return Job(id=id, project="/p", stage="sort", argv=(), device="cpu", priority=priority, after=tuple(after),
               keys=tuple(keys), state=state)


# ---------------------------------------------------------------------------------------------------------------
# the queue file


def test_store_schema_wal_and_refusals(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    with pytest.raises(JobError, match="schema 99, newer"):
        JobStore(tmp_path / "jobs.sqlite")
    (tmp_path / "bad.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(JobError, match="not a readable SQLite"):
        JobStore(tmp_path / "bad.sqlite")
    # a failed transaction leaves nothing behind
    good = JobStore(tmp_path / "good.sqlite")
    with pytest.raises(RuntimeError), good.transaction() as tx:
        tx.execute("INSERT INTO jobs (project, stage, argv, device, created) VALUES ('p', 'sort', '[]', 'cpu', 0)")
        raise RuntimeError("crash inside the transaction")
    assert good.list() == []
    with pytest.raises(JobError, match="--after 7: no such job"):
        good.add("/p", "sort", [], after=[7])


def test_pick_jobs_priority_dependencies_and_exclusive_keys():
    jobs = [
        _job(1, "running", keys=["/a::aligned/src"]),
        _job(2, priority=0, keys=["/a::aligned/src"]),          # same folder as the running job: waits
        _job(3, priority=0, keys=["/a::aligned/dst"]),          # other side of the same project: may run
        _job(4, priority=5, keys=["/b::models/r"]),             # highest priority first
        _job(5, priority=9, after=[1], keys=["/c::merged"]),    # dependency still running: waits
        _job(6, priority=1, keys=["/b::models/r"]),             # same run folder as #4 picked this round
        _job(7, priority=-1, keys=["/d::output"]),
    ]
    assert [j.id for j in pick_jobs(jobs, 2)] == [4, 3]
    assert [j.id for j in pick_jobs(jobs, 10)] == [4, 3, 7]
    assert pick_jobs(jobs, 0) == []
    done = [_job(1, "done", keys=["/a::aligned/src"]), *jobs[1:]]
    assert [j.id for j in pick_jobs(done, 10)] == [5, 4, 2, 3, 7]  # 2 and 3 keep id order at equal priority


def test_stage_registry_follows_the_cli(tmp_path):
    commands = cli_commands()
    allowed = allowed_stages()
    assert allowed == tuple(s for s in STAGES if s in commands)
    assert {"extract", "sort", "train", "merge", "export"} <= set(allowed)
    project = _project(tmp_path / "p")
    store = JobStore(tmp_path / "home" / "jobs.sqlite")
    keys = {}
    for stage, argv in [("extract", ["--side", "src"]), ("extract", []), ("sort", ["--side", "dst"]),
                        ("train", ["--run", "r1", "--steps", "5"]), ("train", ["--preset", "quick"]),
                        ("merge", []), ("export", [])]:
        job = add_job(store, project, stage, argv, device="cpu")
        keys[(stage, tuple(argv))] = {k.split("::")[1] for k in job.keys}
        assert all(k.startswith(str(project.resolve()) + "::") for k in job.keys)
    assert keys[("extract", ("--side", "src"))] == {"aligned/src"}
    assert keys[("extract", ())] == {"aligned/src", "aligned/dst", "frames/dst"}
    assert keys[("sort", ("--side", "dst"))] == {"aligned/dst"}
    assert keys[("train", ("--run", "r1", "--steps", "5"))] == {"models/r1"}
    assert keys[("train", ("--preset", "quick"))] == {"models/quick"}
    with pytest.raises(JobError, match="cannot be queued"):
        add_job(store, project, "demo", [])
    with pytest.raises(JobError, match="invalid choice: 'nope'"):
        add_job(store, project, "sort", ["--by", "nope"])
    with pytest.raises(JobError, match="drop --background"):
        add_job(store, project, "train", ["--background"])
    with pytest.raises(JobError, match="not a plain name"):
        add_job(store, project, "train", ["--run", "../../elsewhere"])
    with pytest.raises(JobError, match="unknown device"):
        add_job(store, project, "sort", [], device="gpu7")
    with pytest.raises(Exception, match="not a workbench project"):
        add_job(store, tmp_path / "nowhere", "sort", [])
    assert len(store.list()) == 7


def test_cancel_and_dependency_cascade(tmp_path):
    project = _project(tmp_path / "p")
    store = JobStore(tmp_path / "home" / "jobs.sqlite")
    a = add_job(store, project, "sort", [], device="cpu")
    b = add_job(store, project, "merge", [], device="cpu", after=[a.id])
    c = add_job(store, project, "export", [], device="cpu", after=[b.id])
    x = add_job(store, project, "sort", ["--side", "dst"], device="cpu")
    y = add_job(store, project, "train", [], device="cpu", after=[x.id])
    assert cancel_job(store, a.id).state == "cancelled"
    store.update(x.id, state="failed", reason="boom")
    server = JobServer(store, ServeOptions(max_parallel=0), log=open(os.devnull, "w"))
    assert server.tick() == 0  # everything settled in one round, nothing left to run
    states = {j.id: (j.state, j.reason) for j in store.list()}
    assert states[b.id] == ("cancelled", f"dependency #{a.id} cancelled")
    assert states[c.id] == ("cancelled", f"dependency #{b.id} cancelled")
    assert states[y.id] == ("failed", f"dependency #{x.id} failed")
    # a final job does not change on cancel
    assert cancel_job(store, y.id).state == "failed"


def test_devices_and_thread_share():
    running = [_job(1, "running"), _job(2, "running")]
    running = [Job(**{**r.to_dict(), "assigned_device": d}) for r, d in zip(running, ["cuda:0", "cuda:0"])]
    assert assign_device("auto", running, ["0", "1"]) == "cuda:1"
    assert assign_device("auto", [], []) == "cpu"
    assert assign_device("cpu", [], ["0"]) == "cpu"
    assert assign_device("cuda:1", [], ["3", "5"]) == "cuda:1"
    with pytest.raises(JobError, match="cuda:2 does not exist"):
        assign_device("cuda:2", [], ["0"])
    env = job_environment("cuda:1", 3, ["3", "5"])
    assert env["CUDA_VISIBLE_DEVICES"] == "5" and env["OMP_NUM_THREADS"] == "3"
    assert job_environment("cpu", 1, ["0"])["CUDA_VISIBLE_DEVICES"] == ""
    assert ServeOptions(max_parallel=2, cpu_count=2).threads_per_job() == 1
    assert ServeOptions(max_parallel=3, cpu_count=16).threads_per_job() == 5
    assert ServeOptions(max_parallel=4, cpu_count=2).threads_per_job() == 1


def test_training_relaunch_resumes_to_the_same_target(tmp_path):
    project = _project(tmp_path / "p")
    store = JobStore(tmp_path / "home" / "jobs.sqlite")
    job = add_job(store, project, "train", ["--run", "r", "--steps", "50"], device="cpu")
    run = project / "models" / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "status.json").write_text(json.dumps({"step": 100, "target_steps": 150, "state": "running"}))
    args = parse_stage("train", project, job.argv)
    argv, meta = STAGES["train"].prepare(job, project, args)
    assert argv == ["--run", "r", "--steps", "50"] and meta["base_step"] == 100  # first launch: unchanged
    (run / "checkpoints" / "latest.pt").write_bytes(b"x")
    (run / "status.json").write_text(json.dumps({"step": 133, "last_save_step": 130, "target_steps": 150,
                                                  "state": "running", "updated": time.time()}))
    relaunch = Job(**{**job.to_dict(), "attempts": 1, "meta": meta, "state": "running", "started": time.time() - 5})
    argv, _ = STAGES["train"].prepare(relaunch, project, args)
    assert argv == ["--run", "r", "--resume", "--steps", "20"]  # 100 + 50 = 150 = last checkpoint 130 + 20
    fraction, text = job_progress(relaunch)
    assert fraction == pytest.approx(133 / 150) and "step 133/150" in text


def test_one_server_per_queue(tmp_path):
    from workbench.jobs import server_running

    store = JobStore(tmp_path / "jobs.sqlite")
    first, second = JobServer(store), JobServer(store)
    assert not server_running(store)
    first.acquire()
    try:
        assert server_running(store)
        with pytest.raises(JobError, match="already running on this queue"):
            second.acquire()
    finally:
        first.release()
    assert not server_running(store)
    second.acquire()
    second.release()


def test_adoption_by_lock_pid_reuse_and_requeue(tmp_path):
    """A job process found through its lock (its pid never recorded) is adopted; a recorded pid whose start time
    differs (a reused pid) is not the job; a job whose process is gone without an exit code is re-queued."""
    from workbench.jobs.procs import process_start_time
    from workbench.jobs.server import exit_path
    from workbench.train.runs import lock_holder

    project = _project(tmp_path / "p")
    store = JobStore(tmp_path / "home" / "jobs.sqlite")
    job = add_job(store, project, "sort", [], device="cpu")
    store.logs_dir.mkdir(parents=True)
    lock = f"{exit_path(store, job.id)}.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from workbench.jobs.procs import hold_lock; "
                               "hold_lock(sys.argv[1]); print('locked', flush=True); time.sleep(60)", lock],
                              env=_env(tmp_path), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert lock_holder(lock) == holder.pid
        # the server died after marking the job running but before recording its pid
        store.update(job.id, state="running", attempts=1, pid=None, started=time.time())
        server = JobServer(store, ServeOptions(max_parallel=0), log=open(os.devnull, "w"))
        server.tick()
        adopted = store.get(job.id)
        assert adopted.state == "running" and adopted.pid == holder.pid
        assert adopted.pid_start == process_start_time(holder.pid)
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder(lock) is None  # the kernel released it
    # our own pid with a wrong start time is a reused pid, not the job (and never signalled: it is this test)
    store.update(job.id, pid=os.getpid(), pid_start=process_start_time(os.getpid()) + 1)
    server.tick()
    requeued = store.get(job.id)
    assert requeued.state == "queued" and "re-queued" in requeued.reason and requeued.attempts == 1


def test_jobs_tab_callbacks(tmp_path):
    """The Jobs tab's functions without a browser: the Train form becomes valid CLI flags, rows, cancel, log."""
    from workbench.app import jobs_tab
    from workbench.train.options import PRESETS

    project = _project(tmp_path / "p")
    store = JobStore(tmp_path / "home" / "jobs.sqlite")
    form = PRESETS["tiny"].to_dict()  # what the Train tab's option components hold
    out = jobs_tab.train_as_job(str(project), "r1", form, max_steps=40, store=store, start_server=False)
    assert "Queued job **#1**" in out["status"]
    job = store.get(1)
    assert job.argv[:4] == ("--run", "r1", "--steps", "40") and "--resume" not in job.argv
    flags = dict(zip(job.argv[4::2], job.argv[5::2]))
    assert flags["--resolution"] == str(form["resolution"]) and flags["--random-warp"] in ("y", "n")
    assert "--status-every-seconds" not in flags  # not a CLI flag
    (project / "models" / "r1" / "checkpoints").mkdir(parents=True)
    (project / "models" / "r1" / "checkpoints" / "latest.pt").write_bytes(b"x")
    jobs_tab.train_as_job(str(project), "r1", form, store=store, start_server=False)
    assert "--resume" in store.get(2).argv
    jobs_tab.extract_as_job(str(project), side="dst", every_nth=2, workers=1, store=store, start_server=False)
    assert store.get(3).argv[:2] == ("--side", "dst") and "--smoothing" in store.get(3).argv
    # Merge: the form becomes the project's default (merge.json, read by the merge command), then a merge job
    from workbench.app import tab_merge

    form_settings = {k[4:]: v for k, v in tab_merge.merge_setup(str(project)).items() if k.startswith("set:")}
    refused = jobs_tab.merge_as_job(str(project), None, dict(form_settings, blur=30), store=store, start_server=False)
    assert "no trained model chosen" in refused["status"] and not (project / "merge.json").exists()
    jobs_tab.merge_as_job(str(project), "r1", dict(form_settings, blur=30), 0.5, store=store, start_server=False)
    assert store.get(4).stage == "merge" and store.get(4).argv == ("--run", "r1")
    saved = json.loads((project / "merge.json").read_text())
    assert saved["default"]["blur"] == 30 and saved["temporal_smoothing"] == 0.5
    jobs_tab.export_as_job(str(project), "clip.mp4", label=False, overwrite=True, crf=20, store=store,
                           start_server=False)
    export = store.get(5)
    assert export.stage == "export" and export.argv == ("--crf", "20", "--quiet", "--output", "clip.mp4",
                                                        "--no-label", "--overwrite")
    bad = jobs_tab.submit_job(str(project), "sort", "--by nope", "cpu", 0, "", store=store)
    assert "invalid choice: 'nope'" in bad["status"]
    assert "no project is open" in jobs_tab.submit_job("", "sort", "", "cpu", 0, "", store=store)["status"]
    rows = jobs_tab.jobs_rows(store)
    assert [r[0] for r in rows] == [5, 4, 3, 2, 1] and rows[2][1:4] == ["p", "extract", "queued"]
    assert jobs_tab.COLUMNS[0] == "id" and len(rows[0]) == len(jobs_tab.COLUMNS)
    assert "cancelled" in jobs_tab.cancel(1, store=store)["status"]
    assert store.get(1).state == "cancelled"
    assert "(no output yet)" in jobs_tab.show_log(2, store=store)["log"]
    assert jobs_tab.select_row(rows, [3], store=store)["job_id"] == 2


# ---------------------------------------------------------------------------------------------------------------
# real jobs


@pytest.mark.slow
def test_two_projects_in_parallel_real_extraction(tmp_path, data_dir):
    """Extraction of two projects runs side by side; a sort of the same folder waits for its extraction."""
    p1, p2 = tmp_path / "p1", tmp_path / "p2"
    assert cli_main(["new", str(p1), "--src", str(data_dir / "stills" / "biden"), "--face-size", "96"]) == 0
    assert cli_main(["new", str(p2), "--src", str(data_dir / "stills" / "obama"), "--face-size", "96"]) == 0
    store = JobStore(tmp_path / "home" / "jobs.sqlite")
    quiet = ["--side", "src", "--workers", "0", "--quiet"]
    e1 = add_job(store, p1, "extract", quiet, device="cpu")
    e2 = add_job(store, p2, "extract", quiet, device="cpu")
    sort = add_job(store, p1, "sort", ["--side", "src", "--by", "blur", "--keep", "1", "--quiet"], device="cpu",
                   after=[e1.id])
    with open(tmp_path / "serve.log", "w") as log:
        JobServer(store, ServeOptions(max_parallel=2, exit_when_idle=True, poll_seconds=0.1, cpu_count=2),
                  log=log).run()
    jobs = {j.id: j for j in store.list()}
    assert [jobs[i].state for i in (e1.id, e2.id, sort.id)] == ["done"] * 3, (tmp_path / "serve.log").read_text()
    a, b = jobs[e1.id], jobs[e2.id]
    assert a.started < b.ended and b.started < a.ended, "the two projects did not run at the same time"
    assert jobs[sort.id].started >= a.ended  # its dependency, and the same folder (aligned/src)
    assert a.meta["extract_total"] == {"src": 2} and b.meta["extract_total"] == {"src": 5}
    assert a.threads == 1 and a.assigned_device == "cpu"
    # the stages really ran: faces written, the sort kept one
    assert len(list((p1 / "aligned" / "src").glob("*.jpg"))) == 1
    assert len(list((p1 / "aligned" / "src_trash").glob("*.jpg"))) == 1
    assert len(list((p2 / "aligned" / "src").glob("*.jpg"))) >= 4
    assert "faces written:       2" in Path(a.log_path).read_text()
    assert job_progress(a) == (1.0, "done")
    assert "--workers 0" in jobs[e1.id].command  # the user's worker count is kept


@pytest.mark.slow
def test_sigkill_of_the_server_loses_nothing(tmp_path, monkeypatch, capsys):
    """Kill the server (and one job with it) mid-training; a new server adopts the live job, re-queues the dead
    one, which resumes from its checkpoint to the same final step; a running job is cancelled with SIGTERM."""
    home = tmp_path / "home"
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    p1, p2 = _project(tmp_path / "p1", faces=8), _project(tmp_path / "p2", faces=8)
    steps = "80"
    assert cli_main(["jobs", "add", str(p1), "--device", "cpu", "--", "train", "--run", "a", "--steps", steps,
                     *FAST_TRAIN]) == 0
    assert cli_main(["jobs", "add", str(p2), "--device", "cpu", "--json", "--", "train", "--run", "b", "--steps",
                     steps, *FAST_TRAIN]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["id"] == 2
    assert cli_main(["jobs", "add", str(p1), "--priority", "-5", "--", "train", "--run", "c", "--steps", "100000",
                     *FAST_TRAIN]) == 0
    store = JobStore(home / "jobs.sqlite")
    serve_log, serve2_log = open(tmp_path / "serve.log", "ab"), open(tmp_path / "serve2.log", "a")
    server = subprocess.Popen([sys.executable, "-m", "workbench", "jobs", "serve", "--max-parallel", "2", "--poll",
                               "0.2"], env=_env(home), stdout=serve_log, stderr=subprocess.STDOUT)

    def step(project: Path, run: str) -> int:
        try:
            return int(json.loads((project / "models" / run / "status.json").read_text()).get("step") or 0)
        except (OSError, ValueError):
            return 0

    try:
        _wait(lambda: step(p1, "a") >= 3 and step(p2, "b") >= 3, 150, "both trainers to make progress")
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        a, b = store.get(1), store.get(2)
        os.killpg(b.pid, signal.SIGKILL)  # job b dies with the server (as on a crashed machine)
        capsys.readouterr()
        assert cli_main(["jobs", "list", "--json"]) == 0
        rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
        assert [rows[i]["state"] for i in (1, 2, 3)] == ["running", "running", "queued"]
        assert {"id", "project", "command", "device", "state", "progress", "started", "ended", "log"} <= set(rows[1])
        assert rows[1]["command"].startswith(f"workbench train {p1.resolve()} --run a --steps {steps}")
        assert rows[1]["log"] == str(home / "logs" / "job-1.log") and rows[1]["device"] == "cpu"

        # a new server in this process (a thread), while the test cancels job c once it trains
        restarted = JobServer(store, ServeOptions(max_parallel=2, exit_when_idle=True, poll_seconds=0.2),
                              log=serve2_log)
        thread = threading.Thread(target=restarted.run, daemon=True)
        thread.start()
        _wait(lambda: store.get(3).state == "running" and step(p1, "c") >= 2, 150, "job c to train")
        # a training job is an ordinary trainer: its run folder takes pause/resume/stop as usual
        assert cli_main(["train-cmd", str(p1), "pause", "--run", "c", "--wait", "60"]) == 0
        _wait(lambda: "(paused)" in job_progress(store.get(3))[1], 60, "job c to pause")
        assert store.get(3).state == "running"
        capsys.readouterr()
        assert cli_main(["jobs", "cancel", "3"]) == 0
        assert "SIGTERM" in capsys.readouterr().out
        thread.join(150)
        assert not thread.is_alive()
    finally:
        if server.poll() is None:
            server.kill()
        serve_log.close()
        serve2_log.close()
    jobs = {j.id: j for j in store.list()}
    log = (tmp_path / "serve.log").read_text() + (tmp_path / "serve2.log").read_text()
    assert jobs[1].state == "done" and jobs[1].attempts == 1 and jobs[1].pid == a.pid, log  # adopted, not re-run
    assert "adopted job #1" in log
    assert jobs[2].state == "done" and jobs[2].attempts == 2, log                        # re-queued, resumed
    assert "--resume --steps" in jobs[2].command
    assert step(p1, "a") == int(steps) and step(p2, "b") == int(steps)  # the same final step as without the crash
    assert "attempt 2" in (home / "logs" / "job-2.log").read_text()
    assert jobs[3].state == "cancelled" and jobs[3].exit_code == 0
    status_c = json.loads((p1 / "models" / "c" / "status.json").read_text())
    assert status_c["state"] == "stopped" and (p1 / "models" / "c" / "checkpoints" / "latest.pt").exists()
    capsys.readouterr()
    assert cli_main(["jobs", "logs", "2", "--tail", "3"]) == 0
    assert f"stopped at step {steps}" in capsys.readouterr().out

