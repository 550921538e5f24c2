"""Face detection and 68-point landmarks: DFL's extraction stages 1 (rects) and 2 (landmarks).

Every engine shares one small interface (``detect`` -> boxes with scores, ``landmarks`` -> (68, 2)); one
engine per module:

- ``"auto"`` (default, offline; :mod:`.auto`): dlib HOG first; where HOG finds nothing, YuNet (or MTCNN
  without ``yuface``) and then a search over tilted copies of the frame, each candidate checked by a false-face
  guard (O-Net face probability on the landmark-aligned crop + agreement of the detector's 5 points with the
  68-point fit). Same speed as HOG on frames with a frontal face.
- ``"dlib"`` (:mod:`.dlib_engines`): dlib's HOG frontal-face detector at upsample 0 plus the 68-point shape
  predictor from ``face-recognition-models``. About 20 ms for a 512x480 frame on one CPU core.
- ``"dlib_cnn"``: dlib's MMOD CNN detector (more poses, ~3 s per image on CPU) plus the same predictor.
- ``"haar"`` (:mod:`.haar`): OpenCV's Viola-Jones cascade (2001) + the predictor on a calibrated box.
- ``"mtcnn"`` (:mod:`.mtcnn`): MTCNN (2016) in torch with facenet-pytorch's weights + the predictor.
- ``"yunet"`` (:mod:`.yunet`): libfacedetection's YuNet (optional ``yuface`` wheel) + the predictor.
- ``"face_alignment"`` (:mod:`.face_alignment_engine`): the detectors and FAN network DFL itself uses (S3FD +
  2DFAN4, via the ``face-alignment`` package). Its weights are downloaded on first use, so offline it only works
  when the files already sit in ``$TORCH_HOME/hub/checkpoints``; otherwise it fails at once with
  :class:`~workbench.errors.EngineUnavailableError`.

Each detector draws its box differently; landmarks for Haar, MTCNN and YuNet come from dlib's predictor on the
detector box mapped by a per-engine :class:`BoxCalibration` onto the box HOG would draw.

Boxes are ``(x0, y0, x1, y1)`` in frame pixels with ``x1 = x0 + width`` (dlib's inclusive right edge plus one).
Landmarks are (68, 2) float32 pixel coordinates in iBUG 300-W order (x right, y down).

The dlib 68-point model was trained on iBUG 300-W, whose licence excludes commercial use.
"""

from .auto import AutoEngine
from .base import (
    NUM_LANDMARKS,
    ROTATION_ORDER,
    Box,
    BoxCalibration,
    DetectedFace,
    FaceEngine,
    Found,
    as_dlib_image,
    dlib_model_path,
    downscale_for_detection,
    fit_box_calibration,
    five_points,
    import_dlib,
    predict_landmarks,
    rotate_by_angle,
    rotate_image,
    shape_predictor,
    unrotate_box,
    unrotate_points,
    validate_image,
)
from .calibrated import CalibratedPredictor, fit_landmarks
from .dlib_engines import DlibCnnEngine, DlibHogEngine
from .face_alignment_engine import (
    FA_BASE_URL,
    FA_DETECTOR_FILES,
    FAN_2D_FILE,
    FaceAlignmentEngine,
    face_alignment_checkpoint_dir,
    face_alignment_missing_files,
)
from .haar import HaarEngine, haar_cascade_path
from .mtcnn import MtcnnEngine
from .nms import box_iou, nms
from .pipeline import (
    DEFAULT_ENGINE,
    ENGINES,
    available_engines,
    detect_boxes,
    detect_faces,
    load_engine,
    resolve_engine,
)
from .yunet import YunetEngine, import_yuface

__all__ = [
    "AutoEngine", "Box", "BoxCalibration", "CalibratedPredictor", "DEFAULT_ENGINE", "DetectedFace", "DlibCnnEngine",
    "DlibHogEngine", "ENGINES", "FA_BASE_URL", "FA_DETECTOR_FILES", "FAN_2D_FILE", "FaceAlignmentEngine",
    "FaceEngine", "Found", "HaarEngine", "MtcnnEngine", "NUM_LANDMARKS", "ROTATION_ORDER",
    "YunetEngine", "as_dlib_image", "available_engines", "detect_boxes", "detect_faces", "dlib_model_path",
    "downscale_for_detection", "face_alignment_checkpoint_dir", "face_alignment_missing_files",
    "box_iou", "fit_box_calibration", "fit_landmarks", "five_points", "haar_cascade_path", "import_dlib", "import_yuface", "load_engine", "nms",
    "predict_landmarks", "resolve_engine", "rotate_by_angle", "rotate_image", "shape_predictor",
    "unrotate_box", "unrotate_points", "validate_image",
]
