"""The offline demo: the whole pipeline on built-in faces, with nothing downloaded.

Source identity: Grace Hopper (``grace_hopper.jpg``, bundled with matplotlib) animated into a short clip.
Destination: scikit-image's ``astronaut`` turned into a clip with smooth camera motion and a generated
audio track. Then: extract -> train the ``tiny`` preset to a step target (a time cap is only a safety net)
-> merge -> export -> evaluate (does the swap read as Grace Hopper? :mod:`workbench.quality`), plus a
contact sheet of every intermediate result. Re-running continues where it stopped (extraction and
merging resume, training continues from its checkpoint), and when the step target was reached but the
swap does not read as the source yet, it trains another ``train_steps``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError
from .project import CONFIG_NAME, Project, create_project

DEMO_RUN = "demo"
# The step target: measured with `python -m workbench.bench quality` (README "Swap quality"), the tiny
# preset's swap reads as Grace Hopper well before it; the cap only stops a very slow (shared) machine.
DEMO_STEPS = 1200
DEMO_MINUTES_CAP = 30.0


@dataclass(frozen=True)
class DemoOptions:
    """Options of ``workbench demo``; the defaults finish in well under 10 minutes on a 2-core CPU."""

    folder: Path = Path("workbench-demo")
    train_steps: int = DEMO_STEPS
    train_minutes: float = DEMO_MINUTES_CAP
    clip_seconds: float = 4.0
    fps: int = 24
    face_size: int = 256
    preset: str = "tiny"
    overwrite: bool = False
    progress: bool = True

    def validate(self) -> DemoOptions:
        if not 0.05 <= self.train_minutes <= 600:
            raise ConfigError(f"train_minutes must be 0.05..600, got {self.train_minutes}")
        if not 1 <= self.train_steps <= 1_000_000:
            raise ConfigError(f"train_steps must be 1..1000000, got {self.train_steps}")
        if not 1.0 <= self.clip_seconds <= 60:
            raise ConfigError(f"clip_seconds must be 1..60, got {self.clip_seconds}")
        return self


@dataclass(frozen=True)
class DemoResult:
    """Where the demo's outputs are and how long each stage took."""

    project: Project
    video: Path
    contact_sheet: Path
    timings: dict[str, float] = field(default_factory=dict)
    train_steps: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    target_steps: int = 0
    stopped_by_cap: bool = False
    evaluation: dict[str, Any] | None = None  # workbench.quality summary of the merged frames
    evaluation_table: str = ""

    @property
    def reads_as_source(self) -> bool:
        return bool(self.evaluation and self.evaluation.get("identity", {}).get("reads_as_source"))

    def warnings(self) -> list[str]:
        """Plain sentences for everything that did not go as planned, each with how to continue."""
        again = f"run `workbench demo {self.project.root}` again to continue training where it stopped"
        out = []
        if self.stopped_by_cap:
            out.append(f"WARNING: the time cap stopped training at step {self.train_steps} of {self.target_steps} "
                       f"(this machine is slower or busier than expected); {again}")
        if self.evaluation is not None and not self.reads_as_source:
            out.append("WARNING: the swapped face does NOT yet look like the source (Grace Hopper): "
                       + _identity_words(self.evaluation) + f"; {again}")
        return out

    def format(self) -> str:
        lines = [f"video:         {self.video}", f"contact sheet: {self.contact_sheet}",
                 f"project:       {self.project.root}",
                 f"training:      {self.train_steps} steps (target {self.target_steps}), losses "
                 + ", ".join(f"{k} {v:.3f}" for k, v in self.losses.items())]
        lines.append("time:          " + ", ".join(f"{k} {v:.0f} s" for k, v in self.timings.items())
                     + f" (total {sum(self.timings.values()):.0f} s)")
        if self.evaluation_table:
            lines += ["", "== evaluation (workbench evaluate; saved in evaluation.json)", self.evaluation_table]
        lines += ["", *self.warnings()] if self.warnings() else []
        return "\n".join(lines)


def _identity_words(summary: dict[str, Any]) -> str:
    ident = summary.get("identity", {})
    share, dist = ident.get("closer_to_src"), ident.get("median_distance_src")
    if share is None or dist is None:
        return "no face was found in the merged frames"
    return f"{share:.0%} of frames are closer to the source than to the destination, median distance {dist:.3f}"


def build_demo_project(folder: str | Path, *, clip_seconds: float = 4.0, fps: int = 24, face_size: int = 256,
                       overwrite: bool = False) -> Project:
    """Create the demo project with generated source and destination clips (no downloads)."""
    from .demo_media import make_demo_destination, make_demo_source_clip

    folder = Path(folder).expanduser().resolve()
    if overwrite and (folder / CONFIG_NAME).exists():
        shutil.rmtree(folder)
    if (folder / CONFIG_NAME).exists():
        return Project.open(folder)
    staging = folder.parent / f".{folder.name}-media"
    staging.mkdir(parents=True, exist_ok=True)
    src = make_demo_source_clip(staging / "grace_hopper.mp4", frames=48, fps=12)
    dst = make_demo_destination(staging / "astronaut.mp4", seconds=clip_seconds, fps=fps)
    project = create_project(folder, src, dst, face_type="whole_face", face_size=face_size, name="demo")
    shutil.rmtree(staging, ignore_errors=True)
    return project


def contact_sheet(project: Project, run_dir: Path, predict, merge_settings) -> np.ndarray:
    """One picture of every intermediate result: landmarks, crops, masks, preview, colour variants, output."""
    from . import align, viz
    from .color import TRANSFERS
    from .faceset import load_aligned_face, scan_faceset
    from .images import read_image
    from .masks import hull_mask
    from .merge import crop_for_model
    from .project import read_frame_index
    from .train import latest_preview

    tiles: list[np.ndarray] = []
    labels: list[str] = []
    size = 256

    def add(image: np.ndarray, label: str) -> None:
        tiles.append(np.asarray(image, np.float32))
        labels.append(label)

    index = read_frame_index(project)
    dst_frame: np.ndarray | None = None  # the middle destination face's frame, reused for the model tiles
    dst_meta = None
    for side, name in (("src", "source (Grace Hopper)"), ("dst", "destination (astronaut)")):
        faces = scan_faceset(project.aligned_dir(side)).faces
        if not faces:
            continue
        image, meta = load_aligned_face(faces[len(faces) // 2].path)
        if side == "dst":
            entry = next((f for f in index.frames if f.index == meta.frame_index), None)
            if entry is not None:
                dst_frame, dst_meta = read_image(project.frames_dir / entry.file), meta
                drawn = viz.draw_landmarks(dst_frame, meta.source_landmarks)
                drawn = viz.draw_crop_square(drawn, align.crop_corners(meta.face_matrix, meta.size))
                add(drawn, f"{name}: landmarks + crop")
        add(viz.draw_landmarks(image, meta.landmarks), f"{side}: aligned {meta.face_type}")
        add(viz.overlay_mask(image, hull_mask(image.shape[:2], meta.landmarks)), f"{side}: hull mask")
    preview = latest_preview(run_dir)
    if preview is not None:
        add(read_image(preview), "training preview (src, src>src, dst, dst>dst, src>dst)")
    if dst_frame is not None:
        face, _ = crop_for_model(dst_frame, dst_meta.source_landmarks, merge_settings)
        swapped, swapped_mask, _ = predict(face)
        add(face, "model input (dst crop)")
        add(swapped, "model output (src decoder)")
        mask = (swapped_mask > 0.5).astype(np.float32)
        for name in ("none", "rct", "lct", "mkl", "sot", "hist_match"):
            kwargs = {"seed": 0} if name == "sot" else {}
            add(TRANSFERS[name](swapped, face, mask, **kwargs), f"colour: {name}")
    for entry in index.frames[:: max(1, len(index.frames) // 3)][:3]:
        merged = project.merged_dir / entry.file
        if merged.exists():
            add(read_image(merged), f"merged frame {entry.index} (synthetic)")
    resized = [viz.label_image(viz.letterbox(viz.fit_long_side(t, size), (size, size)), label)
               for t, label in zip(tiles, labels)]
    return viz.image_grid(resized, ncols=4)


def run_demo(options: DemoOptions = DemoOptions()) -> DemoResult:
    """Run the whole offline pipeline; returns where the video and the contact sheet are."""
    from .export import export_project
    from .extract import ExtractOptions, extract_project
    from .images import write_image
    from .merge import MergeConfig, MergeSettings, merge_project
    from .quality import evaluate_project
    from .train import load_predictor, preset, train

    options = options.validate()
    timings: dict[str, float] = {}
    say = print if options.progress else (lambda *a, **k: None)

    started = time.perf_counter()
    project = build_demo_project(options.folder, clip_seconds=options.clip_seconds, fps=options.fps,
                                 face_size=options.face_size, overwrite=options.overwrite)
    timings["media"] = time.perf_counter() - started

    started = time.perf_counter()
    for side in ("src", "dst"):
        say(f"== extract {side}")
        summary = extract_project(project, side, ExtractOptions(size=options.face_size,
                                                                smoothing=0.5 if side == "dst" else 0.0),
                                  progress=options.progress)
        say(summary.format())
    timings["extract"] = time.perf_counter() - started

    started = time.perf_counter()
    run_dir = project.models_dir / DEMO_RUN
    target = demo_step_target(project, run_dir, options.train_steps)
    say(f"== train '{options.preset}' to step {target} (time cap {options.train_minutes:g} min; run folder {run_dir})")
    result = train(run_dir, preset(options.preset, target_steps=target), src=project.aligned_dir("src"),
                   dst=project.aligned_dir("dst"), seconds=options.train_minutes * 60.0, progress=options.progress)
    stopped_by_cap = result.step < target
    if stopped_by_cap:
        say(f"the time cap ({options.train_minutes:g} min) stopped training at step {result.step} of {target}")
    timings["train"] = time.perf_counter() - started

    started = time.perf_counter()
    say("== merge")
    predict = load_predictor(run_dir)
    settings = MergeSettings(face_type=predict.face_type, resolution=predict.resolution)
    # frames merged by an older model must be merged again (the merger's resume only compares settings)
    summary = merge_project(project, predict, MergeConfig(default=settings), progress=options.progress,
                            resume=result.steps_run == 0)
    say(summary.format())
    timings["merge"] = time.perf_counter() - started

    started = time.perf_counter()
    say("== export")
    video, _ = export_project(project, output="demo_swap.mp4", overwrite=True, progress=options.progress)
    sheet = write_image(project.output_dir / "contact_sheet.png", contact_sheet(project, run_dir, predict, settings))
    timings["export"] = time.perf_counter() - started

    started = time.perf_counter()
    say("== evaluate: does the swap read as the source?")
    evaluation = evaluate_project(project, run=DEMO_RUN, progress=options.progress)
    timings["evaluate"] = time.perf_counter() - started
    return DemoResult(project, video, sheet, timings, result.step, dict(result.losses), target, stopped_by_cap,
                      evaluation.summary, evaluation.format())


def demo_step_target(project: Project, run_dir: Path, train_steps: int) -> int:
    """The step to train to: ``train_steps``, or ``train_steps`` more when that was reached but the last
    evaluation of this run says the swap does not read as the source yet."""
    from .quality import read_evaluation
    from .train.runs import read_status

    step = read_status(run_dir).step if run_dir.is_dir() else 0
    if step < train_steps:
        return train_steps
    previous = read_evaluation(project) or {}
    if previous.get("run") == DEMO_RUN and previous.get("step") == step:
        good = previous.get("summary", {}).get("identity", {}).get("reads_as_source")
        return step if good else step + train_steps
    return step  # reached but not evaluated yet: evaluate first
