"""`workbench export PROJECT`: merged frames + destination audio -> PROJECT/output/<name>.mp4.

The video is labelled SYNTHETIC (unless --no-label) and always carries provenance metadata.
"""

from __future__ import annotations

import argparse

from .. import CONSENT_RULE
from ..export import export_project
from ..project import Project


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write the merged frames as an MP4 with the destination's audio",
        description="Encode PROJECT/merged/ as H.264 MP4 into PROJECT/output/, keeping the destination's "
        "frame times and audio, with provenance metadata and a visible SYNTHETIC label. " + CONSENT_RULE,
    )
    p.add_argument("project", help="project folder")
    p.add_argument(
        "--output", metavar="NAME.mp4", help="file name inside PROJECT/output/ (default: <dst>_swap.mp4)"
    )
    p.add_argument(
        "--no-label",
        action="store_true",
        help="do not draw the SYNTHETIC corner label (the provenance metadata is written either way)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--crf", type=int, default=18, help="x264 quality, 0..51, lower is better (default 18)")
    p.add_argument(
        "--model",
        metavar="TEXT",
        help="model description for the provenance record "
        "(default: the model the merge recorded, else the latest run: workbench.train.runs.latest_run)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    project = Project.open(args.project)
    out, provenance = export_project(
        project,
        output=args.output,
        label_synthetic=not args.no_label,
        overwrite=args.overwrite,
        crf=args.crf,
        model=args.model,
        progress=not args.quiet,
    )
    print(f"wrote {out}")
    print(f"  label: {'none (--no-label)' if args.no_label else 'SYNTHETIC (top-left)'}")
    print("  provenance (MP4 tags; check with `ffprobe -show_format`):")
    for key, value in provenance.to_dict().items():
        if value is not None:
            print(f"    {key}: {value}")
    return 0
