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
            config = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ProjectError(f"cannot read project config ({exc})", self.config_path,
                               "fix the JSON by hand or re-create the project") from exc
        if not isinstance(config, dict):
            raise ProjectError(f"the project config is a JSON {type(config).__name__}, not an object",
                               self.config_path, "fix the JSON by hand or re-create the project")
        return config

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
        try:
            if not isinstance(name, str):
                raise ProjectError(f"{side}_media is not a path")
            return self.resolve_inside(name)
        except ProjectError as exc:
            raise ProjectError(f"the project config names {side} media outside the project or not a path "
                               f"({name!r})", self.config_path,
                               f"media live in media/{side}/; add yours with `workbench new {self.root} --{side} "
                               "MEDIA --update`") from exc

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
        index = FrameIndex(str(data.get("source", "")), float(data.get("fps", 0.0)),
                           bool(data.get("has_audio", False)), int(data.get("width", 0)), int(data.get("height", 0)),
                           frames)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProjectError(f"broken frame index ({exc.__class__.__name__}: {exc})", path,
                           "re-run `workbench extract --side dst`") from exc
    # Frame files are plain names inside frames/dst and merged/; the source is a file of the project.
    for entry in index.frames:
        if not is_plain_name(entry.file):
            raise ProjectError(f"the frame index lists {entry.file!r}, which is not a plain file name", path,
                               "frame entries name files inside frames/dst; re-run `workbench extract --side dst`")
        frame = project.frames_dir / entry.file
        if frame.is_symlink() and project.root not in frame.resolve().parents:
            raise ProjectError("a destination frame is a link to a file outside the project", frame,
                               "replace the link by the file itself, or re-run `workbench extract --side dst`")
    if index.source:
        try:
            project.resolve_inside(index.source)
        except ProjectError as exc:
            raise ProjectError(f"the frame index names a source outside the project ({index.source!r})", path,
                               "re-run `workbench extract --side dst`") from exc
    return index


def is_plain_name(name: str) -> bool:
    """A single file or folder name: no separators, not '.' or '..', not empty."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def write_frame_index(project: Project, index: FrameIndex) -> Path:
    return atomic_write_json(project.frames_dir / FRAME_INDEX_NAME, index.to_dict())


def _folder_photos(source: Path) -> list[Path]:
    """Photos of a folder the user named; links leading out of it and empty files are not taken."""
    real = source.resolve()
    photos = []
    for p in sorted(source.iterdir()):
        if not (p.is_file() and is_image_path(p)):
            continue
        if p.is_symlink() and real not in p.resolve().parents:
            continue  # a link out of the folder the user named: never follow it silently
        if p.stat().st_size == 0:
            continue
        photos.append(p)
    return photos


def check_media(source: Path) -> None:
    """Look at a medium before copying it: exists, a supported kind, not empty, readable (raises MediaError)."""
    from .errors import MediaError
    from .images import read_image
    from .video import probe_video

    if not source.exists():
        raise ProjectError("media not found", source, "give a video file or a folder of photos")
    if source.is_dir():
        if not _folder_photos(source):
            raise ProjectError("the folder holds no usable photos (jpg, png, webp, bmp, tif; empty files and "
                               "links out of the folder are not taken)", source, "put the photos themselves in it")
        return
    if source.suffix.lower() not in VIDEO_SUFFIXES and not is_image_path(source):
        raise ProjectError(f"unsupported media type '{source.suffix}'", source,
                           "use a video (mp4, mov, mkv, avi, webm) or a photo / folder of photos")
    if source.stat().st_size == 0:
        raise MediaError("the media file is empty (0 bytes)", source, "re-copy or re-export the file")
    if source.suffix.lower() in VIDEO_SUFFIXES:
        probe_video(source)
    else:
        read_image(source)


def _same_file_content(a: Path, b: Path) -> bool:
    import filecmp

    return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)


def _plan_media(source: Path, target_dir: Path, update: bool) -> tuple[str, list[tuple[Path, Path]]]:
    """What to copy for one medium: (stored name, [(from, to)]); refuses a different file of the same name."""
    dest = target_dir / source.name
    pairs = [(p, dest / p.name) for p in _folder_photos(source)] if source.is_dir() else [(source, dest)]
    for src_file, target in pairs:
        if target.exists() and not _same_file_content(src_file, target):
            if not update:
                raise ProjectError(f"the project already holds a different file named '{target.name}'", target,
                                   "pass --update (update=True) to replace it, or rename your file")
    return dest.name, [(a, b) for a, b in pairs if not (b.exists() and _same_file_content(a, b))]


def create_project(
    root: str | Path,
    src: str | Path | None = None,
    dst: str | Path | None = None,
    *,
    face_type: str | None = None,
    face_size: int | None = None,
    image_format: str | None = None,
    jpeg_quality: int | None = None,
    name: str | None = None,
    update: bool = False,
) -> Project:
    """Create (or update) a project folder with the documented layout and a small config file.

    All or nothing: every medium is checked before anything is copied, copies go to temporary names that are
    renamed only when all succeeded, and a failure removes what this call created. On an existing project, a
    different file of the same name or a different face type/size/format is refused unless ``update`` is set.
    Options left at None keep the project's values (or DFL's defaults for a new project).
    """
    root = Path(root).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise ProjectError("project path exists and is not a folder", root)
    if root.exists() and any(root.iterdir()) and not (root / CONFIG_NAME).exists():
        raise ProjectError("folder is not empty and is not a workbench project", root,
                           "choose a new folder name")
    project = Project(root)
    existing = project.config_path.exists()
    config: dict[str, Any] = project.read_config() if existing else {
        "schema_version": SCHEMA_VERSION,
        "name": name or root.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "face_type": "whole_face",
        "face_size": 512,
        "image_format": "jpg",
        "jpeg_quality": 90,
    }
    wanted = {"face_type": face_type, "face_size": None if face_size is None else int(face_size),
              "image_format": image_format, "jpeg_quality": None if jpeg_quality is None else int(jpeg_quality)}
    changed = {k: v for k, v in wanted.items() if v is not None and config.get(k) != v}
    if existing and changed and not update:
        what = ", ".join(f"{k} {config.get(k)!r} -> {v!r}" for k, v in changed.items())
        raise ProjectError(f"the project already exists with other settings ({what})", project.config_path,
                           "pass --update (update=True) to change them, or choose a new folder")
    config.update(changed)
    sources = [(side, Path(media).expanduser().resolve()) for side, media in (("src", src), ("dst", dst))
               if media is not None]
    for _, source in sources:
        check_media(source)
    plans = [(side, *_plan_media(source, project.media_dir(side), update)) for side, source in sources]

    created: list[Path] = []  # folders this call made, removed again if it fails
    staged: list[tuple[Path, Path]] = []
    try:
        for folder in (root, project.media_dir("src"), project.media_dir("dst"), project.frames_dir,
                       project.aligned_dir("src"), project.aligned_dir("dst"), project.models_dir,
                       project.merged_dir, project.output_dir,
                       *(project.media_dir(side) / stored for (side, stored, _), (_, source) in zip(plans, sources)
                         if source.is_dir())):
            for part in reversed([folder, *folder.parents]):
                if not part.exists():
                    part.mkdir()
                    created.append(part)
        for side, stored, pairs in plans:
            for source, target in pairs:
                tmp = target.with_name(f".{target.name}.partial")
                shutil.copy2(source, tmp)
                staged.append((tmp, target))
            config[f"{side}_media"] = f"media/{side}/{stored}"
        for tmp, target in staged:
            tmp.replace(target)
        staged = []
        project.write_config(config)
    except BaseException as exc:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        for folder in reversed(created):
            shutil.rmtree(folder, ignore_errors=True)
        from .fileutil import disk_full_error, is_disk_full

        if is_disk_full(exc):
            need = sum(s.stat().st_size for _, _, pairs in plans for s, _ in pairs)
            raise disk_full_error(root if root.exists() else root.parent, need) from exc
        raise
    return project
