"""Training data: facesets decoded once at the model's face type and resolution, and seeded batch sampling.

Each side (src, dst) becomes a :class:`FaceBank`: every face is decoded (in a thread pool), re-cropped from
its stored landmarks when the faceset's face type differs from the model's (DFL does the same, §3.7),
resized when its size differs, and kept in RAM as uint8 together with its masks (hull "full face" mask and
the eyes/mouth mask, §2.1-2.2; a face with an applied XSeg mask uses that mask instead of the hull, §2.3). That is ``5·res²`` bytes per face (82 KB at 128 px).

Batches are index draws from a :class:`SideSampler` (epoch shuffling like DFL's index host, or uniform over
128 yaw bins with ``uniform_yaw``); augmentation happens later, batched in torch on the training device
(:mod:`workbench.augment`). All randomness comes from generators whose state goes into the checkpoint, so
a resumed run draws exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ..errors import MetadataError, TrainingError

YAW_BINS = 128
YAW_RANGE = 1.2  # radians; DFL bins yaw in [-1.2, 1.2]
MASK_NAMES = ("full_face", "eyes_mouth")



def load_each(records: Sequence[Any], load: Callable[[Any], Any], workers: int) -> list[Any]:
    """``load(record)`` for every record, on ``workers`` threads (decoding releases the GIL); a file that cannot
    be read (broken metadata or pixels) gives its exception in its place, so the caller names it and goes on."""
    def one(record: Any) -> Any:
        try:
            return load(record)
        except (MetadataError, ValueError, OSError, cv2.error) as exc:
            return exc

    if workers > 0 and len(records) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, records))
    return [one(r) for r in records]

def check_faceset_folder(folder: str | Path, side: str, batch_size: int) -> int:
    """Cheap pre-flight check (file count only); raises TrainingError. Returns the number of face files."""
    from ..faceset import list_face_files

    folder = Path(folder)
    if not folder.is_dir():
        raise TrainingError(f"the {side} faceset folder does not exist", folder,
                            f"extract {side} faces first (workbench extract) or pass the right folder")
    n = len(list_face_files(folder))
    if n < batch_size:
        raise TrainingError(
            f"the {side} faceset has {n} face(s) but batch size {batch_size} needs at least {batch_size}",
            folder, f"add faces (at least {batch_size}) or lower the batch size (--batch-size {max(1, n)})"
            if n else f"extract at least {batch_size} {side} faces into this folder",
        )
    return n


@dataclass(frozen=True)
class FaceBank:
    """One side's faces at the model's face type and resolution, in RAM.

    Attributes:
        images: (N, 3, R, R) uint8 RGB.
        masks: (N, 2, R, R) uint8: channel 0 the hull (full-face) mask, 1 the eyes/mouth mask.
        yaw: (N,) float32 yaw in radians (0 when not computed).
        paths: the face files, in faceset order.
        recropped: how many faces were re-cropped from another face type.
        resized: how many faces were resized from another size.
        broken: (path, reason) of files that could not be used.
    """

    folder: Path
    images: torch.Tensor
    masks: torch.Tensor
    yaw: np.ndarray
    paths: tuple[Path, ...]
    recropped: int
    resized: int
    broken: tuple[tuple[Path, str], ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def prepare_face(image: np.ndarray, landmarks: np.ndarray, face_type: str, stored_type: str,
                 resolution: int) -> tuple[np.ndarray, np.ndarray, bool, bool]:
    """Bring one aligned face to the model's face type and resolution.

    Args:
        image: (S, S, 3) float RGB aligned face.
        landmarks: (68, 2) landmarks in that face's pixels.
        face_type: the model's face type; stored_type: the faceset's.
        resolution: the model's side in pixels.

    Returns:
        (image (R, R, 3) float32, landmarks (68, 2) in the new pixels, recropped, resized).
    """
    from ..align import normalize_face_type, refit_face

    recropped = resized = False
    if normalize_face_type(stored_type) != normalize_face_type(face_type):
        fit = refit_face(image, landmarks, face_type, resolution, interpolation="cubic", border="replicate")
        return fit.image.astype(np.float32), np.asarray(fit.landmarks, np.float32), True, image.shape[0] != resolution
    size = image.shape[0]
    if image.shape[0] != resolution or image.shape[1] != resolution:
        interp = cv2.INTER_AREA if size > resolution else cv2.INTER_CUBIC
        image = cv2.resize(image, (resolution, resolution), interpolation=interp)
        landmarks = np.asarray(landmarks, np.float32) * (resolution / float(size))
        resized = True
    return np.clip(image, 0, 1).astype(np.float32), np.asarray(landmarks, np.float32), recropped, resized


def _load_one(path: Path, face_type: str, resolution: int, need_yaw: bool):
    from ..faceset import load_aligned_face
    from ..masks import eyes_mouth_mask, hull_mask

    image, meta = load_aligned_face(path)
    xseg = None
    if meta.xseg_mask is not None:
        # An applied XSeg mask replaces the hull for masked training (DFL §2.3); it rides along as a 4th
        # channel so any re-crop or resize moves it exactly like the face.
        from ..segment.labels import decode_mask_png

        image = np.dstack([image, decode_mask_png(meta.xseg_mask, image.shape[:2])])
    image, lm, recropped, resized = prepare_face(image, meta.landmarks, face_type, meta.face_type, resolution)
    if image.shape[2] == 4:
        image, xseg = image[..., :3], (image[..., 3] >= 0.5).astype(np.float32)
    hull = xseg if xseg is not None else hull_mask((resolution, resolution), lm)
    em = eyes_mouth_mask((resolution, resolution), lm, hull)
    yaw = 0.0
    if need_yaw:
        from ..pose import estimate_pitch_yaw_roll

        try:
            yaw = float(estimate_pitch_yaw_roll(lm, resolution).yaw)
        except ValueError:
            yaw = 0.0
    img8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    masks8 = np.clip(np.rint(np.stack([hull, em]) * 255.0), 0, 255).astype(np.uint8)
    return img8.transpose(2, 0, 1), masks8, yaw, recropped, resized


def face_landmarks(path: str | Path, face_type: str, resolution: int) -> np.ndarray:
    """(68, 2) landmarks of an aligned face file in the pixels of the model's face (as the bank holds it)."""
    from ..faceset import load_aligned_face

    image, meta = load_aligned_face(path)
    return prepare_face(image, meta.landmarks, face_type, meta.face_type, resolution)[1]


def load_face_bank(folder: str | Path, side: str, face_type: str, resolution: int, *, min_faces: int = 1,
                   need_yaw: bool = False, workers: int = 2) -> FaceBank:
    """Decode a faceset folder into a :class:`FaceBank`.

    Raises:
        TrainingError: the folder is missing, or has fewer than ``min_faces`` usable faces.
    """
    from ..faceset import scan_faceset

    folder = Path(folder)
    check_faceset_folder(folder, side, min_faces)
    scan = scan_faceset(folder)
    records = list(scan.faces)
    broken = list(scan.broken)
    if len(records) < min_faces:
        extra = f" ({len(broken)} more could not be read, e.g. {broken[0][0].name}: {broken[0][1]})" if broken else ""
        raise TrainingError(
            f"the {side} faceset has {len(records)} usable face(s){extra}; this run needs at least {min_faces} "
            f"(the batch size)", folder,
            f"add faces or lower the batch size to at most {max(1, len(records))}" if records
            else f"extract {side} faces into this folder first",
        )

    results = load_each(records, lambda record: _load_one(record.path, face_type, resolution, need_yaw), workers)
    images, masks, yaws, paths = [], [], [], []
    recropped = resized = 0
    for record, result in zip(records, results):
        if isinstance(result, Exception):
            broken.append((record.path, str(result)))
            continue
        img, m, yaw, rc, rs = result
        images.append(img)
        masks.append(m)
        yaws.append(yaw)
        paths.append(record.path)
        recropped += rc
        resized += rs
    if len(images) < min_faces:
        raise TrainingError(f"only {len(images)} {side} face(s) could be decoded; this run needs at least {min_faces}",
                            folder, "check the broken files listed by `workbench faceset check` or re-extract")
    return FaceBank(
        folder=folder, images=torch.from_numpy(np.stack(images)), masks=torch.from_numpy(np.stack(masks)),
        yaw=np.asarray(yaws, np.float32), paths=tuple(paths), recropped=recropped, resized=resized,
        broken=tuple(broken),
    )


def split_heldout(n: int, wanted: int, batch_size: int, seed: int, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded pick of held-out faces (excluded from training) -> (train_indices, heldout_indices).

    Holds out ``min(wanted, n - batch_size)`` faces so training always keeps a full batch.
    """
    count = max(0, min(wanted, n - batch_size))
    rng = np.random.default_rng([seed, 7919, 0 if side == "src" else 1])
    perm = rng.permutation(n)
    heldout = np.sort(perm[:count])
    train = np.sort(perm[count:])
    return train, heldout


class SideSampler:
    """Draws batches of face indices for one side (deterministic from its seed; state saved in checkpoints).

    Default: DFL's shuffled epochs (every training face once per epoch, in a new order each epoch).
    ``uniform_yaw``: per sample, a uniformly random non-empty bin of 128 yaw bins over [-1.2, 1.2] rad,
    then a random face in that bin, so rare profiles appear as often as frontal faces.
    """

    def __init__(self, indices: np.ndarray, batch_size: int, seed: Any, yaw: np.ndarray | None = None,
                 uniform_yaw: bool = False):
        self.indices = np.asarray(indices, np.int64)
        self.batch_size = int(batch_size)
        self.rng = np.random.default_rng(seed)
        self.uniform_yaw = bool(uniform_yaw)
        self._perm = np.zeros(0, np.int64)
        self._pos = 0
        self._bins: list[np.ndarray] = []
        if self.uniform_yaw:
            yaw = np.zeros(len(self.indices)) if yaw is None else np.asarray(yaw)[self.indices]
            edges = np.linspace(-YAW_RANGE, YAW_RANGE, YAW_BINS + 1)
            which = np.clip(np.digitize(yaw, edges) - 1, 0, YAW_BINS - 1)
            self._bins = [self.indices[which == b] for b in range(YAW_BINS) if np.any(which == b)]

    def next(self) -> np.ndarray:
        """The next batch of indices (B,)."""
        if self.uniform_yaw:
            bins = self.rng.integers(0, len(self._bins), self.batch_size)
            return np.array([self._bins[b][self.rng.integers(0, len(self._bins[b]))] for b in bins], np.int64)
        out = []
        need = self.batch_size
        while need:
            if self._pos >= len(self._perm):
                self._perm = self.rng.permutation(self.indices)
                self._pos = 0
            take = self._perm[self._pos:self._pos + need]
            self._pos += len(take)
            need -= len(take)
            out.append(take)
        return np.concatenate(out)

    def draw(self, count: int, pool: np.ndarray | None = None) -> np.ndarray:
        """``count`` random indices (with replacement) from ``pool`` (default: the training indices)."""
        pool = self.indices if pool is None else pool
        return pool[self.rng.integers(0, len(pool), count)]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": json.dumps(self.rng.bit_generator.state), "perm": self._perm.tolist(), "pos": int(self._pos)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = json.loads(state["rng"])
        self._perm = np.asarray(state["perm"], np.int64)
        self._pos = int(state["pos"])


@dataclass
class SideBatch:
    """One side's batch on the training device: images (B,3,R,R) and masks (B,1,R,R) float in [0, 1]."""

    images: torch.Tensor
    masks: dict[str, torch.Tensor]


def gather(bank: FaceBank, indices: np.ndarray, device: torch.device, channels_last: bool = False) -> SideBatch:
    """Index a bank and move the uint8 data to ``device`` (4x less traffic than float), then scale to [0, 1]."""
    idx = torch.from_numpy(np.asarray(indices, np.int64))
    images = bank.images.index_select(0, idx)
    masks = bank.masks.index_select(0, idx)
    non_blocking = device.type == "cuda"
    if non_blocking:
        images, masks = images.pin_memory(), masks.pin_memory()
    images = images.to(device, non_blocking=non_blocking).float().div_(255.0)
    masks = masks.to(device, non_blocking=non_blocking).float().div_(255.0)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return SideBatch(images, {MASK_NAMES[i]: masks[:, i:i + 1] for i in range(len(MASK_NAMES))})


class TrainData:
    """Both sides: face banks, held-out splits and samplers, built from :class:`TrainOptions`.

    Args:
        src_dir, dst_dir: aligned-face folders (the same folder for both when pretraining).
        options: the (effective) training options.
        seed: sampling seed (the run's seed).
    """

    def __init__(self, src_dir: str | Path, dst_dir: str | Path, options: Any, *, global_batch: int | None = None):
        self.options = options
        batch = global_batch or options.batch_size
        self.batch_size = batch
        load = dict(face_type=options.face_type, resolution=options.resolution, min_faces=batch,
                    need_yaw=options.uniform_yaw, workers=options.loader_workers)
        self.src = load_face_bank(src_dir, "src", **load)
        same = Path(src_dir).resolve() == Path(dst_dir).resolve()
        self.dst = self.src if same else load_face_bank(dst_dir, "dst", **load)
        self.src_train, self.src_heldout = split_heldout(len(self.src), options.metrics_samples, batch, options.seed, "src")
        self.dst_train, self.dst_heldout = split_heldout(len(self.dst), options.metrics_samples, batch, options.seed, "dst")
        self.src_sampler = SideSampler(self.src_train, batch, [options.seed, 1], self.src.yaw, options.uniform_yaw)
        self.dst_sampler = SideSampler(self.dst_train, batch, [options.seed, 2], self.dst.yaw, options.uniform_yaw)

    def next_indices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(src indices, dst indices, dst colour-reference indices for ct_mode or None)."""
        src = self.src_sampler.next()
        dst = self.dst_sampler.next()
        ref = self.dst_sampler.draw(len(src)) if self.options.ct_mode != "none" else None
        return src, dst, ref

    def preview_indices(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Fixed faces for previews: held-out faces first, then the first training faces."""
        def pick(heldout, train):
            return np.concatenate([heldout, train])[:rows]

        return pick(self.src_heldout, self.src_train), pick(self.dst_heldout, self.dst_train)

    def state_dict(self) -> dict[str, Any]:
        return {"src": self.src_sampler.state_dict(), "dst": self.dst_sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.src_sampler.load_state_dict(state["src"])
        self.dst_sampler.load_state_dict(state["dst"])

    def describe(self) -> dict[str, Any]:
        return {
            "src_faces": len(self.src), "dst_faces": len(self.dst),
            "src_heldout": len(self.src_heldout), "dst_heldout": len(self.dst_heldout),
            "recropped": self.src.recropped + (0 if self.dst is self.src else self.dst.recropped),
            "resized": self.src.resized + (0 if self.dst is self.src else self.dst.resized),
            "broken": [str(p) for p, _ in self.src.broken + (() if self.dst is self.src else self.dst.broken)],
        }
