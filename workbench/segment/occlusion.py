"""The occluder test: how well a mask finds the *visible* face on faces the model never saw.

Each face of an unseen faceset gets one occluder pasted over it, covering 15-35 % of its landmark-hull
area (a random polygon or ellipse, or a bar entering from the border, drawn until the coverage is in
range), textured with a patch of a photo that is not a face set used in training (e.g. the shared
``stills/``). The truth is the hull minus the occluder. The plain hull mask scores ``1 - coverage`` there
(about 0.75); a useful segmenter must beat it by cutting the occluder out.

The occluders here are drawn with a different generator (seeded per face, photo textures only) than the
training occluders in :mod:`.data`, so the test does not reward memorising the training recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class OccluderSet:
    images: np.ndarray  # (N, S, S, 3) float32 faces with occluders
    truth: np.ndarray  # (N, S, S) float32 visible face (hull minus occluder)
    hull: np.ndarray  # (N, S, S) float32 hull mask
    landmarks: np.ndarray  # (N, 68, 2) float32 in image pixels (of the clean face, as stored in its file)
    coverage: np.ndarray  # (N,) occluded fraction of the hull
    paths: tuple[Path, ...]


def _load_textures(paths: Sequence[str | Path], size: int) -> list[np.ndarray]:
    from ..images import read_image

    textures = []
    for p in paths:
        img = read_image(p)[..., :3]
        scale = size * 2.0 / min(img.shape[:2])
        textures.append(cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA).astype(np.float32))
    return textures


def _occluder(size: int, hull: np.ndarray, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    ys, xs = np.nonzero(hull > 0.5)
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    area = float((hull > 0.5).sum())
    best, best_err = None, 1e9
    for _ in range(200):
        a = np.zeros((size, size), np.uint8)
        s = rng.uniform(0.2, 0.6) * (x1 - x0)
        kind = rng.integers(3)
        if kind == 0:
            cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
            cv2.ellipse(a, (int(cx), int(cy)), (int(s * rng.uniform(0.5, 1.0)), int(s * rng.uniform(0.3, 0.8))),
                        float(rng.uniform(0, 180)), 0, 360, 1, -1)
        elif kind == 1:
            cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
            n = int(rng.integers(5, 9))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = s * rng.uniform(0.5, 1.0, n)
            cv2.fillPoly(a, [np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)], 1)
        else:  # from the bottom or a side, like a hand with a microphone
            tx, ty = rng.uniform(x0, x1), rng.uniform((y0 + y1) / 2, y1)
            sx = tx + rng.uniform(-0.3, 0.3) * size
            cv2.line(a, (int(sx), size + 10), (int(tx), int(ty)), 1, max(4, int(s * 0.6)))
            cv2.circle(a, (int(tx), int(ty)), max(3, int(s * 0.45)), 1, -1)
        cov = float(((a > 0) & (hull > 0.5)).sum()) / area
        if lo <= cov <= hi:
            return a.astype(np.float32)
        err = min(abs(cov - lo), abs(cov - hi))
        if err < best_err:
            best, best_err = a, err
    return best.astype(np.float32)


def make_occluder_set(folders: Sequence[str | Path], texture_paths: Sequence[str | Path], *, seed: int = 0,
                      coverage: tuple[float, float] = (0.15, 0.35), limit: int | None = None) -> OccluderSet:
    """Unseen faces with one pasted photo-textured occluder each (see the module doc)."""
    from ..faceset import load_aligned_face, scan_faceset
    from ..masks import hull_mask

    records = [r for f in folders for r in scan_faceset(f).faces][:limit]
    if not records:
        raise ValueError(f"no aligned faces in {list(folders)}")
    size = load_aligned_face(records[0].path)[0].shape[0]
    textures = _load_textures(texture_paths, size)
    images, truth, hulls, lms, covs, paths = [], [], [], [], [], []
    for i, record in enumerate(records):
        rng = np.random.default_rng([seed, i])
        image, meta = load_aligned_face(record.path)
        if image.shape[0] != size:
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        lm = meta.landmarks_at(size)
        hull = hull_mask((size, size), lm)
        alpha = _occluder(size, hull, rng, *coverage)
        tex = textures[int(rng.integers(len(textures)))]
        oy, ox = int(rng.integers(0, tex.shape[0] - size + 1)), int(rng.integers(0, tex.shape[1] - size + 1))
        patch = tex[oy:oy + size, ox:ox + size]
        soft = cv2.GaussianBlur(alpha, (0, 0), 0.8)[..., None]
        images.append((image * (1 - soft) + patch * soft).astype(np.float32))
        truth.append(hull * (alpha < 0.5))
        hulls.append(hull)
        lms.append(lm)
        covs.append(float(((alpha > 0.5) & (hull > 0.5)).sum()) / max(float((hull > 0.5).sum()), 1.0))
        paths.append(record.path)
    return OccluderSet(np.stack(images), np.stack(truth).astype(np.float32), np.stack(hulls).astype(np.float32),
                       np.stack(lms).astype(np.float32), np.asarray(covs, np.float32), tuple(paths))


def redetect_landmarks(images: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, int]:
    """68 landmarks found again on the *occluded* faces, as extraction would find them on a real frame.

    dlib's HOG detector looks for the face (the box nearest the clean face's landmark box is taken); where it
    finds none, the clean landmarks' box stands in, as a tracker would carry it, and dlib's 68-point predictor
    places the points on the occluded pixels either way. Returns ((N, 68, 2) float32, faces the detector found).
    """
    from ..detect.dlib_engines import DlibHogEngine
    from ..detect.nms import box_iou

    engine = DlibHogEngine()
    out, found = [], 0
    for image, lm in zip(images, landmarks):
        clean = np.array([*lm.min(0), *lm.max(0)], np.float64)
        boxes = [b for b, _ in engine.detect(image)]
        ious = np.asarray([box_iou(b, clean) for b in boxes])
        if len(ious) and ious.max() > 0.3:
            box, found = tuple(boxes[int(ious.argmax())]), found + 1
        else:
            box = tuple(clean)
        out.append(engine.landmarks(image, box))
    return np.stack(out).astype(np.float32), found


def mask_iou(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-image IoU of masks binarised at 0.5: (N, H, W) x2 -> (N,)."""
    p, t = pred >= 0.5, truth >= 0.5
    inter = (p & t).sum((1, 2)).astype(np.float64)
    union = (p | t).sum((1, 2)).astype(np.float64)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def evaluate_occlusion(model, data: OccluderSet, *, redetect: bool = True) -> dict[str, float]:
    """Mean IoU vs the visible face of ``predict_masks(model, images, landmarks=...)`` and of the plain hull.

    With the landmarks stored in the face files (clean faces, as ``apply_masks`` gives them for an occluder
    that extraction landmarked correctly), and with ``redetect`` also with landmarks found again on the
    occluded pixels (:func:`redetect_landmarks`, as the merger gets them from a frame with a hand in it):
    ``xseg_iou_redetected`` and ``hull_iou_redetected``, the hull of those landmarks.
    """
    from ..masks import hull_mask
    from .predict import XSegModel, load_xseg, predict_masks

    if not isinstance(model, XSegModel):
        model = load_xseg(model)  # once, for both predictions
    pred = predict_masks(model, data.images, landmarks=data.landmarks)
    model_iou = mask_iou(pred, data.truth)
    hull_iou = mask_iou(data.hull, data.truth)
    out = {"faces": int(len(data.paths)), "coverage": float(data.coverage.mean()),
           "xseg_iou": float(model_iou.mean()), "hull_iou": float(hull_iou.mean()),
           "gain": float(model_iou.mean() - hull_iou.mean())}
    if redetect:
        lms, found = redetect_landmarks(data.images, data.landmarks)
        size = data.images.shape[1]
        hulls = np.stack([hull_mask((size, size), lm) for lm in lms])
        out.update(redetected_found=found,
                   xseg_iou_redetected=float(mask_iou(predict_masks(model, data.images, landmarks=lms), data.truth).mean()),
                   hull_iou_redetected=float(mask_iou(hulls, data.truth).mean()))
    return out
