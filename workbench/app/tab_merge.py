"""Merge tab: preview one merged frame with the page's settings, save settings and overrides, merge all frames."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, MergeError, ProjectError, WorkbenchError
from ..images import to_uint8
from ..project import Project, read_frame_index
from . import texts
from .common import (
    MODEL_FILE_PREFIX,
    _mtime,
    _progress,
    _project,
    _run_dir,
    _update,
    _uploaded_file,
    guarded,
    is_model_file,
)
from .context import AppContext
from .tab_project import project_overview

MERGE_PREVIEW_SETTINGS_EXCLUDED = ("face_type", "resolution")  # facts about the model, not choices


def merge_fields() -> list[tuple[str, Any]]:
    """``(name, default)`` of the merge settings the page edits (model facts excluded)."""
    from ..merge import MergeSettings

    return [(f.name, f.default) for f in fields(MergeSettings) if f.name not in MERGE_PREVIEW_SETTINGS_EXCLUDED]


def merge_int_range(name: str) -> tuple[int, int]:
    from .. import merge

    ranges = merge.INT_RANGES
    return tuple(ranges.get(name, (0, 100)))  # type: ignore[return-value]


def _merge_config(project: Project) -> Any:
    from ..merge import MergeConfig

    path = project.merge_settings_path
    return MergeConfig.load(path) if path.is_file() else MergeConfig()


def _settings(values: Mapping[str, Any], predictor: Any | None = None, face_type: str | None = None) -> Any:
    from ..merge import MergeSettings

    clean = {}
    for name, default in merge_fields():
        if name not in values or values[name] is None:
            continue
        value = values[name]
        if isinstance(default, bool):
            value = bool(value)
        elif isinstance(default, int):
            value = int(round(float(value)))
        clean[name] = value
    settings = MergeSettings().replace(**clean)
    if face_type:  # the project's saved face type: what a model file without that fact is merged with
        settings = settings.replace(face_type=face_type)
    if predictor is not None:
        from ..merge.settings import model_facts

        facts = model_facts(predictor)
        settings = settings.replace(**facts)
    return settings


def _setting_values(settings: Any) -> dict[str, Any]:
    return {f"set:{name}": getattr(settings, name) for name, _ in merge_fields()}


def merge_run_choices(root: str | None) -> list[str]:
    """Runs that have a checkpoint, the one :func:`~workbench.train.runs.latest_run` picks last."""
    from ..train.runs import checkpoint_path, list_runs, run_activity

    if not root:
        return []
    try:
        runs = [r for r in list_runs(Project.open(root)) if checkpoint_path(r.run_dir).is_file()]
    except WorkbenchError:
        return []
    return [r.name for r in sorted(runs, key=lambda r: (run_activity(r), r.name))]


def merge_model_choices(root: str | None) -> list[str]:
    """The Merge tab's model list: training runs with a checkpoint (plain names, the newest last), then the
    project's DFM/ONNX files as ``file: output/run1.dfm`` (exported here, or uploaded into ``models/``)."""
    from ..export_model import find_model_files

    runs = merge_run_choices(root)
    if not root:
        return runs
    try:
        project = Project.open(root)
    except WorkbenchError:
        return runs
    return runs + [MODEL_FILE_PREFIX + project.relative(p) for p in find_model_files(project)]


def _default_model(choices: list[str], current: str | None = None) -> str | None:
    """Keep the current choice; else the newest run; else the first model file."""
    if current in choices:
        return current
    runs = [c for c in choices if not is_model_file(c)]
    return runs[-1] if runs else (choices[0] if choices else None)


@dataclass(frozen=True)
class MergeModel:
    """A model chosen on the Merge tab, loaded.

    Attributes:
        predictor: the merger's predictor (a run's torch model or an :class:`~workbench.export_model.OnnxPredictor`).
        key: changes whenever the model's weights change (cache key of the preview's predictions).
        label: what the page says about the model.
    """

    predictor: Any
    key: tuple
    label: str


def model_file_path(project: Project, choice: str) -> Path:
    """The project file named by a ``file: ...`` choice (inside the project, a .dfm/.onnx name)."""
    from ..export_model import MODEL_SUFFIXES

    rel = str(choice)[len(MODEL_FILE_PREFIX):].strip()
    path = project.resolve_inside(rel)
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise MergeError("not a DFM/ONNX model file", rel, "pick a .dfm or .onnx file from the list")
    if not path.is_file():
        raise MergeError("the model file is missing", rel, "export the model again or upload the file")
    return path


def merge_model(ctx: AppContext, project: Project, choice: str | None) -> MergeModel:
    """Load the Merge tab's model choice: a training run (its latest checkpoint) or a DFM/ONNX file.

    Raises:
        MergeError / ConfigError / TrainingError / ExportError: nothing chosen, a bad name, a missing or broken model.
    """
    from ..train.runs import checkpoint_path

    if not choice:
        raise MergeError("no training run selected (nor a DFM/ONNX model file)",
                         hint="pick a training run or a DFM/ONNX file at the top of the Merge tab")
    if is_model_file(choice):
        path = model_file_path(project, choice)
        predictor = ctx.model_file(path)
        rel = project.relative(path)
        return MergeModel(predictor, (str(path), _mtime(path)), f"model file `{rel}` ({predictor.describe()})")
    run_dir = _run_dir(project, choice)
    predictor = ctx.predictor(run_dir)
    step = getattr(predictor, "step", None)
    return MergeModel(predictor, (str(run_dir), _mtime(checkpoint_path(run_dir))),
                      f"training run `{run_dir.name}`" + (f" at step {step}" if step is not None else ""))


def project_relative_model(root: str, choice: str) -> str:
    """``output/run1.dfm`` for the choice ``file: output/run1.dfm``, checked (inside the project, exists)."""
    project = _project(root)
    return project.relative(model_file_path(project, choice))


@guarded
def upload_model_file(ctx: AppContext, root: str, upload: str | None) -> dict[str, Any]:
    """Copy an uploaded DFM/ONNX file into ``models/`` (checked to load first) and select it."""
    from ..errors import MediaError
    from ..export_model import import_model_file

    project = _project(root)
    if not upload:
        raise MediaError("no model file was uploaded", hint="upload a .dfm or .onnx file")
    source = _uploaded_file(ctx, upload)
    path = import_model_file(project, source, Path(str(upload)).name)
    value = MODEL_FILE_PREFIX + project.relative(path)
    choices = merge_model_choices(root)
    return {"merge_run": _update(choices=choices, value=value),
            "status": f"Model file stored as `{project.relative(path)}` and selected: the preview and "
                      "'merge all' use it."}


def _overrides_table(config: Any) -> list[list[Any]]:
    return [[i + 1, ov.start, "end" if ov.stop is None else ov.stop - 1,
             ", ".join(f"{k}={v}" for k, v in ov.changes.items()) or "(same as default)"]
            for i, ov in enumerate(config.overrides)]


@guarded
def merge_setup(root: str | None, run: str | None = None) -> dict[str, Any]:
    """Fill the Merge tab: runs with a model, the frame slider, saved settings and overrides."""
    if not root:
        return {"merge_run": _update(choices=[], value=None), "merge_info": texts.NO_PROJECT}
    project = _project(root)
    runs = merge_model_choices(root)
    pick = _default_model(runs, run)
    try:
        n = len(read_frame_index(project).frames)
    except ProjectError:
        n = 0
    config = _merge_config(project)
    info = (f"{n} destination frames" if n else "No destination frames yet: extract the destination first.")
    if not runs:
        info += " · No trained model yet: train one in the Train tab (or upload a DFM/ONNX file)."
    return {"merge_run": _update(choices=runs, value=pick),
            "frame": _update(minimum=0, maximum=max(n - 1, 1), value=0),
            "overrides": _overrides_table(config), "merge_info": info, "temporal_smoothing": config.temporal_smoothing,
            **_setting_values(config.default)}


def merge_refresh(root: str | None, run: str | None) -> dict[str, Any]:
    """When the Merge tab opens: refresh the model list (pick the newest when none is chosen) and the slider
    range, keeping the settings being edited."""
    if not root:
        return {"merge_info": texts.NO_PROJECT}
    runs = merge_model_choices(root)
    try:
        n = len(read_frame_index(Project.open(root)).frames)
    except WorkbenchError:
        n = 0
    out: dict[str, Any] = {"frame": _update(maximum=max(n - 1, 1))}
    out["merge_run"] = _update(choices=runs, value=_default_model(runs, run))
    if not runs:
        out["merge_info"] = "No trained model yet: train one in the Train tab (or upload a DFM/ONNX file)."
    elif not n:
        out["merge_info"] = "No destination frames yet: extract the destination first."
    return out


def _model_settings(project: Project, values: Mapping[str, Any], predictor: Any) -> Any:
    """The form's settings with the model's facts; a model file that does not say its face type is merged with
    the project's saved face type (as ``workbench merge --model``)."""
    return _settings(values, predictor, face_type=_merge_config(project).default.face_type)


def _merge_view(ctx: AppContext, project: Project, run: str, frame_pos: int, values: Mapping[str, Any]):
    from ..merge import crop_for_model, predict_many

    model = merge_model(ctx, project, run)
    predictor = model.predictor
    settings = _model_settings(project, values, predictor)
    faces = ctx.frame_faces(project)
    if not faces.entries:
        raise MergeError("the project has no destination frames", project.frames_dir, "extract the destination first")
    pos = min(max(int(frame_pos or 0), 0), len(faces.entries) - 1)
    entry = faces.entries[pos]
    frame = ctx.frame_image(project.frames_dir / entry.file)
    lms = faces.landmarks.get(entry.index, [])
    lm_hash = hashlib.sha1(b"".join(np.ascontiguousarray(lm).tobytes() for lm in lms)).hexdigest()
    key = (*model.key, entry.index, settings.resolution, settings.face_type, lm_hash)

    def compute() -> list:
        return predict_many(predictor, [crop_for_model(frame, lm, settings)[0] for lm in lms])

    predictions = ctx.predictions(key, compute) if lms else []
    motion = faces.motions.get(entry.index)
    motions = [motion] * len(lms) if motion is not None else None
    return entry, frame, lms, predictions, motions, settings, model


def _segmenter(ctx: AppContext, project: Project, needed: bool) -> Any:
    """The project's XSeg model when an xseg-* mask mode is ``needed`` (cached per checkpoint), else None."""
    if not needed:
        return None
    from ..segment.predict import project_segmenter
    from ..segment.trainer import default_run_dir
    from ..train.runs import checkpoint_path

    key = ("xseg-model", str(checkpoint_path(default_run_dir(project))), _mtime(checkpoint_path(default_run_dir(project))))
    return ctx.predictions(key, lambda: [project_segmenter(project)])[0]


def _merge_once(frame: np.ndarray, lms: list, predictions: list, motions: Any, settings: Any, index: int,
                segment: Any = None):
    from ..merge import merge_frame

    return merge_frame(frame, lms, None, settings, motions=motions, predictions=predictions,
                       rng=np.random.default_rng(index), segment=segment)


FACE_ZOOM_PX = 320  # the zoomed face on the Merge tab is drawn at least this large


def _face_box(lms: list, shape: tuple) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a square around the frame's faces (0.9 face sizes each side of the centre)."""
    pts = np.concatenate(lms)
    cx, cy = pts.mean(axis=0)
    half = 0.9 * float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1])))
    h, w = shape[:2]
    return (int(max(cx - half, 0)), int(max(cy - half, 0)), int(min(cx + half, w)), int(min(cy + half, h)))


@guarded
def render_merge_frame(ctx: AppContext, root: str, run: str, frame_pos: int, settings: Mapping[str, Any]
                       ) -> dict[str, Any]:
    """Re-render one frame with the page's settings (the model prediction is cached per frame)."""
    t0 = time.perf_counter()
    project = _project(root)
    if not run:  # fired by the page itself (load, slider) before a model is chosen: a hint, not a warning
        return {"merge_info": "Pick a trained model (a training run or a DFM/ONNX file) above to see the merged frame."}
    from ..train.runs import checkpoint_path

    if not is_model_file(run) and not checkpoint_path(_run_dir(project, run)).is_file():
        return {"merge_info": f"Run **{run}** has no trained model yet: train it in the Train tab first."}
    entry, frame, lms, predictions, motions, s, model = _merge_view(ctx, project, run, frame_pos, settings)
    t1 = time.perf_counter()
    out, mask = _merge_once(frame, lms, predictions, motions, s, entry.index, _segmenter(ctx, project, s.needs_segmenter))
    t2 = time.perf_counter()
    config = _merge_config(project)
    n_over = sum(1 for ov in config.overrides if ov.covers(entry.index))
    info = (f"Model: {model.label}  \n"
            f"frame {entry.index} at {entry.timestamp:.2f} s · {len(lms)} face(s) · model {s.resolution} px "
            f"{s.face_type} · predict {1000 * (t1 - t0):.0f} ms (cached after the first time), composite "
            f"{1000 * (t2 - t1):.0f} ms")
    if n_over:
        info += f" · {n_over} saved override(s) cover this frame (press 'Load saved settings' to see them)"
    if not lms:
        info += " · no face in this frame: it is copied unchanged"
    else:
        info += " · " + frame_identity_text(ctx, project, out, lms[0])
    result = {"merged": to_uint8(out), "mask": to_uint8(mask), "merge_info": info}
    if lms:  # the face itself, enlarged: the part of the frame every setting changes
        from .. import viz

        x0, y0, x1, y1 = _face_box(lms, out.shape)
        result["merged_face"] = to_uint8(viz.fit_long_side(out[y0:y1, x0:x1], max(FACE_ZOOM_PX, x1 - x0)))
    else:
        result["merged_face"] = None
    return result


def frame_identity_text(ctx: AppContext, project: Project, merged: np.ndarray, dst_landmarks: np.ndarray) -> str:
    """"looks like the source: yes (distance 0.41 to the source, 0.66 to the destination)" for one merged frame."""
    from ..quality import evaluate_frame

    try:
        src_ref, dst_ref = ctx.identity_references(project)
        score = evaluate_frame(merged, dst_landmarks, src_ref, dst_ref, frame=0)
    except (WorkbenchError, ValueError) as exc:
        return f"identity score unavailable ({exc})"
    if not score.found:
        return "identity: no face detected in the merged frame"
    return (f"looks like the source: **{'yes' if score.reads_as_source else 'no'}** (distance "
            f"{score.distance_src:.2f} to the source, {score.distance_dst:.2f} to the destination; "
            f"pose error {score.pose.max_deg if score.pose else float('nan'):.1f}°)")


@guarded
def color_variants(ctx: AppContext, root: str, run: str, frame_pos: int, settings: Mapping[str, Any],
                   include_masked: bool = True) -> dict[str, Any]:
    """The same frame under every colour-transfer method, side by side (cropped around the face)."""
    from .. import viz
    from ..merge import color_transfer_names

    project = _project(root)
    entry, frame, lms, predictions, motions, s, _model = _merge_view(ctx, project, run, frame_pos, settings)
    if not lms:
        raise MergeError(f"frame {entry.index} has no face", hint="move the frame slider to a frame with a face")
    names = [n for n in color_transfer_names() if include_masked or not n.endswith("-m")]
    x0, y0, x1, y1 = _face_box(lms, frame.shape)
    cells, labels = [frame[y0:y1, x0:x1]], ["destination"]
    for name in names:
        out, _ = _merge_once(frame, lms, predictions, motions, s.replace(color_transfer=name), entry.index,
                             _segmenter(ctx, project, s.needs_segmenter))
        cells.append(out[y0:y1, x0:x1])
        labels.append(name)
    grid = viz.image_grid(cells, 5, labels=labels)
    return {"color_grid": to_uint8(grid),
            "status": f"Frame {entry.index} under {len(names)} colour transfers (mode {s.mode}, mask {s.mask_mode})."}


@guarded
def load_frame_settings(root: str, frame_pos: int) -> dict[str, Any]:
    """Put the saved settings that apply to the current frame (default + overrides) into the form."""
    project = _project(root)
    config = _merge_config(project)
    entries = sorted(read_frame_index(project).frames, key=lambda e: e.index)
    index = entries[min(max(int(frame_pos or 0), 0), len(entries) - 1)].index if entries else 0
    return {**_setting_values(config.settings_for(index)),
            "status": f"Loaded the saved settings of frame {index}."}


@guarded
def save_merge_default(root: str, settings: Mapping[str, Any], temporal_smoothing: float | None = None
                       ) -> dict[str, Any]:
    """Save the form as the project's default merge settings (overrides are kept)."""
    import dataclasses

    project = _project(root)
    config = _merge_config(project)
    new = dataclasses.replace(config, default=_settings(settings).replace(
        face_type=config.default.face_type, resolution=config.default.resolution),
        temporal_smoothing=_smoothing(temporal_smoothing, config))
    new.save(project.merge_settings_path)
    return {"status": f"Saved the default settings to `{project.relative(project.merge_settings_path)}`.",
            "overrides": _overrides_table(new)}


@guarded
def add_override(root: str, start: int | None, stop: int | None, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Save the form's settings for frames ``start..stop`` (inclusive; empty stop = to the end)."""
    project = _project(root)
    config = _merge_config(project)
    if start is None or float(start) < 0:
        raise ConfigError("give the first frame of the range (>= 0)")
    first = int(start)
    last = None if stop in (None, "") or float(stop) < 0 else int(stop)
    if last is not None and last < first:
        raise ConfigError(f"the range ends ({last}) before it starts ({first})")
    s = _settings(settings).replace(face_type=config.default.face_type, resolution=config.default.resolution)
    new = config.with_settings(first, None if last is None else last + 1, s)
    if not new.overrides[-1].changes:
        raise ConfigError("these settings equal the default: nothing to override",
                          hint="change a setting first, or save it as the default")
    new.save(project.merge_settings_path)
    return {"overrides": _overrides_table(new),
            "status": f"Override #{len(new.overrides)} saved for frames {first}..{'end' if last is None else last}."}


@guarded
def remove_override(root: str, number: int | None) -> dict[str, Any]:
    """Delete override number ``number`` (1-based, as listed)."""
    import dataclasses

    project = _project(root)
    config = _merge_config(project)
    if number is None or not 1 <= int(number) <= len(config.overrides):
        raise ConfigError(f"there is no override #{number}", hint=f"the list has {len(config.overrides)}")
    k = int(number) - 1
    new = dataclasses.replace(config, overrides=config.overrides[:k] + config.overrides[k + 1:])
    new.save(project.merge_settings_path)
    return {"overrides": _overrides_table(new), "status": f"Removed override #{number}."}


def _smoothing(value: float | None, config: Any) -> float:
    return config.temporal_smoothing if value is None else float(value)


@guarded
def merge_all(ctx: AppContext, root: str, run: str, settings: Mapping[str, Any],
              temporal_smoothing: float | None = None, progress: Any = None) -> dict[str, Any]:
    """Save the form as the default and merge every destination frame (resumable), with progress.

    ``temporal_smoothing`` (0..1) smooths the face landmarks over time before merging (less jitter); the
    single-frame preview does not apply it.
    """
    import dataclasses

    from ..merge import merge_project

    project = _project(root)
    model = merge_model(ctx, project, run)
    predictor = model.predictor
    config = _merge_config(project)
    config = dataclasses.replace(config, default=_model_settings(project, settings, predictor),
                                 temporal_smoothing=_smoothing(temporal_smoothing, config))
    config.save(project.merge_settings_path)
    _progress(progress, 0.0, "merging frames")
    needs = config.default.needs_segmenter or any(config.settings_for(o.start).needs_segmenter for o in config.overrides)
    segment = _segmenter(ctx, project, needs)
    summary = merge_project(project, predictor, config, workers=2, progress=True, segment=segment)
    out = project_overview(root)
    out["status"] = f"Merged with {model.label} and the settings above (saved to `merge.json`):  \n" + summary.format().replace(
        "\n", "  \n")
    out["exports_hint"] = "Merged frames are ready: export them in the Export tab."
    return out
