"""Extract tab: detect, align and save the faces of the source and destination media; the reference person."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MediaError, WorkbenchError
from ..images import is_image_path, read_image
from ..project import Project
from .common import SIDES, _check_side, _child, _progress, _project, _safe_file_name, _toast, _update, guarded
from .context import AppContext
from .tab_curate import face_gallery
from .tab_project import project_overview


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
    source = Path(upload)
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
