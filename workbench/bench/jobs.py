"""Two projects through the job queue: ``python -m workbench.bench jobs [--steps N] [--every-nth N]``.

Project A extracts a video's faces while project B trains (tiny preset), first one after the other
(``--max-parallel 1``: each job gets every core) and then at the same time (``--max-parallel 2``: the cores are
split, one torch thread / one extraction worker each). Both rounds run through ``workbench jobs serve`` with a
queue of their own, so the numbers include what a user pays: process start-up, imports, model build.
The printed table gives each job's time and the total wall time; quote the load average beside it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cpu_description() -> str:
    """CPU model and the SIMD flags that matter for torch on CPU (from /proc/cpuinfo)."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return f"{os.cpu_count()} CPUs"
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    wanted = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model}, {os.cpu_count()} CPUs, flags {' '.join(wanted) or '-'}"


def _cli(home: Path, *args: str) -> None:
    env = {**os.environ, "WORKBENCH_HOME": str(home), "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "workbench", *args], env=env, check=True, stdout=subprocess.DEVNULL)


def _setup(work: Path, data: Path) -> tuple[Path, Path]:
    a, b = work / "extract_project", work / "train_project"
    if not (a / "workbench.json").exists():
        _cli(work, "new", str(a), "--src", str(data / "videos" / "lp_d3.mp4"), "--face-size", "128")
    if not (b / "aligned" / "dst" / ".extract_journal.jsonl").exists():
        print("setup: extracting the training project's faces (lp_d18 / lp_d19, every 4th frame; not timed)")
        _cli(work, "new", str(b), "--src", str(data / "videos" / "lp_d18.mp4"),
             "--dst", str(data / "videos" / "lp_d19.mp4"), "--face-size", "128")
        _cli(work, "extract", str(b), "--every-nth", "4", "--quiet")
    return a, b


def _round(work: Path, a: Path, b: Path, parallel: int, steps: int, every_nth: int) -> dict:
    from ..jobs import JobServer, JobStore, ServeOptions, add_job

    shutil.rmtree(a / "aligned", ignore_errors=True)
    shutil.rmtree(a / "frames", ignore_errors=True)
    shutil.rmtree(b / "models" / "bench", ignore_errors=True)
    home = work / f"home_{parallel}"
    shutil.rmtree(home, ignore_errors=True)
    store = JobStore(home / "jobs.sqlite")
    extract = add_job(store, a, "extract", ["--side", "src", "--every-nth", str(every_nth), "--quiet"], device="cpu")
    train = add_job(store, b, "train", ["--run", "bench", "--preset", "tiny", "--steps", str(steps)], device="cpu")
    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    with open(home / "serve.log", "w") as log:
        JobServer(store, ServeOptions(max_parallel=parallel, exit_when_idle=True, poll_seconds=0.2), log=log).run()
    wall = time.monotonic() - t0
    jobs = {j.id: j for j in store.list()}
    for job in jobs.values():
        if job.state != "done":
            raise SystemExit(f"job #{job.id} {job.state}: {job.reason}; log {job.log_path}")
    return {"parallel": parallel, "wall": wall, "load": (load0, os.getloadavg()[0]),
            "extract": jobs[extract.id].ended - jobs[extract.id].started,
            "train": jobs[train.id].ended - jobs[train.id].started,
            "threads": jobs[train.id].threads,
            "faces": len(list((a / "aligned" / "src").glob("*.jpg")))}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.bench jobs", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps of project B (tiny preset)")
    parser.add_argument("--every-nth", type=int, default=2, help="extract every n-th frame of lp_d3 (354 frames)")
    parser.add_argument("--workdir", default=None, help="keep the projects here (default: a temp folder)")
    args = parser.parse_args(argv)
    from ..testdata import shared_data_dir

    data = shared_data_dir()
    if data is None:
        print("the shared test media (../shared/data) are needed: lp_d3, lp_d18, lp_d19")
        return 1
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_jobs_"))
    work.mkdir(parents=True, exist_ok=True)
    a, b = _setup(work, data)
    rows = [_round(work, a, b, 1, args.steps, args.every_nth), _round(work, a, b, 2, args.steps, args.every_nth)]
    print(f"\ntwo projects through `workbench jobs serve` on {cpu_description()}")
    print(f"A: extract lp_d3 every {args.every_nth}. frame ({rows[0]['faces']} faces); "
          f"B: train tiny preset {args.steps} steps")
    print(f"{'schedule':<40} {'extract A s':>11} {'train B s':>10} {'wall s':>8} {'threads/job':>11} {'load avg':>12}")
    names = {1: "one after the other (--max-parallel 1)", 2: "at the same time (--max-parallel 2)"}
    for r in rows:
        print(f"{names[r['parallel']]:<40} {r['extract']:11.1f} {r['train']:10.1f} {r['wall']:8.1f} "
              f"{r['threads']:11d} {r['load'][0]:5.1f}->{r['load'][1]:<5.1f}")
    print(f"parallel / sequential wall time: {rows[1]['wall'] / rows[0]['wall']:.2f}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
