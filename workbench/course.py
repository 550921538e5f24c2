"""Small helpers for the teaching notebooks in ``notebooks/`` (the course).

The notebooks call the library; this module holds only what a notebook would otherwise have to define itself:

* :func:`setup` / :func:`course_settings`: ONE switch between *small* settings (a 2-core CPU, a few minutes per
  notebook) and *full* settings (a Colab GPU), chosen by the notebook's parameter cell or by the environment
  variable ``WORKBENCH_COURSE_SIZE=small|full`` (default: small on CPU, full when CUDA is available).
* :func:`prepare_workspace`: where the course keeps its project (``$WORKBENCH_WORKSPACE``, else ``./workspace``;
  on Colab a folder on Google Drive, so a disconnect loses nothing and training resumes).
* :func:`course_media`: real faces from the shared test media when present, otherwise demo faces built from
  images that ship inside installed packages (Grace Hopper, the scikit-image astronaut), so a fresh clone works.
* :func:`ensure_course_project` / :func:`ensure_course_run`: build (or reuse) the course project and its trained
  run with one call each, so every notebook also runs on its own.
* :class:`TinySwapAutoencoder` and :func:`train_tiny_autoencoder`: a deliberately small shared-encoder /
  two-decoder autoencoder that learns two identities in a few hundred CPU steps (notebook 03). The real models
  are :mod:`workbench.models` (DF, LIAE), trained by :mod:`workbench.train`.
* :func:`show` and :func:`help_table`: display arrays and option tables inline.

Every person shown is labelled with who they are and where the media came from; every swapped result is
synthetic media and the notebooks say so. Use only faces you have the right to use (``workbench.CONSENT_RULE``).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import CONSENT_RULE, __version__
from .errors import ConfigError, WorkbenchError
from .images import encode_image, read_image
from .models.tiny import TinySwapAutoencoder
from .tensors import to_images, to_tensor

SIZE_ENV = "WORKBENCH_COURSE_SIZE"
WORKSPACE_ENV = "WORKBENCH_WORKSPACE"
SIZES = ("small", "full")
RUN_NAME = "course"
COURSE_FILE = "course.json"
DRIVE_MOUNT = Path("/content/drive")
DRIVE_FOLDER = "face-swap-workbench"
PUBLISHED_REPO = ""
"""The project's published GitHub location ("owner/name"), the ONE place it is written. Empty while the project
has no public URL: then the notebooks' setup cell asks for an uploaded zip/wheel of the repository. A test keeps
the README's "Open in Colab" line, each notebook's top link and each setup cell's ``REPO`` equal to it."""
COLAB_URL = "https://colab.research.google.com/github/{repo}/blob/main/notebooks/{name}.ipynb"
RECOGNISABLE_SHARE = 0.8  # "reads as the source": this share of held-out swaps is closer to the source identity

# ------------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class CourseSettings:
    """Everything that differs between the small (CPU) and the full (GPU) course.

    Attributes:
        size: "small" or "full".
        device: "cuda" or "cpu" (what this machine offers).
        workspace: the folder holding the course project (see :func:`prepare_workspace`).
        face_size: side of the aligned faces written by extraction, in pixels.
        sample_every: extract every n-th frame of the real video clips (1 = every frame).
        detect_max_side: notebook 01 runs the detectors on photos shrunk to this longer side.
        tiny_resolution, tiny_steps, tiny_warp, tiny_batch: notebook 03's tiny autoencoder.
        train_preset, train_overrides: the course model (a :mod:`workbench.train` preset plus changes).
        course_steps: steps trained by :func:`ensure_course_run` when a notebook runs on its own.
        background_steps, background_seconds: notebook 04's background session (0 steps = no step limit).
        target_steps, target_seconds: the course model's background session started by notebook 00 (it ends at
            ``target_steps`` or after ``target_seconds``, whichever first; 03-06 use whatever it reached).
        cpu_threads: torch threads on CPU (1 keeps a shared 2-core machine responsive; 0 = torch's default).
        display_px: cell size for face grids shown inline.
    """

    size: str
    device: str
    workspace: Path
    face_size: int
    sample_every: int
    detect_max_side: int
    tiny_resolution: int
    tiny_steps: int
    tiny_warp: bool
    tiny_batch: int
    train_preset: str
    train_overrides: tuple[tuple[str, Any], ...]
    course_steps: int
    background_steps: int
    background_seconds: float
    target_steps: int
    target_seconds: float
    cpu_threads: int
    display_px: int

    @property
    def is_small(self) -> bool:
        return self.size == "small"

    def train_options(self, **changes: Any):
        """The course model's :class:`workbench.train.TrainOptions` (with optional changes)."""
        from .train import preset

        return preset(self.train_preset, **{**dict(self.train_overrides), **changes})

    def trainer_env(self) -> dict[str, str]:
        """Extra environment variables for the background trainer process (thread count on CPU)."""
        return {"OMP_NUM_THREADS": str(self.cpu_threads)} if self.cpu_threads > 0 else {}

    def summary(self) -> str:
        return (f"course size: {self.size} (device {self.device}); workspace: {self.workspace}\n"
                f"faces {self.face_size} px, {_every(self.sample_every)} video frame; course model: "
                f"{self.train_preset} preset {dict(self.train_overrides)}")


def _every(n: int) -> str:
    return "every" if n == 1 else f"every {n}{'nd' if n == 2 else 'rd' if n == 3 else 'th'}"


_SMALL = dict(
    face_size=128, sample_every=4, detect_max_side=480,
    tiny_resolution=32, tiny_steps=500, tiny_warp=False, tiny_batch=8,
    train_preset="tiny",
    train_overrides=(("archi", "df"), ("resolution", 32), ("ae_dims", 64), ("e_dims", 12), ("d_dims", 12),
                     ("d_mask_dims", 8), ("lr", 5e-4), ("preview_every", 25), ("metrics_every", 50),
                     ("save_every_seconds", 60.0), ("loader_workers", 0)),
    course_steps=300, background_steps=300, background_seconds=300.0, target_steps=4000, target_seconds=1500.0,
    cpu_threads=1, display_px=96,
)
_FULL = dict(
    face_size=256, sample_every=1, detect_max_side=800,
    tiny_resolution=64, tiny_steps=3000, tiny_warp=True, tiny_batch=32,
    train_preset="tiny",
    train_overrides=(("preview_every", 200), ("metrics_every", 500), ("save_every_seconds", 300.0)),
    course_steps=3000, background_steps=0, background_seconds=1800.0, target_steps=30000, target_seconds=3 * 3600.0,
    cpu_threads=0, display_px=128,
)


def default_size() -> str:
    """``$WORKBENCH_COURSE_SIZE`` if set, else "full" when CUDA is available and "small" otherwise."""
    value = os.environ.get(SIZE_ENV, "").strip().lower()
    if value:
        if value not in SIZES:
            raise ConfigError(f"{SIZE_ENV}={value!r} is not one of {', '.join(SIZES)}",
                              hint=f"export {SIZE_ENV}=small (CPU) or {SIZE_ENV}=full (GPU)")
        return value
    return "full" if torch.cuda.is_available() else "small"


def course_settings(size: str | None = None, workspace: str | Path | None = None) -> CourseSettings:
    """The course settings for ``size`` ("small", "full" or None = :func:`default_size`).

    Raises:
        ConfigError: an unknown size.
    """
    size = default_size() if size is None else str(size).strip().lower()
    if size not in SIZES:
        raise ConfigError(f"course size must be one of {', '.join(SIZES)}, not {size!r}")
    values = _SMALL if size == "small" else _FULL
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return CourseSettings(size=size, device=device, workspace=workspace_dir(workspace), **values)


def configure_torch(settings: CourseSettings) -> None:
    """Apply the settings' CPU thread count to this process (small course on CPU: one thread)."""
    if settings.device == "cpu" and settings.cpu_threads > 0:
        torch.set_num_threads(settings.cpu_threads)


def setup(size: str | None = None, workspace: str | Path | None = None, *, drive: bool = False,
          verbose: bool = True) -> CourseSettings:
    """What the first cells of every notebook do: workspace (on Google Drive when ``drive`` and on Colab),
    settings, torch threads."""
    settings = course_settings(size, prepare_workspace(workspace, drive=drive, verbose=verbose))
    configure_torch(settings)
    if verbose:
        print(settings.summary())
    return settings


# ------------------------------------------------------------------------------------------------- runtime


def is_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules or bool(os.environ.get("COLAB_RELEASE_TAG"))


def workspace_dir(path: str | Path | None = None) -> Path:
    """The course workspace: ``path``, else ``$WORKBENCH_WORKSPACE``, else ``./workspace`` (created).

    A new workspace gets a ``.gitignore`` holding ``*``, so nothing made from real faces is committed by accident.
    """
    chosen = Path(path or os.environ.get(WORKSPACE_ENV) or Path.cwd() / "workspace").expanduser().resolve()
    chosen.mkdir(parents=True, exist_ok=True)
    ignore = chosen / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# course outputs (faces, models, videos) stay out of version control\n*\n",
                          encoding="utf-8")
    return chosen


def colab_link(name: str, repo: str = PUBLISHED_REPO) -> str:
    """The markdown "Open in Colab" line for notebook ``name`` (README and the notebook's first cell hold it
    verbatim; a test checks). Without a published location it says how to open the notebook by upload."""
    if repo:
        return f"[Open in Colab]({COLAB_URL.format(repo=repo, name=name)})"
    return ("**Open in Colab:** the project has no published location yet, so open Colab, *File → Upload "
            f"notebook* `notebooks/{name}.ipynb`, then *Run all*: the setup cell asks for a zip of the repository.")


def prepare_workspace(path: str | Path | None = None, *, drive: bool | None = None, verbose: bool = True) -> Path:
    """Pick the course workspace; with ``drive`` on Colab mount Google Drive first and use a folder there.

    With the workspace on Drive, faces, checkpoints and run folders survive a disconnected runtime, and
    starting the trainer again resumes from the last checkpoint.

    Args:
        path: an explicit folder (wins over everything).
        drive: mount Google Drive (only on Colab; default off: the notebooks' ``USE_DRIVE`` parameter).
        verbose: print what was decided.
    """
    use_drive = bool(drive) and is_colab()
    if path is None and use_drive:
        from google.colab import drive as colab_drive  # type: ignore[import-not-found]

        if not (DRIVE_MOUNT / "MyDrive").is_dir():
            colab_drive.mount(str(DRIVE_MOUNT))
        path = DRIVE_MOUNT / "MyDrive" / DRIVE_FOLDER
        message = f"Colab: the workspace is on Google Drive: {path}"
    else:
        message = ("not on Colab: skipped the Drive mount" if not is_colab() else
                   "Drive off (USE_DRIVE = False): the workspace lives in this runtime and is lost on a disconnect")
    chosen = workspace_dir(path)
    if verbose:
        print(f"{message}; workspace: {chosen}")
    return chosen


def runtime_report() -> dict[str, Any]:
    """Versions and hardware of this runtime (what notebook 00 checks first)."""
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    from .detect import face_alignment_missing_files
    from .testdata import shared_data_dir

    cuda = torch.cuda.is_available()
    missing_fa = face_alignment_missing_files("sfd") if version("face-alignment") != "not installed" else ["package"]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "colab": is_colab(),
        "cpu cores": os.cpu_count(),
        "workbench": __version__,
        "torch": torch.__version__,
        "cuda": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu memory (GiB)": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
        "opencv": cv2.__version__,
        "dlib": version("dlib-bin") if version("dlib-bin") != "not installed" else version("dlib"),
        "face-alignment weights": "cached" if not missing_fa else "not cached (" + ", ".join(missing_fa) + ")",
        "gradio": version("gradio"),
        "ipywidgets": version("ipywidgets"),
        "shared test media": str(shared_data_dir()) if shared_data_dir() else "absent (demo faces are used)",
    }


def format_report(report: Mapping[str, Any]) -> str:
    """The runtime report as aligned ``key: value`` lines."""
    width = max(len(k) for k in report)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in report.items())


# ------------------------------------------------------------------------------------------------- display


def _fit(image: np.ndarray, cell: int | None) -> np.ndarray:
    from .viz import fit_long_side

    return fit_long_side(image, cell)


def compose(images: np.ndarray | Sequence[np.ndarray], labels: Sequence[str] | None = None,
            ncols: int | None = None, *, cell: int | None = None, max_width: int = 1400) -> np.ndarray:
    """One array from one image or a labelled grid (``viz.image_grid``), every cell ``cell`` px on its long side."""
    from . import viz

    single = isinstance(images, np.ndarray) and (images.ndim == 2 or (images.ndim == 3 and images.shape[-1] in (1, 3, 4)))
    if single:
        grid = _fit(images, cell)
        grid = viz.label_image(grid, labels[0]) if labels else grid
    else:
        cells = [_fit(img, cell) for img in images]
        if not cells:
            raise ValueError("nothing to show")
        if cell is None:  # every cell takes the first image's size (no letterbox needed when they match)
            cells = [c if c.shape[:2] == cells[0].shape[:2] else _fit(c, max(cells[0].shape[:2])) for c in cells]
        box = (max(c.shape[0] for c in cells), max(c.shape[1] for c in cells))
        cells = [viz.letterbox(c if c.ndim == 3 else np.repeat(c[..., None], 3, axis=2), box) for c in cells]
        grid = viz.image_grid(cells, ncols or len(cells), labels=list(labels) if labels else None)
    if grid.shape[1] > max_width:
        grid = _fit(grid, None)
        grid = cv2.resize(grid, (max_width, max(1, round(grid.shape[0] * max_width / grid.shape[1]))),
                          interpolation=cv2.INTER_AREA)
    return grid


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of an RGB float (or uint8) image."""
    return encode_image(np.clip(np.asarray(image, np.float32), 0, 1) if np.asarray(image).dtype != np.uint8
                        else image, "png")


def show(images: np.ndarray | Sequence[np.ndarray], labels: Sequence[str] | None = None,
         ncols: int | None = None, *, cell: int | None = None, title: str | None = None) -> None:
    """Display one image or a labelled grid inline (as a PNG), e.g. ``show(faces, names, ncols=4, cell=96)``."""
    from IPython.display import Image, display

    if title:
        print(title)
    display(Image(data=png_bytes(compose(images, labels, ncols, cell=cell))))


PREVIEW_CAPTIONS = ("src (real)", "src rebuilt", "dst (real)", "dst rebuilt", "SWAP src->dst")


def readable_preview(grid: np.ndarray, resolution: int, cell: int = 96) -> np.ndarray:
    """A trainer preview grid (:func:`workbench.train.preview.make_grid`: 5 columns, a 4 px gap, the 5 masked
    columns, each ``resolution`` px wide under a small header) redrawn for reading: faces enlarged to ``cell``
    px and captions in words ("SWAP src->dst", "... masked") that fit above them."""
    from .train.preview import COLUMNS, HEADER_PX
    from .viz import label_image

    body = np.asarray(grid, np.float32)[HEADER_PX:]
    n = len(COLUMNS)
    starts = [i * resolution for i in range(n)] + [n * resolution + 4 + i * resolution for i in range(n)]
    if starts[-1] + resolution > body.shape[1]:
        return np.asarray(grid, np.float32)  # not a preview grid of this resolution: show it as it is
    k = max(1, int(np.ceil(cell / resolution)))
    halves = []
    for half, title in ((starts[:n], "the whole crop"), (starts[n:], "times each image's mask")):
        columns = []
        for j, x in enumerate(half):
            column = cv2.resize(body[:, x:x + resolution], None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
            header = label_image(np.ones((22, column.shape[1], 3), np.float32), PREVIEW_CAPTIONS[j])
            columns.append(np.concatenate([header, np.clip(column, 0, 1)], axis=0))
        block = np.concatenate(columns, axis=1)
        halves.append(np.concatenate([label_image(np.ones((22, block.shape[1], 3), np.float32), title), block]))
    gap = np.ones((halves[0].shape[0], 8, 3), np.float32)
    grid = np.concatenate([halves[0], gap, halves[1]], axis=1)
    # a blank band on top: room for the caption :func:`show` writes over an image, so no column title is hidden
    return np.concatenate([np.ones((36, grid.shape[1], 3), np.float32), grid], axis=0)


def help_table(help_texts: Mapping[str, str], values: Mapping[str, Any] | None = None,
               names: Sequence[str] | None = None, title: str = "option") -> Any:
    """A Markdown table ``option | value | what it does`` (an ``IPython.display.Markdown`` object)."""
    from IPython.display import Markdown

    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    keys = list(names) if names is not None else list(help_texts)
    if values is None:
        rows = [f"| `{k}` | {cell(help_texts[k])} |" for k in keys]
        return Markdown("\n".join([f"| {title} | what it does |", "|---|---|", *rows]))
    rows = [f"| `{k}` | `{cell(values.get(k, ''))}` | {cell(help_texts[k])} |" for k in keys]
    return Markdown("\n".join([f"| {title} | value | what it does |", "|---|---|---|", *rows]))


# ------------------------------------------------------------------------------------------------- media


@dataclass(frozen=True)
class Photo:
    """A labelled still for the detection notebooks: who/what it shows and, for hard cases, why it is hard."""

    image: np.ndarray = field(repr=False)
    label: str
    kind: str = "portrait"
    why: str | None = None


@dataclass(frozen=True)
class CourseMedia:
    """The faces the course works with.

    Attributes:
        real: True when they come from the shared test media, False for the bundled demo faces.
        source, destination: the source-identity clip (whose face is learned) and the destination clip
            (whose frames receive the swapped face).
        source_label, destination_label: who is in them, and where the clip comes from.
        photos: labelled stills for detection: easy portraits first, then the hard cases.
        pose_clip, pose_label, pose_frames: a clip with head motion, who is in it, and frames to show.
        credits: one line about where the media come from.
    """

    real: bool
    source: Path
    destination: Path
    source_label: str
    destination_label: str
    photos: tuple[Photo, ...] = field(repr=False)
    pose_clip: Path
    pose_label: str
    pose_frames: tuple[int, ...]
    credits: str

    def sample_every(self, side: str, settings: CourseSettings) -> int:
        """Extract every n-th frame: the settings' value for real clips; the short demo clips need more frames."""
        if self.real:
            return settings.sample_every
        return 1 if side == "src" or not settings.is_small else 2


def _demo_clips(workspace: Path) -> tuple[Path, Path]:
    from .demo_media import make_demo_destination, make_demo_source_clip

    folder = workspace / "demo-media"
    src, dst = folder / "grace_hopper_clip.mp4", folder / "astronaut_clip.mp4"
    if not src.is_file():
        make_demo_source_clip(src, overwrite=True)
    if not dst.is_file():
        make_demo_destination(dst, overwrite=True)
    return src, dst


def _shrink(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (max(8, round(w * factor)), max(8, round(h * factor))), interpolation=cv2.INTER_AREA)


def course_media(settings: CourseSettings | Path | str | None = None) -> CourseMedia:
    """Real faces from the shared test media when present (``workbench.testdata.shared_data_dir``), otherwise
    the demo faces of :mod:`workbench.demo_media` (clips written once into ``WORKSPACE/demo-media``)."""
    from .testdata import shared_data_dir
    from .video import read_frame

    workspace = settings.workspace if isinstance(settings, CourseSettings) else workspace_dir(settings)
    data = shared_data_dir()
    needed = ("videos/lp_d18.mp4", "videos/lp_d19.mp4", "videos/lp_d3.mp4", "videos/fr_short_hamilton_clip.mp4",
              "stills/lp_d18_person/d19.jpg", "stills/multi/two_people.jpg")
    if data is not None and all((data / n).is_file() for n in needed):
        hamilton = data / "videos/fr_short_hamilton_clip.mp4"
        photos = (
            Photo(read_image(data / "stills/lp_d18_person/d19.jpg"), "D18, studio still (LivePortrait example)"),
            Photo(read_image(data / "stills/multi/two_people.jpg"), "Barack Obama and Joe Biden (2 faces)", "group"),
            Photo(read_frame(hamilton, 30).image, "Hamilton clip fr. 30: pianist in profile", "profile",
                  "a face turned ~45 degrees or more: one eye and half the mouth are hidden, so a detector "
                  "trained on frontal faces (HOG) no longer sees its template"),
            Photo(read_frame(hamilton, 0).image, "Hamilton clip fr. 0: small faces on stage", "small",
                  "faces of 20-40 px: HOG at upsample 0 needs about 80 px; upsampling the image or the CNN helps"),
            Photo(read_frame(hamilton, 240).image, "Hamilton clip fr. 240: audience, dark, turned", "crowd",
                  "several small, partly turned faces in stage light: some are found, some are not"),
        )
        return CourseMedia(
            real=True, source=data / "videos/lp_d18.mp4", destination=data / "videos/lp_d19.mp4",
            source_label="D18 (LivePortrait example clip d18)",
            destination_label="D19 (LivePortrait example clip d19)",
            photos=photos, pose_clip=data / "videos/lp_d3.mp4", pose_label="LivePortrait example clip d3",
            pose_frames=(0, 24, 126, 264, 282, 312),
            credits="shared test media (see shared/data/SOURCES.md): real, identifiable people; "
                    "outputs stay inside this course and are labelled synthetic",
        )
    from .demo_media import demo_destination_image, demo_source_image

    src, dst = _demo_clips(workspace)
    hopper, astronaut = demo_source_image(), demo_destination_image()
    photos = (
        Photo(hopper, "Grace Hopper (matplotlib sample photo)"),
        Photo(astronaut, "Eileen Collins (scikit-image 'astronaut')"),
        Photo(np.ascontiguousarray(np.rot90(hopper, -1)), "Grace Hopper, turned 90 degrees", "rotated",
              "the detector only knows upright faces; rotation_search=True also tries 90, 270 and 180 degrees"),
        Photo(_shrink(astronaut, 0.3), "astronaut shrunk to 30%: a small face", "small",
              "a face of ~25 px: HOG at upsample 0 needs about 80 px; upsampling the image or the CNN helps"),
    )
    return CourseMedia(
        real=False, source=src, destination=dst,
        source_label="Grace Hopper (demo clip from matplotlib's sample photo)",
        destination_label="Eileen Collins (demo clip from scikit-image's 'astronaut')",
        photos=photos, pose_clip=src, pose_label="Grace Hopper demo clip", pose_frames=(0, 7, 14, 21, 28, 35),
        credits="bundled demo faces (public-domain portraits shipped with matplotlib and scikit-image)",
    )


# ------------------------------------------------------------------------------------------------- project


@dataclass(frozen=True)
class ColourPair:
    """Two aligned faces whose skin tones and light differ (the demo portraits), for the colour-transfer lesson."""

    face: np.ndarray = field(repr=False)  # the face to recolour (Grace Hopper), RGB float32
    reference: np.ndarray = field(repr=False)  # the face whose colours it should take (the astronaut)
    mask: np.ndarray = field(repr=False)  # the landmark hull of ``face``: where the statistics are measured
    labels: tuple[str, str] = ("Grace Hopper (matplotlib sample photo)", "Eileen Collins (scikit-image 'astronaut')")


def colour_pair(size: int = 128) -> ColourPair:
    """The two bundled demo portraits as aligned ``whole_face`` crops of ``size`` px with the first one's hull mask:
    an indoor studio portrait and an outdoor flash photo, so every colour transfer visibly moves the skin tone
    (the course's real clips were filmed in the same studio and barely differ)."""
    from .align import transform_matrix, transform_points, warp_face
    from .demo_media import demo_destination_image, demo_source_image
    from .detect import detect_faces
    from .masks import hull_mask

    faces = []
    for image in (demo_source_image(), demo_destination_image()):
        landmarks = detect_faces(image, "dlib")[0].landmarks
        mat = transform_matrix(landmarks, size, "whole_face")
        faces.append((warp_face(image, mat, size), transform_points(landmarks, mat)))
    return ColourPair(faces[0][0], faces[1][0], hull_mask(faces[0][0].shape, faces[0][1]))


@dataclass(frozen=True)
class ReferencePick:
    """Picking the target person in a picture with two people by a reference photo (``targets.select_faces``)."""

    picture: np.ndarray = field(repr=False)  # the group photo with boxes: green = picked, red = someone else
    reference: np.ndarray = field(repr=False)
    labels: tuple[str, str]  # (group photo, reference photo)
    distances: tuple[float, ...]  # embedding distance of each detected face to the reference
    picked: tuple[int, ...]  # indices of the faces that pass the threshold
    threshold: float


def reference_pick(threshold: float = 0.6) -> ReferencePick:
    """Two people in one photo and a different photo of one of them: which face is the target?

    Uses the shared test media (Obama and Biden together; a separate Biden portrait) when present, otherwise the
    two demo portraits side by side with the first as its own reference."""
    from .demo_media import demo_destination_image, demo_source_image
    from .detect import detect_faces
    from .identity import face_embedding, reference_embedding
    from .targets import select_faces
    from .testdata import shared_data_dir

    data = shared_data_dir()
    group_path = data / "stills/multi/two_people.jpg" if data else None
    ref_path = data / "stills/biden/biden2.jpg" if data else None
    if group_path is not None and group_path.is_file() and ref_path.is_file():
        group, reference = read_image(group_path), read_image(ref_path)
        names = ("Barack Obama and Joe Biden (shared test media)", "Joe Biden, another photo (shared test media)")
    else:
        a, b = demo_source_image(), demo_destination_image()
        h = min(a.shape[0], b.shape[0])
        a, b = (cv2.resize(x, (round(x.shape[1] * h / x.shape[0]), h)) for x in (a, b))
        group, reference = np.concatenate([a, b], axis=1), demo_source_image()
        names = ("Grace Hopper and Eileen Collins (demo portraits side by side)", "Grace Hopper (same photo)")
    faces = detect_faces(group, "dlib")
    ref = reference_embedding(reference)
    distances = tuple(float(np.linalg.norm(face_embedding(group, f.landmarks) - ref)) for f in faces)
    kept = select_faces(faces, group.shape, "all", reference=ref, threshold=threshold, image=group)
    picked = tuple(i for i, f in enumerate(faces) if any(k.face is f for k in kept))
    canvas = (np.clip(group, 0, 1) * 255).astype(np.uint8).copy()
    thick = max(2, group.shape[1] // 300)
    for i, (face, dist) in enumerate(zip(faces, distances)):
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        colour = (0, 200, 0) if i in picked else (220, 0, 0)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thick)
        cv2.putText(canvas, f"{dist:.2f}", (x0, max(0, y0 - 2 * thick)), cv2.FONT_HERSHEY_SIMPLEX,
                    max(0.6, (x1 - x0) / 120), colour, thick)
    return ReferencePick(canvas.astype(np.float32) / 255.0, reference, names, distances, picked, threshold)


def course_project_dir(settings: CourseSettings, media: CourseMedia | None = None) -> Path:
    """``WORKSPACE/course-<size>`` (``-demo`` appended when the demo faces are used)."""
    real = media.real if media is not None else _has_real_media()
    return settings.workspace / f"course-{settings.size}{'' if real else '-demo'}"


def _has_real_media() -> bool:
    from .testdata import shared_data_dir

    data = shared_data_dir()
    return data is not None and (data / "videos/lp_d18.mp4").is_file() and (data / "videos/lp_d19.mp4").is_file()


def _root(project: Any) -> Path:
    """A Project's folder, or the path itself (a Path also has a ``.root`` attribute, so test for Project)."""
    from .project import Project

    return project.root if isinstance(project, Project) else Path(project)


def course_info(project: Any) -> dict[str, Any]:
    """What :func:`ensure_course_project` recorded in ``PROJECT/course.json`` (labels, extraction summaries)."""
    path = _root(project) / COURSE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def ensure_course_project(settings: CourseSettings, media: CourseMedia | None = None, *, progress: bool = True,
                          verbose: bool = True):
    """Create the course project and extract both facesets, or reuse them when a previous notebook did.

    Extraction uses the library's defaults except: whole-face crops of ``settings.face_size`` px, every n-th
    frame (:meth:`CourseMedia.sample_every`) and NO landmark smoothing, so notebook 06 can show what temporal
    smoothing adds. Returns the :class:`workbench.project.Project`.
    """
    from .extract import ExtractOptions, extract_project
    from .fileutil import atomic_write_json
    from .project import Project, create_project

    media = media or course_media(settings)
    root = course_project_dir(settings, media)
    info = course_info(root)
    if info.get("complete"):
        if verbose:
            print(f"reusing the course project {root}")
        return Project.open(root)
    project = create_project(root, media.source, media.destination, face_type="whole_face",
                             face_size=settings.face_size, name=f"course ({settings.size})")
    summaries = {}
    for side in ("src", "dst"):
        options = ExtractOptions(face_type="whole_face", size=settings.face_size,
                                 every_nth=media.sample_every(side, settings), smoothing=0.0, workers=2)
        summary = extract_project(project, side, options, progress=progress)
        summaries[side] = {"frames": summary.frames, "faces": summary.faces,
                           "frames_without_face": summary.frames_without_face, "seconds": round(summary.seconds, 1)}
        if verbose:
            print(f"--- {side}: {media.source_label if side == 'src' else media.destination_label}\n"
                  f"{summary.format()}")
    atomic_write_json(root / COURSE_FILE, {
        "complete": True, "size": settings.size, "real_media": media.real, "credits": media.credits,
        "labels": {"src": media.source_label, "dst": media.destination_label}, "extraction": summaries,
    })
    return project


def course_run_dir(project: Any) -> Path:
    """The course's training run folder, ``PROJECT/models/course``."""
    return _root(project) / "models" / RUN_NAME


def start_course_training(project: Any, settings: CourseSettings, *, more_steps: int = 0, verbose: bool = True) -> Any:
    """Start the course model's background trainer (notebook 00, right after setup), or leave a running one be.

    The normal trainer (:func:`workbench.train.start`, a detached process) on ``PROJECT/models/course`` with the
    course options, ending at ``settings.target_steps`` or after ``settings.target_seconds``; a run folder with a
    checkpoint resumes from it. It keeps training while the student reads notebooks 01-02; 03-06 use the
    checkpoints it writes (:func:`ensure_course_run`). Returns the :class:`~workbench.train.TrainerHandle`, or
    None when a trainer already holds the run or the run already reached its target. ``more_steps`` > 0 trains
    that many steps past a run that already reached its target (notebook 04 needs a live trainer to watch).
    """
    from .train import start
    from .train.runs import read_status, trainer_pid

    run_dir = course_run_dir(project)
    status = read_status(run_dir)
    if trainer_pid(run_dir) is not None:
        if verbose:
            print(f"the course model is already training in the background ({status.step_text()})")
        return None
    target = settings.target_steps
    if status.step >= target:
        if more_steps <= 0:
            if verbose:
                print(f"the course model already reached its {target} steps: nothing to start")
            return None
        target = status.step + int(more_steps)
    handle = start(run_dir, settings.train_options(target_steps=target),
                   max_seconds=settings.target_seconds, env=settings.trainer_env())
    if verbose:
        print(f"started the course model's trainer in the background (pid {handle.pid}, run folder {run_dir}): "
              f"up to {target} steps or {settings.target_seconds / 60:.0f} min. It keeps going "
              "while you read notebooks 01-02; 03-06 use what it has learned by then.")
    return handle


def _latest_identity(run_dir: Path) -> dict[str, Any] | None:
    """The newest held-out evaluation row that carries the live identity score (``id_closer_to_src``)."""
    from .train.runs import read_metrics

    rows = [r for r in read_metrics(run_dir) if r.get("kind") == "eval" and isinstance(r.get("id_closer_to_src"),
                                                                                         (int, float))]
    return rows[-1] if rows else None


def course_model_report(project: Any, settings: CourseSettings | None = None) -> str:
    """Where the course model stands, in words: step, whether it still trains, its speed and time left, and
    the live identity score (the share of held-out destination faces whose swap is closer to the source
    identity than to the destination's, :mod:`workbench.quality`) with what that means for the pictures."""
    from .train.runs import read_status, trainer_pid

    run_dir = course_run_dir(project)
    status = read_status(run_dir)
    alive = trainer_pid(run_dir) is not None
    lines = [f"course model: {status.step_text()}, " + (f"training in the background at {status.it_per_s:.1f} it/s"
                                                         if alive else f"not training ({status.state})")]
    if alive and status.eta_seconds:
        lines.append(f"about {status.eta_seconds / 60:.0f} min until it ends its session")
    ident = _latest_identity(run_dir)
    if ident is None:
        lines.append("identity score: none yet (it is measured at each held-out evaluation)")
    else:
        from .quality import READS_AS_SOURCE_DISTANCE

        share = float(ident["id_closer_to_src"])
        distance = ident.get("id_distance_src")
        verdict = ("reads as the source" if share >= RECOGNISABLE_SHARE else
                   "does not read as the source yet: the swaps below still look like an average face")
        lines.append(f"identity score at step {ident['step']}: {share:.2f} of {ident.get('id_faces', 'the')} held-out "
                     f"swaps are closer to the source than to the destination (recognisable from "
                     f"{RECOGNISABLE_SHARE:.1f}): {verdict}")
        if isinstance(distance, (int, float)):
            lines.append(f"median distance to the source {distance:.2f} (a face recogniser's 'same person' is "
                         f"below 0.6; {READS_AS_SOURCE_DISTANCE} and less is a convincing likeness)")
        if share < RECOGNISABLE_SHARE and alive and status.it_per_s and settings is not None:
            left = max(settings.target_steps - status.step, 0) / status.it_per_s
            lines.append(f"if you can, come back in a few minutes (up to {left / 60:.0f} min to the target steps) "
                         "and re-run this notebook: it picks up the newer checkpoint")
    return "\n".join(lines)


def _show_live_preview(run_dir: Path, settings: CourseSettings, handle: Any) -> Any:
    """Show (or update in place) the run's newest preview grid in the notebook; returns the display handle."""
    from IPython.display import Image, display

    from .train.runs import latest_preview

    path = latest_preview(run_dir)
    if path is None:
        return handle
    try:
        grid = readable_preview(read_image(path), settings.train_options().resolution)
    except WorkbenchError:
        return handle  # the trainer is replacing the file right now: next time
    image = Image(data=png_bytes(grid))
    if handle is None:
        return display(image, display_id=True)
    handle.update(image)
    return handle


def ensure_course_run(project: Any, settings: CourseSettings, *, min_steps: int | None = None,
                      timeout: float = 540.0, progress: bool = False) -> Path:
    """The course run folder with a checkpoint of at least ``min_steps`` (default ``settings.course_steps``).

    Uses the background trainer notebook 00 started (starting it here when nothing trains and no checkpoint is
    good enough), waiting at most ``timeout`` seconds (printing its progress) so no cell blocks for long; then
    the newest checkpoint is used whatever its step, and :func:`course_model_report` says where it stands.
    """
    from .train import checkpoint_path
    from .train.runs import read_status, trainer_pid

    run_dir = course_run_dir(project)
    want = settings.course_steps if min_steps is None else int(min_steps)

    def saved() -> int:
        status = read_status(run_dir)
        return (status.last_save_step or 0) if checkpoint_path(run_dir).is_file() else -1

    if saved() < want and trainer_pid(run_dir) is None:
        start_course_training(project, settings)
    deadline = time.monotonic() + timeout
    last_print = 0.0
    live = None  # the live preview shown while waiting (updated in place)
    while saved() < want and time.monotonic() < deadline and trainer_pid(run_dir) is not None:
        if time.monotonic() - last_print > 30:
            status = read_status(run_dir)
            left = (want - status.step) / status.it_per_s if status.it_per_s else None
            print(f"waiting for a checkpoint at step {want}: {status.step_text()}"
                  + (f", about {left / 60:.1f} min to go" if left else "") + " (the newest preview below)", flush=True)
            live = _show_live_preview(run_dir, settings, live)
            last_print = time.monotonic()
        time.sleep(2)
    while not checkpoint_path(run_dir).is_file() and trainer_pid(run_dir) is not None:
        time.sleep(2)  # past the deadline: the first checkpoint is at most save_every_seconds away
    if not checkpoint_path(run_dir).is_file():
        raise ConfigError("the course model has no checkpoint and no trainer is running", run_dir,
                          "run notebook 00 (it starts the training) or read trainer.log in the run folder")
    print(course_model_report(project, settings))
    return run_dir


def ensure_merged(project: Any, settings: CourseSettings) -> int:
    """Merge the destination clip with the course model unless notebook 06 already did (frames in
    ``PROJECT/merged``); uses the project's saved merge settings (notebook 05) or erode 10 / blur 40.
    Returns the number of merged frames."""
    from .merge import MergeConfig, MergeSettings, merge_project
    from .project import Project
    from .train import load_predictor

    project = project if isinstance(project, Project) else Project.open(_root(project))
    done = len(list(project.merged_dir.glob("*.png"))) if project.merged_dir.is_dir() else 0
    if done:
        print(f"reusing {done} merged frames in {project.merged_dir}")
        return done
    predictor = load_predictor(ensure_course_run(project, settings), device=settings.device)
    saved = project.merge_settings_path
    config = MergeConfig.load(saved) if saved.is_file() else MergeConfig(MergeSettings(erode=10, blur=40))
    print(merge_project(project, predictor, config, resume=True, progress=False).format())
    return len(list(project.merged_dir.glob("*.png")))


@dataclass(frozen=True)
class VariantRun:
    """One short comparison run (:func:`compare_variants`): its preview and its last held-out evaluation."""

    name: str
    run_dir: Path
    step: int
    preview: np.ndarray | None = field(repr=False)
    evaluation: dict[str, Any] = field(default_factory=dict)

    def caption(self) -> str:
        ev = self.evaluation
        parts = [self.name, f"step {self.step}"]
        if isinstance(ev.get("ssim_src"), (int, float)):
            parts.append(f"SSIM {ev['ssim_src']:.2f}")
        if isinstance(ev.get("id_closer_to_src"), (int, float)):
            faces = ev.get("id_faces")
            parts.append(f"identity {ev['id_closer_to_src']:.2f}" + (f" of {faces} faces" if faces else ""))
        return ", ".join(parts)


def compare_variants(project: Any, settings: CourseSettings, variants: Mapping[str, Mapping[str, Any]], *,
                     steps: int, pretrained: str | Path | None = None) -> list[VariantRun]:
    """Train each variant of the course options (e.g. ``{"DF": {"archi": "df"}, "LIAE": {"archi": "liae"}}``)
    for the same ``steps`` on the same faces, in this process, each in ``PROJECT/models/cmp-<name>`` (a run that
    already reached ``steps`` is reused), optionally starting from the ``pretrained`` run's weights; evaluates
    on the held-out faces at the last step. Returns previews and evaluations side by side."""
    from .train import train
    from .train.runs import latest_preview, read_metrics, read_status

    out = []
    for name, changes in variants.items():
        run_dir = _root(project) / "models" / ("cmp-" + "".join(c if c.isalnum() else "-" for c in name.lower()))
        if read_status(run_dir).step < steps:
            options = settings.train_options(**{"metrics_every": steps, "preview_every": steps, **dict(changes)})
            train(run_dir, options, steps=steps, pretrained=pretrained, progress=False)
        evals = [r for r in read_metrics(run_dir) if r.get("kind") == "eval"]
        preview = latest_preview(run_dir)
        out.append(VariantRun(name, run_dir, read_status(run_dir).step,
                              read_image(preview) if preview is not None else None, evals[-1] if evals else {}))
    return out


def occlude_frame(frame: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The frame with a dark "microphone" held in front of the mouth (a bar from the bottom edge ending in a
    round head over the lips), and the microphone's mask (HW float32): an occlusion the landmark hull ignores."""
    lm = np.asarray(landmarks, np.float64)
    mouth = lm[48:68].mean(axis=0)
    width = float(np.ptp(lm[:17, 0]))
    h, w = frame.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    tip = (int(round(mouth[0] + 0.15 * width)), int(round(mouth[1])))
    cv2.line(mask, (int(round(tip[0] + 0.35 * width)), h + 10), tip, 1, max(3, int(0.12 * width)))
    cv2.circle(mask, tip, max(4, int(0.16 * width)), 1, -1)
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0)[..., None]
    shade = np.linspace(0.12, 0.3, w, dtype=np.float32)[None, :, None]  # a little shading: not a flat sticker
    return frame * (1 - alpha) + shade * alpha, alpha[..., 0]


def label_outlines(folder: str | Path, count: int = 2) -> list[Path]:
    """Label ``count`` faces of a faceset (spread over it) with one *include* polygon each: the face outline from
    the landmarks (jaw, then the brows raised a little), written into the face files as the Segment tab's editor
    would. Returns the labelled files."""
    from .faceset import scan_faceset, update_face_meta
    from .segment.labels import SegPolygon

    records = scan_faceset(folder).faces
    picked = [records[i] for i in np.linspace(0, len(records) - 1, min(count, len(records))).round().astype(int)]
    for record in picked:
        lm = np.asarray(record.meta.landmarks, np.float64)
        brows = lm[26:16:-1].copy()
        brows[:, 1] -= 0.12 * np.ptp(lm[:, 1])  # the forehead up to a bit above the brows
        outline = np.concatenate([lm[:17], brows])
        update_face_meta(record.path, seg_polys=(SegPolygon("include", tuple(map(tuple, outline))),))
    return [r.path for r in picked]


@dataclass(frozen=True)
class XSegBootstrap:
    """What :func:`bootstrap_xseg` trained: the run folder, its step, and held-out IoU of XSeg and of the hull."""

    run_dir: Path
    step: int
    iou: float | None
    hull_iou: float | None


def bootstrap_xseg(project: Any, settings: CourseSettings, steps: int) -> XSegBootstrap:
    """Train the course's XSeg model (``PROJECT/xseg/course``) for ``steps`` more steps in this process, on both
    facesets (labelled faces first, the rest on their hull with synthetic occluders); a small network on CPU."""
    from .segment.trainer import XSegOptions, XSegTrainer, default_run_dir, project_folders

    run_dir = default_run_dir(project, "course")
    options = XSegOptions(resolution=64 if settings.is_small else 128, batch_size=4 if settings.is_small else 8,
                          heldout=4 if settings.is_small else 16, preview_every=max(10, steps),
                          metrics_every=max(10, steps), cpu_threads=settings.cpu_threads, device=settings.device)
    trainer = XSegTrainer(options, project_folders(project), run_dir=run_dir)
    trainer.run(steps=steps)
    scores = trainer.evaluate()
    return XSegBootstrap(run_dir, int(trainer.step), scores.get("iou"), scores.get("hull_iou"))


def labels(project: Any) -> tuple[str, str]:
    """(source label, destination label) of the course project."""
    info = course_info(project).get("labels", {})
    return info.get("src", "source identity"), info.get("dst", "destination identity")


# ------------------------------------------------------------------------------------------------- faces


@dataclass(frozen=True)
class LossLesson:
    """One real face, changed in ways the training losses judge differently, with each loss's value.

    ``rows`` maps a change to ``{"mse": ..., "dssim": ..., "eyes_mouth": ..., "mask": ...}`` (the SAEHD terms
    of :mod:`workbench.losses`: 10·DSSIM and 10·MSE summed at this resolution, ``eyes_mouth_prio`` 300·L1 inside
    the eyes+mouth mask, the learned-mask loss 10·MSE between masks)."""

    images: tuple[np.ndarray, ...] = field(repr=False)
    labels: tuple[str, ...]
    rows: dict[str, dict[str, float]]


def loss_lesson(face: np.ndarray, landmarks: np.ndarray, resolution: int = 96) -> LossLesson:
    """Compare what MSE, DSSIM, the eyes/mouth priority and the mask loss penalise, on one aligned real face
    (``landmarks`` in its pixels): a brightness shift (MSE high, structure intact), a blur (tiny MSE, DSSIM
    high), a 2-pixel shift, noise, and blurred eyes+mouth only (the eyes/mouth term reacts most)."""
    from . import losses
    from .masks import eyes_mouth_mask, hull_mask

    scale = resolution / face.shape[0]
    face = cv2.resize(face.astype(np.float32), (resolution, resolution), interpolation=cv2.INTER_AREA)
    lm = np.asarray(landmarks, np.float64) * scale
    em = eyes_mouth_mask(face.shape, lm)
    hull = hull_mask(face.shape, lm)
    blurred = cv2.GaussianBlur(face, (0, 0), 1.5)
    noise = np.random.default_rng(0).normal(0, 0.05, face.shape).astype(np.float32)
    changes = {
        "brighter (+0.08)": (face + 0.08, hull),
        "blurred (sigma 1.5 px)": (blurred, hull),
        "shifted 2 px right": (np.roll(face, 2, axis=1), np.roll(hull, 2, axis=1)),
        "noise (sigma 0.05)": (face + noise, hull),
        "eyes and mouth blurred only": (face * (1 - em[..., None]) + blurred * em[..., None], hull),
        "mask 4 px too small": (face, cv2.erode(hull, np.ones((9, 9), np.uint8))),
    }
    target, target_mask = to_tensor(face[None]), to_tensor(hull[None, ..., None])
    em_t = to_tensor(em[None, ..., None])
    k1, _ = losses.dssim_kernel_sizes(resolution)
    rows: dict[str, dict[str, float]] = {}
    images, labels = [face], ["original"]
    for name, (image, mask) in changes.items():
        image = np.clip(image, 0, 1).astype(np.float32)
        pred = to_tensor(image[None])
        rows[name] = {"mse": float(10 * ((pred - target) ** 2).mean()), "dssim": float(10 * losses.dssim(pred, target, k1)[0]),
                      "eyes_mouth": float(losses.eyes_mouth_loss(pred, target, em_t)[0]),
                      "mask": float(losses.mask_loss(to_tensor(mask[None, ..., None]), target_mask)[0])}
        images.append(image if "mask" not in name else np.dstack([mask] * 3))
        labels.append(name)
    return LossLesson(tuple(images), tuple(labels), rows)


def loss_table(lesson: LossLesson) -> str:
    """The lesson's values as a markdown table (one row per change)."""
    head = "| change | 10·MSE | 10·DSSIM | eyes/mouth (300·L1) | mask (10·MSE) |\n|---|---|---|---|---|\n"
    return head + "\n".join(f"| {n} | {r['mse']:.3f} | {r['dssim']:.3f} | {r['eyes_mouth']:.3f} | {r['mask']:.3f} |"
                             for n, r in lesson.rows.items())


def model_faces(folder: str | Path, face_type: str, resolution: int, limit: int | None = None) -> np.ndarray:
    """A faceset re-cropped to a model's face type and resolution: (N, R, R, 3) float32 RGB in [0, 1]."""
    from .train.data import load_face_bank

    bank = load_face_bank(folder, Path(folder).name, face_type, int(resolution))
    faces = bank.images.permute(0, 2, 3, 1).numpy().astype(np.float32) / 255.0
    return faces[:limit] if limit else faces


@dataclass(frozen=True)
class FaceFrame:
    """One destination frame and the frame-space landmarks of the faces extraction found in it."""

    index: int
    timestamp: float
    frame: np.ndarray = field(repr=False)
    landmarks: tuple[np.ndarray, ...] = field(repr=False)


def frame_with_face(project: Any, position: float = 0.5) -> FaceFrame:
    """The destination frame nearest ``position`` (0 = first, 1 = last) among frames with a face."""
    from .merge import frame_faces

    faces = frame_faces(project)
    entries = [e for e in faces.entries if faces.landmarks.get(e.index)]
    if not entries:
        raise ConfigError("no destination frame has a face", project.aligned_dir("dst"),
                          "extract the destination again (ensure_course_project)")
    entry = entries[min(len(entries) - 1, max(0, round(position * (len(entries) - 1))))]
    frame = read_image(project.frames_dir / entry.file)
    return FaceFrame(entry.index, entry.timestamp, frame, tuple(faces.landmarks[entry.index]))


@dataclass(frozen=True)
class FlickerSeries:
    """Frame-to-frame change inside the face (mean |difference| in 0..1 units) for consecutive frame pairs."""

    timestamps: np.ndarray
    destination: np.ndarray
    merged: np.ndarray

    @property
    def mean_destination(self) -> float:
        return float(np.nanmean(self.destination)) if len(self.destination) else 0.0

    @property
    def mean_merged(self) -> float:
        return float(np.nanmean(self.merged)) if len(self.merged) else 0.0


def flicker_over_time(project: Any) -> FlickerSeries:
    """:func:`workbench.merge.flicker_metric` per consecutive pair of merged frames (and of the destination
    frames, with the same masks), so flicker can be plotted over time. NaN where a pair has no face."""
    from .merge import flicker_metric
    from .project import read_frame_index

    index = read_frame_index(project)
    entries = sorted(index.frames, key=lambda e: e.index)
    names = [Path(e.file).with_suffix(".png").name for e in entries]
    dst = [read_image(project.frames_dir / e.file) for e in entries]
    out = [read_image(project.merged_dir / n) for n in names]
    masks = [read_image(project.merged_masks_dir / n)[..., 0] for n in names]
    times, d, m = [], [], []
    for i in range(1, len(entries)):
        pair_masks = [masks[i - 1], masks[i]]
        has_face = bool(pair_masks[0].any() or pair_masks[1].any())
        times.append(entries[i].timestamp)
        d.append(flicker_metric(dst[i - 1:i + 1], pair_masks) if has_face else np.nan)
        m.append(flicker_metric(out[i - 1:i + 1], pair_masks) if has_face else np.nan)
    return FlickerSeries(np.asarray(times), np.asarray(d, np.float64), np.asarray(m, np.float64))


def pca_2d(*groups: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Project several groups of vectors (e.g. latent codes of two identities) onto their 2 main axes.

    Returns:
        (one (n_i, 2) array per group, the fraction of variance each of the two axes explains).
    """
    data = np.concatenate([np.asarray(g, np.float64).reshape(len(g), -1) for g in groups])
    centred = data - data.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    points = centred @ vt[:2].T
    explained = (s[:2] ** 2) / max(float((s**2).sum()), 1e-12)
    splits = np.cumsum([len(g) for g in groups])[:-1]
    return list(np.split(points, splits)), explained


# ------------------------------------------------------------------------------------------------- tiny AE


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@dataclass
class TinyTraining:
    """Result of :func:`train_tiny_autoencoder`: the model and its loss history (one value per step)."""

    model: TinySwapAutoencoder
    history: dict[str, list[float]]
    seconds: float


@torch.no_grad()
def tiny_preview(model: TinySwapAutoencoder, src: np.ndarray, dst: np.ndarray, rows: int = 3) -> np.ndarray:
    """A grid like the trainer's preview: src, src->src, src->dst decoder | dst, dst->dst, dst->src decoder."""
    from . import viz

    model.eval()
    a, b = to_tensor(src[:rows], _device_of(model)), to_tensor(dst[:rows], _device_of(model))
    za, zb = model.encode(a), model.encode(b)
    cols = [a, model.decode(za, "src"), model.decode(za, "dst"), b, model.decode(zb, "dst"), model.decode(zb, "src")]
    images = [to_images(c[i:i + 1])[0] for i in range(len(a)) for c in cols]
    model.train()
    names = ["src", "src rec", "src as dst", "dst", "dst rec", "SWAP"] + [""] * (len(images) - 6)
    return viz.image_grid([_fit(im, 96) for im in images], 6, labels=names, pad=2)


def train_tiny_autoencoder(src_faces: np.ndarray, dst_faces: np.ndarray, *, steps: int = 400, warp: bool = False,
                           batch_size: int = 16, code_dims: int = 64, lr: float = 1e-3, seed: int = 0,
                           callback: Callable[[int, dict[str, float], np.ndarray | None], None] | None = None,
                           every: int = 25, device: str = "cpu") -> TinyTraining:
    """Train a :class:`TinySwapAutoencoder` on two face sets (reconstruction only, MSE, Adam).

    Each step takes ``batch_size`` src and dst faces, (optionally) random-warps the network input with
    :func:`workbench.augment.augment_batch` while the target stays unwarped, and asks each decoder to draw its
    own identity. ``callback(step, losses, preview_or_None)`` is called every step (the preview grid every
    ``every`` steps) so a notebook can plot live.

    Args:
        src_faces, dst_faces: (N, R, R, 3) float32 faces of the two identities (see :func:`model_faces`).
        steps: optimisation steps.
        warp: DFL's random warp on the inputs (slower to learn, generalises better).
        batch_size, code_dims, lr, seed: the usual.
        device: "cpu" or "cuda" (the faces are moved there once).
    """
    from .augment import AugmentOptions, augment_batch

    if len(src_faces) < 2 or len(dst_faces) < 2:
        raise ConfigError("each identity needs at least 2 faces to train the tiny autoencoder")
    res = int(src_faces.shape[1])
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinySwapAutoencoder(res, code_dims).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    data = {"src": to_tensor(src_faces, device), "dst": to_tensor(dst_faces, device)}
    aug = AugmentOptions(random_warp=warp, interpolation="bilinear")
    history: dict[str, list[float]] = {"src": [], "dst": []}
    started = time.perf_counter()
    for step in range(1, steps + 1):
        total = torch.zeros(())
        for name, faces in data.items():
            batch = faces[torch.randint(len(faces), (batch_size,), generator=gen).to(faces.device)]
            sample = augment_batch(batch, None, aug, gen)
            loss = F.mse_loss(model(sample.warped, name), sample.target)
            history[name].append(loss.item())
            total = total + loss
        opt.zero_grad()
        total.backward()
        opt.step()
        if callback is not None:
            preview = tiny_preview(model, src_faces, dst_faces) if step % every == 0 or step == steps else None
            callback(step, {k: v[-1] for k, v in history.items()}, preview)
    model.eval()
    return TinyTraining(model, history, time.perf_counter() - started)


@torch.no_grad()
def tiny_codes(model: TinySwapAutoencoder, faces: np.ndarray) -> np.ndarray:
    """Latent codes (N, code_dims) of faces."""
    return model.encode(to_tensor(faces, _device_of(model))).cpu().numpy()


@torch.no_grad()
def tiny_decode(model: TinySwapAutoencoder, codes: np.ndarray, identity: str) -> np.ndarray:
    """Faces (N, R, R, 3) drawn from codes by one identity's decoder."""
    return to_images(model.decode(torch.as_tensor(np.asarray(codes, np.float32), device=_device_of(model)), identity))


def tiny_interpolation(model: TinySwapAutoencoder, face_a: np.ndarray, face_b: np.ndarray, steps: int = 8,
                       identity: str = "src") -> list[np.ndarray]:
    """Decode ``steps`` codes on the straight line from face_a's code to face_b's."""
    za, zb = tiny_codes(model, np.stack([face_a, face_b]))
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return list(tiny_decode(model, (1 - t) * za + t * zb, identity))


# ------------------------------------------------------------------------------------------------- app


def launch_app(project: Any = None, workspace: str | Path | None = None, *, launch: bool | None = None) -> Any:
    """Build the Gradio workbench (``workbench.app.build_app``); launch it inline only when asked
    (default: on Colab). Returns the ``gr.Blocks``, or None when gradio or the app is not installed."""
    try:
        from .app import build_app, launch_options
    except ImportError as exc:
        print(f"the Gradio app is not available here ({exc}); skipping it")
        return None
    demo = build_app(None if project is None else _root(project), workspace=workspace)
    should_launch = is_colab() if launch is None else bool(launch)
    if not should_launch:
        print("built the Gradio app without launching it (not on Colab; pass launch=True to serve it here)")
        return demo
    demo.launch(share=False, inline=True, prevent_thread_lock=True, **launch_options(demo))
    return demo


__all__ = [
    "CONSENT_RULE", "SIZES", "CourseMedia", "CourseSettings", "FaceFrame", "FlickerSeries",
    "Photo", "TinySwapAutoencoder", "TinyTraining", "compose", "configure_torch", "course_info", "course_media",
    "course_project_dir", "course_run_dir", "course_settings", "default_size", "ensure_course_project",
    "ensure_course_run", "flicker_over_time", "format_report", "frame_with_face", "help_table", "is_colab",
    "labels", "launch_app", "model_faces", "pca_2d", "png_bytes", "prepare_workspace", "runtime_report", "setup",
    "show", "tiny_codes", "tiny_decode", "tiny_interpolation", "tiny_preview", "to_images", "to_tensor",
    "train_tiny_autoencoder", "workspace_dir",
]
