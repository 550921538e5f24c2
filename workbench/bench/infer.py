"""Model inference speed: ``python -m workbench.bench infer [--threads N] [--presets tiny,quick,saehd] [--live]``.

For each training preset's architecture (random weights: only the timing matters) it prints faces/s of the
merger's predictor call (one encoder pass, swap + swap mask + dst mask) at batch 1 (the live path) and batch 8
(merging a project) for:

- torch fp32;
- torch bf16 autocast, only where the hardware runs bf16 natively (CUDA, or a CPU with AVX-512 BF16 / AMX);
  on other CPUs bf16 is emulated and slower than fp32, so it is skipped with a note;
- onnxruntime on the exported DFM (CUDA provider when present, else CPU).

``--live`` adds the live pipeline (track + align + swap + merge + label) on 640x480 frames of
``videos/lp_d19.mp4`` (or synthetic frames without the shared media: then no face, tracking only) per
``--live-presets`` (default ``tiny``; on CUDA ``tiny,quick,saehd``: the GPU target is >= 25 fps with quick/saehd),
both backends: frames/s and per-frame latency.

``--device auto`` (the default) times torch on CUDA when ``torch.cuda.is_available()`` (else on Apple's MPS, else on
the CPU: ``workbench.train.device.resolve_device``), and
onnxruntime uses its CUDA provider when the installed build has one (``onnxruntime-gpu``); the header says which
of them this machine has, so a table without CUDA rows says why.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..machine import machine_line

PRESET_NAMES = ("tiny", "quick", "saehd")


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


def accelerator_lines(device: str) -> list[str]:
    """What this machine offers for inference: torch's device (and GPU name) and onnxruntime's providers."""
    import onnxruntime as ort
    import torch

    from workbench.export_model import providers

    lines = []
    if torch.cuda.is_available():
        lines.append(f"CUDA: {torch.cuda.get_device_name(0)} (torch {torch.version.cuda}); torch rows run on {device}")
    else:
        lines.append("CUDA: not available to torch here: no GPU rows (GPU figures are unmeasured on this machine)")
    usable = providers()
    lines.append(f"onnxruntime {ort.__version__}: providers {', '.join(ort.get_available_providers())}; used: "
                 f"{usable[0]}" + ("" if "CUDAExecutionProvider" in usable else
                                   " (install onnxruntime-gpu on a CUDA machine for GPU rows)"))
    return lines


def _backend_label(dtype: object) -> str:
    return {"torch.bfloat16": "torch bf16", "torch.float16": "torch fp16"}.get(str(dtype), "torch bf16")


def bench_preset(name: str, threads: int, repeats: int, batches: tuple[int, ...], device: str) -> list[dict]:
    import torch

    from workbench.export_model import export_model_file, load_onnx_predictor
    from workbench.train.latent import Predictor, _inference_dtype

    model, config = _build(name)
    res = config.resolution
    rows = []
    half = _inference_dtype(torch.device(device), "auto")  # bf16 (fp16 on GPUs without bf16), None on plain CPUs
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model_file(model, config, Path(tmp) / f"{name}.dfm")
        onnx_pred = load_onnx_predictor(path, threads=threads)
        model = model.to(device)
        where = "" if device == "cpu" else f" {device}"
        backends = [(f"torch fp32{where}", Predictor(model, config, "fp32"), "")]
        if half is not None:
            backends.append((f"{_backend_label(half)}{where}", Predictor(model, config, "auto"), ""))
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


def bench_live(threads: int, frames_n: int, device: str = "cpu", presets: tuple[str, ...] = ("tiny",)) -> list[dict]:
    """The live pipeline at 640x480 per preset (default the tiny architecture), torch fp32 on ``device`` and
    onnxruntime (its CUDA provider when present)."""
    from workbench.testdata import shared_data_dir

    data = shared_data_dir()
    video = data / "videos" / "lp_d19.mp4" if data else None
    frames = []
    if video is not None and video.is_file():
        for rgb in _decode_rgb(video, frames_n):
            canvas = np.full((480, 640, 3), 96, np.uint8)
            y0, x0 = max(0, (480 - rgb.shape[0]) // 2), max(0, (640 - rgb.shape[1]) // 2)
            crop = rgb[:480, :640]
            canvas[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
            frames.append(canvas)
        source = "lp_d19.mp4 on a 640x480 canvas"
    else:
        rng = np.random.default_rng(0)
        frames = [(rng.random((480, 640, 3)) * 255).astype(np.uint8) for _ in range(frames_n)]
        source = "synthetic 640x480 (no shared media: no face, tracking only)"
    rows = []
    for name in presets:
        rows += _bench_live_preset(name, frames, source, threads, device)
    return rows


def _decode_rgb(video: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` frames of ``video`` as RGB uint8: PyAV (the workbench's reader) where installed, else
    OpenCV (a GPU machine's image often has opencv but not PyAV; the benchmark needs frames, not timestamps)."""
    try:
        import av
    except ImportError:
        import cv2

        capture, frames = cv2.VideoCapture(str(video)), []
        while len(frames) < count:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        capture.release()
        return frames
    with av.open(str(video)) as container:
        return [f.to_ndarray(format="rgb24") for _, f in zip(range(count), container.decode(video=0))]


def _bench_live_preset(name: str, frames: list, source: str, threads: int, device: str) -> list[dict]:
    from workbench.export_model import export_model_file, load_onnx_predictor
    from workbench.live import LiveSwapper
    from workbench.train.latent import Predictor

    model, config = _build(name)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model_file(model, config, Path(tmp) / f"{name}.dfm")
        onnx_pred = load_onnx_predictor(path, threads=threads)
        torch_label = "torch fp32" + ("" if device == "cpu" else f" {device}")
        for label, pred in ((torch_label, Predictor(model.to(device), config, "fp32")),
                            (f"onnxruntime {onnx_pred.provider.replace('ExecutionProvider', '')}", onnx_pred)):
            swapper = LiveSwapper(pred)
            swapper.process(frames[0])  # warm-up
            swapper.reset()
            t0 = time.perf_counter()
            results = list(swapper.run(frames))
            wall = time.perf_counter() - t0
            total = sorted(r.timings_ms["total"] for r in results)
            rows.append({"preset": name, "backend": label, "source": source, "frames": len(results),
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
    parser.add_argument("--device", default="auto",
                        help="torch device: auto (cuda when available, else mps, else cpu), cpu, cuda or cuda:N")
    parser.add_argument("--live", action="store_true", help="also time the live pipeline at 640x480")
    parser.add_argument("--live-frames", type=int, default=60)
    parser.add_argument("--live-presets", default=None,
                        help="presets for --live (default: tiny on the CPU, tiny,quick,saehd on CUDA)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from workbench.train.device import resolve_device

    device = str(resolve_device(args.device))  # checks that an asked-for CUDA device exists
    print(machine_line())
    for line in accelerator_lines(device):
        print(line)
    print(f"torch {torch.__version__}, {args.threads} threads, device {device}; "
          f"load average {os.getloadavg()[0]:.1f} at start")
    batches = tuple(int(b) for b in args.batches.split(","))
    rows = []
    for name in [p.strip() for p in args.presets.split(",") if p.strip()]:
        rows += bench_preset(name, args.threads, args.repeats, batches, device)
    head = f"{'preset':7s} {'archi':8s} {'res':>4s} {'batch':>5s} {'backend':24s} {'faces/s':>8s} {'ms/face':>8s}  note"
    print(head)
    print("-" * len(head))
    for r in rows:
        fps = f"{r['faces_per_s']:8.1f}" if r["faces_per_s"] else f"{'-':>8s}"
        ms = f"{r['ms_per_face']:8.2f}" if r["ms_per_face"] else f"{'-':>8s}"
        print(f"{r['preset']:7s} {r['archi']:8s} {r['res']:4d} {r['batch']:5d} {r['backend']:24s} {fps} {ms}  {r['note']}")
    if args.live:
        default = "tiny,quick,saehd" if device.startswith("cuda") else "tiny"
        live_presets = tuple(p.strip() for p in (args.live_presets or default).split(",") if p.strip())
        live = bench_live(args.threads, args.live_frames, device, live_presets)
        print(f"\nlive pipeline, {live[0]['source']}, {live[0]['frames']} frames (targets: tiny on the CPU "
              f">= 10 fps, <= 200 ms in the browser; quick/saehd on a GPU >= 25 fps)")
        head = (f"{'preset':7s} {'backend':20s} {'fps':>6s} {'median ms':>9s} {'p90 ms':>7s} {'track ms':>8s} "
                f"{'swap ms':>8s} {'faces':>5s} {'detect':>6s}")
        print(head)
        print("-" * len(head))
        for r in live:
            print(f"{r['preset']:7s} {r['backend']:20s} {r['fps']:6.1f} {r['latency_ms_median']:9.1f} "
                  f"{r['latency_ms_p90']:7.1f} {r['track_ms']:8.1f} {r['swap_ms']:8.1f} {r['faces']:5d} "
                  f"{r['detections']!s:>6s}")
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    return 0
