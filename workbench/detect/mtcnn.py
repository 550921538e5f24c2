"""MTCNN (Zhang et al., 2016): a cascade of three small CNNs + dlib's 68-point predictor on a calibrated box.

P-Net scans an image pyramid and proposes windows; R-Net rejects most of them; O-Net scores the rest and
places 5 points (eye centres, nose tip, mouth corners). The networks are in :mod:`.mtcnn_nets`; their weights
come from the ``facenet-pytorch`` wheel (installed with ``--no-deps``, never imported).
"""

from __future__ import annotations

import cv2
import numpy as np

from .base import Box, BoxCalibration, as_dlib_image, shape_predictor
from .calibrated import CalibratedPredictor
from .guard import torch_single_thread
from .nms import nms

# facenet-pytorch / the paper's defaults: stage thresholds, pyramid step.
THRESHOLDS = (0.6, 0.7, 0.7)
PYRAMID_FACTOR = 0.709


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (MTCNN's ``rerec``)."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + (w - side) / 2
    out[:, 1] = boxes[:, 1] + (h - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move each box edge by its predicted offset (a fraction of the box size)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes + offsets * np.stack([w, h, w, h], axis=1)


def _crops(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop each box (zero padding outside the image) and resize to ``size``; also return the integer boxes."""
    h, w = image.shape[:2]
    ints = np.round(boxes).astype(np.int64)
    ints[:, 2] = np.maximum(ints[:, 2], ints[:, 0] + 1)
    ints[:, 3] = np.maximum(ints[:, 3], ints[:, 1] + 1)
    pad = int(max(0, -ints[:, :2].min(), (ints[:, 2] - w).max(), (ints[:, 3] - h).max()))
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0) if pad else image
    out = np.empty((len(ints), size, size, 3), np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(ints + pad):
        crop = padded[y0:y1, x0:x1]
        interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
        out[k] = cv2.resize(crop, (size, size), interpolation=interp)
    return out, ints


def _to_tensor(batch_u8: np.ndarray):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(batch_u8)).permute(0, 3, 1, 2).float()
    return (x - 127.5) * 0.0078125


class MtcnnEngine(CalibratedPredictor):
    """MTCNN detector (torch, CPU) + dlib's 68-point predictor on a calibrated box.

    Args:
        device: ignored (the nets are tiny; CPU).
        min_face_size: smallest face searched (px); sets the top of the image pyramid.
        thresholds: face-probability thresholds of P-, R- and O-Net.
        guard: drop candidates that fail the false-face check in ``find``/``detect_faces``.
    """

    name = "mtcnn"
    # Fitted by `python -m workbench.bench detect --calibrate` on ../shared/data: the median offset and scale
    # taking each raw box onto the overlapping (IoU > 0.4) dlib HOG box, over 114 pairs from the stills,
    # the dlib landmark photos and every 30th frame of the videos.
    # MTCNN's boxes are taller and narrower than HOG's (forehead to chin) and sit higher.
    calibration = BoxCalibration(dx=0.0073, dy=0.0685, sx=1.0754, sy=0.8086)

    def __init__(self, device: str = "cpu", min_face_size: int = 32,
                 thresholds: tuple[float, float, float] = THRESHOLDS, guard: bool = True):
        from .mtcnn_nets import load_mtcnn_nets

        self.pnet, self.rnet, self.onet = load_mtcnn_nets()
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.guard = bool(guard)
        shape_predictor()

    def detect(self, image: np.ndarray) -> list[tuple[Box, float]]:
        return [(box, score) for box, score, _ in self.detect_points(image)]

    def detect_points(self, image: np.ndarray) -> list[tuple[Box, float, np.ndarray]]:
        """Boxes, O-Net scores and (5, 2) points (eyes, nose tip, mouth corners; image-left first)."""
        import torch

        img = as_dlib_image(image)
        with torch.inference_mode(), torch_single_thread():
            boxes = self._stage1(img)
            if len(boxes):
                boxes = self._stage2(img, boxes)
            if len(boxes):
                return self._stage3(img, boxes)
        return []

    def _stage1(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        scale = 12.0 / self.min_face_size
        min_side = min(h, w) * scale
        found = []
        while min_side >= 12:
            size = (int(w * scale + 1), int(h * scale + 1))
            level = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            reg, prob = self.pnet(_to_tensor(level[None]))
            prob, reg = prob[0, 1].numpy(), reg[0].numpy()
            ys, xs = np.nonzero(prob >= self.thresholds[0])
            if len(ys):
                # Each output cell is a 12x12 window at stride 2 in the scaled image.
                cells = np.stack([xs, ys], axis=1).astype(np.float64)
                q0 = np.floor((2 * cells + 1) / scale)
                q1 = np.floor((2 * cells + 12) / scale)
                level_boxes = np.concatenate([q0, q1, prob[ys, xs, None], reg[:, ys, xs].T], axis=1)
                found.append(level_boxes[nms(level_boxes[:, :4], level_boxes[:, 4], 0.5)])
            scale *= PYRAMID_FACTOR
            min_side *= PYRAMID_FACTOR
        if not found:
            return np.zeros((0, 5))
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        refined = _regress(boxes[:, :4], boxes[:, 5:9])
        return np.concatenate([_square(refined), boxes[:, 4:5]], axis=1)

    def _stage2(self, img: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        crops, _ = _crops(img, boxes[:, :4], 24)
        reg, prob = self.rnet(_to_tensor(crops))
        score = prob[:, 1].numpy()
        keep = score > self.thresholds[1]
        boxes, score, reg = boxes[keep, :4], score[keep], reg.numpy()[keep]
        pick = nms(boxes, score, 0.7)
        refined = _regress(boxes[pick], reg[pick])
        return np.concatenate([_square(refined), score[pick, None]], axis=1)

    def _stage3(self, img: np.ndarray, boxes: np.ndarray) -> list[tuple[Box, float, np.ndarray]]:
        crops, ints = _crops(img, boxes[:, :4], 48)
        reg, points, prob = self.onet(_to_tensor(crops))
        score = prob[:, 1].numpy()
        keep = score > self.thresholds[2]
        ints, score, reg, points = ints[keep], score[keep], reg.numpy()[keep], points.numpy()[keep]
        size = (ints[:, 2:4] - ints[:, 0:2]).astype(np.float64)
        # O-Net's points are fractions of the crop; pixel centres sit half a pixel in.
        xs = ints[:, 0:1] + points[:, :5] * size[:, 0:1] - 0.5
        ys = ints[:, 1:2] + points[:, 5:] * size[:, 1:2] - 0.5
        pts = np.stack([xs, ys], axis=2)
        final = _regress(ints.astype(np.float64), reg)
        pick = nms(final, score, 0.7, mode="min")
        return [(tuple(float(v) for v in final[i]), float(score[i]), pts[i].astype(np.float32)) for i in pick]
