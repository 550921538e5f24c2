"""Shared behaviour of the engines whose detector is not HOG (Haar, MTCNN, YuNet): 68 landmarks from dlib's
predictor on a calibrated box, de-rolled tilted faces, and the false-face guard."""

from __future__ import annotations

import math

import cv2
import numpy as np

from .base import Box, BoxCalibration, Found, as_dlib_image, downscale_for_detection, predict_landmarks
from .guard import check_faces

# Tilted heads: when the detector's eye points say the head is rolled by more than this, the predictor runs on
# an upright copy of the face (dlib's predictor was trained on roughly upright faces).
DEROLL_DEGREES = 15.0
# Guard thresholds. On ../shared/data O-Net gave real faces 0.95-1.0 (turned profiles 0.5-0.9) and every
# YuNet/Haar candidate on dogs.jpg <= 0.11; real faces' 5-point disagreement stayed under 0.5 eye distances.
MIN_FACE_PROBABILITY = 0.35
MAX_POINT_ERROR = 0.6
# Stricter thresholds for the combined engine's turned-frame passes: turning the frame four ways quadruples the
# chances of a face-like pattern (a dog on dogs.jpg turned 90 degrees: O-Net 0.78, 5-point error 0.31), while
# a real face turned upright again is a plain frontal face (>= 0.95, <= 0.2).
STRICT_FACE_PROBABILITY = 0.9
STRICT_POINT_ERROR = 0.25


def _roll_degrees(left_eye: np.ndarray, right_eye: np.ndarray) -> float:
    eyes = np.asarray(right_eye, np.float64) - np.asarray(left_eye, np.float64)
    return math.degrees(math.atan2(eyes[1], eyes[0]))


def _fit_upright(image: np.ndarray, box: Box, calibration: BoxCalibration, roll: float) -> np.ndarray:
    """Turn the face upright by ``roll`` degrees around its box centre, fit there, turn the points back."""
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    # YuNet and MTCNN draw a face-sized box whatever the roll (not the hull of the turned face): shrinking it
    # by |cos| + |sin| put the 68 points 0.16-0.19 eye distances off on a 60-degree tilt, the plain side 0.02.
    side = max(w, h)
    canvas = int(math.ceil(3 * side))
    # Positive OpenCV angles turn counter-clockwise on screen, which undoes a clockwise (positive) roll.
    forward = cv2.getRotationMatrix2D((cx, cy), roll, 1.0)
    forward[:, 2] += (canvas / 2 - cx, canvas / 2 - cy)
    upright = cv2.warpAffine(as_dlib_image(image), forward, (canvas, canvas), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT)
    c = canvas / 2
    points = predict_landmarks(upright, calibration.apply((c - side / 2, c - side / 2, c + side / 2, c + side / 2)))
    back = cv2.invertAffineTransform(forward)
    return (points.astype(np.float64) @ back[:, :2].T + back[:, 2]).astype(np.float32)


def fit_landmarks(image: np.ndarray, box: Box, calibration: BoxCalibration,
                  points5: np.ndarray | None = None) -> np.ndarray:
    """dlib's 68 points for a face found by another detector (box + optional 5 points), in image pixels.

    With 5 points showing a roll above :data:`DEROLL_DEGREES`, the face is turned upright around its centre,
    fitted there and the points are turned back; when that fit's own eye line still disagrees with the roll
    used (detectors' eye points are rough on strongly tilted heads), it is fitted once more with the fit's roll.
    """
    roll = 0.0 if points5 is None else _roll_degrees(points5[0], points5[1])
    if abs(roll) <= DEROLL_DEGREES:
        return predict_landmarks(image, calibration.apply(box))
    points = _fit_upright(image, box, calibration, roll)
    refined = _roll_degrees(points[36:42].mean(0), points[42:48].mean(0))
    if abs(refined - roll) > 5.0:
        points = _fit_upright(image, box, calibration, refined)
    return points


class CalibratedPredictor:
    """Mixin for non-HOG detectors: landmarks on a calibrated box and a guarded ``find``.

    Subclasses set ``name`` and ``calibration`` and implement ``detect`` (raw detector boxes); those with
    5 points also implement ``detect_points``. ``guard`` (constructor option) turns the false-face check off.
    """

    name = "calibrated"
    calibration = BoxCalibration()
    guard = True

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        return predict_landmarks(image, self.calibration.apply(box))

    def candidates(self, image: np.ndarray) -> list[tuple[Box, float, np.ndarray | None]]:
        """Raw detections with 5 points where the detector has them."""
        if hasattr(self, "detect_points"):
            return list(self.detect_points(image))
        return [(box, score, None) for box, score in self.detect(image)]

    def find(self, image: np.ndarray, detect_max_side: int | None = None, strict: bool = False) -> list[Found]:
        """Detected faces with 68 landmarks (full-resolution fit) that pass the false-face guard.

        ``strict`` uses :data:`STRICT_FACE_PROBABILITY` and :data:`STRICT_POINT_ERROR` (turned-frame passes).
        """
        frame = as_dlib_image(image)
        small, scale = downscale_for_detection(frame, detect_max_side)
        boxes, scores, points, landmarks = [], [], [], []
        for box, score, pts in self.candidates(small):
            box = tuple(float(v) / scale for v in box)
            pts = None if pts is None else np.asarray(pts, np.float64) / scale
            boxes.append(box)
            scores.append(score)
            points.append(pts)
            landmarks.append(fit_landmarks(frame, box, self.calibration, pts))
        keep = range(len(boxes))
        if self.guard and boxes:
            verdicts = check_faces(frame, landmarks, points)
            limits = (STRICT_FACE_PROBABILITY, STRICT_POINT_ERROR) if strict else (MIN_FACE_PROBABILITY,
                                                                                   MAX_POINT_ERROR)
            keep = [i for i, v in enumerate(verdicts) if v.passes(*limits)]
        return [Found(boxes[i], float(scores[i]), landmarks[i], self.name, 0) for i in keep]
