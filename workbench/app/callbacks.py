"""The functions behind the app's buttons, sliders and timers: thin calls into the library.

Every callback is a plain function of plain values (the project folder as a string, option values, ...)
that returns a ``dict`` keyed by *output names* (``"status"``, ``"gallery"``, ...). ``ui.py`` maps those names
to components, so no callback depends on the layout and no event returns a long positional tuple. A key
left out of the dict leaves its component unchanged.

Errors a user can cause (:class:`~workbench.errors.WorkbenchError`) are caught by :func:`guarded`, shown as a
warning toast and written into the tab's ``status`` line; unexpected exceptions are logged with their traceback
on the server and shown as one line. Nothing here keeps module-level state: caches live in an
:class:`AppContext` created by ``build_app``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    ConfigError,
    MediaError,
    MergeError,
    ProjectError,
    TrainingError,
    WorkbenchError,
)
from ..images import is_image_path, read_image, to_uint8
from ..project import VIDEO_SUFFIXES, Project, read_frame_index
from ..train.runs import RUN_NAME_RE  # one rule for run names: the library's
from . import texts

log = logging.getLogger("workbench.app")

SIDES = ("src", "dst")
PAGE_SIZE = 60  # faces per gallery page
THUMB = 160  # gallery thumbnail side in px (overlays are drawn at this size)
LATENT_CELL = 160  # the latent panel shows faces at least this large
PROJECT_NAME_RE = RUN_NAME_RE
GALLERY_ORDERS = ("file", "blur", "motion-blur", "yaw", "pitch", "face-size", "brightness", "hue", "source",
                  "similarity", "identity distance")
DEFAULT_RUN = "tiny"  # the run name offered when a project has none yet
STARTING_GRACE_SECONDS = 60.0  # a trainer launched this long ago may still be starting (no lock yet)
MERGE_PREVIEW_SETTINGS_EXCLUDED = ("face_type", "resolution")  # facts about the model, not choices


# ----------------------------------------------------------------------------------------------------------
# errors -> visible messages


def error_text(exc: BaseException) -> str:
    """One Markdown paragraph for a user-facing error (message, file, hint)."""
    if isinstance(exc, WorkbenchError):
        text = f"**{exc.message}**"
        if exc.path is not None:
            text += f" `{exc.path}`"
        if exc.hint:
            text += f"  \nhint: {exc.hint}"
        return text
    return f"**unexpected error: {type(exc).__name__}: {exc}** (details are in the server log)"


def _toast(kind: str, message: str) -> None:
    try:
        import gradio as gr

        (gr.Warning if kind == "warning" else gr.Info)(message)
    except Exception:  # noqa: BLE001 - a toast must never break a callback (e.g. outside a request)
        log.info("%s: %s", kind, message)


def guarded(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Catch errors in a callback: warning toast + ``{"status": message}`` instead of a stack trace."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return fn(*args, **kwargs)
        except WorkbenchError as exc:
            _toast("warning", str(exc))
            return {"status": "⚠️ " + error_text(exc)}
        except Exception as exc:  # noqa: BLE001 - the page must show a message, not a traceback
            log.exception("callback %s failed", fn.__name__)
            _toast("warning", f"unexpected error: {type(exc).__name__}: {exc}")
            return {"status": "⚠️ " + error_text(exc)}

    return wrapper


def _update(**kwargs: Any) -> Any:
    import gradio as gr

    return gr.update(**kwargs)


def _progress(progress: Any, fraction: float | None, desc: str) -> None:
    if progress is not None:
        try:
            progress(fraction, desc=desc)
        except Exception:  # noqa: BLE001 - progress display is best effort
            pass


# ----------------------------------------------------------------------------------------------------------
# app context: workspace, served folders, caches (one per app, never module-level)


class _LRU:
    def __init__(self, size: int):
        self.size = size
        self.data: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        if key in self.data:
            self.data.move_to_end(key)
            return self.data[key]
        return None

    def put(self, key: Any, value: Any) -> Any:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)
        return value


@dataclass(frozen=True)
class FrameFaces:
    """Destination frames of a project with their faces' frame landmarks and motion (for merge previews)."""

    entries: tuple  # FrameEntry, sorted by index
    landmarks: Mapping[int, list]  # frame index -> [(68,2) frame landmarks, ...]
    motions: Mapping[int, Any]  # frame index -> (power, angle) | None


class AppContext:
    """What one running app shares between its callbacks: the workspace and a few bounded caches.

    Args:
        workspace: the only folder in which projects may be created or opened from the page.
        max_upload_mb: upload size limit (also passed to ``launch(max_file_size=...)``).
    """

    def __init__(self, workspace: str | Path, max_upload_mb: int = 500):
        self.workspace = Path(workspace).expanduser().resolve()
        self.max_upload_mb = int(max_upload_mb)
        self.served_roots: list[str] = []
        self.on_project_opened: Callable[[Path], None] | None = None
        self._lock = threading.RLock()
        self._predictors = _LRU(2)
        self._predictions = _LRU(256)
        self._frames = _LRU(16)
        self._faces = _LRU(4)

    # -- projects --------------------------------------------------------------------------------------
    def project_opened(self, project: Project) -> None:
        """Record a project the page may show files from (``allowed_paths``), and tell the UI."""
        with self._lock:
            if str(project.root) not in self.served_roots:
                self.served_roots.append(str(project.root))
        if self.on_project_opened is not None:
            self.on_project_opened(project.root)

    # -- models ----------------------------------------------------------------------------------------
    def predictor(self, run_dir: Path) -> Any:
        """The run's latest checkpoint as a merge predictor (reloaded when the checkpoint file changes)."""
        from ..train import load_predictor
        from ..train.runs import checkpoint_path

        ckpt = checkpoint_path(run_dir)
        if not ckpt.is_file():
            raise MergeError(f"run '{run_dir.name}' has no trained model yet", run_dir,
                             "start training in the Train tab: a checkpoint is saved at the first step")
        key = (str(run_dir), ckpt.stat().st_mtime_ns)
        with self._lock:
            cached = self._predictors.get(key)
            if cached is None:
                cached = self._predictors.put(key, load_predictor(run_dir, device="cpu"))
            return cached

    def predictions(self, key: tuple, compute: Callable[[], list]) -> list:
        with self._lock:
            cached = self._predictions.get(key)
        if cached is None:
            cached = compute()
            with self._lock:
                self._predictions.put(key, cached)
        return cached

    # -- frames and faces ------------------------------------------------------------------------------
    def frame_faces(self, project: Project) -> FrameFaces:
        from ..faceset import scan_faceset
        from ..merge import landmarks_by_frame, motion_vectors

        index_path = project.frames_dir / "frames.json"
        folder = project.aligned_dir("dst")
        key = (str(project.root), _mtime(index_path), _mtime(folder))
        with self._lock:
            cached = self._faces.get(key)
        if cached is not None:
            return cached
        index = read_frame_index(project)
        entries = tuple(sorted(index.frames, key=lambda e: e.index))
        landmarks = landmarks_by_frame(scan_faceset(folder).faces)
        motions = dict(zip([e.index for e in entries], motion_vectors([landmarks.get(e.index, []) for e in entries])))
        result = FrameFaces(entries, landmarks, motions)
        with self._lock:
            self._faces.put(key, result)
        return result

    def frame_image(self, path: Path) -> np.ndarray:
        key = (str(path), _mtime(path))
        with self._lock:
            cached = self._frames.get(key)
        if cached is None:
            cached = read_image(path)
            with self._lock:
                self._frames.put(key, cached)
        return cached


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


# ----------------------------------------------------------------------------------------------------------
# small helpers


def _project(root: str | None) -> Project:
    if not root:
        raise ProjectError("no project is open", hint="create or open a project in the Project tab")
    return Project.open(root)


def _check_side(side: str) -> str:
    if side not in SIDES:
        raise ConfigError(f"side must be src or dst, not {side!r}")
    return side


def _safe_file_name(name: str) -> str:
    """A plain file name (no folders) with only harmless characters."""
    base = Path(str(name)).name
    stem, suffix = os.path.splitext(base)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "upload"
    suffix = re.sub(r"[^A-Za-z0-9.]+", "", suffix).lower()
    return f"{stem[:80]}{suffix}"


def _uploaded_file(ctx: AppContext, upload: str) -> Path:
    """An uploaded file as Gradio stored it; any other server path (``/etc/passwd``, a file of another user) is
    refused, since a callback called directly could otherwise copy it into the project."""
    from gradio.utils import get_upload_folder

    source = Path(upload).expanduser().resolve()
    allowed = (Path(get_upload_folder()).resolve(), ctx.workspace)
    if not any(root == source or root in source.parents for root in allowed):
        raise ProjectError("this file was not uploaded through the page", Path(upload).name,
                           "upload the file with the upload box")
    if not source.is_file():
        raise MediaError("the uploaded file is missing", Path(upload).name, "upload it again")
    return source


def _child(project: Project, folder: Path, name: str) -> Path:
    """``folder/name`` for a plain file name, refused if it escapes the folder or the project."""
    if not name or Path(name).name != name or name in (".", ".."):
        raise ProjectError(f"not a plain file name: {name!r}")
    path = project.resolve_inside(folder / name)
    if path.parent != folder.resolve():
        raise ProjectError("path is outside its folder", name)
    return path


def _run_dir(project: Project, run: str | None, must_exist: bool = True) -> Path:
    if not run:
        raise TrainingError("no training run selected", hint="pick a run (or type a new name) in the Train tab")
    run = str(run).strip()
    if not RUN_NAME_RE.match(run):
        raise ConfigError(f"invalid run name {run!r}", hint="use letters, digits, '-', '_' or '.' (up to 64)")
    path = project.resolve_inside(project.models_dir / run)
    if must_exist and not path.is_dir():
        raise TrainingError(f"there is no run named '{run}'", path, "start training to create it")
    return path


def _count_faces(folder: Path) -> int:
    from ..faceset import list_face_files

    return len(list_face_files(folder))


def _human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# ----------------------------------------------------------------------------------------------------------
# Project tab


def list_projects(ctx: AppContext) -> list[str]:
    """Names of the project folders directly inside the workspace."""
    if not ctx.workspace.is_dir():
        return []
    return sorted(p.name for p in ctx.workspace.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / "workbench.json").is_file())


def _workspace_child(ctx: AppContext, name: str) -> Path:
    name = (name or "").strip()
    if not PROJECT_NAME_RE.match(name):
        raise ProjectError(f"invalid project name {name!r}",
                           hint="a folder name inside the workspace: letters, digits, '-', '_' or '.'")
    path = (ctx.workspace / name).resolve()
    if path.parent != ctx.workspace:
        raise ProjectError("projects live directly inside the workspace folder", path)
    return path


def _opened(ctx: AppContext, project: Project, message: str) -> dict[str, Any]:
    ctx.project_opened(project)
    out = project_overview(str(project.root))
    out.update(root=str(project.root), status=message,
               project_list=_update(choices=list_projects(ctx), value=project.root.name),
               project_label=project_label(str(project.root)))
    return out


@guarded
def open_project(ctx: AppContext, name: str) -> dict[str, Any]:
    """Open a project folder of the workspace by name."""
    project = Project.open(_workspace_child(ctx, name))
    return _opened(ctx, project, f"Opened project **{project.root.name}**.")


@guarded
def create_project(ctx: AppContext, name: str, face_type: str = "whole_face", face_size: int = 256) -> dict[str, Any]:
    """Create a new, empty project in the workspace (media are added with the upload boxes)."""
    from ..align import normalize_face_type
    from ..project import create_project as _create

    path = _workspace_child(ctx, name)
    if path.exists():
        raise ProjectError("a folder with this name already exists", path, "open it, or choose another name")
    project = _create(path, face_type=normalize_face_type(face_type), face_size=int(face_size))
    return _opened(ctx, project, f"Created project **{project.root.name}** in `{ctx.workspace}`.")


def project_label(root: str | None) -> str:
    if not root:
        return "**No project open.** " + texts.NO_PROJECT
    return f"Project: **{Path(root).name}**  `{root}`"


def _media_choices(project: Project, side: str) -> list[str]:
    folder = project.media_dir(side)
    if not folder.is_dir():
        return []
    return sorted(f"media/{side}/{p.name}" for p in folder.iterdir()
                  if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES
                                                     or is_image_path(p)))


def _media_line(project: Project, config: dict[str, Any], side: str) -> str:
    name = config.get(f"{side}_media")
    if not name:
        return "— (upload or pick one)"
    path = project.root / name
    if not path.exists():
        return f"`{name}` (missing!)"
    if path.is_dir():
        return f"`{name}` (folder, {sum(1 for p in path.iterdir() if is_image_path(p))} photos)"
    if path.suffix.lower() in VIDEO_SUFFIXES:
        try:
            from ..video import probe_video

            info = probe_video(path)
            return (f"`{name}` (video {info.width}×{info.height}, {info.frame_count} frames, {info.fps:.1f} fps, "
                    f"audio: {'yes' if info.has_audio else 'no'})")
        except WorkbenchError as exc:
            return f"`{name}` (unreadable: {exc.message})"
    return f"`{name}` (photo)"


def overview_markdown(project: Project) -> str:
    """What each stage has produced so far, as a Markdown table."""
    from ..train import list_runs

    config = project.read_config()
    try:
        frames = len(read_frame_index(project).frames)
    except ProjectError:
        frames = 0
    runs = list_runs(project)
    run_text = "<br>".join(f"`{r.name}`: {state_text(r)}, step {r.step}" for r in runs) or "—"
    merged = len([p for p in project.merged_dir.glob("*.png")]) if project.merged_dir.is_dir() else 0
    exports = sorted(project.output_dir.glob("*.mp4")) if project.output_dir.is_dir() else []
    export_text = "<br>".join(f"`{p.name}` ({_human_size(p.stat().st_size)})" for p in exports) or "—"
    rows = [
        ("source media", _media_line(project, config, "src")),
        ("destination media", _media_line(project, config, "dst")),
        ("face type / size", f"{config.get('face_type', '?')}, {config.get('face_size', '?')} px"),
        ("destination frames", str(frames)),
        ("aligned faces", f"source {_count_faces(project.aligned_dir('src'))} "
                          f"(trash {_count_faces(project.trash_dir('src'))}), destination "
                          f"{_count_faces(project.aligned_dir('dst'))} (trash {_count_faces(project.trash_dir('dst'))})"),
        ("training runs", run_text),
        ("merged frames", f"{merged} of {frames}" if frames else str(merged)),
        ("exported videos", export_text),
    ]
    return "| stage | so far |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def project_overview(root: str | None) -> dict[str, Any]:
    """Overview table and media choices; never raises (used on load and after every action)."""
    if not root:
        return {"overview": texts.NO_PROJECT, "src_media": _update(choices=[], value=None),
                "dst_media": _update(choices=[], value=None)}
    try:
        project = Project.open(root)
        config = project.read_config()
        return {
            "overview": overview_markdown(project),
            "src_media": _update(choices=_media_choices(project, "src"), value=config.get("src_media")),
            "dst_media": _update(choices=_media_choices(project, "dst"), value=config.get("dst_media")),
        }
    except WorkbenchError as exc:
        return {"overview": "⚠️ " + error_text(exc)}


def _validate_media(path: Path) -> str:
    """Raise MediaError unless ``path`` is a readable video or photo; returns a short description."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        from ..video import probe_video

        info = probe_video(path)
        if info.frame_count == 0:
            raise MediaError("the video has no frames", path)
        return f"video, {info.frame_count} frames at {info.fps:.1f} fps"
    if is_image_path(path):
        image = read_image(path)
        return f"photo, {image.shape[1]}×{image.shape[0]}"
    raise MediaError(f"not a video or a photo ('{path.suffix or 'no suffix'}')", path.name,
                     "upload a video (mp4, mov, mkv, avi, webm) or a photo (jpg, png, webp)")


@guarded
def upload_media(ctx: AppContext, root: str, side: str, upload: str | None) -> dict[str, Any]:
    """Check an uploaded file, copy it into ``media/<side>/`` and make it the side's media."""
    project = _project(root)
    side = _check_side(side)
    if not upload:
        raise MediaError("no file was uploaded")
    source = _uploaded_file(ctx, upload)
    if source.stat().st_size > ctx.max_upload_mb * 1024 * 1024:
        raise MediaError(f"the file is larger than the upload limit ({ctx.max_upload_mb} MB)", source.name)
    if source.stat().st_size == 0:
        raise MediaError("the uploaded file is empty (0 bytes)", source.name)
    name = _safe_file_name(source.name)
    description = _validate_media(source)
    target = _child(project, project.media_dir(side), name)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        stem, suffix = os.path.splitext(name)
        digest = hashlib.sha1(str(time.time()).encode()).hexdigest()[:6]
        target = _child(project, project.media_dir(side), f"{stem}_{digest}{suffix}")
    shutil.copyfile(source, target)
    project.update_config(**{f"{side}_media": project.relative(target)})
    out = project_overview(root)
    out["status"] = (f"Added **{target.name}** as the {'source' if side == 'src' else 'destination'} "
                     f"({description}).{_stale_faces_note(project, side)}")
    out["upload"] = None  # clear the upload box
    return out


def _stale_faces_note(project: Project, side: str) -> str:
    n = _count_faces(project.aligned_dir(side))
    if not n:
        return ""
    return (f" Note: `aligned/{side}` still holds {n} faces from the previous media; extraction adds to them "
            "(move them to the trash in the Extract tab to start afresh).")


@guarded
def pick_media(root: str, side: str, name: str | None) -> dict[str, Any]:
    """Use media already inside ``media/<side>/``."""
    project = _project(root)
    side = _check_side(side)
    if not name:
        return {}
    path = project.resolve_inside(name)
    if project.media_dir(side).resolve() not in path.parents or not path.exists():
        raise ProjectError(f"not a {side} media file of this project", name)
    project.update_config(**{f"{side}_media": project.relative(path)})
    out = project_overview(root)
    out["status"] = (f"Using `{project.relative(path)}` as the {'source' if side == 'src' else 'destination'}."
                     f"{_stale_faces_note(project, side)}")
    return out


# ----------------------------------------------------------------------------------------------------------
# Extract tab


def extract_defaults(root: str | None) -> dict[str, Any]:
    """The project's face type and size for the extraction form."""
    if not root:
        return {}
    try:
        config = Project.open(root).read_config()
    except WorkbenchError:
        return {}
    return {"face_type": config.get("face_type", "whole_face"), "face_size": int(config.get("face_size", 256))}


def reference_choices(root: str | None) -> list[str]:
    if not root:
        return []
    folder = Path(root) / "media" / "reference"
    if not folder.is_dir():
        return []
    return sorted(f"media/reference/{p.name}" for p in folder.iterdir() if is_image_path(p))


@guarded
def upload_reference(ctx: AppContext, root: str, upload: str | None) -> dict[str, Any]:
    """Store a reference photo of the person to keep in ``media/reference/``."""
    project = _project(root)
    if not upload:
        raise MediaError("no photo was uploaded")
    source = _uploaded_file(ctx, upload)
    if not is_image_path(source):
        raise MediaError("the reference must be a photo (jpg, png, webp)", source.name)
    read_image(source)
    folder = project.root / "media" / "reference"
    folder.mkdir(parents=True, exist_ok=True)
    target = _child(project, folder, _safe_file_name(source.name))
    shutil.copyfile(source, target)
    value = project.relative(target)
    return {"reference": _update(choices=reference_choices(root), value=value), "upload": None,
            "status": f"Reference photo `{value}` stored; extraction will keep only this person."}


@guarded
def reference_from_face(root: str, side: str, selected: Sequence[str] | None) -> dict[str, Any]:
    """Use the first selected aligned face as the reference photo."""
    project = _project(root)
    side = _check_side(side)
    if not selected:
        raise ConfigError("select a face in the gallery first")
    face = _child(project, project.aligned_dir(side), selected[0])
    folder = project.root / "media" / "reference"
    folder.mkdir(parents=True, exist_ok=True)
    target = _child(project, folder, f"face_{side}_{_safe_file_name(face.name)}")
    image = read_image(face)
    from ..images import write_image

    write_image(target.with_suffix(".png"), image)
    value = project.relative(target.with_suffix(".png"))
    return {"reference": _update(choices=reference_choices(root), value=value),
            "status": f"Using face `{face.name}` as the reference person (`{value}`)."}


@guarded
def run_extraction(
    root: str,
    side: str = "both",
    engine: str = "dlib",
    face_type: str = "whole_face",
    face_size: int = 256,
    target: str = "largest",
    reference: str | None = None,
    reference_threshold: float = 0.6,
    every_nth: int = 1,
    smoothing: float = 0.5,
    workers: int = 2,
    progress: Any = None,
) -> dict[str, Any]:
    """Detect, align and save the faces of one or both sides (resumable), with a progress bar."""
    from ..align import normalize_face_type
    from ..extract import ExtractOptions, extract_project

    project = _project(root)
    sides = SIDES if side == "both" else (_check_side(side),)
    for s in sides:
        project.media_path(s)  # a clear error before any work when a side has no media
    config = project.read_config()
    ref = str(project.resolve_inside(reference)) if reference else None
    lines = []
    warnings_ = []
    for k, s in enumerate(sides):
        _progress(progress, k / len(sides), f"extracting {s} faces")
        options = ExtractOptions(
            engine=engine, face_type=normalize_face_type(face_type), size=int(face_size),
            image_format=config.get("image_format", "jpg"), jpeg_quality=int(config.get("jpeg_quality", 90)),
            target=target, reference=ref, reference_threshold=float(reference_threshold),
            every_nth=max(1, int(every_nth)), smoothing=float(smoothing) if s == "dst" else 0.0,
            workers=max(0, int(workers)),
        )
        summary = extract_project(project, s, options, progress=True)
        name = "source" if s == "src" else "destination"
        lines.append(f"**{name}**: {summary.faces} faces written from {summary.frames_processed} frames "
                     f"({summary.frames_resumed} already done), {summary.frames_without_face} frames without a face, "
                     f"{summary.rejected} rejected, {len(summary.skipped)} skipped, {summary.seconds:.1f} s")
        if summary.skipped:
            lines.append("skipped: " + "; ".join(f"{n}: {why}" for n, why in summary.skipped[:5]))
        if summary.frames_processed and summary.faces == 0:
            warnings_.append(f"No face was found in the {name} media ({summary.frames_processed} frames). "
                             "Try another engine, a smaller minimum face, or other media.")
    for w in warnings_:
        _toast("warning", w)
    out = face_gallery(root, sides[-1] if side != "both" else "src")
    out.update(project_overview(root))
    out["status"] = "  \n".join(lines + [f"⚠️ {w}" for w in warnings_])
    out["gallery_side"] = sides[-1] if side != "both" else "src"
    return out


def _gallery_order(records: list, order: str) -> tuple[list[int], list[float | None]]:
    from .. import sort

    n = len(records)
    if order in ("file", "", None):
        idx = sorted(range(n), key=lambda i: records[i].path.name)
        return idx, [None] * n
    if order == "identity distance":
        vals = [r.meta.identity_distance for r in records]
        idx = sorted(range(n), key=lambda i: (vals[i] is None, vals[i] or 0.0))
        return idx, vals
    if order == "similarity":
        from ..faceset import load_aligned_face

        hists = [sort.histogram(load_aligned_face(r.path)[0]) for r in records]
        return sort.histogram_chain(hists), [None] * n
    if order not in sort.SCORES:
        raise ConfigError(f"unknown order {order!r}", hint=f"choose one of {', '.join(GALLERY_ORDERS)}")
    scores = sort.score_faces(records, order, progress=False)
    descending = sort.SCORES[order][1]
    idx = list(np.argsort(-scores if descending else scores, kind="stable"))
    return [int(i) for i in idx], [float(s) for s in scores]


def _thumbnail(path: Path, meta: Any, landmarks: bool, mask: bool) -> np.ndarray:
    import cv2

    from .. import viz
    from ..masks import hull_mask

    image = read_image(path)
    scale = THUMB / float(image.shape[0])
    small = cv2.resize(image, (THUMB, THUMB), interpolation=cv2.INTER_AREA) if image.shape[0] != THUMB else image
    lm = np.asarray(meta.landmarks, np.float32) * scale
    if mask:
        small = viz.overlay_mask(small, hull_mask(small.shape, lm), color=(1.0, 0.2, 0.2), alpha=0.4)
    if landmarks:
        small = viz.draw_landmarks(small, lm, radius=1, thickness=1)
    return to_uint8(small)


@guarded
def face_gallery(root: str, side: str = "src", order: str = "file", show_landmarks: bool = False,
                 show_mask: bool = False, page: int = 1, selected: Sequence[str] | None = None) -> dict[str, Any]:
    """One page of a side's aligned faces, ordered by a sort score, with optional overlays."""
    from ..faceset import scan_faceset

    if not root:
        return {"gallery": [], "shown": [], "gallery_info": texts.NO_PROJECT}
    project = _project(root)
    side = _check_side(side)
    scan = scan_faceset(project.aligned_dir(side))
    records = list(scan.faces)
    order_idx, scores = _gallery_order(records, order or "file")
    pages = max(1, -(-len(records) // PAGE_SIZE))
    page = min(max(1, int(page or 1)), pages)
    chosen = order_idx[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    items = []
    for i in chosen:
        rec = records[i]
        caption = rec.path.name if scores[i] is None else f"{rec.path.name} · {scores[i]:.3g}"
        if show_landmarks or show_mask:
            items.append((_thumbnail(rec.path, rec.meta, show_landmarks, show_mask), caption))
        else:
            items.append((str(rec.path), caption))
    names = [records[i].path.name for i in chosen]
    keep = [n for n in (selected or []) if n in names]
    info = (f"{len(records)} {'source' if side == 'src' else 'destination'} faces"
            f" · trash: {_count_faces(project.trash_dir(side))} · page {page} of {pages}"
            + (f" · order: {order}" if order and order != "file" else ""))
    if scan.broken:
        info += f" · {len(scan.broken)} unreadable file(s) skipped"
    if not records:
        info = f"No aligned {'source' if side == 'src' else 'destination'} faces yet: run the extraction above."
    return {"gallery": items, "shown": names, "selected": _update(choices=names, value=keep),
            "gallery_info": info, "page": _update(value=page, maximum=pages)}


def _source_frame(project: Project, meta: Any) -> np.ndarray | None:
    """The original frame an aligned face was cut from (None when it cannot be found)."""
    from ..video import is_video_path, read_frame

    # destination frames are on disk already
    frame_file = project.frames_dir / f"{int(meta.frame_index):06d}.png"
    try:
        src_media = project.resolve_inside(meta.source_file) if meta.source_file else None
    except ProjectError:
        src_media = None
    config = project.read_config()
    if config.get("dst_media") == meta.source_file and frame_file.is_file():
        return read_image(frame_file)
    if src_media is None or not src_media.exists():
        return read_image(frame_file) if frame_file.is_file() else None
    if src_media.is_dir():
        files = sorted(p for p in src_media.iterdir() if p.is_file() and not p.name.startswith("."))
        idx = int(meta.frame_index)
        return read_image(files[idx]) if 0 <= idx < len(files) and is_image_path(files[idx]) else None
    if is_video_path(src_media):
        return read_frame(src_media, int(meta.frame_index)).image
    return read_image(src_media)


@guarded
def select_face(root: str, side: str, shown: Sequence[str] | None, selected: Sequence[str] | None,
                index: int | None, show_crop: bool = True, show_landmarks: bool = True) -> dict[str, Any]:
    """A click on a gallery face: toggle its selection and show it on its original frame."""
    from .. import viz
    from ..align import crop_corners
    from ..faceset import read_face_meta
    from ..pose import estimate_pitch_yaw_roll

    project = _project(root)
    side = _check_side(side)
    shown = list(shown or [])
    if index is None or not 0 <= int(index) < len(shown):
        return {}
    name = shown[int(index)]
    chosen = list(selected or [])
    chosen = [n for n in chosen if n != name] if name in chosen else chosen + [name]
    path = _child(project, project.aligned_dir(side), name)
    meta = read_face_meta(path)
    frame = _source_frame(project, meta)
    view = None
    if frame is not None:
        view = viz.draw_box(frame, meta.box, label=f"score {meta.score:.2f}")
        if show_landmarks:
            view = viz.draw_landmarks(view, meta.source_landmarks)
        if show_crop:
            view = viz.draw_crop_square(view, crop_corners(meta.face_matrix, meta.size))
        view = to_uint8(view)
    pitch, yaw, _ = estimate_pitch_yaw_roll(meta.landmarks, meta.size)
    info = (f"**{name}** · frame {meta.frame_index}"
            + (f" at {meta.timestamp:.2f} s" if meta.timestamp is not None else "")
            + f" · {meta.face_type} {meta.size} px · yaw {np.degrees(yaw):.0f}° pitch {np.degrees(pitch):.0f}°"
            + f" · detector {meta.detector} ({meta.score:.2f})"
            + (f" · identity distance {meta.identity_distance:.2f}" if meta.identity_distance is not None else "")
            + f"  \n{len(chosen)} face(s) selected")
    return {"selected": _update(value=chosen), "frame_view": view, "face_info": info}


@guarded
def trash_faces(root: str, side: str, selected: Sequence[str] | None, order: str = "file",
                show_landmarks: bool = False, show_mask: bool = False, page: int = 1) -> dict[str, Any]:
    """Move the selected faces to ``aligned/<side>_trash`` (never deleted)."""
    from ..faceset import move_to_trash

    project = _project(root)
    side = _check_side(side)
    if not selected:
        raise ConfigError("no face selected", hint="click faces in the gallery to select them")
    moved = [move_to_trash(_child(project, project.aligned_dir(side), n), project.trash_dir(side)) for n in selected]
    out = face_gallery(root, side, order, show_landmarks, show_mask, page, [])
    out.update(project_overview(root))
    out["status"] = f"Moved {len(moved)} face(s) to `{project.relative(project.trash_dir(side))}`."
    return out


@guarded
def restore_trash(root: str, side: str, order: str = "file", show_landmarks: bool = False,
                  show_mask: bool = False, page: int = 1) -> dict[str, Any]:
    """Move every face of the side's trash folder back into the faceset."""
    from ..faceset import list_face_files

    project = _project(root)
    side = _check_side(side)
    restored = skipped = 0
    for path in list_face_files(project.trash_dir(side)):
        target = project.aligned_dir(side) / path.name
        if target.exists():
            skipped += 1
            continue
        os.replace(path, target)
        restored += 1
    out = face_gallery(root, side, order, show_landmarks, show_mask, page, [])
    out.update(project_overview(root))
    out["status"] = f"Restored {restored} face(s) from the trash" + (f", {skipped} kept (name taken)" if skipped else "")
    return out


@guarded
def apply_sort(root: str, side: str, method: str, keep: int | None = None, min_score: float | None = None,
               show_landmarks: bool = False, show_mask: bool = False) -> dict[str, Any]:
    """``workbench sort``: rename faces in sort order and move rejects (``keep``/``min_score``) to the trash."""
    from ..sort import sort_faceset

    project = _project(root)
    side = _check_side(side)
    result = sort_faceset(project.aligned_dir(side), method, trash_dir=project.trash_dir(side),
                          keep=int(keep) if keep else None,
                          min_score=float(min_score) if min_score not in (None, "") else None,
                          rename=True, progress=True)
    out = face_gallery(root, side, "file", show_landmarks, show_mask, 1, [])
    out.update(project_overview(root))
    out["status"] = (f"Sorted by **{result.method}**: {len(result.kept)} kept (renamed in order), "
                     f"{len(result.trashed)} moved to the trash.")
    return out


# ----------------------------------------------------------------------------------------------------------
# Train tab


def option_fields() -> list[tuple[str, str, Any]]:
    """``(name, type, default)`` for every training option, in dataclass order."""
    from ..train.options import TrainOptions

    return [(f.name, f.type if isinstance(f.type, str) else f.type.__name__, f.default) for f in fields(TrainOptions)]


def option_choices() -> dict[str, tuple[str, ...]]:
    from ..train import options as o

    return {"face_type": o.FACE_TYPES, "optimizer": o.OPTIMIZERS, "ct_mode": o.CT_MODES,
            "precision": o.PRECISIONS}


def run_choices(root: str | None) -> list[str]:
    """Names of the project's training runs (their state is shown by the status line, which stays current)."""
    from ..train import list_runs

    if not root:
        return []
    try:
        return [r.name for r in list_runs(Project.open(root))]
    except WorkbenchError:
        return []


def _options_dict(values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"opt:{k}": v for k, v in values.items()}


@guarded
def preset_options(preset_name: str) -> dict[str, Any]:
    """The option values of a preset (to fill the form)."""
    from ..train import preset

    return {**_options_dict(preset(preset_name).to_dict()),
            "status": f"Loaded preset **{preset_name}**: change any option before starting."}


@guarded
def run_options(root: str, run: str | None) -> dict[str, Any]:
    """When an existing run is picked: its saved options (a restart resumes from its checkpoint)."""
    from ..train import read_run_config, read_status

    if not root or not run:
        return {}
    project = _project(root)
    run_dir = _run_dir(project, run, must_exist=False)
    if not (run_dir / "config.json").is_file():
        return {"status": f"New run **{run}**: pick a preset, adjust the options and press Start."}
    config = read_run_config(run_dir)
    status = read_status(run_dir)
    return {**_options_dict(config.options.to_dict()), "train_seen": {},
            "status": f"Run **{run}**: {status.summary()}. Start resumes from its checkpoint with these options."}


@guarded
def attach_training(root: str | None) -> dict[str, Any]:
    """On page load: re-attach to the project's running trainer (or its most recent run)."""
    from ..train import list_runs

    if not root:
        return {"run": _update(choices=[], value=None)}
    runs = list_runs(Project.open(root))
    choices = run_choices(root)
    if not runs:
        return {"run": _update(choices=choices, value=DEFAULT_RUN)}
    active = [r for r in runs if r.is_active]
    pick = active[0] if active else max(runs, key=lambda r: r.updated or 0.0)
    out = run_options(root, pick.name)
    out["run"] = _update(choices=choices, value=pick.name)
    if active:
        out["status"] = f"Re-attached to the running trainer of **{pick.name}** (pid {pick.pid})."
    return out


@guarded
def start_training(root: str, run: str, options: Mapping[str, Any], max_steps: int | None = None) -> dict[str, Any]:
    """Start (or resume) the background trainer on ``models/<run>`` with the form's options."""
    from ..train import TrainOptions, read_status, start

    project = _project(root)
    run_dir = _run_dir(project, run, must_exist=False)
    status = read_status(run_dir)
    if status.is_active:
        raise TrainingError(f"run '{run}' is already training (pid {status.pid})", run_dir,
                            "pause or stop it first, or start another run name")
    if status.state == "starting" and status.started and time.time() - status.started < STARTING_GRACE_SECONDS:
        raise TrainingError(f"run '{run}' is starting up (loading faces and the model)", run_dir,
                            "wait a few seconds: its step counter appears below")
    values = {k: v for k, v in options.items() if v is not None and v != ""}
    opts = TrainOptions.from_dict(values)
    limit = int(max_steps) if max_steps else None
    handle = start(run_dir, opts, max_steps=limit)
    return {"status": f"Started the trainer for **{run}** (pid {handle.pid}); its preview appears below as soon "
                      f"as the first grid is written. Closing the page does not stop it.",
            "run": _update(choices=run_choices(root), value=run), "train_seen": {}}


@guarded
def control_training(root: str, run: str, command: str) -> dict[str, Any]:
    """Send pause / resume / save / preview / stop to the running trainer."""
    from ..train import read_status, send_command

    project = _project(root)
    run_dir = _run_dir(project, run)
    status = read_status(run_dir)
    if not status.is_active and state_text(status) != "starting":  # a starting trainer obeys commands on start
        state = state_text(status)
        _toast("info", f"run '{run}' is not running ({state})")
        return {"status": f"Run **{run}** is not running ({state}); nothing sent."}
    send_command(run_dir, command)
    verbs = {"pause": "Pausing", "resume": "Resuming", "save": "Saving", "preview": "Drawing a preview for",
             "stop": "Saving and stopping"}
    return {"status": f"{verbs.get(command, command)} **{run}**…"}


def metrics_frames(rows: list[dict]) -> tuple[Any, Any]:
    import pandas as pd

    loss_rows, eval_rows = [], []
    for row in rows:
        kind = row.get("kind")
        step = row.get("step")
        if step is None:
            continue
        if kind == "train":
            for key, value in row.items():
                if key.startswith("loss_") and key not in ("loss_total", "loss_grad_norm") \
                        and isinstance(value, (int, float)) and np.isfinite(value):
                    loss_rows.append({"step": int(step), "value": float(value), "series": key[5:]})
        elif kind == "eval":
            for key in ("ssim_src", "ssim_dst"):
                if isinstance(row.get(key), (int, float)):
                    eval_rows.append({"step": int(step), "value": float(row[key]), "series": key})
    loss = pd.DataFrame(loss_rows, columns=["step", "value", "series"])
    evals = pd.DataFrame(eval_rows, columns=["step", "value", "series"])
    return loss, evals


def state_text(status: Any) -> str:
    """The run's state in words; a just-launched trainer that holds no lock yet is "starting", not crashed."""
    if status.state == "starting" and not status.alive:
        if status.started and time.time() - status.started < STARTING_GRACE_SECONDS:
            return "starting"
    return "crashed (process gone)" if status.stale else status.state


def _status_markdown(status: Any) -> tuple[str, str]:
    state = state_text(status)
    step = f"Step {status.step}" + (f" / {status.target_steps}" if status.target_steps else "")
    parts = [f"**{status.name}**: {state}"]
    if status.it_per_s:
        parts.append(f"{status.it_per_s:.2f} it/s")
    for key, value in status.losses.items():
        if key in ("src", "dst") and isinstance(value, (int, float)):
            parts.append(f"loss {key} {value:.4f}")
    metrics = dict(status.metrics)
    if "ssim_src" in metrics:
        parts.append(f"held-out SSIM src {metrics.get('ssim_src', 0):.3f} / dst {metrics.get('ssim_dst', 0):.3f}")
    if "psnr_src" in metrics:
        parts.append(f"PSNR {metrics.get('psnr_src', 0):.1f} / {metrics.get('psnr_dst', 0):.1f} dB")
    if status.eta_seconds:
        parts.append(f"ETA {int(status.eta_seconds) // 60}:{int(status.eta_seconds) % 60:02d}")
    if status.device:
        parts.append(f"device {status.device}")
    if status.is_active and status.pid:
        parts.append(f"pid {status.pid}")
    text = " · ".join(parts)
    if status.last_error:
        text += f"  \n⚠️ {status.last_error.splitlines()[0]}"
    return step, text


def poll_training(root: str | None, run: str | None, seen: Mapping[str, Any] | None) -> dict[str, Any]:
    """The timer tick: status line, step counter, and the preview/plots only when their files changed.

    Never raises and never toasts (it runs every poll interval).
    """
    from ..train import latest_preview, read_metrics, read_status
    from ..train.runs import METRICS_NAME

    seen = dict(seen or {})
    if not root or not run:
        return {"train_step": "Step —", "train_status": "No run selected."}
    try:
        project = Project.open(root)
        run_dir = _run_dir(project, run, must_exist=False)
    except WorkbenchError as exc:
        return {"train_status": "⚠️ " + error_text(exc)}
    out: dict[str, Any] = {}
    if seen.get("run") != str(run_dir):
        seen = {"run": str(run_dir)}
    status = read_status(run_dir)
    out["train_step"], out["train_status"] = _status_markdown(status)
    preview = latest_preview(run_dir)
    key = (_mtime(preview), preview.stat().st_size) if preview is not None else None
    if preview is not None and list(key) != seen.get("preview"):
        out["preview"] = str(preview)
        seen["preview"] = list(key)
        out["preview_info"] = f"Preview at step {status.preview_step if status.preview_step is not None else '?'}"
    elif preview is None and seen.get("preview") is not None:
        out["preview"] = None
        seen["preview"] = None
    metrics_file = run_dir / METRICS_NAME
    mkey = _mtime(metrics_file), (metrics_file.stat().st_size if metrics_file.is_file() else 0)
    if list(mkey) != seen.get("metrics"):
        loss, evals = metrics_frames(read_metrics(run_dir))
        out["loss_plot"], out["metrics_plot"] = loss, evals
        seen["metrics"] = list(mkey)
    out["train_seen"] = seen
    return out


def latent_face_choices(root: str | None, limit: int = 300) -> list[str]:
    """``"src/NAME"`` and ``"dst/NAME"`` for the latent panel's face pickers."""
    from ..faceset import list_face_files

    if not root:
        return []
    try:
        project = Project.open(root)
    except WorkbenchError:
        return []
    out = []
    for side in SIDES:
        out += [f"{side}/{p.name}" for p in list_face_files(project.aligned_dir(side))[:limit]]
    return out


def _latent_face(project: Project, ref: str, model_config: Any) -> np.ndarray:
    from ..faceset import load_aligned_face
    from ..train.data import prepare_face

    if not ref or "/" not in ref:
        raise ConfigError("pick a face (src/NAME or dst/NAME)")
    side, name = ref.split("/", 1)
    path = _child(project, project.aligned_dir(_check_side(side)), name)
    image, meta = load_aligned_face(path)
    face, _, _, _ = prepare_face(image, meta.landmarks, model_config.face_type, meta.face_type,
                                 int(model_config.resolution))
    return face


def _display_size(faces: list[np.ndarray], side: int = LATENT_CELL) -> list[np.ndarray]:
    """Enlarge small model-resolution faces so a strip of them is readable in the page."""
    import cv2

    return [f if f.shape[0] >= side else cv2.resize(np.asarray(f, np.float32), (side, side),
                                                     interpolation=cv2.INTER_CUBIC) for f in faces]


@guarded
def latent_reconstruct(ctx: AppContext, root: str, run: str, face: str) -> dict[str, Any]:
    """One face drawn by both decoders (source decoder = the swap for a destination face)."""
    from .. import viz
    from ..train.latent import latent_code, reconstruct_both

    project = _project(root)
    predictor = ctx.predictor(_run_dir(project, run))
    model = predictor.model
    x = _latent_face(project, face, predictor.config)
    via_src, via_dst = reconstruct_both(model, x)
    code = latent_code(model, x)
    grid = viz.image_grid(_display_size([x, via_src, via_dst]), 3, labels=["input", "src decoder", "dst decoder"])
    return {"latent_image": to_uint8(grid),
            "status": f"Code of `{face}`: {code.size} numbers (mean {code.mean():+.3f}, std {code.std():.3f})."}


@guarded
def latent_interpolate(ctx: AppContext, root: str, run: str, face_a: str, face_b: str, steps: int = 6,
                       decoder: str = "src") -> dict[str, Any]:
    """Decode points on the straight line between two faces' codes."""
    from .. import viz
    from ..train.latent import interpolate

    project = _project(root)
    predictor = ctx.predictor(_run_dir(project, run))
    a = _latent_face(project, face_a, predictor.config)
    b = _latent_face(project, face_b, predictor.config)
    steps = int(min(max(int(steps or 6), 2), 12))
    frames = interpolate(predictor.model, a, b, steps=steps, identity=_check_side(decoder))
    labels = [f"t={t:.2f}" for t in np.linspace(0, 1, steps)]
    grid = viz.image_grid(_display_size([a, *frames, b]), steps + 2, labels=["A", *labels, "B"])
    return {"latent_image": to_uint8(grid),
            "status": f"{steps} points from `{face_a}` to `{face_b}`, drawn by the {decoder} decoder."}


# ----------------------------------------------------------------------------------------------------------
# Merge tab


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


def _settings(values: Mapping[str, Any], predictor: Any | None = None) -> Any:
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
    if predictor is not None:
        facts = {k: getattr(predictor, k) for k in ("resolution", "face_type") if getattr(predictor, k, None)}
        settings = settings.replace(**facts)
    return settings


def _setting_values(settings: Any) -> dict[str, Any]:
    return {f"set:{name}": getattr(settings, name) for name, _ in merge_fields()}


def merge_run_choices(root: str | None) -> list[str]:
    """Runs that have a checkpoint, the most recently saved last."""
    from ..train.runs import checkpoint_path

    if not root:
        return []
    ckpts = [(checkpoint_path(Path(root) / "models" / name), name) for name in run_choices(root)]
    return [name for path, name in sorted((c for c in ckpts if c[0].is_file()), key=lambda c: _mtime(c[0]))]


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
    runs = merge_run_choices(root)
    pick = run if run in runs else (runs[-1] if runs else None)
    try:
        n = len(read_frame_index(project).frames)
    except ProjectError:
        n = 0
    config = _merge_config(project)
    info = (f"{n} destination frames" if n else "No destination frames yet: extract the destination first.")
    if not runs:
        info += " · No trained model yet: train one in the Train tab."
    return {"merge_run": _update(choices=runs, value=pick),
            "frame": _update(minimum=0, maximum=max(n - 1, 1), value=0),
            "overrides": _overrides_table(config), "merge_info": info, "temporal_smoothing": config.temporal_smoothing,
            **_setting_values(config.default)}


def merge_refresh(root: str | None, run: str | None) -> dict[str, Any]:
    """When the Merge tab opens: refresh the model list (pick the newest when none is chosen) and the slider
    range, keeping the settings being edited."""
    if not root:
        return {"merge_info": texts.NO_PROJECT}
    runs = merge_run_choices(root)
    try:
        n = len(read_frame_index(Project.open(root)).frames)
    except WorkbenchError:
        n = 0
    out: dict[str, Any] = {"frame": _update(maximum=max(n - 1, 1))}
    out["merge_run"] = _update(choices=runs, value=run if run in runs else (runs[-1] if runs else None))
    if not runs:
        out["merge_info"] = "No trained model yet: train one in the Train tab."
    elif not n:
        out["merge_info"] = "No destination frames yet: extract the destination first."
    return out


def _merge_view(ctx: AppContext, project: Project, run: str, frame_pos: int, values: Mapping[str, Any]):
    from ..merge import crop_for_model, predict_many

    run_dir = _run_dir(project, run)
    predictor = ctx.predictor(run_dir)
    settings = _settings(values, predictor)
    faces = ctx.frame_faces(project)
    if not faces.entries:
        raise MergeError("the project has no destination frames", project.frames_dir, "extract the destination first")
    pos = min(max(int(frame_pos or 0), 0), len(faces.entries) - 1)
    entry = faces.entries[pos]
    frame = ctx.frame_image(project.frames_dir / entry.file)
    lms = faces.landmarks.get(entry.index, [])
    from ..train.runs import checkpoint_path

    lm_hash = hashlib.sha1(b"".join(np.ascontiguousarray(lm).tobytes() for lm in lms)).hexdigest()
    key = (str(run_dir), _mtime(checkpoint_path(run_dir)), entry.index, settings.resolution, settings.face_type, lm_hash)

    def compute() -> list:
        return predict_many(predictor, [crop_for_model(frame, lm, settings)[0] for lm in lms])

    predictions = ctx.predictions(key, compute) if lms else []
    motion = faces.motions.get(entry.index)
    motions = [motion] * len(lms) if motion is not None else None
    return entry, frame, lms, predictions, motions, settings


def _merge_once(frame: np.ndarray, lms: list, predictions: list, motions: Any, settings: Any, index: int):
    from ..merge import merge_frame

    return merge_frame(frame, lms, None, settings, motions=motions, predictions=predictions,
                       rng=np.random.default_rng(index))


@guarded
def render_merge_frame(ctx: AppContext, root: str, run: str, frame_pos: int, settings: Mapping[str, Any]
                       ) -> dict[str, Any]:
    """Re-render one frame with the page's settings (the model prediction is cached per frame)."""
    t0 = time.perf_counter()
    project = _project(root)
    if not run:  # fired by the page itself (load, slider) before a model is chosen: a hint, not a warning
        return {"merge_info": "Pick a trained model (training run) above to see the merged frame."}
    from ..train.runs import checkpoint_path

    if not checkpoint_path(_run_dir(project, run)).is_file():
        return {"merge_info": f"Run **{run}** has no trained model yet: train it in the Train tab first."}
    entry, frame, lms, predictions, motions, s = _merge_view(ctx, project, run, frame_pos, settings)
    t1 = time.perf_counter()
    out, mask = _merge_once(frame, lms, predictions, motions, s, entry.index)
    t2 = time.perf_counter()
    config = _merge_config(project)
    n_over = sum(1 for ov in config.overrides if ov.covers(entry.index))
    info = (f"frame {entry.index} at {entry.timestamp:.2f} s · {len(lms)} face(s) · model {s.resolution} px "
            f"{s.face_type} · predict {1000 * (t1 - t0):.0f} ms (cached after the first time), composite "
            f"{1000 * (t2 - t1):.0f} ms")
    if n_over:
        info += f" · {n_over} saved override(s) cover this frame (press 'Load saved settings' to see them)"
    if not lms:
        info += " · no face in this frame: it is copied unchanged"
    return {"merged": to_uint8(out), "mask": to_uint8(mask), "merge_info": info}


@guarded
def color_variants(ctx: AppContext, root: str, run: str, frame_pos: int, settings: Mapping[str, Any],
                   include_masked: bool = True) -> dict[str, Any]:
    """The same frame under every colour-transfer method, side by side (cropped around the face)."""
    from .. import viz
    from ..merge import color_transfer_names

    project = _project(root)
    entry, frame, lms, predictions, motions, s = _merge_view(ctx, project, run, frame_pos, settings)
    if not lms:
        raise MergeError(f"frame {entry.index} has no face", hint="move the frame slider to a frame with a face")
    names = [n for n in color_transfer_names() if include_masked or not n.endswith("-m")]
    pts = np.concatenate(lms)
    cx, cy = pts.mean(axis=0)
    half = 0.9 * float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1])))
    h, w = frame.shape[:2]
    x0, x1 = int(max(cx - half, 0)), int(min(cx + half, w))
    y0, y1 = int(max(cy - half, 0)), int(min(cy + half, h))
    cells, labels = [frame[y0:y1, x0:x1]], ["destination"]
    for name in names:
        out, _ = _merge_once(frame, lms, predictions, motions, s.replace(color_transfer=name), entry.index)
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
    predictor = ctx.predictor(_run_dir(project, run))
    config = _merge_config(project)
    config = dataclasses.replace(config, default=_settings(settings, predictor),
                                 temporal_smoothing=_smoothing(temporal_smoothing, config))
    config.save(project.merge_settings_path)
    _progress(progress, 0.0, "merging frames")
    summary = merge_project(project, predictor, config, workers=2, progress=True)
    out = project_overview(root)
    out["status"] = "Merged with the settings above (saved to `merge.json`):  \n" + summary.format().replace(
        "\n", "  \n")
    out["exports_hint"] = "Merged frames are ready: export them in the Export tab."
    return out


# ----------------------------------------------------------------------------------------------------------
# Export tab


def export_choices(root: str | None) -> list[str]:
    if not root:
        return []
    folder = Path(root) / "output"
    return sorted(p.name for p in folder.glob("*.mp4")) if folder.is_dir() else []


def export_project_video(project: Project, name: str, *, run: str | None = None, label: bool = True,
                         overwrite: bool = False, crf: int = 18, progress: bool = True) -> Path:
    """Merged frames -> ``output/<name>`` with the destination's audio and provenance (as ``workbench export``)."""
    from ..export import describe_model, export_project

    path, _ = export_project(project, output=_safe_file_name(name) if name else None, label_synthetic=bool(label),
                             overwrite=bool(overwrite), crf=int(crf), model=describe_model(project, run),
                             progress=progress)
    return path


def _show_video(project: Project, path: Path) -> dict[str, Any]:
    from ..export import read_provenance

    record = read_provenance(path)
    return {"video": str(path), "download": _update(value=str(path), visible=True),
            "provenance": record or {"note": "no workbench provenance in this file"},
            "exports": _update(choices=export_choices(str(project.root)), value=path.name)}


@guarded
def export_video_cb(root: str, name: str, run: str | None = None, label: bool = True, overwrite: bool = False,
                    crf: int = 18, progress: Any = None) -> dict[str, Any]:
    """Encode the merged frames and show the video, its download and its provenance record."""
    project = _project(root)
    _progress(progress, 0.0, "encoding video")
    path = export_project_video(project, name, run=run, label=label, overwrite=overwrite, crf=crf, progress=True)
    out = _show_video(project, path)
    out.update(project_overview(root))
    size = _human_size(path.stat().st_size)
    out["status"] = (f"Wrote `{project.relative(path)}` ({size}), "
                     f"{'with the visible SYNTHETIC label' if label else 'without a visible label'}; its provenance "
                     "record is shown below. Share it only as what it is: synthetic media.")
    return out


@guarded
def show_export(root: str, name: str | None) -> dict[str, Any]:
    """Show an existing export (video, download, provenance)."""
    project = _project(root)
    if not name:
        return {}
    return _show_video(project, _child(project, project.output_dir, name))


def default_export_name(root: str | None) -> str:
    if not root:
        return "swap.mp4"
    source = ""
    try:
        project = Project.open(root)
        source = project.read_config().get("dst_media") or ""
        source = read_frame_index(project).source or source
    except WorkbenchError:
        pass  # no frames yet: the destination media's name (or the project's) is used
    return f"{Path(source).stem or Path(root).name}_swap.mp4"


# ----------------------------------------------------------------------------------------------------------
# page load


def on_load(ctx: AppContext, root: str | None) -> dict[str, Any]:
    """Everything the page shows when it (re)opens: overview, galleries, runs, merge and export state."""
    out: dict[str, Any] = {"project_label": project_label(root),
                           "project_list": _update(choices=list_projects(ctx),
                                                   value=Path(root).name if root else None)}
    out.update(project_overview(root))
    if not root:
        return out
    out.update(extract_defaults(root))
    out["reference"] = _update(choices=reference_choices(root))
    out.update({k: v for k, v in face_gallery(root, "src").items() if k != "status"})
    attach = attach_training(root)
    out.update({k: v for k, v in attach.items() if k != "status"})
    if "status" in attach:
        out["train_status_note"] = attach["status"]
    faces = latent_face_choices(root)
    out["face_a"] = _update(choices=faces, value=faces[0] if faces else None)
    out["face_b"] = _update(choices=faces, value=faces[-1] if faces else None)
    out.update({k: v for k, v in merge_setup(root).items() if k != "status"})
    out["exports"] = _update(choices=export_choices(root))
    out["export_name"] = default_export_name(root)
    return out


def refresh_lists(root: str | None) -> dict[str, Any]:
    """Cheap refresh of the choice lists that depend on other tabs' work (runs, faces, exports)."""
    faces = latent_face_choices(root)
    return {"face_a": _update(choices=faces), "face_b": _update(choices=faces),
            "merge_run": _update(choices=merge_run_choices(root)) if root else _update(),
            "exports": _update(choices=export_choices(root)),
            "run": _update(choices=run_choices(root))}


