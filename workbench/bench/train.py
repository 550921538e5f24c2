"""Training speed against DeepFaceLab: ``python -m workbench.bench train [--steps N] [--threads T]``.

Each configuration runs in its own subprocess (so peak memory is its own) with the *whole* training step:
batch gather, DFL random-warp + affine augmentation in torch, forward, masked DSSIM+MSE+mask losses,
backward, optimiser update. Synthetic aligned faces (written to a temp folder) feed it; the faces' content
does not change the cost.

Reported per configuration: iterations/s, wall seconds per iteration, CPU seconds per iteration (all
threads: robust on a shared machine), peak resident memory (CPU) or peak allocated memory (CUDA), the
achieved GFLOP/s of the counted matmul/conv work, the share of the step spent producing the batch (the
"waiting for data" share; on CUDA with synchronisation), and the ratio to DFL's measured seconds per
iteration on the same 2-core machine. Target: ratio <= 0.5.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (name, options, DFL measured s/iter on this 2-core machine)
CONFIGS = (
    ("Quick96 (df-ud 96, 128/64/64/16, bs 4)",
     dict(archi="df-ud", resolution=96, ae_dims=128, e_dims=64, d_dims=64, d_mask_dims=16, batch_size=4), 1.94),
    ("SAEHD liae-ud 96 (256/64/64/22, bs 4)",
     dict(archi="liae-ud", resolution=96, ae_dims=256, e_dims=64, d_dims=64, d_mask_dims=22, batch_size=4), 3.10),
    ("SAEHD df 96 (256/64/64/22, bs 4)",
     dict(archi="df", resolution=96, ae_dims=256, e_dims=64, d_dims=64, d_mask_dims=22, batch_size=4), 4.34),
    ("SAEHD df 64 (256/64/64/22, bs 8)",
     dict(archi="df", resolution=64, ae_dims=256, e_dims=64, d_dims=64, d_mask_dims=22, batch_size=8), 4.65),
)
TARGET_RATIO = 0.5
DFL_CORES = 2  # DFL's times were measured using both cores of this machine


def _synthetic_faceset(folder: Path, count: int, size: int, seed: int) -> Path:
    """Random smooth faces with mean-face landmarks (only the cost matters here)."""
    import cv2
    import numpy as np

    from workbench.face_constants import LANDMARKS_68_3D
    from workbench.faceset import FaceMeta, write_aligned_face
    from workbench.masks import hull_mask

    rng = np.random.default_rng(seed)
    base = np.asarray(LANDMARKS_68_3D[:, :2], np.float64) * np.array([1.0, -1.0])
    base = (base - base.min(0)) / (base.max(0) - base.min(0)).max()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        lm = (base * size * 0.6 + size * 0.2 + rng.normal(0, size * 0.01, (68, 2))).astype(np.float32)
        bg = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), size / 16)
        m = hull_mask((size, size), lm)[..., None]
        image = np.clip(bg * (1 - m) + np.array([0.8, 0.6, 0.5], np.float32) * m, 0, 1)
        meta = FaceMeta(face_type="full", size=size, landmarks=lm, source_landmarks=lm,
                        face_matrix=np.array([[1.0, 0, 0], [0, 1.0, 0]]), source_file="bench.mp4", frame_index=i)
        write_aligned_face(folder / f"{i:06d}.png", image, meta)
    return folder


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_one(index: int, steps: int, warmup: int, threads: int, overrides: dict) -> dict:
    """Time one configuration in this process; returns a JSON-able result row."""
    import torch

    torch.set_num_threads(threads)
    from workbench.train import Trainer, preset

    name, model_opts, dfl = CONFIGS[index]
    opts = preset("saehd", **model_opts, masked_training=True, random_warp=True, eyes_mouth_prio=False,
                  metrics_every=0, preview_every=0, metrics_samples=0, save_every_seconds=0.0,
                  loader_workers=0, **overrides)
    with tempfile.TemporaryDirectory(prefix="wb-bench-train-") as tmp:
        res = opts.resolution
        n = max(opts.batch_size * 2, 16)
        src = _synthetic_faceset(Path(tmp) / "src", n, res, 1)
        dst = _synthetic_faceset(Path(tmp) / "dst", n, res, 2)
        trainer = Trainer(opts, src, dst)
        device = trainer.device
        for _ in range(warmup):
            trainer.train_step()
        flops = 0.0
        try:
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as counter:
                trainer.train_step()
            flops = float(counter.get_total_flops())
        except Exception:  # noqa: BLE001 - FLOP counting is informative only
            pass
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        data_time = 0.0
        _sync(device)
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        for _ in range(steps):
            a = time.perf_counter()
            batch = trainer.next_batch()
            _sync(device)
            data_time += time.perf_counter() - a
            trainer.train_step(batch)
        _sync(device)
        wall = time.perf_counter() - t0
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    s_per_it = wall / steps
    row = {
        "name": name, "device": str(device), "threads": threads, "steps": steps,
        "it_per_s": steps / wall, "s_per_it": s_per_it, "cpu_s_per_it": cpu / steps,
        "peak_mb": (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                    else usage1.ru_maxrss / 1024.0),
        "gflop_per_step": flops / 1e9, "gflops": flops / 1e9 / s_per_it if flops else 0.0,
        "data_share": data_time / wall, "dfl_s_per_it": dfl, "ratio": s_per_it / dfl,
        "cpu_ratio": (cpu / steps) / (dfl * DFL_CORES),
    }
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.bench train", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per configuration (default 8)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, as the DFL runs)")
    parser.add_argument("--only", type=int, default=None, help="run only configuration N (0-based)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="fp32,bf16",
                        help="comma-separated precisions to time (default fp32,bf16; bf16 uses AVX512_BF16/AMX on CPU)")
    parser.add_argument("--channels-last", default="n", choices=("y", "n"))
    parser.add_argument("--json", action="store_true", help="print one JSON row per configuration")
    parser.add_argument("--_child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    if args._child is not None:
        overrides = {"device": args.device, "precision": precisions[0], "channels_last": args.channels_last == "y"}
        row = run_one(args._child, args.steps, args.warmup, args.threads, overrides)
        print(json.dumps({**row, "precision": precisions[0]}))
        return 0

    indices = [args.only] if args.only is not None else range(len(CONFIGS))
    rows = []
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    for i in indices:
        for precision in precisions:
            cmd = [sys.executable, "-m", "workbench.bench", "train", "--_child", str(i), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--threads", str(args.threads), "--device", args.device,
                   "--precision", precision, "--channels-last", args.channels_last]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                print(out.stdout + out.stderr, file=sys.stderr)
                return out.returncode
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
    if args.json:
        return 0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"training step (gather + random warp + fwd + masked DSSIM/MSE/mask loss + bwd + update), "
          f"{args.threads} threads, {rows[0]['device']}, load average {load:.1f}")
    cuda = rows[0]["device"].startswith("cuda")
    flop_head = "TFLOP/s" if cuda else "GFLOP/s"
    head = (f"{'configuration':42s} {'prec':>4s} {'it/s':>6s} {'s/it':>6s} {'cpu s/it':>8s} {'peak MB':>8s} {flop_head:>8s} "
            f"{'data %':>6s} {'DFL s/it':>8s} {'ratio':>6s} {'cpu ratio':>9s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        ok = "ok" if r["ratio"] <= TARGET_RATIO else "SLOW"
        print(f"{r['name']:42s} {r['precision']:>4s} {r['it_per_s']:6.2f} {r['s_per_it']:6.3f} {r['cpu_s_per_it']:8.3f} "
              f"{r['peak_mb']:8.0f} {r['gflops'] / (1000 if cuda else 1):8.1f} {100 * r['data_share']:5.1f}% {r['dfl_s_per_it']:8.2f} "
              f"{r['ratio']:6.2f} {r['cpu_ratio']:9.2f} {ok}")
    print(f"ratio = our wall s/it / DFL s/it (target <= {TARGET_RATIO}); cpu ratio = our CPU-seconds per iteration / "
          f"(DFL s/it x {DFL_CORES} cores): below 1 we spend less CPU than DFL's whole 2-core budget (spinning "
          f"OpenMP threads inflate it on a loaded machine). data % = share of the step spent drawing + augmenting "
          f"the batch (the time a GPU would wait for data).")
    return 0
