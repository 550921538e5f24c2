"""Detecting face swaps, hands-on with the workbench's own outputs (the course's notebook 07).

Simple, explainable statistics that separate the real destination faces of a project from the same faces after
the swap, and a tiny classifier trained on them, to show both what such detectors pick up and how easily they
break. None of this is a reliable deepfake detector: it sees one model's artefacts (blur of a small decoder,
a blending seam) on one clip. Provenance records and visible labels (:mod:`workbench.export`) are the honest
complement: they say what a file is instead of guessing.

* :func:`paired_faces`: the destination face of each frame, cut from the real frame and from the merged frame
  at the same place (so the two sets differ only by the swap).
* :func:`radial_spectrum` / :func:`high_frequency_share`: how the image's energy spreads over spatial
  frequencies (a decoder's output and its upscaling lack the finest detail).
* :func:`boundary_contrast`: gradient strength on the blending boundary compared with inside the face.
* :func:`face_features` / :func:`train_detector`: a logistic-regression "real vs swapped" classifier on those
  statistics, trained on the first part of the clip and tested on the rest (never on neighbouring frames).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SPECTRUM_BINS = 16
FEATURE_NAMES = (*(f"spectrum {i}" for i in range(SPECTRUM_BINS)), "high-frequency share", "laplacian variance",
                 "saturation", "boundary contrast")


@dataclass(frozen=True)
class FacePairs:
    """Aligned crops of the same destination faces before (``real``) and after (``swapped``) the merge."""

    real: np.ndarray = field(repr=False)  # (N, S, S, 3) float32 RGB in [0, 1]
    swapped: np.ndarray = field(repr=False)
    masks: np.ndarray = field(repr=False)  # (N, S, S) the merge mask in crop pixels (where the face was replaced)
    frames: tuple[int, ...]
    timestamps: tuple[float, ...]


def paired_faces(project: Any, size: int = 96, face_type: str = "whole_face") -> FacePairs:
    """Cut the first destination face of every merged frame out of the real frame and out of the merged frame
    (same landmarks, same similarity transform), with the merge mask, in time order.

    Raises:
        ProjectError: the project has no merged frames (run the merge first).
    """
    from .align import transform_matrix, warp_face
    from .errors import ProjectError
    from .faceset import scan_faceset
    from .images import read_image
    from .project import read_frame_index

    index = {e.index: e for e in read_frame_index(project).frames}
    records = sorted((r for r in scan_faceset(project.aligned_dir("dst")).faces if r.meta.face_index == 0),
                     key=lambda r: r.meta.frame_index if r.meta.frame_index is not None else -1)
    real, swapped, masks, frames, times = [], [], [], [], []
    for record in records:
        entry = index.get(record.meta.frame_index)
        if entry is None:
            continue
        merged_path = project.merged_dir / Path(entry.file).with_suffix(".png").name
        mask_path = project.merged_masks_dir / merged_path.name
        if not merged_path.is_file() or not mask_path.is_file():
            continue
        mat = transform_matrix(record.meta.source_landmarks, size, face_type)
        real.append(warp_face(read_image(project.frames_dir / entry.file), mat, size))
        swapped.append(warp_face(read_image(merged_path), mat, size))
        masks.append(warp_face(read_image(mask_path), mat, size)[..., 0])
        frames.append(entry.index)
        times.append(float(entry.timestamp))
    if not real:
        raise ProjectError("no merged frames to compare with the real ones", project.merged_dir,
                           "merge the clip first (notebook 06, or `workbench merge`)")
    return FacePairs(np.stack(real).astype(np.float32), np.stack(swapped).astype(np.float32),
                     np.stack(masks).astype(np.float32), tuple(frames), tuple(times))


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(image, 0, 1).astype(np.float32), cv2.COLOR_RGB2GRAY)


def radial_spectrum(image: np.ndarray, bins: int = SPECTRUM_BINS) -> np.ndarray:
    """The image's power spectrum averaged over rings of equal spatial frequency: (bins,) log10 power from
    the lowest to the highest frequency (a Hann window first, so the crop's borders add no false edges)."""
    grey = _grey(image)
    h, w = grey.shape
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    power = np.abs(np.fft.fftshift(np.fft.fft2((grey - grey.mean()) * window))) ** 2
    yy, xx = np.mgrid[:h, :w]
    radius = np.hypot(yy - h / 2, xx - w / 2) / (min(h, w) / 2)
    edges = np.linspace(0, 1, bins + 1)
    out = np.empty(bins, np.float64)
    for i in range(bins):
        ring = (radius >= edges[i]) & (radius < edges[i + 1])
        out[i] = np.log10(power[ring].mean() + 1e-12)
    return out


def high_frequency_share(image: np.ndarray, cutoff: float = 0.5) -> float:
    """Share of the spectral energy above ``cutoff`` of the highest frequency (0..1; blurred faces score low)."""
    grey = _grey(image)
    h, w = grey.shape
    power = np.abs(np.fft.fftshift(np.fft.fft2(grey - grey.mean()))) ** 2
    yy, xx = np.mgrid[:h, :w]
    radius = np.hypot(yy - h / 2, xx - w / 2) / (min(h, w) / 2)
    total = power.sum()
    return float(power[radius >= cutoff].sum() / total) if total > 0 else 0.0


def boundary_contrast(image: np.ndarray, mask: np.ndarray, band: int = 3) -> float:
    """Mean gradient magnitude on the mask's boundary band divided by the mean inside the face.

    A pasted face leaves a seam where its colours or sharpness meet the frame's: the ratio rises above what
    the real face shows at the same place. NaN when the mask has no boundary in the crop."""
    grey = _grey(image)
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    magnitude = np.hypot(gx, gy)
    hard = (np.asarray(mask) > 0.5).astype(np.uint8)
    kernel = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    ring = (cv2.dilate(hard, kernel) - cv2.erode(hard, kernel)).astype(bool)
    inside = cv2.erode(hard, kernel).astype(bool)
    if not ring.any() or not inside.any():
        return float("nan")
    return float(magnitude[ring].mean() / (magnitude[inside].mean() + 1e-6))


def face_features(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The classifier's input for one face crop, in :data:`FEATURE_NAMES` order."""
    hsv = cv2.cvtColor(np.clip(image, 0, 1).astype(np.float32), cv2.COLOR_RGB2HSV)
    lap = cv2.Laplacian(_grey(image), cv2.CV_32F)
    contrast = boundary_contrast(image, mask)
    return np.concatenate([radial_spectrum(image), [high_frequency_share(image), float(np.log10(lap.var() + 1e-8)),
                                                    float(hsv[..., 1].mean()),
                                                    0.0 if np.isnan(contrast) else contrast]]).astype(np.float64)


@dataclass(frozen=True)
class Detector:
    """A logistic-regression real (0) vs swapped (1) classifier on standardised :func:`face_features`."""

    mean: np.ndarray = field(repr=False)
    std: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    bias: float

    def probability(self, features: np.ndarray) -> np.ndarray:
        """P(swapped) per row of ``features`` (N, F)."""
        z = (np.atleast_2d(features) - self.mean) / self.std @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def accuracy(self, real: np.ndarray, swapped: np.ndarray) -> float:
        """Share of correct calls (threshold 0.5) over real and swapped feature rows together."""
        calls = np.concatenate([self.probability(real) < 0.5, self.probability(swapped) >= 0.5])
        return float(calls.mean())

    def strongest(self, count: int = 4) -> list[tuple[str, float]]:
        """The features with the largest weights (on standardised inputs, so comparable), signed."""
        order = np.argsort(-np.abs(self.weights))[:count]
        return [(FEATURE_NAMES[i], float(self.weights[i])) for i in order]


def train_detector(real: np.ndarray, swapped: np.ndarray, *, steps: int = 2000, lr: float = 0.1,
                   l2: float = 1e-2) -> Detector:
    """Fit :class:`Detector` by gradient descent on the logistic loss (L2-regularised), numpy only."""
    x = np.concatenate([real, swapped]).astype(np.float64)
    y = np.concatenate([np.zeros(len(real)), np.ones(len(swapped))])
    if len(real) == 0 or len(swapped) == 0:
        raise ValueError("train_detector needs real and swapped examples")
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = (x - mean) / std
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(xs @ w + b, -50, 50)))
        w -= lr * (xs.T @ (p - y) / len(y) + l2 * w)
        b -= lr * float((p - y).mean())
    return Detector(mean, std, w, b)


def features_of(faces: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """:func:`face_features` of each crop: (N, F)."""
    return np.stack([face_features(f, m) for f, m in zip(faces, masks)])


def time_split(count: int, train_share: float = 0.6) -> tuple[slice, slice]:
    """(train, test) slices of a clip in time order: the first part trains, the rest tests, so near-identical
    neighbouring frames never sit on both sides (a random split would overstate the accuracy)."""
    cut = min(max(1, round(count * train_share)), count - 1)
    return slice(0, cut), slice(cut, count)


def degrade(faces: Sequence[np.ndarray], blur_sigma: float = 0.0, jpeg_quality: int | None = None) -> np.ndarray:
    """Blur and/or JPEG-compress face crops (what a re-upload does), to test a detector's limits."""
    out = []
    for face in faces:
        image = np.clip(face, 0, 1).astype(np.float32)
        if blur_sigma > 0:
            image = cv2.GaussianBlur(image, (0, 0), blur_sigma)
        if jpeg_quality is not None:
            ok, buf = cv2.imencode(".jpg", (image[..., ::-1] * 255).round().astype(np.uint8),
                                   [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0
        out.append(image)
    return np.stack(out)
