"""Using a trained XSeg model: predict masks, apply them to facesets, remove them, pick a face's mask.

``predict_masks(run_dir, images)`` is the one entry point the merger, the app and the tests share.
DFL's apply step (``XSegUtil.py``): resize the face to the model resolution, predict, zero values under
0.1, binarise at 0.5, store in the face file. Here the stored mask is a compact PNG in the JSON metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import WorkbenchError
from ..models.xseg import XSegConfig, XSegLite
from .labels import decode_mask_png, encode_mask_png

ZERO_BELOW = 0.1  # DFL XSegNet.extract: values under 0.1 are zeroed


@dataclass(frozen=True)
class XSegModel:
    """A loaded XSeg network in eval mode, with where it came from."""

    net: XSegLite
    resolution: int
    step: int
    device: torch.device
    source: Path

    def __call__(self, face: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """Segment one RGB face (S, S, 3) with its (68, 2) landmarks in face pixels (or None) -> (S, S) mask:
        the merger's ``Segmenter`` interface."""
        lms = None if landmarks is None else np.asarray(landmarks, np.float32)[None]
        return predict_masks(self, np.asarray(face, np.float32)[None], landmarks=lms)[0]

    @property
    def uses_hull(self) -> bool:
        """The model reads the landmark hull (a fourth input); without landmarks the mean hull stands in."""
        return bool(self.net.config.hull_input)


def load_xseg(run_dir: str | Path, device: str | torch.device = "cpu") -> XSegModel:
    """Load ``RUN/checkpoints/latest.pt`` (or a checkpoint file) with ``weights_only=True``."""
    from ..train.runs import checkpoint_path
    from .trainer import load_xseg_checkpoint

    path = Path(run_dir)
    ckpt_file = path if path.is_file() else checkpoint_path(path)
    ckpt = load_xseg_checkpoint(ckpt_file, map_location="cpu")
    config = XSegConfig.from_dict(ckpt["model_config"])
    net = XSegLite(config)
    net.load_state_dict(ckpt["model"])
    device = torch.device(device)
    net.to(device).eval()
    return XSegModel(net, config.resolution, int(ckpt.get("step", 0)), device, ckpt_file)


def project_segmenter(project: Any, run: str = "default", device: str | torch.device = "cpu") -> XSegModel:
    """The project's XSeg model (``PROJECT/xseg/<run>``) for the merger's xseg-* modes; TrainingError if untrained."""
    from ..errors import TrainingError
    from ..train.runs import checkpoint_path
    from .trainer import default_run_dir

    run_dir = default_run_dir(project, run)
    if not checkpoint_path(run_dir).is_file():
        raise TrainingError("the xseg-* mask modes need a trained XSeg model", run_dir,
                            f"train one: workbench xseg train {getattr(project, 'root', project)}")
    return load_xseg(run_dir, device)


def landmark_hulls(landmarks: np.ndarray, image_size: int, resolution: int) -> np.ndarray:
    """(N, 68, 2) landmarks in ``image_size`` pixels -> (N, 1, R, R) float32 soft hulls at ``resolution``
    (as in training, :func:`workbench.segment.data.soft_hull`)."""
    from .data import soft_hull

    return np.stack([soft_hull(lm, image_size, resolution)[None] for lm in landmarks]).astype(np.float32)


def predict_masks(model: XSegModel | str | Path, images: np.ndarray, *, landmarks: np.ndarray | None = None,
                  batch_size: int = 16) -> np.ndarray:
    """Segment faces: RGB float32 (N, H, W, 3) in [0, 1] -> masks (N, H, W) float32 in [0, 1].

    ``model`` is a run folder, a checkpoint file, or an already loaded :class:`XSegModel` (load once when
    calling repeatedly). ``landmarks`` (N, 68, 2) in image pixels give a hull-input model each face's own
    outline (an aligned face's ``meta.landmarks`` scaled to the image); without them the model's mean
    training hull stands in, and models without the hull input ignore them. Faces are resized to the
    model resolution (area filter), predicted, resized back (bilinear on the probabilities) and values
    under 0.1 are zeroed as in DFL.
    """
    if not isinstance(model, XSegModel):
        model = load_xseg(model)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise WorkbenchError(f"predict_masks needs RGB images (N, H, W, 3), got shape {images.shape}",
                             hint="stack aligned faces of one size into one array")
    n, h, w, _ = images.shape
    if landmarks is not None and np.shape(landmarks) != (n, 68, 2):
        raise WorkbenchError(f"predict_masks needs (N, 68, 2) landmarks for {n} faces, got {np.shape(landmarks)}",
                             hint="pass each face's landmarks in its own pixels, or landmarks=None")
    hulls = landmark_hulls(landmarks, h, model.resolution) if landmarks is not None and model.uses_hull else None
    out = np.zeros((n, h, w), np.float32)
    r = model.resolution
    with torch.inference_mode():
        for i in range(0, n, batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])).permute(0, 3, 1, 2).to(model.device)
            x = x.clamp(0, 1)
            if (h, w) != (r, r):
                x = F.interpolate(x, size=(r, r), mode="area" if h >= r and w >= r else "bilinear",
                                  **({} if h >= r and w >= r else {"align_corners": False}))
            hull = None if hulls is None else torch.from_numpy(hulls[i:i + batch_size]).to(model.device)
            p = torch.sigmoid(model.net(x, hull))
            if (h, w) != (r, r):
                p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
            out[i:i + batch_size] = p[:, 0].float().cpu().numpy()
    out[out < ZERO_BELOW] = 0.0
    return np.clip(out, 0.0, 1.0)


def face_mask(image_shape: tuple[int, ...], meta: Any, *, prefer: str = "xseg") -> np.ndarray:
    """The mask a face carries: its applied XSeg mask when present (``prefer="xseg"``), else its hull."""
    from ..masks import hull_mask

    h, w = int(image_shape[0]), int(image_shape[1])
    if prefer == "xseg" and getattr(meta, "xseg_mask", None):
        return decode_mask_png(meta.xseg_mask, (h, w))
    return hull_mask((h, w), meta.landmarks_at(h))


@dataclass(frozen=True)
class ApplySummary:
    faces: int
    written: int
    broken: tuple[tuple[Path, str], ...]
    seconds: float

    @property
    def faces_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


def apply_masks(model: XSegModel | str | Path, folders: Sequence[str | Path], *, batch_size: int = 16,
                progress: Callable[[int, int], None] | None = None) -> ApplySummary:
    """Predict every face of ``folders`` and store the binarised mask in its file (atomic, pixels untouched)."""
    import time

    from ..errors import MetadataError
    from ..faceset import load_aligned_face, scan_faceset, update_face_meta

    if not isinstance(model, XSegModel):
        model = load_xseg(model)
    records, broken = [], []
    for folder in folders:
        scan = scan_faceset(folder)
        records += list(scan.faces)
        broken += list(scan.broken)
    t0 = time.perf_counter()
    written = 0
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        faces = []
        for record in chunk:
            try:
                faces.append((record, load_aligned_face(record.path)[0]))
            except MetadataError as exc:
                broken.append((record.path, exc.message))
        by_size: dict[tuple[int, int], list] = {}
        for record, image in faces:
            by_size.setdefault(image.shape[:2], []).append((record, image))
        for group in by_size.values():
            size = group[0][1].shape[0]
            lms = np.stack([r.meta.landmarks_at(size) for r, _ in group])
            masks = predict_masks(model, np.stack([im for _, im in group]), landmarks=lms, batch_size=batch_size)
            for (record, _), mask in zip(group, masks):
                try:
                    update_face_meta(record.path, xseg_mask=encode_mask_png(mask))
                    written += 1
                except MetadataError as exc:
                    broken.append((record.path, exc.message))
        if progress is not None:
            progress(min(start + batch_size, len(records)), len(records))
    return ApplySummary(len(records), written, tuple(broken), time.perf_counter() - t0)


def remove_masks(folders: Sequence[str | Path], *, labels: bool = False) -> int:
    """Drop the applied XSeg masks (and with ``labels=True`` the polygons too); returns faces changed."""
    from ..faceset import scan_faceset, update_face_meta

    changed = 0
    for folder in folders:
        for record in scan_faceset(folder).faces:
            changes: dict[str, Any] = {}
            if record.meta.xseg_mask is not None:
                changes["xseg_mask"] = None
            if labels and record.meta.seg_polys:
                changes["seg_polys"] = ()
            if changes:
                update_face_meta(record.path, **changes)
                changed += 1
    return changed
