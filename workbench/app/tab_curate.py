"""Curation (Extract tab's gallery): browse, order, inspect, trash and restore aligned faces; sort a faceset."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ProjectError
from ..images import is_image_path, read_image, to_uint8
from ..project import Project
from . import texts
from .common import _check_side, _child, _count_faces, _project, _update, guarded
from .tab_project import project_overview

PAGE_SIZE = 60  # faces per gallery page
THUMB = 160  # gallery thumbnail side in px (overlays are drawn at this size)
GALLERY_ORDERS = ("file", "blur", "motion-blur", "yaw", "pitch", "face-size", "brightness", "hue", "source",
                  "similarity", "identity distance")


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
