"""`workbench export PROJECT`: merged frames + destination audio -> PROJECT/output/<name>.mp4.

The video is labelled SYNTHETIC (unless --no-label) and always carries provenance metadata.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import CONSENT_RULE
from ..errors import ExportError, ProjectError
from ..export import Provenance, export_video
from ..project import FrameIndex, Project, read_frame_index
from ..video import is_video_path, probe_video


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
        "(default: the newest run folder in PROJECT/models/)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _output_path(project: Project, name: str | None, default_stem: str) -> Path:
    name = name or f"{default_stem}_swap.mp4"
    if Path(name).name != name:
        raise ExportError(
            "--output takes a file name, not a path", name, "the file is written to PROJECT/output/"
        )
    if not name.lower().endswith(".mp4"):
        name += ".mp4"
    return project.resolve_inside(project.output_dir / name)


def describe_model(project: Project) -> str:
    """A best-effort model description: the newest run folder in ``models/`` and its config, if any."""
    runs = [p for p in project.models_dir.glob("*") if p.is_dir()] if project.models_dir.is_dir() else []
    if not runs:
        return "face-swap model (unrecorded)"
    run = max(runs, key=lambda p: p.stat().st_mtime)
    text = f"workbench run '{run.name}'"
    config_path = run / "config.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            config = {}
        keys = ("architecture", "arch", "model", "resolution", "face_type", "ae_dims", "iterations", "iter")
        details = ", ".join(f"{k}={config[k]}" for k in keys if isinstance(config, dict) and k in config)
        if details:
            text += f" ({details})"
    return text


def _frame_files(project: Project, index: FrameIndex) -> list[Path]:
    files = [project.merged_dir / entry.file for entry in index.frames]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise ExportError(
            f"{len(missing)} of {len(files)} merged frames are missing (first: {missing[0].name})",
            project.merged_dir,
            f"run `workbench merge {project.root}` first",
        )
    return files


def run(args: argparse.Namespace) -> int:
    project = Project.open(args.project)
    index = read_frame_index(project)
    if not index.frames:
        raise ExportError(
            "the frame index lists no frames",
            project.frames_dir,
            f"re-run `workbench extract {project.root} --side dst`",
        )
    files = _frame_files(project, index)
    dst = project.resolve_inside(index.source) if index.source else None
    end_time = None
    audio_source = None
    if dst is not None and dst.is_file() and is_video_path(dst):
        info = probe_video(dst)
        audio_source = dst if info.has_audio else None
        if index.frames[-1].index == info.frame_count - 1 and info.duration > index.frames[-1].timestamp:
            end_time = info.duration  # the whole clip: end exactly where the destination ends
    try:
        src = project.media_path("src")
    except ProjectError:
        src = None
    provenance = Provenance.for_media(args.model or describe_model(project), source=src, destination=dst)
    out = _output_path(project, args.output, dst.stem if dst is not None else project.root.name)
    export_video(
        files,
        [e.timestamp for e in index.frames],
        out,
        audio_source=audio_source,
        provenance=provenance,
        label_synthetic=not args.no_label,
        crf=args.crf,
        overwrite=args.overwrite,
        progress=not args.quiet,
        end_time=end_time,
    )
    print(f"wrote {out}")
    print(
        f"  frames: {len(files)}, audio: {'copied from ' + dst.name if audio_source else 'none'}, "
        f"label: {'none (--no-label)' if args.no_label else 'SYNTHETIC (top-left)'}"
    )
    print("  provenance (MP4 tags; check with `ffprobe -show_format`):")
    for key, value in provenance.to_dict().items():
        if value is not None:
            print(f"    {key}: {value}")
    return 0
