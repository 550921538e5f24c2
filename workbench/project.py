"""The project folder: one directory holding every stage's inputs and outputs.

See README.md ("Project folder") for the layout. Every command takes the project folder; user-supplied paths are
resolved inside it and may not escape it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from .errors import ProjectError
from .fileutil import atomic_write_json
from .images import is_image_path
from .video import VIDEO_SUFFIXES

CONFIG_NAME = "workbench.json"
FRAME_INDEX_NAME = "frames.json"
SCHEMA_VERSION = 1
SIDES = ("src", "dst")
Side = Literal["src", "dst"]


def _check_side(side: str) -> str:
    if side not in SIDES:
        raise ProjectError(f"side must be 'src' or 'dst', not '{side}'")
    return side


@dataclass(frozen=True)
class Project:
    """Paths of a project folder. Cheap to create; ``Project.open`` validates the folder."""

    root: Path

    @classmethod
    def open(cls, path: str | Path) -> Project:
        root = Path(path).expanduser().resolve()
        if not (root / CONFIG_NAME).is_file():
            raise ProjectError(
                "not a workbench project (no workbench.json)",
                root,
                "create one with `workbench new DIR --src MEDIA --dst MEDIA` (or `workbench demo`)",
            )
        return cls(root)

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    def read_config(self) -> dict[str, Any]:
        try:
            return json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ProjectError(f"cannot read project config ({exc})", self.config_path,
                               "fix the JSON by hand or re-create the project") from exc

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_json(self.config_path, config)

    def update_config(self, **changes: Any) -> dict[str, Any]:
        config = {**self.read_config(), **changes}
        self.write_config(config)
        return config

    def media_dir(self, side: Side) -> Path:
        return self.root / "media" / _check_side(side)

    def media_path(self, side: Side) -> Path:
        """The source/destination media: a video file or a folder of photos."""
        name = self.read_config().get(f"{side}_media")
        if not name:
            raise ProjectError(f"the project has no {side} media", self.root,
                               f"add it with `workbench new {self.root} --{side} MEDIA`")
        return self.resolve_inside(name)

    @property
    def frames_dir(self) -> Path:
        return self.root / "frames" / "dst"

    def aligned_dir(self, side: Side) -> Path:
        return self.root / "aligned" / _check_side(side)

    def trash_dir(self, side: Side) -> Path:
        return self.root / "aligned" / f"{_check_side(side)}_trash"

    def debug_dir(self, side: Side) -> Path:
        return self.root / "aligned" / f"{_check_side(side)}_debug"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def merged_dir(self) -> Path:
        return self.root / "merged"

    @property
    def merged_masks_dir(self) -> Path:
        return self.root / "merged" / "masks"

    @property
    def merge_settings_path(self) -> Path:
        return self.root / "merge.json"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    def resolve_inside(self, user_path: str | Path) -> Path:
        """Resolve a user path relative to the project; refuse anything outside the project folder."""
        candidate = Path(user_path).expanduser()
        if not candidate.is_absolute():
            candidate = self.root / candidate
        resolved = candidate.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise ProjectError("path is outside the project folder", user_path,
                               f"copy the file into {self.root} or use a path inside it")
        return resolved

    def relative(self, path: str | Path) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()


@dataclass(frozen=True)
class FrameEntry:
    index: int
    file: str
    timestamp: float


@dataclass(frozen=True)
class FrameIndex:
    """The destination frames written by extraction (``frames/dst/frames.json``)."""

    source: str
    fps: float
    has_audio: bool
    width: int
    height: int
    frames: tuple[FrameEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "source": self.source,
            "fps": self.fps,
            "has_audio": self.has_audio,
            "width": self.width,
            "height": self.height,
            "frames": [{"index": f.index, "file": f.file, "timestamp": f.timestamp} for f in self.frames],
        }


def read_frame_index(project: Project) -> FrameIndex:
    """Read ``frames/dst/frames.json``; raises ProjectError when extraction has not run yet."""
    path = project.frames_dir / FRAME_INDEX_NAME
    if not path.is_file():
        raise ProjectError("no destination frames yet", path, f"run `workbench extract {project.root} --side dst` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        frames = tuple(FrameEntry(int(f["index"]), str(f["file"]), float(f["timestamp"])) for f in data["frames"])
        return FrameIndex(str(data.get("source", "")), float(data.get("fps", 0.0)), bool(data.get("has_audio", False)),
                          int(data.get("width", 0)), int(data.get("height", 0)), frames)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ProjectError(f"broken frame index ({exc})", path, "re-run `workbench extract --side dst`") from exc


def write_frame_index(project: Project, index: FrameIndex) -> Path:
    return atomic_write_json(project.frames_dir / FRAME_INDEX_NAME, index.to_dict())


def _copy_media(source: Path, target_dir: Path) -> str:
    """Copy a video file or a folder of photos into the project; returns the stored name."""
    if not source.exists():
        raise ProjectError("media not found", source, "give a video file or a folder of photos")
    target_dir.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        photos = sorted(p for p in source.iterdir() if p.is_file() and is_image_path(p))
        if not photos:
            raise ProjectError("the folder holds no photos (jpg, png, webp, bmp, tif)", source)
        dest = target_dir / source.name
        dest.mkdir(exist_ok=True)
        for photo in photos:
            if not (dest / photo.name).exists():
                shutil.copy2(photo, dest / photo.name)
        return dest.name
    if source.suffix.lower() not in VIDEO_SUFFIXES and not is_image_path(source):
        raise ProjectError(f"unsupported media type '{source.suffix}'", source,
                           "use a video (mp4, mov, mkv, avi, webm) or a photo / folder of photos")
    dest = target_dir / source.name
    if not dest.exists():
        shutil.copy2(source, dest)
    return dest.name


def create_project(
    root: str | Path,
    src: str | Path | None = None,
    dst: str | Path | None = None,
    *,
    face_type: str = "whole_face",
    face_size: int = 512,
    image_format: str = "jpg",
    jpeg_quality: int = 90,
    name: str | None = None,
) -> Project:
    """Create (or update) a project folder with the documented layout and a small config file."""
    root = Path(root).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise ProjectError("project path exists and is not a folder", root)
    if root.exists() and any(root.iterdir()) and not (root / CONFIG_NAME).exists():
        raise ProjectError("folder is not empty and is not a workbench project", root,
                           "choose a new folder name")
    root.mkdir(parents=True, exist_ok=True)
    project = Project(root)
    config: dict[str, Any] = project.read_config() if project.config_path.exists() else {
        "schema_version": SCHEMA_VERSION,
        "name": name or root.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "face_type": face_type,
        "face_size": int(face_size),
        "image_format": image_format,
        "jpeg_quality": int(jpeg_quality),
    }
    for side, media in (("src", src), ("dst", dst)):
        if media is not None:
            stored = _copy_media(Path(media).expanduser().resolve(), project.media_dir(side))
            config[f"{side}_media"] = f"media/{side}/{stored}"
    for folder in (project.media_dir("src"), project.media_dir("dst"), project.frames_dir,
                   project.aligned_dir("src"), project.aligned_dir("dst"), project.models_dir,
                   project.merged_dir, project.output_dir):
        folder.mkdir(parents=True, exist_ok=True)
    project.write_config(config)
    return project
