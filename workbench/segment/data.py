"""XSeg training data: labelled faces first, else landmark-hull masks with synthetic occluders.

A bank holds every face of the given folders at the model resolution as uint8 (image + target mask):

* a face with include/exclude polygons (``FaceMeta.seg_polys``) uses their rasterisation: labels win;
* any other face uses its landmark hull mask (``workbench.masks.hull_mask``), and every batch pastes
  synthetic occluders over such faces: random polygons, ellipses, bars and blobs, textured with patches
  of other faces in the batch, smooth colour fields, stripes or a skin-like tone taken from the face
  itself (the hard case: hands). The occluded pixels are removed from the target, so a network trained
  with zero labels learns "the visible face", not "the hull".

Augmentation (:func:`make_batch`) runs batched in torch on the training device: the face trainer's affine +
flip and optionally its elastic random warp (``workbench.augment``; the target and the landmark hull, the
model's fourth input, get the identical geometry),
HSV jitter, brightness/contrast, blur and noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import TrainingError
from ..train.data import load_each
from .labels import has_labels, rasterize_polygons


@dataclass(frozen=True)
class SegBank:
    """Faces for XSeg training, kept in RAM as uint8 at the model resolution."""

    images: torch.Tensor  # (N, 3, R, R) uint8
    targets: torch.Tensor  # (N, 1, R, R) uint8 (0..255, soft edges)
    hulls: torch.Tensor  # (N, 1, R, R) uint8 (0..255, soft edges): the landmark hull, the model's fourth input
    landmarks: np.ndarray  # (N, 68, 2) float32 in model pixels (R): for the jittered hulls of make_batch
    labelled: np.ndarray  # (N,) bool: the target comes from polygons
    paths: tuple[Path, ...]
    broken: tuple[tuple[Path, str], ...] = ()

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def n_labelled(self) -> int:
        return int(self.labelled.sum())

    def describe(self) -> dict:
        return {"faces": len(self), "labelled": self.n_labelled, "broken": len(self.broken)}


def soft_hull(landmarks: np.ndarray, image_size: int, resolution: int, supersample: int = 4) -> np.ndarray:
    """The landmark hull (R, R) float32 at ``resolution`` with sub-pixel edges (landmarks in ``image_size`` pixels).

    Drawn at ``supersample`` times the resolution and area-averaged down: a hard 64 px hull scaled up to a
    256 px face misses the 256 px hull by IoU 0.05 along the outline; the soft one by 0.005.
    """
    from ..masks import hull_mask

    big = resolution * supersample
    mask = hull_mask((big, big), np.asarray(landmarks, np.float32) * (big / float(image_size)))
    return cv2.resize(mask, (resolution, resolution), interpolation=cv2.INTER_AREA).astype(np.float32)


def landmark_hull(meta, resolution: int) -> np.ndarray:
    """The face's soft landmark hull (R, R) float32 at ``resolution`` (see :func:`soft_hull`)."""
    return soft_hull(meta.landmarks, meta.size, resolution)


def face_target(image_size: int, meta, resolution: int) -> tuple[np.ndarray, bool]:
    """The training target of one face at ``resolution`` with soft (area-averaged) edges: its polygons if
    labelled, else the hull mask."""
    if has_labels(meta.seg_polys):
        mask = rasterize_polygons(meta.seg_polys, (image_size, image_size))
        if image_size != resolution:
            mask = cv2.resize(mask, (resolution, resolution), interpolation=cv2.INTER_AREA)
        return np.clip(mask, 0, 1).astype(np.float32), True
    return landmark_hull(meta, resolution), False


def resize_face(image: np.ndarray, resolution: int) -> np.ndarray:
    """(S, S, 3) float RGB -> (R, R, 3) float32 (area downscale, cubic upscale)."""
    if image.shape[0] == resolution and image.shape[1] == resolution:
        return image.astype(np.float32, copy=False)
    interp = cv2.INTER_AREA if image.shape[0] > resolution else cv2.INTER_CUBIC
    return np.clip(cv2.resize(image, (resolution, resolution), interpolation=interp), 0, 1).astype(np.float32)


def _load_one(path: Path, resolution: int):
    from ..faceset import load_aligned_face

    image, meta = load_aligned_face(path)
    target, labelled = face_target(image.shape[0], meta, resolution)
    img8 = np.clip(np.rint(resize_face(image, resolution) * 255.0), 0, 255).astype(np.uint8)
    return (img8.transpose(2, 0, 1), _to_uint8(target[None]), labelled, _to_uint8(landmark_hull(meta, resolution)[None]),
            meta.landmarks_at(resolution))


def _to_uint8(mask: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(mask * 255.0), 0, 255).astype(np.uint8)


def load_seg_bank(folders: Sequence[str | Path], resolution: int, *, workers: int = 2,
                  min_faces: int = 2) -> SegBank:
    """Decode every aligned face of ``folders`` into a :class:`SegBank`.

    Raises:
        TrainingError: fewer than ``min_faces`` usable faces in all folders together.
    """
    from ..faceset import scan_faceset

    records, broken = [], []
    for folder in folders:
        scan = scan_faceset(folder)
        records += list(scan.faces)
        broken += list(scan.broken)

    results = load_each(records, lambda record: _load_one(record.path, resolution), workers)
    images, targets, labelled, hulls, lms, paths = [], [], [], [], [], []
    for record, result in zip(records, results):
        if isinstance(result, Exception):
            broken.append((record.path, str(result)))
            continue
        images.append(result[0])
        targets.append(result[1])
        labelled.append(result[2])
        hulls.append(result[3])
        lms.append(result[4])
        paths.append(record.path)
    if len(images) < min_faces:
        where = ", ".join(str(f) for f in folders) or "(no folders)"
        raise TrainingError(f"XSeg needs at least {min_faces} aligned faces, found {len(images)} in {where}",
                            Path(folders[0]) if folders else None, "extract faces first (workbench extract PROJECT)")
    return SegBank(torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(targets)),
                   torch.from_numpy(np.stack(hulls)), np.stack(lms).astype(np.float32), np.asarray(labelled, bool),
                   tuple(paths), tuple(broken))


# ----------------------------------------------------------------------------------------------------------
# synthetic occluders


def _shape_alpha(res: int, rng: np.random.Generator, box: tuple[int, int, int, int]) -> np.ndarray:
    """One random occluder silhouette (R, R) float32 in {0, 1}, placed over or entering the face box."""
    x0, y0, x1, y1 = box
    fw, fh = max(x1 - x0, 8), max(y1 - y0, 8)
    alpha = np.zeros((res, res), np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        size = rng.uniform(0.15, 0.45) * max(fw, fh)
        if rng.random() < 0.35:  # enters from a border, like a hand, a microphone or a cup
            side = int(rng.integers(4))
            t = rng.uniform(0.2, 0.8)
            cx, cy = [(x0 + t * fw, res + size * 0.3), (x0 + t * fw, -size * 0.3),
                      (-size * 0.3, y0 + t * fh), (res + size * 0.3, y0 + t * fh)][side]
            tx, ty = rng.uniform(x0 + 0.2 * fw, x1 - 0.2 * fw), rng.uniform(y0 + 0.2 * fh, y1 - 0.2 * fh)
            width = max(3, int(size * rng.uniform(0.4, 0.9)))
            cv2.line(alpha, (int(cx), int(cy)), (int(tx), int(ty)), 1, width)
            cv2.circle(alpha, (int(tx), int(ty)), width // 2 + int(size * 0.25), 1, -1)
            continue
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        kind = rng.integers(3)
        if kind == 0:  # ellipse
            cv2.ellipse(alpha, (int(cx), int(cy)), (max(2, int(size * rng.uniform(0.4, 1.0))),
                        max(2, int(size * rng.uniform(0.2, 0.7)))), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        elif kind == 1:  # star-shaped random polygon (may be concave)
            n = int(rng.integers(4, 10))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = size * rng.uniform(0.4, 1.0, n)
            pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
            cv2.fillPoly(alpha, [pts], 1)
        else:  # bar (glasses arm, finger, strap)
            a = rng.uniform(0, np.pi)
            dx, dy = np.cos(a) * size * 1.5, np.sin(a) * size * 1.5
            cv2.line(alpha, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 1,
                     max(2, int(size * rng.uniform(0.15, 0.4))))
    return alpha.astype(np.float32)


def _textures(images: torch.Tensor, alpha: torch.Tensor, targets: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One fill texture per sample (B, 3, R, R): another face's patch, a colour field, stripes or skin tone."""
    b, _, r, _ = images.shape
    dev = images.device
    kind = torch.randint(0, 4, (b,), generator=g, device=dev)
    # patches of other images: the batch rolled by one, shifted and flipped
    shift = int(torch.randint(r // 4, 3 * r // 4, (1,), generator=g, device=dev))
    other = torch.roll(images.roll(1, 0), shifts=(shift, shift // 2), dims=(2, 3)).flip(3)
    # smooth random colour fields
    low = torch.rand((b, 3, 4, 4), generator=g, device=dev)
    field = F.interpolate(low, size=(r, r), mode="bicubic", align_corners=False).clamp(0, 1)
    # stripes / checks
    yy, xx = torch.meshgrid(torch.arange(r, device=dev, dtype=torch.float32),
                            torch.arange(r, device=dev, dtype=torch.float32), indexing="ij")
    freq = torch.rand((b, 1, 1, 1), generator=g, device=dev) * 0.5 + 0.1
    angle = torch.rand((b, 1, 1, 1), generator=g, device=dev) * np.pi
    wave = torch.sin((xx * torch.cos(angle) + yy * torch.sin(angle)) * freq) * 0.5 + 0.5
    c1, c2 = torch.rand((b, 3, 1, 1), generator=g, device=dev), torch.rand((b, 3, 1, 1), generator=g, device=dev)
    stripes = c1 * wave + c2 * (1 - wave)
    # skin-like: the face's own mean colour with a shading gradient (hands look like faces)
    m = targets.clamp(0, 1)
    skin = (images * m).sum((2, 3), keepdim=True) / m.sum((2, 3), keepdim=True).clamp_min(1.0)
    grad = (yy / r - 0.5)[None, None] * (torch.rand((b, 1, 1, 1), generator=g, device=dev) - 0.5)
    skin = (skin * (0.8 + 0.4 * torch.rand((b, 1, 1, 1), generator=g, device=dev)) + grad).clamp(0, 1)
    out = torch.where((kind == 0).view(b, 1, 1, 1), other, field)
    out = torch.where((kind == 2).view(b, 1, 1, 1), stripes, out)
    out = torch.where((kind == 3).view(b, 1, 1, 1), skin, out)
    noise = torch.randn((b, 3, r, r), generator=g, device=dev) * 0.03
    return (out + noise).clamp(0, 1)


def paste_occluders(images: torch.Tensor, targets: torch.Tensor, which: torch.Tensor, g: torch.Generator,
                    rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste one random occluder over the samples where ``which`` is True.

    Args:
        images: (B, 3, R, R) float in [0, 1]; targets: (B, 1, R, R) float masks.
        which: (B,) bool; g: torch generator (textures); rng: numpy generator (silhouettes, drawn with cv2).

    Returns:
        (images, targets) new tensors: pixels under the occluder (alpha >= 0.5) are removed from the target.
    """
    b, _, r, _ = images.shape
    alphas = np.zeros((b, 1, r, r), np.float32)
    tnp = targets[:, 0].detach().cpu().numpy()
    for i in np.flatnonzero(which.cpu().numpy()):
        ys, xs = np.nonzero(tnp[i] > 0.5)
        box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())) if len(xs) else (r // 4, r // 4, 3 * r // 4, 3 * r // 4)
        a = _shape_alpha(r, rng, box)
        if rng.random() < 0.5:  # soft edges (motion, defocus)
            a = cv2.GaussianBlur(a, (0, 0), rng.uniform(0.5, 1.5))
        alphas[i, 0] = a
    alpha = torch.from_numpy(alphas).to(images.device)
    tex = _textures(images, alpha, targets, g)
    out = images * (1 - alpha) + tex * alpha
    return out, targets * (alpha < 0.5).float()


# ----------------------------------------------------------------------------------------------------------
# batches


def photometric(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Colour and quality jitter per sample (input only): HSV, brightness/contrast, 25% blur, 25% noise,
    per-channel gain, 20% grey."""
    from ..augment import random_hsv

    b = images.shape[0]
    dev = images.device
    x = random_hsv(images, 0.1, g)
    contrast = 0.7 + 0.6 * torch.rand((b, 1, 1, 1), generator=g, device=dev)
    bright = (torch.rand((b, 1, 1, 1), generator=g, device=dev) - 0.5) * 0.3
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + bright
    blur = torch.rand((b, 1, 1, 1), generator=g, device=dev) < 0.25
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    x = torch.where(blur, blurred, x)
    noisy = torch.rand((b, 1, 1, 1), generator=g, device=dev) < 0.25
    x = torch.where(noisy, x + torch.randn(x.shape, generator=g, device=dev) * 0.04, x)
    # per-channel gains (white balance, lighting colour) and 20 % grey: with a handful of identities to learn
    # from, the net must not key on a face's colours, or an unseen face's skin reads as an occluder
    x = x * (0.8 + 0.4 * torch.rand((b, 3, 1, 1), generator=g, device=dev))
    grey = torch.rand((b, 1, 1, 1), generator=g, device=dev) < 0.2
    x = torch.where(grey, x.mean(1, keepdim=True).expand_as(x), x)
    return x.clamp(0, 1)


class SegBatch(NamedTuple):
    """One XSeg batch on the training device, float in [0, 1]."""

    images: torch.Tensor  # (B, 3, R, R)
    hulls: torch.Tensor  # (B, 1, R, R) landmark hulls, warped with the images
    targets: torch.Tensor  # (B, 1, R, R) (soft edges; occluded pixels 0)


def jitter_landmarks(landmarks: np.ndarray, size: int, amount: float, rng: np.random.Generator) -> np.ndarray:
    """(68, 2) landmarks moved the way a detector misplaces them on an occluded face: a random similarity
    (shift ``amount * size``, scale and rotation ``amount``, standard deviations) plus per-point noise of half
    that shift."""
    centre = landmarks.mean(0)
    angle, scale = rng.normal(0, amount), 1 + rng.normal(0, amount)
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    moved = (landmarks - centre) @ rot.T + centre + rng.normal(0, amount * size, 2)
    return (moved + rng.normal(0, 0.5 * amount * size, landmarks.shape)).astype(np.float32)


def make_batch(bank: SegBank, indices: np.ndarray, device: torch.device, g: torch.Generator,
               rng: np.random.Generator, *, occluder_probability: float = 0.8,
               augment: bool = True, random_warp: bool = True, hull_jitter: float = 0.0) -> SegBatch:
    """One training batch on ``device``.

    Unlabelled (hull) faces get an occluder with ``occluder_probability``; labelled faces keep their
    drawn masks. With ``hull_jitter`` > 0 half the faces get a hull input drawn from moved landmarks
    (:func:`jitter_landmarks`; the target stays), so the net learns to correct a misplaced hull from the
    pixels. With ``augment``: affine/flip (and with ``random_warp`` the elastic warp) for all three,
    photometric jitter for the image.
    """
    from ..augment import AugmentOptions, apply_warp, sample_warp_params

    idx = torch.as_tensor(indices, dtype=torch.long)
    images = bank.images.index_select(0, idx).to(device).float().div_(255.0)
    targets = bank.targets.index_select(0, idx).to(device).float().div_(255.0)
    hulls = bank.hulls.index_select(0, idx).to(device).float().div_(255.0)
    if hull_jitter > 0:
        r = hulls.shape[-1]
        for row, i in enumerate(indices):
            if rng.random() < 0.5:
                moved = jitter_landmarks(bank.landmarks[i], r, hull_jitter, rng)
                hulls[row, 0] = torch.from_numpy(soft_hull(moved, r, r)).to(device)
    unlabelled = torch.as_tensor(~bank.labelled[indices], device=device)
    occlude = unlabelled & (torch.rand(len(indices), generator=g, device=g.device).to(device) < occluder_probability)
    if bool(occlude.any()):
        images, targets = paste_occluders(images, targets, occlude, g, rng)
    if augment:
        params = sample_warp_params(len(indices), images.shape[-1], AugmentOptions(random_warp=random_warp), g,
                                    device=device)
        images = apply_warp(images, params, border="replicate", mode="bilinear").clamp(0, 1)
        # the hull and the target in one call: the identical geometry
        both = apply_warp(torch.cat([hulls, targets], 1), params, border="zeros", mode="bilinear")
        hulls, targets = both[:, :1], both[:, 1:]
        images = photometric(images, g)
    return SegBatch(images, hulls, targets)
