"""Curation of a faceset: score faces, order them, and move rejects to a trash folder (never delete).

Scores are pure functions of an aligned face (RGB float32) and its metadata. ``sort_faceset``
applies one method to a folder: it renames files to ``00000_<old name>`` in sort order (the prefix
is replaced on re-sorting, the metadata inside each file is untouched) and can keep only the best
N or move faces under a threshold to ``<side>_trash``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from .errors import ConfigError, MediaError, MetadataError
from .faceset import FaceMeta, FaceRecord, load_aligned_face, move_to_trash, scan_faceset
from .masks import hull_mask
from .pose import estimate_pitch_yaw_roll

_ORDER_PREFIX = re.compile(r"^\d{5}_")


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32), cv2.COLOR_RGB2GRAY)


def sharpness(image: np.ndarray, meta: FaceMeta) -> float:
    """Blur score: mean gradient energy (Tenengrad) inside the landmark hull; higher = sharper.

    DFL uses the CPBD no-reference metric; Tenengrad ranks the same way on faces and is far cheaper.
    Scores are normalised by face size so faces of different resolutions compare.
    """
    grey = _grey(image)
    mask = hull_mask(grey.shape, meta.landmarks) > 0.5
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    energy = (gx * gx + gy * gy)[mask]
    return float(energy.mean() * (grey.shape[0] / 256.0) ** 2) if energy.size else 0.0


def motion_sharpness(image: np.ndarray, meta: FaceMeta) -> float:
    """Motion-blur score as DFL: variance of the Laplacian (ksize 11) inside the hull; higher = sharper."""
    grey = _grey(image)
    mask = hull_mask(grey.shape, meta.landmarks) > 0.5
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=11)
    values = lap[mask]
    return float(values.var()) if values.size else 0.0


def yaw(image: np.ndarray, meta: FaceMeta) -> float:
    return float(estimate_pitch_yaw_roll(meta.landmarks, meta.size)[1])


def pitch(image: np.ndarray, meta: FaceMeta) -> float:
    return float(estimate_pitch_yaw_roll(meta.landmarks, meta.size)[0])


def face_size(image: np.ndarray, meta: FaceMeta) -> float:
    """Detector box area in the source frame (px²): small faces upscale badly."""
    x0, y0, x1, y1 = meta.box
    return float(max(x1 - x0, 0) * max(y1 - y0, 0))


def brightness(image: np.ndarray, meta: FaceMeta) -> float:
    """Mean HSV value."""
    return float(cv2.cvtColor(np.ascontiguousarray(image, np.float32), cv2.COLOR_RGB2HSV)[..., 2].mean())


def hue(image: np.ndarray, meta: FaceMeta) -> float:
    """Mean HSV hue (degrees)."""
    return float(cv2.cvtColor(np.ascontiguousarray(image, np.float32), cv2.COLOR_RGB2HSV)[..., 0].mean())


def source_order(image: np.ndarray, meta: FaceMeta) -> float:
    """Position in the source video (frame index, then face index)."""
    return float(meta.frame_index) + meta.face_index / 100.0


def mask_disagreement(image: np.ndarray, meta: FaceMeta) -> float:
    """How much the applied XSeg mask disagrees with the landmark hull: 1 - IoU (0 without an XSeg mask).

    Occluded faces (hands, microphones, hair) score high, so sorting descending lists them first.
    """
    if meta.xseg_mask is None:
        return 0.0
    from .segment.labels import decode_mask_png

    h, w = image.shape[:2]
    xseg = decode_mask_png(meta.xseg_mask, (h, w)) >= 0.5
    hull = hull_mask((h, w), meta.landmarks_at(h)) >= 0.5
    union = float((xseg | hull).sum())
    return 1.0 - float((xseg & hull).sum()) / union if union else 0.0


# name -> (score function, descending?)
SCORES: dict[str, tuple[Callable[[np.ndarray, FaceMeta], float], bool]] = {
    "blur": (sharpness, True),
    "motion-blur": (motion_sharpness, True),
    "yaw": (yaw, True),
    "pitch": (pitch, True),
    "face-size": (face_size, True),
    "brightness": (brightness, True),
    "hue": (hue, True),
    "source": (source_order, False),
    "mask-vs-hull": (mask_disagreement, True),
}
METHODS = (*SCORES, "hist", "best")


def histogram(image: np.ndarray, bins: int = 64) -> np.ndarray:
    """Per-channel normalised histograms, concatenated (3*bins,)."""
    u8 = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    hists = [cv2.calcHist([u8], [c], None, [bins], [0, 256]).ravel() for c in range(3)]
    return np.concatenate([h / max(h.sum(), 1.0) for h in hists]).astype(np.float32)


def bhattacharyya(a: np.ndarray, b: np.ndarray) -> float:
    """Sum over channels of the Bhattacharyya distance between normalised histograms."""
    bins = len(a) // 3
    total = 0.0
    for c in range(3):
        bc = float(np.sum(np.sqrt(a[c * bins:(c + 1) * bins] * b[c * bins:(c + 1) * bins])))
        total += float(np.sqrt(max(0.0, 1.0 - bc)))
    return total


def histogram_chain(hists: Sequence[np.ndarray]) -> list[int]:
    """DFL's 'hist' order: a greedy nearest-neighbour chain so similar faces end up next to each other."""
    n = len(hists)
    if n == 0:
        return []
    h = np.stack(hists)
    sq = np.sqrt(h)
    bins = h.shape[1] // 3
    # Pairwise summed Bhattacharyya distances via Bhattacharyya coefficients per channel.
    dist = np.zeros((n, n), dtype=np.float64)
    for c in range(3):
        part = sq[:, c * bins:(c + 1) * bins]
        dist += np.sqrt(np.clip(1.0 - part @ part.T, 0.0, None))
    order = [0]
    used = np.zeros(n, dtype=bool)
    used[0] = True
    for _ in range(n - 1):
        d = dist[order[-1]].copy()
        d[used] = np.inf
        nxt = int(np.argmin(d))
        order.append(nxt)
        used[nxt] = True
    return order


def best_selection(yaws: np.ndarray, pitches: np.ndarray, quality: np.ndarray, target: int,
                   yaw_bins: int = 128) -> list[int]:
    """DFL's 'best faces': a yaw/pitch-balanced selection of ``target`` faces.

    Faces are spread over ``yaw_bins`` bins in [-1.2, 1.2] rad; each bin keeps its sharpest faces,
    split again by pitch, picked round-robin, so the trainer sees every head pose, not 2000 frontals.
    """
    n = len(yaws)
    if target >= n:
        return list(np.argsort(-quality))
    per_bin = max(1, round(target / yaw_bins))
    edges = np.linspace(-1.2, 1.2, yaw_bins + 1)
    bin_of = np.clip(np.digitize(yaws, edges) - 1, 0, yaw_bins - 1)
    chosen: list[int] = []
    leftovers: list[int] = []
    for b in range(yaw_bins):
        members = np.flatnonzero(bin_of == b)
        if members.size == 0:
            continue
        members = members[np.argsort(-quality[members])][: 10 * per_bin]
        # Round-robin over pitch sub-bins keeps variety in the vertical direction too.
        pitch_bins = np.clip(np.digitize(pitches[members], np.linspace(-np.pi / 2, np.pi / 2, per_bin + 1)) - 1,
                             0, per_bin - 1)
        queues = [list(members[pitch_bins == k]) for k in range(per_bin)]
        picked: list[int] = []
        while len(picked) < per_bin and any(queues):
            for q in queues:
                if q and len(picked) < per_bin:
                    picked.append(int(q.pop(0)))
        chosen += picked
        leftovers += [int(m) for m in members if int(m) not in picked]
    if len(chosen) < target:  # sparse bins leave a shortfall: fill with the sharpest remaining faces
        rest = sorted(set(range(n)) - set(chosen), key=lambda i: -quality[i])
        chosen += rest[: target - len(chosen)]
    return chosen[:target]


@dataclass(frozen=True)
class SortResult:
    """Outcome of :func:`sort_faceset`."""

    method: str
    kept: tuple[Path, ...]
    trashed: tuple[Path, ...]
    scores: tuple[float, ...]
    broken: tuple[tuple[Path, str], ...]


def _strip_prefix(name: str) -> str:
    return _ORDER_PREFIX.sub("", name)


def score_faces(records: Sequence[FaceRecord], method: str, progress: bool = True) -> np.ndarray:
    """Score every face with one of :data:`SCORES`."""
    if method not in SCORES:
        raise ConfigError(f"unknown score '{method}'", hint=f"choose one of {', '.join(SCORES)}")
    fn = SCORES[method][0]
    scores = []
    for record in tqdm(records, desc=f"score {method}", unit="face", disable=not progress):
        image, meta = load_aligned_face(record.path)
        scores.append(fn(image, meta))
    return np.asarray(scores, dtype=np.float64)


def decode_faces(records: Sequence[FaceRecord], progress: bool) -> tuple[list[FaceRecord], list[np.ndarray],
                                                                       list[tuple[Path, str]]]:
    """Decode every face once; a damaged file is reported by name and left where it is."""
    good, images, broken = [], [], []
    for record in tqdm(records, desc="read faces", unit="face", disable=not progress):
        try:
            images.append(load_aligned_face(record.path)[0])
        except (MetadataError, MediaError) as exc:
            broken.append((record.path, exc.message))
            continue
        good.append(record)
    return good, images, broken


def sort_faceset(
    folder: str | Path,
    method: str,
    *,
    trash_dir: str | Path | None = None,
    keep: int | None = None,
    min_score: float | None = None,
    rename: bool = True,
    progress: bool = True,
) -> SortResult:
    """Order a faceset by ``method`` and optionally move rejects to ``trash_dir``.

    Args:
        folder: the aligned faceset.
        method: one of :data:`METHODS` (``hist`` = similarity chain, ``best`` = pose-balanced best N).
        trash_dir: where rejected faces go (default ``<folder>_trash``).
        keep: keep only the first N faces in sort order (required for ``best``).
        min_score: move faces scoring below this value to the trash (score methods only).
        rename: prefix file names with their rank so file managers show the order.
    """
    folder = Path(folder)
    if method not in METHODS:
        raise ConfigError(f"unknown sort method '{method}'", folder, f"choose one of {', '.join(METHODS)}")
    if method == "best" and not keep:
        raise ConfigError("sorting by 'best' needs the number of faces to keep", folder, "pass keep=N (--keep N)")
    trash_dir = Path(trash_dir) if trash_dir is not None else folder.parent / f"{folder.name}_trash"
    scan = scan_faceset(folder)
    # Decode every face once up front, so a damaged file is skipped by name instead of stopping the sort.
    records, images, damaged = decode_faces(scan.faces, progress)
    broken = list(scan.broken) + damaged
    scores = np.zeros(len(records))
    if method == "hist":
        hists = [histogram(image) for image in images]
        order = histogram_chain(hists)
    elif method == "best":
        quality = np.asarray([SCORES["blur"][0](image, r.meta) for image, r in zip(images, records)], np.float64)
        poses = np.array([estimate_pitch_yaw_roll(r.meta.landmarks, r.meta.size) for r in records]).reshape(-1, 3)
        order = best_selection(poses[:, 1], poses[:, 0], quality, int(keep))
        scores = quality
    else:
        scores = np.asarray([SCORES[method][0](image, r.meta) for image, r in zip(images, records)], np.float64)
        descending = SCORES[method][1]
        order = list(np.argsort(-scores if descending else scores, kind="stable"))
    rejected = set()
    if min_score is not None and method in SCORES:
        rejected |= {i for i in range(len(records)) if scores[i] < min_score}
    if keep is not None:
        rejected |= set(range(len(records))) - set(order[: int(keep)])
    kept_order = [i for i in order if i not in rejected]
    trashed = [move_to_trash(records[i].path, trash_dir) for i in sorted(rejected)]
    kept_paths = [records[i].path for i in kept_order]
    if rename:
        # Two passes through hidden temporary names so a new name never collides with a file not yet moved.
        staged = []
        for rank, path in enumerate(kept_paths):
            base = _strip_prefix(path.name)
            tmp = folder / f".sorting_{rank:05d}_{base}"
            os.replace(path, tmp)
            staged.append((tmp, folder / f"{rank:05d}_{base}"))
        for tmp, final in staged:
            os.replace(tmp, final)
        kept_paths = [final for _, final in staged]
    return SortResult(method, tuple(kept_paths), tuple(trashed), tuple(float(scores[i]) for i in kept_order),
                      tuple(broken))


VIEW_ORDERS = ("file", "blur", "motion-blur", "yaw", "pitch", "face-size", "brightness", "hue", "source",
               "similarity", "identity distance")
"""Orders for looking at a faceset (nothing is renamed): file name, a sort score, histogram similarity chain or
the identity distance recorded at extraction."""


def order_faces(records: Sequence[FaceRecord], order: str) -> tuple[list[int], list[float | None]]:
    """The display order of a faceset's records and each record's score (None where the order has none).

    Scores ascend or descend as :data:`SCORES` says (best first); "identity distance" puts faces without a
    recorded distance last; "similarity" chains faces by histogram likeness; faces whose pixels do not decode go
    last, unscored.

    Raises:
        ConfigError: an unknown order.
    """
    n = len(records)
    if order in ("file", "", None):
        return sorted(range(n), key=lambda i: records[i].path.name), [None] * n
    if order == "identity distance":
        vals = [r.meta.identity_distance for r in records]
        return sorted(range(n), key=lambda i: (vals[i] is None, vals[i] or 0.0)), vals
    if order != "similarity" and order not in SCORES:
        raise ConfigError(f"unknown order {order!r}", hint=f"choose one of {', '.join(VIEW_ORDERS)}")
    # A face whose pixels do not decode (a damaged JPEG) goes last, unscored, instead of failing the view.
    good, images, _ = decode_faces(records, progress=False)
    position = {id(r): i for i, r in enumerate(records)}
    ok = [position[id(r)] for r in good]
    decoded = set(ok)
    rest = [i for i in range(n) if i not in decoded]
    if order == "similarity":
        chain = histogram_chain([histogram(image) for image in images]) if images else []
        return [ok[j] for j in chain] + rest, [None] * n
    fn, descending = SCORES[order]
    scores = np.asarray([fn(image, r.meta) for image, r in zip(images, good)], np.float64)
    idx = list(np.argsort(-scores if descending else scores, kind="stable"))
    values: list[float | None] = [None] * n
    for i, score in zip(ok, scores):
        values[i] = float(score)
    return [ok[int(j)] for j in idx] + rest, values
