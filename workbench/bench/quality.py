"""How fast does a swap become recognisable? ``python -m workbench.bench quality [--presets tiny,quick]``.

For the demo pair (Grace Hopper -> astronaut, built offline like ``workbench demo``) each preset trains in
this process and, every ``--every`` steps, the src->dst swaps of ``--faces`` destination faces spread over
the clip are scored with dlib's face embedding against the source and destination facesets
(:class:`workbench.quality.IdentityProbe`). The clock stops at the first check where at least 90 % of the
swaps are closer to the source than to the destination with a median source distance of at most 0.5
(``workbench.quality.READS_AS_SOURCE_*``), or at ``--max-steps``.

Reported per preset: steps and CPU-seconds (all threads of this process: robust on a shared machine) until
that bar, wall seconds, and the score at the end; on CUDA, GPU-seconds (wall time with synchronisation).
The table starts with the CPU model, its flags relevant to training speed, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def cpu_description() -> str:
    """CPU model and the flags that decide bf16/AVX-512 speed, plus the load average."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "fma") if f in flags]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return f"{model} ({os.cpu_count()} cores; flags: {' '.join(shown) or 'none of avx2/avx512'}); load average {load}"


def measure(preset_name: str, src: Path, dst: Path, *, every: int, max_steps: int, faces: int,
            threads: int = 0, overrides: dict | None = None, say=print) -> dict:
    """Train one preset until the swap reads as the source; returns the measurements."""
    import numpy as np
    import torch

    from workbench.quality import READS_AS_SOURCE_DISTANCE, READS_AS_SOURCE_SHARE, IdentityProbe, even_sample
    from workbench.train import Trainer, preset
    from workbench.train.data import face_landmarks, gather

    if threads:
        torch.set_num_threads(threads)
    opts = preset(preset_name, preview_every=0, metrics_every=0, save_every_seconds=0.0, metrics_samples=0,
                  **(overrides or {}))
    trainer = Trainer(opts, src, dst, run_dir=None)
    o = trainer.options

    def bank_faces(bank, count):
        idx = even_sample(list(range(len(bank))), count)
        return idx, [(bank.images[i].permute(1, 2, 0).numpy().astype(np.float32) / 255.0,
                      face_landmarks(bank.paths[i], o.face_type, o.resolution)) for i in idx]

    _, src_faces = bank_faces(trainer.data.src, 16)
    dst_idx, dst_faces = bank_faces(trainer.data.dst, max(16, faces))
    probe = IdentityProbe(src_faces, dst_faces)
    score_idx, score_faces = bank_faces(trainer.data.dst, faces)
    lms = [lm for _, lm in score_faces]
    cuda = trainer.device.type == "cuda"

    def score() -> dict:
        trainer.model.eval()
        with torch.no_grad(), trainer._autocast():
            swapped, _ = trainer.model.swap(gather(trainer.data.dst, np.asarray(score_idx), trainer.device).images)
        trainer.model.train()
        return probe.score(list(swapped.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()), lms)

    cpu0, wall0, train_cpu, train_wall = time.process_time(), time.perf_counter(), 0.0, 0.0
    reached, curve, last = None, [], {}
    while trainer.step < max_steps:
        c, w = time.process_time(), time.perf_counter()
        trainer.run(steps=every)
        if cuda:
            torch.cuda.synchronize()
        train_cpu += time.process_time() - c
        train_wall += time.perf_counter() - w
        last = score()
        curve.append((trainer.step, last["id_closer_to_src"], last["id_distance_src"]))
        say(f"  {preset_name} step {trainer.step}: closer to source {last['id_closer_to_src']:.0%}, median "
            f"distance {last['id_distance_src']:.3f} (train CPU {train_cpu:.0f} s, wall {train_wall:.0f} s)")
        if last["id_closer_to_src"] >= READS_AS_SOURCE_SHARE and last["id_distance_src"] <= READS_AS_SOURCE_DISTANCE:
            reached = trainer.step
            break
    return {"preset": preset_name, "reached_step": reached, "train_cpu_s": train_cpu, "train_wall_s": train_wall,
            "total_cpu_s": time.process_time() - cpu0, "total_wall_s": time.perf_counter() - wall0,
            "device": str(trainer.device), "final": last, "curve": curve, "faces": len(score_idx)}


def demo_facesets(folder: Path) -> tuple[Path, Path]:
    """The demo project's facesets (built and extracted once, reused)."""
    from workbench.demo import build_demo_project
    from workbench.extract import ExtractOptions, extract_project

    project = build_demo_project(folder)
    for side in ("src", "dst"):
        extract_project(project, side, ExtractOptions(size=256, smoothing=0.5 if side == "dst" else 0.0),
                        progress=False)
    return project.aligned_dir("src"), project.aligned_dir("dst")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.bench quality", description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="tiny,quick", help="comma-separated presets (default tiny,quick)")
    parser.add_argument("--every", type=int, default=100, help="steps between identity checks (default 100)")
    parser.add_argument("--max-steps", type=int, default=4000, help="give up after this many steps (default 4000)")
    parser.add_argument("--faces", type=int, default=24, help="destination faces scored per check (default 24)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = the trainer's auto choice)")
    parser.add_argument("--folder", default=None, help="demo project folder to (re)use (default: a temp folder)")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                        help="override a training option for every preset, e.g. --set lr=0.001 (repeatable)")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set expects OPTION=VALUE, got {item!r}")
        try:
            overrides[key.strip()] = json.loads(value)
        except ValueError:
            overrides[key.strip()] = value  # plain text, e.g. --set optimizer=rmsprop

    print(f"CPU: {cpu_description()}")
    if overrides:
        print(f"option overrides: {overrides}")
    with tempfile.TemporaryDirectory(prefix="wb-bench-quality-") as tmp:
        folder = Path(args.folder) if args.folder else Path(tmp) / "demo"
        src, dst = demo_facesets(folder)
        rows = [measure(name.strip(), src, dst, every=args.every, max_steps=args.max_steps, faces=args.faces,
                        threads=args.threads, overrides=overrides)
                for name in args.presets.split(",") if name.strip()]
    gpu = any(r["device"].startswith("cuda") for r in rows)
    unit = "GPU-s" if gpu else "CPU-s"
    print(f"\nuntil >= 90% of {args.faces} held-out destination faces read as the source with median distance <= 0.5")
    print(f"{'preset':8} {'steps':>6} {'train ' + unit:>12} {'wall s':>8} {'closer':>7} {'median d':>9}")
    for r in rows:
        steps = str(r["reached_step"]) if r["reached_step"] else f">{r['curve'][-1][0] if r['curve'] else 0}"
        cost = r["train_wall_s"] if gpu else r["train_cpu_s"]
        f = r["final"]
        print(f"{r['preset']:8} {steps:>6} {cost:>12.0f} {r['total_wall_s']:>8.0f} "
              f"{f.get('id_closer_to_src', 0):>7.0%} {f.get('id_distance_src', float('nan')):>9.3f}")
    print(f"CPU after: {cpu_description()}")
    return 0
