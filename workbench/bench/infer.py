"""Model inference speed: ``python -m workbench.bench infer [--threads N] [--presets tiny,quick,saehd] [--live]``.

For each training preset's architecture (random weights: only the timing matters) it prints faces/s of the
merger's predictor call (one encoder pass, swap + swap mask + dst mask) at batch 1 (the live path) and batch 8
(merging a project) for:

- torch fp32;
- torch bf16 autocast, only where the hardware runs bf16 natively (CUDA, or a CPU with AVX-512 BF16 / AMX);
  on other CPUs bf16 is emulated and slower than fp32, so it is skipped with a note;
- onnxruntime on the exported DFM (CUDA provider when present, else CPU).

``--live`` adds the live pipeline (track + align + swap + merge + label) on 640x480 frames of
``videos/lp_d19.mp4`` (or synthetic frames without the shared media: then no face, tracking only) with the
``tiny`` architecture, both backends: frames/s and per-frame latency.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

PRESET_NAMES = ("tiny", "quick", "saehd")


def cpu_line() -> str:
    """CPU model and the SIMD flags that decide fp32/bf16 speed."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
    return f"{name}, {os.cpu_count()} logical CPUs, flags: {' '.join(f for f in wanted if f in flags) or 'n/a'}"


def _build(preset_name: str):
    import torch

    from workbench.models import build_model
    from workbench.train import preset

    torch.manual_seed(0)
    config = preset(preset_name).model_config()
    model = build_model(config).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, config


def _time(fn, repeats: int, min_seconds: float = 1.0) -> float:
    """Median seconds per call (at least ``repeats`` calls and ``min_seconds`` in total), after one warm-up."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) > 200:
            break
    return statistics.median(times)


def bench_preset(name: str, threads: int, repeats: int, batches: tuple[int, ...], device: str) -> list[dict]:
    import torch

    from workbench.export_model import export_model_file, load_onnx_predictor
    from workbench.train.latent import Predictor, _inference_dtype

    model, config = _build(name)
    res = config.resolution
    rows = []
    native_bf16 = _inference_dtype(torch.device(device), "auto") == torch.bfloat16
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model_file(model, config, Path(tmp) / f"{name}.dfm")
        onnx_pred = load_onnx_predictor(path, threads=threads)
        model = model.to(device)
        backends = [("torch fp32", Predictor(model, config, "fp32"), "")]
        if native_bf16:
            backends.append(("torch bf16", Predictor(model, config, "bf16"), ""))
        else:
            backends.append(("torch bf16", None, "skipped: no native bf16 on this CPU (emulated bf16 is slower)"))
        backends.append((f"onnxruntime ({onnx_pred.provider.replace('ExecutionProvider', '')})", onnx_pred, ""))
        rng = np.random.default_rng(0)
        for batch in batches:
            faces = rng.random((batch, res, res, 3), dtype=np.float32)
            for label, pred, note in backends:
                row = {"preset": name, "archi": config.archi_string, "res": res, "batch": batch, "backend": label}
                if pred is None:
                    rows.append({**row, "faces_per_s": None, "ms_per_face": None, "note": note})
                    continue
                sec = _time(lambda p=pred, f=faces: p.batch(f), repeats)
                rows.append({**row, "faces_per_s": batch / sec, "ms_per_face": 1e3 * sec / batch, "note": note})
    return rows


def bench_live(threads: int, frames_n: int) -> list[dict]:
    """The live pipeline at 640x480 with the tiny architecture, torch fp32 and onnxruntime."""
    from workbench.export_model import export_model_file, load_onnx_predictor
    from workbench.live import LiveSwapper
    from workbench.testdata import shared_data_dir
    from workbench.train.latent import Predictor

    data = shared_data_dir()
    video = data / "videos" / "lp_d19.mp4" if data else None
    frames = []
    if video is not None and video.is_file():
        import av

        with av.open(str(video)) as container:
            for _, f in zip(range(frames_n), container.decode(video=0)):
                rgb = f.to_ndarray(format="rgb24")
                canvas = np.full((480, 640, 3), 96, np.uint8)
                y0, x0 = (480 - rgb.shape[0]) // 2, (640 - rgb.shape[1]) // 2
                canvas[y0:y0 + rgb.shape[0], x0:x0 + rgb.shape[1]] = rgb[:480, :640]
                frames.append(canvas)
        source = "lp_d19.mp4 on a 640x480 canvas"
    else:
        rng = np.random.default_rng(0)
        frames = [(rng.random((480, 640, 3)) * 255).astype(np.uint8) for _ in range(frames_n)]
        source = "synthetic 640x480 (no shared media: no face, tracking only)"
    model, config = _build("tiny")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model_file(model, config, Path(tmp) / "tiny.dfm")
        for label, pred in (("torch fp32", Predictor(model, config, "fp32")),
                            ("onnxruntime", load_onnx_predictor(path, threads=threads))):
            swapper = LiveSwapper(pred)
            swapper.process(frames[0])  # warm-up
            swapper.reset()
            t0 = time.perf_counter()
            results = list(swapper.run(frames))
            wall = time.perf_counter() - t0
            total = sorted(r.timings_ms["total"] for r in results)
            rows.append({"backend": label, "source": source, "frames": len(results),
                         "faces": sum(r.faces for r in results), "fps": len(results) / wall,
                         "latency_ms_median": statistics.median(total), "latency_ms_p90": total[int(0.9 * (len(total) - 1))],
                         "track_ms": statistics.mean(r.timings_ms["track"] for r in results),
                         "swap_ms": statistics.mean(r.timings_ms["swap"] for r in results),
                         "detections": getattr(swapper.tracker, "detections", None)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.bench infer", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch / onnxruntime CPU threads (default 1: on a shared 2-core machine two spinning "
                        "OpenMP threads are many times slower)")
    parser.add_argument("--presets", default=",".join(PRESET_NAMES), help="comma-separated presets")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls at least (default 5)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu or cuda)")
    parser.add_argument("--live", action="store_true", help="also time the live pipeline at 640x480 (tiny)")
    parser.add_argument("--live-frames", type=int, default=60)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_line()}")
    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}; "
          f"load average {os.getloadavg()[0]:.1f} at start")
    batches = tuple(int(b) for b in args.batches.split(","))
    rows = []
    for name in [p.strip() for p in args.presets.split(",") if p.strip()]:
        rows += bench_preset(name, args.threads, args.repeats, batches, args.device)
    head = f"{'preset':7s} {'archi':8s} {'res':>4s} {'batch':>5s} {'backend':24s} {'faces/s':>8s} {'ms/face':>8s}  note"
    print(head)
    print("-" * len(head))
    for r in rows:
        fps = f"{r['faces_per_s']:8.1f}" if r["faces_per_s"] else f"{'-':>8s}"
        ms = f"{r['ms_per_face']:8.2f}" if r["ms_per_face"] else f"{'-':>8s}"
        print(f"{r['preset']:7s} {r['archi']:8s} {r['res']:4d} {r['batch']:5d} {r['backend']:24s} {fps} {ms}  {r['note']}")
    if args.live:
        live = bench_live(args.threads, args.live_frames)
        print(f"\nlive pipeline, tiny model, {live[0]['source']}, {live[0]['frames']} frames "
              f"(target >= 10 fps, <= 200 ms)")
        head = f"{'backend':14s} {'fps':>6s} {'median ms':>9s} {'p90 ms':>7s} {'track ms':>8s} {'swap ms':>8s} {'faces':>5s} {'detect':>6s}"
        print(head)
        print("-" * len(head))
        for r in live:
            print(f"{r['backend']:14s} {r['fps']:6.1f} {r['latency_ms_median']:9.1f} {r['latency_ms_p90']:7.1f} "
                  f"{r['track_ms']:8.1f} {r['swap_ms']:8.1f} {r['faces']:5d} {r['detections']!s:>6s}")
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    return 0
