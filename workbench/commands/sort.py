"""`workbench sort PROJECT --side src --by blur`: order a faceset and trash rejects."""

from __future__ import annotations

import argparse

from ..project import Project
from ..sort import METHODS, sort_faceset


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sort", help="curate a faceset: sort by blur, pose, size, similarity... and trash rejects")
    p.add_argument("project", help="project folder")
    p.add_argument("--side", choices=("src", "dst"), default="src")
    p.add_argument("--by", choices=METHODS, default="blur",
                   help="blur, motion-blur, yaw, pitch, face-size, brightness, hue, source, hist (similarity), "
                        "best (pose-balanced best N)")
    p.add_argument("--keep", type=int, help="keep the first N faces; move the rest to the trash folder")
    p.add_argument("--min-score", type=float, help="move faces scoring below this to the trash folder")
    p.add_argument("--no-rename", action="store_true", help="do not prefix file names with their rank")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    project = Project.open(args.project)
    result = sort_faceset(project.aligned_dir(args.side), args.by, trash_dir=project.trash_dir(args.side),
                          keep=args.keep, min_score=args.min_score, rename=not args.no_rename,
                          progress=not args.quiet)
    print(f"sorted by {result.method}: {len(result.kept)} kept, {len(result.trashed)} moved to "
          f"{project.trash_dir(args.side)}")
    for path, why in result.broken:
        print(f"  skipped {path.name}: {why}")
    return 0
