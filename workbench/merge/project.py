"""Batch merge of a project: every destination frame into ``PROJECT/merged`` (resumable, threaded)."""

from __future__ import annotations

import shutil
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, MergeError
from ..fileutil import append_jsonl, atomic_path, read_jsonl
from ..images import encode_image, read_image, to_uint8, write_image
from .face import Enhancer, Prediction, Predictor, Segmenter, crop_for_model, merge_frame
from .settings import MergeConfig, MergeSettings, adapt_to_predictor
from .temporal import FlickerMeter, motion_vectors, smooth_landmark_tracks

STATE_FILE = ".merge_state.jsonl"  # per-frame settings fingerprints, for resume



@dataclass(frozen=True)
class MergeSummary:
    """What :func:`merge_project` did. Flicker values are mean |Δ| per frame inside the face (0..1 units),
    measured on the frames merged in this run, with the merged masks for both videos."""

    frames: int
    merged: int
    resumed: int
    faces_merged: int
    frames_without_faces: int
    flicker_dst: float | None
    flicker_merged: float | None
    seconds: float
    broken_faces: int = 0
    output_dir: Path | None = None

    @property
    def frames_per_second(self) -> float:
        return self.merged / self.seconds if self.seconds > 0 else 0.0

    def format(self) -> str:
        def fl(v: float | None) -> str:
            return "n/a" if v is None else f"{v * 255:.2f}"

        lines = [
            f"frames: {self.frames} ({self.merged} merged now, {self.resumed} already merged)",
            f"faces merged: {self.faces_merged}",
            f"frames without faces (copied unchanged): {self.frames_without_faces}",
            f"flicker inside the face, mean |change| per frame in 0-255 levels: destination {fl(self.flicker_dst)}, "
            f"merged {fl(self.flicker_merged)}",
            f"time: {self.seconds:.1f} s ({self.frames_per_second:.1f} frames/s)",
        ]
        if self.broken_faces:
            lines.append(f"unreadable aligned faces skipped: {self.broken_faces}")
        if self.output_dir is not None:
            lines.append(f"output: {self.output_dir}")
        return "\n".join(lines)


def predict_many(predict: Predictor, faces: Sequence[np.ndarray]) -> list[Prediction]:
    """Run the model on several crops: one ``predict_batch`` (or ``batch``) call when the predictor offers it."""
    if not faces:
        return []
    batch = getattr(predict, "predict_batch", None) or getattr(predict, "batch", None)
    if callable(batch):
        sw, m1, m2 = batch(np.stack(faces))
        return [(sw[i], m1[i], m2[i]) for i in range(len(faces))]
    return [predict(f) for f in faces]


@dataclass
class _Job:
    index: int
    frame_path: Path
    out_path: Path
    mask_path: Path
    settings: MergeSettings
    landmarks: list[np.ndarray]
    motions: list[tuple[float, float] | None] | None
    image: np.ndarray | None = None
    predictions: list[Prediction] | None = None


def landmarks_by_frame(records: Sequence[Any]) -> dict[int, list[np.ndarray]]:
    """Frame index -> the frame-space landmarks of its aligned faces, in face order (faceset records)."""
    grouped: dict[int, list[tuple[int, np.ndarray]]] = {}
    for rec in records:
        grouped.setdefault(int(rec.meta.frame_index), []).append(
            (int(rec.meta.face_index), np.asarray(rec.meta.source_landmarks, np.float32)))
    return {k: [lm for _, lm in sorted(v, key=lambda t: t[0])] for k, v in grouped.items()}


def _frame_faces(project: Any) -> tuple[dict[int, list[np.ndarray]], int]:
    from ..faceset import scan_faceset

    folder = project.aligned_dir("dst")
    if not folder.is_dir():
        raise MergeError("no aligned destination faces", folder,
                         f"run `workbench extract {project.root} --side dst` first")
    scan = scan_faceset(folder)
    faces = landmarks_by_frame(scan.faces)
    if not faces:
        raise MergeError("the aligned destination faceset is empty", folder,
                         "extract destination faces first (or restore them from aligned/dst_trash)")
    return faces, len(scan.broken)


def _smoothed_faces(faces: dict[int, list[np.ndarray]], order: Sequence[int], timestamps: Sequence[float],
                    strength: float) -> dict[int, list[np.ndarray]]:
    """Smooth each face slot (0, 1, ...) over the frame order; gaps split the track."""
    if strength <= 0:
        return faces
    out = {k: list(v) for k, v in faces.items()}
    slots = max((len(v) for v in faces.values()), default=0)
    for slot in range(slots):
        track = [faces[i][slot] if i in faces and len(faces[i]) > slot else None for i in order]
        smoothed = smooth_landmark_tracks(track, strength, timestamps)
        for i, lm in zip(order, smoothed):
            if lm is not None:
                out[i][slot] = lm
    return out


def _composite(job: _Job, segment: Segmenter | None, super_resolution: Enhancer | None
               ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Worker: merge one frame and write the PNGs (mask first, so a frame file means a finished frame)."""
    assert job.image is not None
    img = job.image
    if not job.landmarks:
        out_u8, mask = to_uint8(img), np.zeros(img.shape[:2], np.float32)
        write_image(job.mask_path, mask)
        if job.frame_path.suffix.lower() == ".png":
            with atomic_path(job.out_path) as tmp:
                shutil.copyfile(job.frame_path, tmp)
        else:
            write_image(job.out_path, out_u8)
        return job.index, to_uint8(img), out_u8, to_uint8(mask)
    out, mask = merge_frame(img, job.landmarks, None, job.settings, motions=job.motions,
                            predictions=job.predictions, rng=np.random.default_rng(job.index), segment=segment,
                            super_resolution=super_resolution)
    out_u8, mask_u8 = to_uint8(out), to_uint8(mask)
    with atomic_path(job.mask_path) as tmp:
        tmp.write_bytes(encode_image(mask_u8, "png"))
    with atomic_path(job.out_path) as tmp:
        tmp.write_bytes(encode_image(out_u8, "png"))
    return job.index, to_uint8(img), out_u8, mask_u8


def merge_project(
    project: Any,
    predict: Predictor,
    config: MergeConfig | None = None,
    *,
    workers: int = 2,
    progress: bool = True,
    resume: bool = True,
    batch_size: int = 8,
    segment: Segmenter | None = None,
    super_resolution: Enhancer | None = None,
) -> MergeSummary:
    """Merge every destination frame of a project into ``PROJECT/merged`` (+ ``merged/masks``).

    Reads ``frames/dst`` (frames.json) and the aligned destination faces' ``source_landmarks`` grouped by
    ``frame_index``; frames with no face are copied unchanged (and counted). The model runs in this thread
    on batches of crops; compositing and PNG writing run in a pool of ``workers`` threads (OpenCV, NumPy
    and PIL release the GIL). Every file is written atomically.

    Args:
        project: a ``workbench.project.Project`` or a project folder path.
        predict: the model (:data:`Predictor`).
        config: settings + overrides; default: ``PROJECT/merge.json`` if present, else DFL defaults.
            ``resolution``/``face_type`` are taken from the predictor when it has those attributes.
        workers: compositing threads.
        progress: show a tqdm progress bar.
        resume: skip frames already merged with the same settings (a frame whose settings changed since,
            e.g. after editing an override, is merged again). False re-merges everything.
        batch_size: frames per model batch.
        segment, super_resolution: optional models for xseg mask modes / super-resolution.

    Returns:
        A :class:`MergeSummary` (frames, faces merged, frames without faces, flicker dst vs merged, seconds).

    Raises:
        ProjectError: not a project, or no destination frames yet.
        MergeError: no aligned destination faces.
    """
    from tqdm.auto import tqdm

    from ..project import Project, read_frame_index

    t_start = time.perf_counter()
    if not isinstance(project, Project):
        project = Project.open(project)
    if config is None:
        path = project.merge_settings_path
        config = MergeConfig.load(path) if path.is_file() else MergeConfig()
    config = adapt_to_predictor(config, predict)
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    index = read_frame_index(project)
    entries = sorted(index.frames, key=lambda e: e.index)
    for ov_settings in {config.default, *(config.settings_for(ov.start) for ov in config.overrides)}:
        if ov_settings.needs_segmenter and segment is None:
            raise ConfigError(f"mask_mode {ov_settings.mask_mode!r} needs a segmentation model")
        if ov_settings.super_resolution_power and super_resolution is None:
            raise ConfigError("super_resolution_power > 0 needs a super-resolution model")
    faces, broken = _frame_faces(project)
    order = [e.index for e in entries]
    faces = _smoothed_faces(faces, order, [e.timestamp for e in entries], config.temporal_smoothing)
    motion_list = motion_vectors([faces.get(i, []) for i in order])
    motions = dict(zip(order, motion_list))

    merged_dir, masks_dir = project.merged_dir, project.merged_masks_dir
    masks_dir.mkdir(parents=True, exist_ok=True)
    state_path = merged_dir / STATE_FILE
    done_state = {row.get("file"): row.get("settings") for row in read_jsonl(state_path)} if resume else {}

    jobs: list[_Job] = []
    resumed = 0
    for e in entries:
        name = Path(e.file).with_suffix(".png").name
        settings = config.settings_for(e.index)
        out_path, mask_path = merged_dir / name, masks_dir / name
        lms = faces.get(e.index, [])
        fp = settings.fingerprint() if lms else "copy"
        if resume and out_path.is_file() and mask_path.is_file() and done_state.get(name, fp) == fp:
            resumed += 1
            continue
        m = motions.get(e.index)
        jobs.append(_Job(e.index, project.frames_dir / e.file, out_path, mask_path, settings, lms,
                         [m] * len(lms) if m is not None else None))

    meter_dst, meter_out = FlickerMeter(), FlickerMeter()
    faces_merged = no_face = 0
    prev_index: int | None = None
    pos = {i: k for k, i in enumerate(order)}
    bar = tqdm(total=len(entries), initial=resumed, desc="merge", unit="frame", disable=not progress)

    def consume(job: _Job, fut: Future) -> None:
        nonlocal faces_merged, no_face, prev_index
        _, dst_u8, out_u8, mask_u8 = fut.result()
        job.image, job.predictions = None, None  # free memory as we go
        if prev_index is None or pos[job.index] != pos[prev_index] + 1:
            meter_dst.reset()
            meter_out.reset()
        meter_dst.add(dst_u8, mask_u8)
        meter_out.add(out_u8, mask_u8)
        prev_index = job.index
        if job.landmarks:
            faces_merged += len(job.landmarks)
        else:
            no_face += 1
        append_jsonl(state_path, {"file": job.out_path.name,
                                  "settings": job.settings.fingerprint() if job.landmarks else "copy"})
        bar.update(1)

    try:
        # one reader thread prefetches frames; `workers` threads composite and write; the model runs here
        with ThreadPoolExecutor(max_workers=1) as reader, ThreadPoolExecutor(max_workers=workers) as pool:
            upcoming = iter(jobs)
            reads: deque[tuple[_Job, Future]] = deque()
            pending: deque[tuple[_Job, Future]] = deque()

            def prefetch() -> None:
                while len(reads) < 2 * batch_size:
                    nxt = next(upcoming, None)
                    if nxt is None:
                        return
                    reads.append((nxt, reader.submit(read_image, nxt.frame_path)))

            prefetch()
            while reads:
                chunk: list[_Job] = []
                while reads and len(chunk) < batch_size:
                    job, fut = reads.popleft()
                    job.image = fut.result()
                    chunk.append(job)
                prefetch()
                crops = [crop_for_model(job.image, lm, job.settings)[0] for job in chunk for lm in job.landmarks]
                preds = iter(predict_many(predict, crops))
                for job in chunk:
                    job.predictions = [next(preds) for _ in job.landmarks]
                    pending.append((job, pool.submit(_composite, job, segment, super_resolution)))
                while len(pending) > batch_size + 2 * workers:
                    consume(*pending.popleft())
            while pending:
                consume(*pending.popleft())
    finally:
        bar.close()
    return MergeSummary(
        frames=len(entries), merged=len(jobs), resumed=resumed, faces_merged=faces_merged,
        frames_without_faces=no_face, flicker_dst=meter_dst.value, flicker_merged=meter_out.value,
        seconds=time.perf_counter() - t_start, broken_faces=broken, output_dir=merged_dir,
    )
