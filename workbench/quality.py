"""Swap quality: does the swapped face look like the source while keeping the destination's pose and expression?

The face-swap literature (FaceShifter, SimSwap on FaceForensics++ frames) scores a swap with an identity
embedding, a head-pose error and an expression error; this module does the same with offline models only:

* **identity**: dlib's 128-d face-recognition embedding (:mod:`workbench.identity`) of the swapped face is
  compared with robust references of the *source* and the *destination* facesets (the element-wise median
  of the embeddings of a sample of faces). A frame "reads as source" when it is closer to the source
  reference than to the destination's. Retrieval ranks the source among every identity the project knows
  (source, destination, plus reference photos in ``PROJECT/identities/``).
* **pose error**: yaw/pitch/roll (:func:`workbench.pose.head_pose`) of the swapped face vs the destination
  face in the same frame, in degrees; the frame's error is the largest of the three.
* **expression error**: the swapped face's mouth and eye landmarks vs the destination's after a similarity
  alignment on the stable points (eye corners and nose), as a mean distance divided by the inter-ocular
  distance; plus the mouth-opening ratio difference (lip gap / mouth width), an easy-to-read number.
* **temporal**: the merger's flicker metric (:func:`workbench.merge.flicker_metric`) for the destination
  and the merged frames with the same masks, and identity stability (std of the source distance).

Faces the detector cannot find in a merged frame are counted and reported, never silently dropped.
Pure functions on arrays come first; :func:`evaluate_project` is the project-level runner (IO at the edge)
behind ``workbench evaluate``; :class:`IdentityProbe` is the cheap version the trainer runs while training.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ProjectError, WorkbenchError

EVALUATION_NAME = "evaluation.json"
IDENTITIES_DIR = "identities"
EVALUATION_SCHEMA = 1
# The bar used by the demo and `python -m workbench.bench quality`: a swap "reads as the source" when at
# least this share of frames is closer to the source, with the median source distance at most this value.
READS_AS_SOURCE_SHARE = 0.9
READS_AS_SOURCE_DISTANCE = 0.5
REFERENCE_FACES = 16  # faces per side sampled for a reference embedding
IDENTITY_PROBE_FACES = 8  # swaps scored at every metrics step of training (a handful: ~0.2 s on a CPU)

# Stable points for the expression alignment: the four eye corners and the nose (bridge + lower nose).
_STABLE = np.r_[36, 39, 42, 45, np.arange(27, 36)]
_MOUTH = np.arange(48, 68)
_EYES = np.arange(36, 48)


# ------------------------------------------------------------------------------------------------
# identity
# ------------------------------------------------------------------------------------------------
def reference_from_embeddings(embeddings: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Robust reference of one identity: the element-wise median of its embeddings, (128,) float32.

    The median ignores a few bad faces (a blink, a half-turned head, a wrong detection) that would pull
    a mean away.
    """
    arr = np.asarray(embeddings, np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"need a non-empty (N, D) array of embeddings, got shape {arr.shape}")
    return np.median(arr, axis=0).astype(np.float32)


def embedding_distances(embedding: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Euclidean distances of one embedding (D,) to each row of ``references`` (K, D)."""
    e = np.asarray(embedding, np.float64).ravel()
    refs = np.atleast_2d(np.asarray(references, np.float64))
    return np.linalg.norm(refs - e[None], axis=1)


def retrieval_rank(embedding: np.ndarray, gallery: Mapping[str, np.ndarray], target: str) -> int:
    """1-based rank of ``target`` among the gallery's identities, nearest first (1 = retrieved)."""
    if target not in gallery:
        raise KeyError(f"{target!r} is not in the gallery ({', '.join(gallery)})")
    names = list(gallery)
    dists = embedding_distances(embedding, np.stack([gallery[n] for n in names]))
    mine = dists[names.index(target)]
    return int(np.sum(dists < mine)) + 1


@dataclass(frozen=True)
class IdentityScore:
    """One swapped face's identity: distances to the source and destination references."""

    distance_src: float
    distance_dst: float
    rank: int = 1  # rank of the source among the known identities

    @property
    def reads_as_source(self) -> bool:
        return self.distance_src < self.distance_dst


def identity_score(embedding: np.ndarray, src_ref: np.ndarray, dst_ref: np.ndarray,
                   gallery: Mapping[str, np.ndarray] | None = None) -> IdentityScore:
    """Distances of a face embedding to the src/dst references and the source's retrieval rank.

    ``gallery`` (name -> embedding) must contain ``"src"`` when given; default: just src and dst.
    """
    d_src, d_dst = embedding_distances(embedding, np.stack([src_ref, dst_ref]))
    gallery = dict(gallery) if gallery is not None else {"src": src_ref, "dst": dst_ref}
    return IdentityScore(float(d_src), float(d_dst), retrieval_rank(embedding, gallery, "src"))


def identity_stability(distances: Sequence[float]) -> float | None:
    """Std of the per-frame source distance (lower = the identity holds steady over time)."""
    d = np.asarray([x for x in distances if x is not None and math.isfinite(x)], np.float64)
    return float(d.std()) if d.size >= 2 else None


# ------------------------------------------------------------------------------------------------
# pose and expression
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PoseError:
    """Absolute head-pose differences in degrees; ``max_deg`` is the frame's pose error."""

    pitch_deg: float
    yaw_deg: float
    roll_deg: float

    @property
    def max_deg(self) -> float:
        return max(self.pitch_deg, self.yaw_deg, self.roll_deg)


def pose_error(landmarks: np.ndarray, reference_landmarks: np.ndarray, image_size: tuple[int, int]) -> PoseError:
    """Head-pose difference of two faces in the same frame (68 landmarks each, frame pixels).

    ``image_size`` is (width, height). A face vs itself gives 0; vs its mirror image about twice its yaw
    (and roll), since mirroring flips their signs.
    """
    from .pose import head_pose

    a = head_pose(landmarks, image_size)
    b = head_pose(reference_landmarks, image_size)
    deg = math.degrees
    return PoseError(abs(deg(a.pitch - b.pitch)), abs(deg(a.yaw - b.yaw)), abs(deg(a.roll - b.roll)))


def _check68(lm: np.ndarray) -> np.ndarray:
    pts = np.asarray(lm, np.float64)
    if pts.shape != (68, 2) or not np.all(np.isfinite(pts)):
        raise ValueError(f"landmarks must be a finite (68, 2) array, got shape {pts.shape}")
    return pts


def inter_ocular_distance(landmarks: np.ndarray) -> float:
    """Distance between the two eye centres (mean of points 36-41 and 42-47)."""
    lm = _check68(landmarks)
    return float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))


def mouth_open_ratio(landmarks: np.ndarray) -> float:
    """Inner-lip gap over mouth width: 0 for a closed mouth, about 0.3-0.6 wide open.

    Gap: mean distance of the inner-lip pairs 61-67, 62-66, 63-65; width: inner corners 60-64.
    """
    lm = _check68(landmarks)
    gap = np.mean([np.linalg.norm(lm[a] - lm[b]) for a, b in ((61, 67), (62, 66), (63, 65))])
    width = np.linalg.norm(lm[60] - lm[64])
    return float(gap / width) if width > 1e-6 else 0.0


@dataclass(frozen=True)
class ExpressionError:
    """Mouth/eye landmark error after alignment (units of inter-ocular distance) and mouth-opening difference."""

    mouth: float
    eyes: float
    mouth_open: float

    @property
    def total(self) -> float:
        """Mean over the 32 mouth and eye points (20 mouth, 12 eye), inter-ocular units."""
        return (20 * self.mouth + 12 * self.eyes) / 32


def expression_error(landmarks: np.ndarray, reference_landmarks: np.ndarray) -> ExpressionError:
    """How far the swapped face's expression is from the destination's.

    The swapped landmarks are mapped onto the destination's by a similarity (Umeyama) fitted on the stable
    points only (eye corners, nose), so head position, size and in-plane rotation do not count, then the
    mean distance of the mouth (48-67) and eye (36-47) points is divided by the destination's inter-ocular
    distance. ``mouth_open`` is ``|mouth_open_ratio(a) - mouth_open_ratio(b)|``.
    """
    from .align import transform_points, umeyama

    a, b = _check68(landmarks), _check68(reference_landmarks)
    mat = umeyama(a[_STABLE], b[_STABLE])
    aligned = transform_points(a, mat[:2])
    iod = inter_ocular_distance(b)
    if iod <= 1e-6:
        raise ValueError("reference landmarks have zero inter-ocular distance")
    err = np.linalg.norm(aligned - b, axis=1) / iod
    return ExpressionError(float(err[_MOUTH].mean()), float(err[_EYES].mean()),
                           abs(mouth_open_ratio(a) - mouth_open_ratio(b)))


# ------------------------------------------------------------------------------------------------
# one frame
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameQuality:
    """The scores of one merged frame (``found`` False: no face detected where the destination face is)."""

    frame: int
    found: bool
    distance_src: float | None = None
    distance_dst: float | None = None
    rank: int | None = None
    pose: PoseError | None = None
    expression: ExpressionError | None = None

    @property
    def reads_as_source(self) -> bool | None:
        if self.distance_src is None or self.distance_dst is None:
            return None
        return self.distance_src < self.distance_dst

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"frame": self.frame, "found": self.found}
        if self.found:
            out.update(distance_src=_r(self.distance_src), distance_dst=_r(self.distance_dst), rank=self.rank,
                       reads_as_source=self.reads_as_source)
            if self.pose is not None:
                out["pose_deg"] = {k: _r(v) for k, v in asdict(self.pose).items()}
            if self.expression is not None:
                out["expression"] = {k: _r(v) for k, v in asdict(self.expression).items()}
        return out


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(float(v), nd)


def _box_centre(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, np.float64)
    return (lm.min(0) + lm.max(0)) / 2.0


def match_face(candidates: Sequence[np.ndarray], reference_landmarks: np.ndarray) -> int | None:
    """Index of the detected face (landmark sets) matching the destination face, or None.

    The nearest box centre wins if it lies within half the destination face's width, so a face found
    elsewhere in the frame (a poster, a second person) is not mistaken for the swap.
    """
    if not candidates:
        return None
    ref = np.asarray(reference_landmarks, np.float64)
    centre, width = _box_centre(ref), float(np.ptp(ref[:, 0]))
    dists = [float(np.linalg.norm(_box_centre(c) - centre)) for c in candidates]
    best = int(np.argmin(dists))
    return best if dists[best] <= 0.5 * max(width, 1.0) else None


def evaluate_frame(merged: np.ndarray, dst_landmarks: np.ndarray, src_ref: np.ndarray, dst_ref: np.ndarray, *,
                   frame: int = 0, gallery: Mapping[str, np.ndarray] | None = None, engine: str = "dlib",
                   detect_max_side: int | None = 640) -> FrameQuality:
    """Score one merged frame against the destination face it replaced.

    Args:
        merged: (H, W, 3) RGB float in [0, 1] (or uint8): the frame after the swap.
        dst_landmarks: (68, 2) the destination face's landmarks in this frame (what the merger used).
        src_ref, dst_ref: reference embeddings (:func:`reference_from_embeddings`).
        gallery: identities for retrieval (name -> embedding, with ``"src"``); default src and dst.

    Returns:
        :class:`FrameQuality`; ``found=False`` when the detector finds no face where the destination was.
    """
    from .detect import detect_faces
    from .identity import face_embedding

    faces = detect_faces(merged, engine, detect_max_side=detect_max_side)
    pick = match_face([f.landmarks for f in faces], dst_landmarks)
    if pick is None:
        return FrameQuality(frame, False)
    lm = np.asarray(faces[pick].landmarks, np.float64)
    ident = identity_score(face_embedding(merged, lm), src_ref, dst_ref, gallery)
    h, w = merged.shape[:2]
    try:
        pose = pose_error(lm, dst_landmarks, (w, h))
    except ValueError:
        pose = None
    return FrameQuality(frame, True, ident.distance_src, ident.distance_dst, ident.rank, pose,
                        expression_error(lm, dst_landmarks))


# ------------------------------------------------------------------------------------------------
# summary
# ------------------------------------------------------------------------------------------------
def _median(values: Sequence[float]) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.median(v)) if v else None


def summarize(frames: Sequence[FrameQuality], *, flicker_dst: float | None = None,
              flicker_merged: float | None = None) -> dict[str, Any]:
    """The evaluation summary (the JSON ``workbench evaluate --json`` prints).

    Shares are over frames where a face was found; ``faces_not_found`` counts the others.
    """
    found = [f for f in frames if f.found]
    n = len(found)
    d_src = [f.distance_src for f in found]
    closer = sum(1 for f in found if f.reads_as_source)
    top1 = sum(1 for f in found if f.rank == 1)
    poses = [f.pose for f in found if f.pose is not None]
    exprs = [f.expression for f in found if f.expression is not None]
    med_src = _median(d_src)
    share = closer / n if n else None
    flicker_added = (flicker_merged - flicker_dst) if flicker_dst is not None and flicker_merged is not None else None
    return {
        "identity": {
            "closer_to_src": _r(share), "frames_closer_to_src": closer,
            "median_distance_src": _r(med_src), "median_distance_dst": _r(_median([f.distance_dst for f in found])),
            "retrieval_top1": _r(top1 / n if n else None),
            "mean_rank": _r(float(np.mean([f.rank for f in found])) if n else None),
            "stability_std": _r(identity_stability(d_src)),
            "reads_as_source": bool(share is not None and med_src is not None and share >= READS_AS_SOURCE_SHARE
                                    and med_src <= READS_AS_SOURCE_DISTANCE),
        },
        "pose": {
            "median_error_deg": _r(_median([p.max_deg for p in poses]), 2),
            "median_yaw_deg": _r(_median([p.yaw_deg for p in poses]), 2),
            "median_pitch_deg": _r(_median([p.pitch_deg for p in poses]), 2),
            "median_roll_deg": _r(_median([p.roll_deg for p in poses]), 2),
        },
        "expression": {
            "median_error": _r(_median([e.total for e in exprs])),
            "median_mouth_error": _r(_median([e.mouth for e in exprs])),
            "median_eye_error": _r(_median([e.eyes for e in exprs])),
            "mouth_open_error": _r(_median([e.mouth_open for e in exprs])),
        },
        "flicker": {
            "destination": _r(None if flicker_dst is None else flicker_dst * 255, 3),
            "merged": _r(None if flicker_merged is None else flicker_merged * 255, 3),
            "added": _r(None if flicker_added is None else flicker_added * 255, 3),
            "units": "mean |change| per frame inside the face, 0-255 levels",
        },
        "frames": len(frames),
        "faces_found": n,
        "faces_not_found": len(frames) - n,
    }


def verdict(summary: Mapping[str, Any]) -> str:
    """One plain sentence on whether the swap reads as the source."""
    ident = summary.get("identity", {})
    share, med = ident.get("closer_to_src"), ident.get("median_distance_src")
    if share is None or med is None:
        return "no face could be scored: the detector found no face in the merged frames"
    if ident.get("reads_as_source"):
        return (f"the swap reads as the source: {share:.0%} of frames are closer to the source, "
                f"median distance {med:.3f} (bar: >= {READS_AS_SOURCE_SHARE:.0%} and <= {READS_AS_SOURCE_DISTANCE})")
    return (f"the swap does NOT yet read as the source: {share:.0%} of frames are closer to the source, median "
            f"distance {med:.3f} (bar: >= {READS_AS_SOURCE_SHARE:.0%} and <= {READS_AS_SOURCE_DISTANCE}); "
            "train longer")


def format_table(summary: Mapping[str, Any]) -> str:
    """The evaluation as a plain-text table (what ``workbench evaluate`` prints)."""
    def f(v: Any, fmt: str = "{:.3f}") -> str:
        if v is None:
            return "n/a"
        return fmt.format(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)

    ident, pose, expr, fl = (summary.get(k, {}) for k in ("identity", "pose", "expression", "flicker"))
    rows = [
        ("frames evaluated", f(summary.get("frames"), "{}")),
        ("faces found / not found", f"{summary.get('faces_found')} / {summary.get('faces_not_found')}"),
        ("identity: closer to source", f(ident.get("closer_to_src"), "{:.1%}")
         + f" ({ident.get('frames_closer_to_src')} frames)"),
        ("identity: median distance to source", f(ident.get("median_distance_src"))),
        ("identity: median distance to destination", f(ident.get("median_distance_dst"))),
        ("identity: source retrieved first (top-1)", f(ident.get("retrieval_top1"), "{:.1%}")),
        ("identity: stability (std of source distance)", f(ident.get("stability_std"))),
        ("pose: median error, degrees", f(pose.get("median_error_deg"), "{:.2f}")),
        ("expression: median error (inter-ocular units)", f(expr.get("median_error"))),
        ("expression: mouth-opening difference", f(expr.get("mouth_open_error"))),
        ("flicker: destination / merged (0-255)", f"{f(fl.get('destination'), '{:.2f}')} / {f(fl.get('merged'), '{:.2f}')}"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  -----"]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.append(verdict(summary))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# references from facesets and photos
# ------------------------------------------------------------------------------------------------
def even_sample(items: Sequence[Any], count: int) -> list[Any]:
    """``count`` items spread evenly over ``items`` (all of them when there are fewer)."""
    if count <= 0 or len(items) <= count:
        return list(items)
    idx = np.unique(np.linspace(0, len(items) - 1, count).round().astype(int))
    return [items[i] for i in idx]


def faceset_embeddings(folder: str | Path, max_faces: int = REFERENCE_FACES) -> np.ndarray:
    """Embeddings (N, 128) of up to ``max_faces`` aligned faces spread over a faceset folder.

    Uses each face's stored landmarks (aligned-face pixels), so nothing is re-detected.

    Raises:
        ProjectError: the folder holds no readable face.
    """
    from .faceset import load_aligned_face, scan_faceset
    from .identity import face_embedding

    folder = Path(folder)
    if not folder.is_dir():
        raise ProjectError("no faceset folder to build an identity reference from", folder,
                           "extract faces first (workbench extract)")
    records = even_sample(list(scan_faceset(folder).faces), max_faces)
    out = []
    for rec in records:
        try:
            image, meta = load_aligned_face(rec.path)
        except WorkbenchError:
            continue
        out.append(face_embedding(image, meta.landmarks))
    if not out:
        raise ProjectError("the faceset has no readable face for an identity reference", folder,
                           "extract faces first (workbench extract)")
    return np.stack(out)


def photo_gallery(folder: str | Path) -> dict[str, np.ndarray]:
    """Reference embeddings of extra identities: one per photo in ``folder`` (name = file stem).

    Photos without a detectable face are skipped. Used as distractors for ID retrieval.
    """
    from .identity import reference_embedding

    folder = Path(folder)
    out: dict[str, np.ndarray] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp", ".bmp"):
            continue
        try:
            out[f"photo:{path.stem}"] = reference_embedding(path)
        except WorkbenchError:
            continue
    return out


# ------------------------------------------------------------------------------------------------
# live while training: a handful of aligned swaps
# ------------------------------------------------------------------------------------------------
class IdentityProbe:
    """Identity score of aligned swaps, cheap enough for every ``metrics_every`` steps of training.

    Built once from aligned faces of both sides *at the model's resolution* (so the references carry the
    same softness as the swaps and resolution does not bias the distances). ``score(faces, landmarks)``
    embeds swapped faces (N, R, R, 3) with the destination faces' landmarks (the swap keeps their geometry).

    Args:
        src_faces, dst_faces: sequences of (image (R, R, 3) float [0, 1], landmarks (68, 2) in its pixels).
    """

    def __init__(self, src_faces: Sequence[tuple[np.ndarray, np.ndarray]],
                 dst_faces: Sequence[tuple[np.ndarray, np.ndarray]]):
        from .identity import face_embedding

        if not src_faces or not dst_faces:
            raise ValueError("IdentityProbe needs at least one face per side")
        self.src_ref = reference_from_embeddings([face_embedding(_upsample(i), lm * _UP) for i, lm in src_faces])
        self.dst_ref = reference_from_embeddings([face_embedding(_upsample(i), lm * _UP) for i, lm in dst_faces])

    def score(self, faces: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> dict[str, float]:
        """``id_closer_to_src`` (share), ``id_distance_src`` / ``id_distance_dst`` (medians), ``id_faces``."""
        from .identity import face_embedding

        scores = [identity_score(face_embedding(_upsample(f), np.asarray(lm) * _UP), self.src_ref, self.dst_ref)
                  for f, lm in zip(faces, landmarks)]
        if not scores:
            return {}
        return {
            "id_closer_to_src": round(sum(s.reads_as_source for s in scores) / len(scores), 4),
            "id_distance_src": round(float(np.median([s.distance_src for s in scores])), 4),
            "id_distance_dst": round(float(np.median([s.distance_dst for s in scores])), 4),
            "id_faces": len(scores),
        }


_UP = 2  # small model crops are doubled before dlib cuts its 150 px chip (its face detector-free path)


def _upsample(image: np.ndarray) -> np.ndarray:
    import cv2

    img = np.clip(np.asarray(image, np.float32), 0, 1)
    h, w = img.shape[:2]
    return np.clip(cv2.resize(img, (w * _UP, h * _UP), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


# ------------------------------------------------------------------------------------------------
# the project-level runner
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate_project` measured, and with what."""

    summary: dict[str, Any]
    frames: tuple[FrameQuality, ...]
    run: str | None
    step: int | None
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = "merged"  # "merged": PROJECT/merged; "sample": frames merged in memory for the evaluation
    seconds: float = 0.0
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": EVALUATION_SCHEMA, "created": time.time(), "run": self.run, "step": self.step,
                "frames_from": self.source, "settings": self.settings, "seconds": round(self.seconds, 2),
                "summary": self.summary, "per_frame": [f.to_dict() for f in self.frames]}

    def format(self) -> str:
        head = f"evaluation of run '{self.run}'" if self.run else "evaluation"
        head += f" at step {self.step}" if self.step is not None else ""
        head += f" ({'merged frames' if self.source == 'merged' else 'a sample merged for the evaluation'})"
        return head + "\n" + format_table(self.summary)


def read_evaluation(project: Any) -> dict[str, Any] | None:
    """``PROJECT/evaluation.json`` as a dict, or None when there is none (or it is unreadable)."""
    root = Path(getattr(project, "root", project))
    try:
        return json.loads((root / EVALUATION_NAME).read_text())
    except (OSError, ValueError):
        return None


def evaluate_project(project: Any, *, run: str | None = None, max_frames: int = 48, merge_sample: bool | None = None,
                     device: str = "cpu", progress: bool = False, write: bool = True,
                     log: Callable[[str], None] | None = None) -> Evaluation:
    """Evaluate a project's swap and write ``PROJECT/evaluation.json`` (atomically).

    Frames: the merged frames in ``PROJECT/merged`` when they exist (and ``merge_sample`` is not True);
    otherwise up to ``max_frames`` destination frames are merged in memory with the run's model and the
    project's merge settings (nothing is written to ``merged/``). At most ``max_frames`` frames, evenly spread.

    Args:
        project: a :class:`~workbench.project.Project` or folder.
        run: the training run (default: the most recently updated one).
        max_frames: frames to score (0 = all).
        merge_sample: True = always merge a fresh sample with the run; False = require merged frames.

    Raises:
        ProjectError: no destination faces / frames / merged frames and no model to merge with.
    """
    from .fileutil import atomic_write_json
    from .images import read_image
    from .merge import MergeConfig, flicker_metric, landmarks_by_frame, merge_frame
    from .project import Project, read_frame_index

    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    if not isinstance(project, Project):
        project = Project.open(project)
    from .faceset import scan_faceset

    dst_scan = scan_faceset(project.aligned_dir("dst")) if project.aligned_dir("dst").is_dir() else None
    faces_by_frame = landmarks_by_frame(dst_scan.faces) if dst_scan else {}
    if not faces_by_frame:
        raise ProjectError("no aligned destination faces to evaluate against", project.aligned_dir("dst"),
                           f"run `workbench extract {project.root}` first")
    index = read_frame_index(project)
    entries = sorted((e for e in index.frames if e.index in faces_by_frame), key=lambda e: e.index)
    if max_frames:
        entries = even_sample(entries, max_frames)
    merged_files = {e.index: project.merged_dir / Path(e.file).with_suffix(".png").name for e in entries}
    have_merged = bool(entries) and all(p.is_file() for p in merged_files.values())

    use_sample = bool(merge_sample) or not have_merged
    if merge_sample is False and not have_merged:
        raise ProjectError("no merged frames to evaluate", project.merged_dir,
                           f"run `workbench merge {project.root}` first, or let evaluate merge a sample")
    if run or use_sample:
        run_dir: Path | None = _find_run(project, run)
    else:  # merged frames: label them with the newest run, if any (the merger does not record which)
        from .train.runs import list_runs

        run_dir = _find_run(project, None) if list_runs(project) else None
    step = _run_step(run_dir) if run_dir is not None else None
    settings_dict: dict[str, Any] = {"max_frames": max_frames}
    predictor = None
    if use_sample:
        from .merge import adapt_to_predictor
        from .train import load_predictor

        assert run_dir is not None
        say(f"merging a sample of {len(entries)} frames with run '{run_dir.name}' (step {step}) for the evaluation")
        predictor = load_predictor(run_dir, device=device)
        path = project.merge_settings_path
        config = adapt_to_predictor(MergeConfig.load(path) if path.is_file() else MergeConfig(), predictor)
    else:
        config = MergeConfig.load(project.merge_settings_path) if project.merge_settings_path.is_file() else None
    if config is not None:
        settings_dict["merge"] = config.to_dict()

    say("identity references: source and destination facesets")
    src_ref = reference_from_embeddings(faceset_embeddings(project.aligned_dir("src")))
    dst_ref = reference_from_embeddings(faceset_embeddings(project.aligned_dir("dst")))
    gallery = {"src": src_ref, "dst": dst_ref, **photo_gallery(project.root / IDENTITIES_DIR)}
    settings_dict["identities"] = list(gallery)

    from tqdm.auto import tqdm

    results: list[FrameQuality] = []
    dst_frames, out_frames, masks = [], [], []
    for e in tqdm(entries, desc="evaluate", unit="frame", disable=not progress):
        lms = faces_by_frame.get(e.index, [])
        frame = read_image(project.frames_dir / e.file)
        if use_sample:
            out, mask = merge_frame(frame, lms, predictor, config.settings_for(e.index),
                                    rng=np.random.default_rng(e.index))
        else:
            out = read_image(merged_files[e.index])
            mask_path = project.merged_masks_dir / merged_files[e.index].name
            mask = read_image(mask_path)[..., 0] if mask_path.is_file() else None
        dst_frames.append(frame)
        out_frames.append(out)
        masks.append(mask)
        results.append(evaluate_frame(out, lms[0], src_ref, dst_ref, frame=e.index, gallery=gallery))
    flicker_dst = flicker_merged = None
    if len(out_frames) >= 2 and all(m is not None for m in masks):
        flicker_dst, flicker_merged = flicker_metric(dst_frames, masks), flicker_metric(out_frames, masks)
    summary = summarize(results, flicker_dst=flicker_dst, flicker_merged=flicker_merged)
    if max_frames and len(index.frames) > len(entries):
        settings_dict["note"] = "flicker over a sample of frames (consecutive sampled frames, not video frames)"
    run_name = run_dir.name if run_dir is not None else None
    evaluation = Evaluation(summary, tuple(results), run_name, step, settings_dict,
                            "sample" if use_sample else "merged", time.perf_counter() - t0)
    if write:
        path = atomic_write_json(project.root / EVALUATION_NAME, evaluation.to_dict())
        evaluation = Evaluation(summary, tuple(results), run_name, step, settings_dict, evaluation.source,
                                evaluation.seconds, path)
    return evaluation


def _find_run(project: Any, name: str | None) -> Path:
    """The run folder ``PROJECT/models/NAME`` (a plain name), or the most recently updated run."""
    import re

    from .train.runs import list_runs

    if name:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name) or ".." in name:
            raise ProjectError(f"invalid run name {name!r}", project.models_dir,
                               "use a plain name: letters, digits, '-', '_' or '.'")
        run_dir = project.resolve_inside(project.models_dir / name)
        if not run_dir.is_dir():
            known = [r.name for r in list_runs(project)]
            raise ProjectError(f"no training run named '{name}'", run_dir,
                               f"available runs: {', '.join(known)}" if known else "train a model first: workbench train")
        return run_dir
    runs = list_runs(project)
    if not runs:
        raise ProjectError("no trained model in this project to merge a sample with", project.models_dir,
                           f"train one first (workbench train {project.root}) or merge frames (workbench merge)")
    return max(runs, key=lambda r: r.updated or 0).run_dir


def _run_step(run_dir: Path) -> int | None:
    from .train.runs import read_status

    try:
        return int(read_status(run_dir).step)
    except (WorkbenchError, TypeError, ValueError, AttributeError):
        return None


# ------------------------------------------------------------------------------------------------
# the training curve (read from metrics.jsonl; no torch)
# ------------------------------------------------------------------------------------------------
def identity_curve(metrics_rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, float, float | None]]:
    """(step, share of swaps closer to the source, median source distance) from a run's eval rows."""
    from .train.runs import metric_series

    series = metric_series(list(metrics_rows), "eval")
    distance = dict(series.get("id_distance_src", []))
    return [(step, share, distance.get(step)) for step, share in series.get("id_closer_to_src", [])]


_SPARK = "▁▂▃▄▅▆▇█"


def format_identity_curve(curve: Sequence[tuple[int, float, float | None]], width: int = 24) -> str:
    """One line: ``looks like the source: 0.25 → 0.88 ▁▃▅█ (step 100..800, median distance 0.47)``."""
    if not curve:
        return "looks like the source: not measured yet"
    points = even_sample(list(curve), width)
    spark = "".join(_SPARK[min(len(_SPARK) - 1, int(round(share * (len(_SPARK) - 1))))] for _, share, _ in points)
    first, last = curve[0], curve[-1]
    dist = f", median distance {last[2]:.3f}" if last[2] is not None else ""
    return (f"looks like the source: {first[1]:.2f} → {last[1]:.2f} {spark} "
            f"(step {first[0]}..{last[0]}{dist})")
