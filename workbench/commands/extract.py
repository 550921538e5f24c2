"""`workbench extract PROJECT`: detect, align and save the faces of one or both sides."""

from __future__ import annotations

import argparse
from dataclasses import replace

from ..extract import ExtractOptions, extract_project
from ..project import Project


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("extract", help="detect faces and write aligned facesets (resumable)")
    p.add_argument("project", help="project folder (see `workbench new`)")
    p.add_argument("--side", choices=("src", "dst", "both"), default="both")
    p.add_argument("--engine", default="auto",
                   help="auto (default, offline: HOG, then YuNet/MTCNN + rotation search with a false-face guard), "
                   "dlib, dlib_cnn, haar, mtcnn, yunet, face_alignment")
    p.add_argument("--face-type", help="override the project's face type")
    p.add_argument("--size", type=int, help="override the project's aligned face size")
    p.add_argument("--target", choices=("all", "largest", "center"), default="all",
                   help="which faces to keep when several are in frame")
    p.add_argument("--reference", help="photo of the person to keep (identity filter)")
    p.add_argument("--reference-threshold", type=float, default=0.6)
    p.add_argument("--max-faces", type=int, default=0, help="keep at most N largest faces per frame (0 = all)")
    p.add_argument("--min-face", type=int, default=40, help="minimum face size in px")
    p.add_argument("--detect-max-side", type=int, default=640,
                   help="detect on a copy shrunk to this side for speed (0 = full resolution; default 640)")
    p.add_argument("--rotation-search", action="store_true", help="try 90/270/180 degree rotations (DFL)")
    p.add_argument("--smoothing", type=float, default=None,
                   help="temporal landmark smoothing 0..1 (default 0.5 for dst videos, 0 for src)")
    p.add_argument("--no-track", dest="track", action="store_false",
                   help="videos: do not fill missed frames / steady landmarks with KLT tracking")
    p.add_argument("--every-nth", type=int, default=1, help="process every n-th video frame")
    p.add_argument("--workers", type=int, default=2, help="detection processes (default 2)")
    p.add_argument("--debug", action="store_true", help="write debug images with landmarks and crop square")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    project = Project.open(args.project)
    config = project.read_config()
    base = ExtractOptions(
        engine=args.engine,
        face_type=args.face_type or config.get("face_type", "whole_face"),
        size=args.size or int(config.get("face_size", 512)),
        image_format=config.get("image_format", "jpg"),
        jpeg_quality=int(config.get("jpeg_quality", 90)),
        min_face=args.min_face,
        max_faces=args.max_faces,
        target=args.target,
        reference=str(project.resolve_inside(args.reference)) if args.reference else None,
        reference_threshold=args.reference_threshold,
        rotation_search=args.rotation_search,
        track=args.track,
        detect_max_side=args.detect_max_side or None,
        every_nth=args.every_nth,
        workers=args.workers,
        debug=args.debug,
    )
    sides = ("src", "dst") if args.side == "both" else (args.side,)
    for side in sides:
        smoothing = args.smoothing if args.smoothing is not None else (0.5 if side == "dst" else 0.0)
        print(f"== extracting {side} faces")
        summary = extract_project(project, side, replace(base, smoothing=smoothing), progress=not args.quiet)
        print(summary.format())
    return 0
