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
    p.add_argument("--face-type", default=None, help="half, mid_full, full, whole_face (default), head")
    p.add_argument("--face-size", type=int, default=None, help="aligned face size in px (default 512)")
    p.add_argument("--image-format", choices=("jpg", "png"), default=None, help="aligned face format (default jpg)")
    p.add_argument("--update", action="store_true",
                   help="on an existing project: replace media of the same name and change the settings given "
                   "(without it, any difference is refused)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..align import normalize_face_type
    from ..errors import ConfigError

    if args.face_size is not None and not 64 <= args.face_size <= 2048:
        raise ConfigError(f"face size must be 64..2048 px, got {args.face_size}", hint="e.g. --face-size 256")
    face_type = normalize_face_type(args.face_type) if args.face_type else None
    project = create_project(args.project, args.src, args.dst, face_type=face_type, face_size=args.face_size,
                             image_format=args.image_format, update=args.update)
    config = project.read_config()
    print(f"project: {project.root}")
    for side in ("src", "dst"):
        print(f"  {side}: {config.get(side + '_media', '(none yet)')}")
    print(f"next: workbench extract {project.root}")
    return 0
