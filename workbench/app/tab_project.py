"""Project tab: create or open a project in the workspace, add media, and the overview of every stage."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ..errors import MediaError, ProjectError, WorkbenchError
from ..images import is_image_path, read_image
from ..project import VIDEO_SUFFIXES, Project, read_frame_index
from . import texts
from .common import (
    RUN_NAME_RE,
    _check_side,
    _child,
    _count_faces,
    _human_size,
    _project,
    _safe_file_name,
    _update,
    error_text,
    guarded,
)
from .context import AppContext
from .tab_train import state_text

PROJECT_NAME_RE = RUN_NAME_RE


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
    source = Path(upload)
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
