"""`workbench new DIR --src MEDIA --dst MEDIA`: create a project folder."""

from __future__ import annotations

import argparse

from .. import CONSENT_RULE
from ..project import create_project


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("new", help="create a project folder from source and destination media",
                              description="Create a project folder. " + CONSENT_RULE)
    p.add_argument("project", help="project folder to create")
    p.add_argument("--src", help="source identity: a video, a photo or a folder of photos")
    p.add_argument("--dst", help="destination: the video (or photos) whose face gets replaced")
    p.add_argument("--face-type", default="whole_face", help="half, mid_full, full, whole_face (default), head")
    p.add_argument("--face-size", type=int, default=512, help="aligned face size in px (default 512)")
    p.add_argument("--image-format", choices=("jpg", "png"), default="jpg")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..align import normalize_face_type

    project = create_project(args.project, args.src, args.dst, face_type=normalize_face_type(args.face_type),
                             face_size=args.face_size, image_format=args.image_format)
    config = project.read_config()
    print(f"project: {project.root}")
    for side in ("src", "dst"):
        print(f"  {side}: {config.get(side + '_media', '(none yet)')}")
    print(f"next: workbench extract {project.root}")
    return 0
