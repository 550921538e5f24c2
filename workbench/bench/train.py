"""Training speed, side by side with DeepFaceLab on the same machine: ``python -m workbench.bench train``.

Each configuration runs in its own subprocess (so peak memory is its own) with the *whole* training step:
batch gather, DFL random-warp + affine augmentation in torch, forward, masked DSSIM+MSE+mask losses,
backward, optimiser update. Synthetic aligned faces (written to a temp folder) feed it; the faces' content
does not change the cost.

With ``--dfl PATH --dfl-python PY`` the same configurations are also built in the user's DeepFaceLab checkout
(``workbench/bench/_dfl_driver.py`` runs under DFL's Python, builds a DFL faceset with DFL's own writer from the
same synthetic faces and times DFL's ``train_one_iter()``), and the two are timed **alternately in one run**
(ours, DFL, ours, DFL, ...; both processes stay loaded, only one works at a time) so a drifting machine load
affects both alike. DFL is timed with TensorFlow's oneDNN off and on (``TF_ENABLE_ONEDNN_OPTS=0/1``; TF leaves it
off on AMD CPUs by default). Without ``--dfl`` the table shows our figures only: a ratio against numbers from
another machine would be meaningless.

Reported per configuration: iterations/s, wall seconds per iteration (median over rounds), CPU seconds per
iteration (all threads), peak resident memory (CPU) or peak allocated memory (CUDA), the achieved GFLOP/s of the
counted matmul/conv work, the share of the step spent producing the batch (the "waiting for data" share), and with
``--dfl`` DFL's seconds per iteration and the ratio. Target: ratio <= 0.5.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import WorkbenchError
from ..machine import describe_machine, machine_line

PROTOCOL_PREFIX = "WBPROTO "  # the line protocol both timed processes speak (see _dfl_driver.py)

# The four reference configurations, each as our preset + options and as DFL's model class + options.
# Quick96 is DFL's fixed model (df-ud 96, 128/64/64/16, bs 4, RMSprop 2e-4, lr_dropout 0.3): our "quick" preset.
_SAEHD_DFL = dict(face_type="f", masked_training=True, eyes_mouth_prio=False, uniform_yaw=False,
                  blur_out_mask=False, adabelief=True, lr_dropout="n", random_warp=True, random_hsv_power=0.0,
                  true_face_power=0.0, face_style_power=0.0, bg_style_power=0.0, gan_power=0.0, ct_mode="none",
                  clipgrad=False, pretrain=False, random_src_flip=False, random_dst_flip=True,
                  autobackup_hour=0, write_preview_history=False, target_iter=0, models_opt_on_gpu=True)


@dataclass(frozen=True)
class BenchConfig:
    name: str
    preset: str
    options: dict
    dfl_model: str
    dfl_options: dict


def _saehd(name: str, archi: str, res: int, batch: int) -> BenchConfig:
    dims = dict(ae_dims=256, e_dims=64, d_dims=64, d_mask_dims=22)
    return BenchConfig(name, "saehd", dict(archi=archi, resolution=res, batch_size=batch, **dims), "SAEHD",
                       dict(_SAEHD_DFL, archi=archi, resolution=res, batch_size=batch, **dims))


CONFIGS = (
    BenchConfig("Quick96 (df-ud 96, 128/64/64/16, bs 4)", "quick", {}, "Quick96", {}),
    _saehd("SAEHD liae-ud 96 (256/64/64/22, bs 4)", "liae-ud", 96, 4),
    _saehd("SAEHD df 96 (256/64/64/22, bs 4)", "df", 96, 4),
    _saehd("SAEHD df 64 (256/64/64/22, bs 8)", "df", 64, 8),
)
# --smoke: the same harness on tiny shapes (checks that both sides run; the numbers mean nothing)
SMOKE = BenchConfig("smoke (df 32, 32/16/16/8, bs 2)", "saehd",
                    dict(archi="df", resolution=32, ae_dims=32, e_dims=16, d_dims=16, d_mask_dims=8, batch_size=2),
                    "SAEHD", dict(_SAEHD_DFL, archi="df", resolution=32, ae_dims=32, e_dims=16, d_dims=16,
                                  d_mask_dims=8, batch_size=2))
TARGET_RATIO = 0.5

# --sweep gpu: the GPU measurement the speed issue asks for (liae-ud 256 at batch 8-32; run with --compile n,y and
# the default bf16,fp16), each row with its MFU against the chip's dense peak below
GPU_SWEEP = tuple(_saehd(f"SAEHD liae-ud 256 (256/64/64/22, bs {b})", "liae-ud", 256, b) for b in (8, 16, 32))
ALL_CONFIGS = CONFIGS + GPU_SWEEP
# Dense (no sparsity) tensor-core peak in TFLOP/s per precision, from the vendors' data sheets (SXM parts where
# there are two forms); a GPU not listed gets no MFU column rather than a guess.
DENSE_PEAK_TFLOPS = {
    "H200": {"bf16": 989.4, "fp16": 989.4}, "H100": {"bf16": 989.4, "fp16": 989.4},
    "A100": {"bf16": 312.0, "fp16": 312.0}, "L40S": {"bf16": 362.1, "fp16": 362.1},
    "L4": {"bf16": 121.0, "fp16": 121.0}, "A10": {"bf16": 125.0, "fp16": 125.0},
    "RTX 4090": {"bf16": 165.2, "fp16": 165.2}, "T4": {"fp16": 65.0}, "V100": {"fp16": 125.0},
}


def dense_peak_tflops(gpu_name: str, precision: str) -> float | None:
    """The chip's dense tensor peak for ``precision`` (bf16/fp16), or None when the GPU or precision is not listed."""
    name = gpu_name.upper()
    for key in sorted(DENSE_PEAK_TFLOPS, key=len, reverse=True):  # "A100" before "A10"
        if key.upper() in name:
            return DENSE_PEAK_TFLOPS[key].get(precision)
    return None


def _config(index: int, smoke: bool) -> BenchConfig:
    return SMOKE if smoke else ALL_CONFIGS[index]


def _mean_face(size: int, rng: np.random.Generator) -> np.ndarray:
    from workbench.face_constants import LANDMARKS_68_3D

    base = np.asarray(LANDMARKS_68_3D[:, :2], np.float64) * np.array([1.0, -1.0])
    base = (base - base.min(0)) / (base.max(0) - base.min(0)).max()
    return (base * size * 0.6 + size * 0.2 + rng.normal(0, size * 0.01, (68, 2))).astype(np.float32)


def _synthetic_faces(count: int, size: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random smooth faces with mean-face landmarks (only the cost matters here)."""
    import cv2

    from workbench.masks import hull_mask

    rng = np.random.default_rng(seed)
    faces = []
    for _ in range(count):
        lm = _mean_face(size, rng)
        bg = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), size / 16)
        m = hull_mask((size, size), lm)[..., None]
        faces.append((np.clip(bg * (1 - m) + np.array([0.8, 0.6, 0.5], np.float32) * m, 0, 1), lm))
    return faces


def _synthetic_faceset(folder: Path, count: int, size: int, seed: int) -> Path:
    """Our faceset format (aligned PNG with metadata) for our trainer."""
    from workbench.faceset import FaceMeta, write_aligned_face

    folder.mkdir(parents=True, exist_ok=True)
    for i, (image, lm) in enumerate(_synthetic_faces(count, size, seed)):
        meta = FaceMeta(face_type="full", size=size, landmarks=lm, source_landmarks=lm,
                        face_matrix=np.array([[1.0, 0, 0], [0, 1.0, 0]]), source_file="bench.mp4", frame_index=i)
        write_aligned_face(folder / f"{i:06d}.png", image, meta)
    return folder


def _dfl_faces(folder: Path, count: int, size: int, seed: int) -> Path:
    """The same synthetic faces as plain JPEGs + landmarks.npy, for the DFL driver to wrap with DFLJPG."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    landmarks = []
    for i, (image, lm) in enumerate(_synthetic_faces(count, size, seed)):
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), cv2.cvtColor((image * 255).round().astype(np.uint8),
                                                              cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        landmarks.append(lm)
    np.save(folder / "landmarks.npy", np.stack(landmarks))
    return folder


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _say(message: dict) -> None:
    sys.stdout.write(PROTOCOL_PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve_ours(config: BenchConfig, threads: int, overrides: dict) -> int:
    """Our side of the line protocol: build the trainer, then time ``{"steps": k}`` requests from stdin."""
    import torch

    torch.set_num_threads(threads)
    from workbench.train import Trainer, preset

    started = time.perf_counter()
    # cpu_threads pinned: the trainer's thread tuner would otherwise judge 1 thread vs all while DFL's sample
    # workers refill their queues between rounds, and could settle on 1 thread for the whole comparison
    opts = preset(config.preset, **config.options, metrics_every=0, preview_every=0, metrics_samples=0,
                  save_every_seconds=0.0, loader_workers=0, cpu_threads=threads, **overrides)
    with tempfile.TemporaryDirectory(prefix="wb-bench-train-") as tmp:
        n = max(opts.batch_size * 2, 16)
        src = _synthetic_faceset(Path(tmp) / "src", n, opts.resolution, 1)
        dst = _synthetic_faceset(Path(tmp) / "dst", n, opts.resolution, 2)
        trainer = Trainer(opts, src, dst)
        device = trainer.device
        trainer.train_step()  # first step: lazy allocations, kernel selection
        flops = 0.0
        compiled = trainer.train_forward
        try:
            from torch.utils.flop_counter import FlopCounterMode

            # the work is counted on the eager module: compiling changes the kernels, not the FLOPs
            trainer.train_forward = getattr(compiled, "_orig_mod", compiled)
            with FlopCounterMode(display=False) as counter:
                trainer.train_step()
            flops = float(counter.get_total_flops())
        except Exception:  # noqa: BLE001 - FLOP counting is informative only
            pass
        finally:
            trainer.train_forward = compiled
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _say({"event": "ready", "name": "workbench", "device": str(device), "precision": opts.precision,
              "setup_s": time.perf_counter() - started, "gflop_per_step": flops / 1e9,
              "batch_size": opts.batch_size})
        for line in sys.stdin:
            request = json.loads(line)
            if request.get("quit"):
                break
            if request.get("profile"):
                _say({"event": "profile", "split": profile_split(trainer, int(request["profile"]))})
                continue
            steps = int(request["steps"])
            data_time = 0.0
            _sync(device)
            cpu0, wall0 = _cpu_seconds(), time.perf_counter()
            for _ in range(steps):
                a = time.perf_counter()
                batch = trainer.next_batch()
                _sync(device)
                data_time += time.perf_counter() - a
                trainer.train_step(batch)
            _sync(device)
            peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                    else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
            _say({"event": "timed", "steps": steps, "wall": time.perf_counter() - wall0,
                  "cpu": _cpu_seconds() - cpu0, "data": data_time, "peak_mb": peak})
    return 0


SPLIT_PARTS = ("conv backward", "conv forward", "optimizer", "batch", "other")


def profile_split(trainer, steps: int) -> dict[str, float]:
    """Where a training step's CPU time goes: milliseconds per step in each of `SPLIT_PARTS` (torch profiler).

    conv = the convolution kernels themselves (``aten::*convolution*`` self time, forward and backward);
    optimizer = the whole ``Optimizer.step``; batch = drawing and augmenting the batch; other = the rest
    (losses, activations, autograd bookkeeping).
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with record_function("workbench::batch"):
                batch = trainer.next_batch()
            trainer.train_step(batch)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv_bwd = sum(e.self_cpu_time_total for e in events if "convolution_backward" in e.key
                   or e.key.startswith("aten::_slow_conv2d_backward"))
    conv_fwd = sum(e.self_cpu_time_total for e in events if e.key in (
        "aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::cudnn_convolution", "aten::_convolution"))
    optimizer = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.step"))
    batch = sum(e.cpu_time_total for e in events if e.key == "workbench::batch")
    ms = {"conv backward": conv_bwd, "conv forward": conv_fwd, "optimizer": optimizer, "batch": batch}
    ms["other"] = max(0.0, total - sum(ms.values()))
    return {k: v / 1e3 / steps for k, v in ms.items()}


class TimedProcess:
    """One timed side (ours or DFL) as a child process speaking the line protocol."""

    def __init__(self, label: str, argv: list[str], env: dict[str, str], log_path: Path):
        self.label = label
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in close()
        # its own process group, so close() can stop whatever it started (DFL's sample-generator workers)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     text=True, env=env, bufsize=1, start_new_session=True)
        self.ready = self._read()
        self.rounds: list[dict] = []

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(PROTOCOL_PREFIX):
                return json.loads(line[len(PROTOCOL_PREFIX):])
            self._log.write(line)  # the side's own log output (DFL prints its summary to stdout)
        self._log.flush()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise WorkbenchError(f"{self.label} stopped before answering (exit {self.proc.wait()})",
                             hint=f"its output is in {self.log_path}:\n{tail}")

    def time_steps(self, steps: int, keep: bool = True) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"steps": steps}) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        if keep:
            self.rounds.append(answer)
        return answer

    def profile(self, steps: int) -> dict[str, float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"profile": steps}) + "\n")
        self.proc.stdin.flush()
        return self._read()["split"]

    def close(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # no worker outlives the benchmark
        self._log.close()

    def summary(self) -> dict:
        per_it = [r["wall"] / r["steps"] for r in self.rounds]
        cpu_it = [r["cpu"] / r["steps"] for r in self.rounds]
        steps = sum(r["steps"] for r in self.rounds)
        wall = sum(r["wall"] for r in self.rounds)
        data = sum(r.get("data", 0.0) for r in self.rounds)
        return {"s_per_it": statistics.median(per_it), "s_per_it_min": min(per_it), "s_per_it_max": max(per_it),
                "cpu_s_per_it": statistics.median(cpu_it), "steps": steps,
                "data_share": data / wall if wall else 0.0,
                "peak_mb": max((r.get("peak_mb", 0.0) for r in self.rounds), default=0.0)}


def check_dfl_checkout(path: Path) -> Path:
    path = path.expanduser().resolve()
    needed = [path / "models" / "ModelBase.py", path / "DFLIMG" / "DFLJPG.py", path / "core" / "interact"]
    missing = [p for p in needed if not p.exists()]
    if missing:
        raise WorkbenchError(f"{path} is not a DeepFaceLab checkout (missing {missing[0].relative_to(path)})",
                             hint="pass --dfl the folder that holds DeepFaceLab's main.py, models/ and DFLIMG/ "
                                  "(git clone of iperov/DeepFaceLab); see the README's training-benchmark section")
    return path


def compare(config: BenchConfig, *, steps: int, rounds: int, warmup: int, threads: int, device: str,
            precision: str, channels_last: bool, dfl: Path | None, dfl_python: str | None,
            onednn: tuple[str, ...], workdir: Path, profile_steps: int = 0, compile_model: bool = False,
            gpu_name: str = "") -> dict:
    """Time our trainer (and DFL's, one per oneDNN setting) alternately on ``config``; returns one table row."""
    index = ALL_CONFIGS.index(config) if config in ALL_CONFIGS else -1
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    ours_argv = [sys.executable, "-m", "workbench.bench", "train", "--_serve", str(index), "--threads", str(threads),
                 "--device", device, "--precision", precision, "--channels-last", "y" if channels_last else "n",
                 "--compile", "y" if compile_model else "n"]
    if index < 0:
        ours_argv.append("--smoke")
    sides = [TimedProcess("workbench", ours_argv, env, workdir / "workbench.log")]
    try:
        if dfl is not None:
            driver = Path(__file__).with_name("_dfl_driver.py")
            opts = config.options | {}
            model_opts = (config.dfl_options if config.dfl_model != "Quick96" else {})
            res = opts.get("resolution", 96)
            faces = _dfl_faces(workdir / "faces", max(2 * opts.get("batch_size", 4), 16), res, 1)
            for setting in onednn:
                side_dir = workdir / f"dfl-onednn{setting}"
                argv = [dfl_python or sys.executable, str(driver), "--dfl", str(dfl), "--model", config.dfl_model,
                        "--options", json.dumps(model_opts), "--faces", str(faces), "--workdir", str(side_dir)]
                sides.append(TimedProcess(f"DeepFaceLab (oneDNN {'on' if setting == '1' else 'off'})", argv,
                                          dict(env, TF_ENABLE_ONEDNN_OPTS=setting), workdir / f"dfl{setting}.log"))
        for side in sides:
            side.time_steps(warmup, keep=False)
        for _ in range(rounds):  # ours, DFL(off), DFL(on), ours, ...: drifting load hits every side alike
            for side in sides:
                side.time_steps(steps)
        split = sides[0].profile(profile_steps) if profile_steps else {}
    finally:
        for side in sides:
            side.close()
    ours = sides[0].summary()
    gflops = sides[0].ready.get("gflop_per_step", 0.0) / ours["s_per_it"]
    on_cuda = sides[0].ready.get("device", "cpu").startswith("cuda")
    peak = dense_peak_tflops(gpu_name, precision) if on_cuda and gpu_name else None
    row = {"name": config.name, "device": sides[0].ready.get("device", "cpu"), "precision": precision,
           "threads": threads, **ours, "it_per_s": 1.0 / ours["s_per_it"], "gflops": gflops, "dfl": [], "split": split,
           "compile": compile_model, "mfu": gflops / 1000.0 / peak if peak else None}
    for side, setting in zip(sides[1:], onednn):
        theirs = side.summary()
        row["dfl"].append({"onednn": setting, "s_per_it": theirs["s_per_it"], "cpu_s_per_it": theirs["cpu_s_per_it"],
                           "ratio": ours["s_per_it"] / theirs["s_per_it"],
                           "batch_size": side.ready.get("batch_size")})
    return row


def print_table(rows: list[dict], machine: str) -> None:
    print(machine)
    print("training step (gather + random warp + fwd + masked DSSIM/MSE/mask loss + bwd + update), "
          f"{rows[0]['threads']} threads, {rows[0]['device']}; s/it = median over rounds (min-max)")
    cuda = rows[0]["device"].startswith("cuda")
    flop_head = "TFLOP/s" if cuda else "GFLOP/s"
    with_dfl = any(r["dfl"] for r in rows)
    head = (f"{'configuration':42s} {'prec':>4s} {'it/s':>6s} {'s/it (min-max)':>20s} {'cpu s/it':>8s} "
            f"{'peak MB':>8s} {flop_head:>8s} {'data %':>6s}")
    with_mfu = any(r.get("mfu") for r in rows)
    if with_mfu:
        head += f" {'MFU':>6s}"
    if with_dfl:
        head += f" {'DFL oneDNN':>10s} {'DFL s/it':>8s} {'ours/DFL':>8s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        name = r["name"] + (" +compile" if r.get("compile") else "")
        line = (f"{name:42s} {r['precision']:>4s} {r['it_per_s']:6.2f} "
                f"{r['s_per_it']:6.3f} ({r['s_per_it_min']:.3f}-{r['s_per_it_max']:.3f}) {r['cpu_s_per_it']:8.3f} "
                f"{r['peak_mb']:8.0f} {r['gflops'] / (1000 if cuda else 1):8.1f} {100 * r['data_share']:5.1f}%")
        if with_mfu:
            line += f" {100 * r['mfu']:5.1f}%" if r.get("mfu") else f" {'-':>6s}"
        if not r["dfl"]:
            print(line)
        for i, d in enumerate(r["dfl"]):
            verdict = "ok" if d["ratio"] <= TARGET_RATIO else "above target"
            prefix = line if i == 0 else " " * len(line)
            print(f"{prefix} {'on' if d['onednn'] == '1' else 'off':>10s} {d['s_per_it']:8.3f} {d['ratio']:8.2f} {verdict}")
    if with_dfl:
        print(f"ours/DFL = our median s/it / DFL's median s/it, timed alternately in this run (target <= {TARGET_RATIO}).")
    else:
        print("our figures only: give --dfl PATH --dfl-python PY to time DeepFaceLab side by side on this machine.")
    print("data % = share of the step spent drawing + augmenting the batch (the time a GPU would wait for data).")
    if with_mfu:
        print("MFU = counted matmul/conv TFLOP/s over the chip's dense tensor peak for that precision "
              "(bench.train.DENSE_PEAK_TFLOPS; the issue's target: >= 40 % of the bf16 peak).")
    split_rows = [r for r in rows if r.get("split")]
    if split_rows:
        print()
        print("where our step's CPU time goes (torch profiler; ms per step, share of the step):")
        print(f"{'configuration':42s} {'prec':>4s} " + " ".join(f"{part:>16s}" for part in SPLIT_PARTS))
        for r in split_rows:
            total = sum(r["split"].values()) or 1.0
            cells = " ".join(f"{r['split'][part]:8.0f} ({100 * r['split'][part] / total:3.0f}%)"
                             for part in SPLIT_PARTS)
            print(f"{r['name']:42s} {r['precision']:>4s} {cells}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.bench train", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round and side (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side first (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: all usable cores)")
    parser.add_argument("--only", type=int, default=None,
                        help="run only configuration N (0-3: the DFL reference configurations, 4-6: the GPU sweep)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="auto",
                        help="comma-separated precisions to time: fp32, bf16, fp16, or auto (default: fp32, plus "
                             "bf16 where the device computes it natively)")
    parser.add_argument("--channels-last", default="n", choices=("y", "n"))
    parser.add_argument("--compile", default=None,
                        help="comma-separated y/n: time with and/or without torch.compile (default n; n,y with --sweep)")
    parser.add_argument("--sweep", choices=("gpu",), default=None,
                        help="gpu: liae-ud 256 at batch 8, 16 and 32 in bf16 and fp16, with and without compile, "
                             "each with its MFU (for a CUDA machine)")
    parser.add_argument("--dfl", type=Path, default=None, help="a DeepFaceLab checkout to time side by side")
    parser.add_argument("--dfl-python", default=None,
                        help="the Python that runs DFL (its own venv: Python 3.11, tensorflow-cpu 2.13, numpy<1.24)")
    parser.add_argument("--dfl-onednn", default="0,1",
                        help="TF_ENABLE_ONEDNN_OPTS settings to time DFL with (default 0,1: both)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes: checks that every side runs (the numbers mean nothing)")
    parser.add_argument("--profile-steps", type=int, default=2,
                        help="steps profiled after the timing for the CPU-time split (0: none; default 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON row per configuration")
    parser.add_argument("--_serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    threads = args.threads or describe_machine(cuda=False).cores
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    compiles = [c.strip() == "y" for c in (args.compile or ("n,y" if args.sweep else "n")).split(",") if c.strip()]
    if args._serve is not None:
        overrides = {"device": args.device, "precision": precisions[0], "channels_last": args.channels_last == "y",
                     "compile": compiles[0]}
        return serve_ours(_config(args._serve, args.smoke), threads, overrides)

    machine = describe_machine()
    if precisions == ["auto"] and args.sweep:
        precisions = ["bf16", "fp16"]
    if precisions == ["auto"]:
        # bf16 only where it is computed natively: emulated bf16 (AVX2-only CPUs) is 14-17x slower than fp32
        on_gpu = bool(machine.gpu) and args.device != "cpu"
        precisions = ["fp32", "bf16"] if (on_gpu or machine.native_bf16) else ["fp32"]
    dfl = check_dfl_checkout(args.dfl) if args.dfl else None
    if dfl is not None and not args.dfl_python:
        raise WorkbenchError("--dfl needs --dfl-python", hint="the Python of DFL's own environment, e.g. "
                                                              "~/dfl-venv/bin/python (see the README)")
    onednn = tuple(s.strip() for s in args.dfl_onednn.split(",") if s.strip())
    configs = [SMOKE] if args.smoke else ([ALL_CONFIGS[args.only]] if args.only is not None
                                          else list(GPU_SWEEP if args.sweep else CONFIGS))
    rows = []
    with tempfile.TemporaryDirectory(prefix="wb-bench-train-") as tmp:
        for config in configs:
            for precision in precisions:
                for compile_model in compiles:
                    workdir = Path(tmp) / f"{len(rows)}"
                    workdir.mkdir()
                    row = compare(config, steps=args.steps, rounds=args.rounds, warmup=args.warmup, threads=threads,
                                  device=args.device, precision=precision, channels_last=args.channels_last == "y",
                                  dfl=dfl if precision == "fp32" and not compile_model else None,
                                  dfl_python=args.dfl_python, onednn=onednn, workdir=workdir,
                                  profile_steps=0 if args.sweep else args.profile_steps,  # a CPU-time split
                                  compile_model=compile_model, gpu_name=machine.gpu)
                    rows.append(row)
                    if args.json:
                        print(json.dumps(row), flush=True)
    if not args.json:
        print_table(rows, machine_line(machine))
    return 0
