"""face-alignment engine: S3FD (DeepFaceLab's detector) + 2DFAN4 landmarks; needs its cached weights."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import ConfigError, EngineUnavailableError
from .base import NUM_LANDMARKS, Box, as_dlib_image, dlib_model_path

# face-alignment 1.5.0: cached file names in torch.hub.get_dir()/checkpoints (basename of each download URL).
FAN_2D_FILE = "2DFAN4-11f355bf06.pth.tar"
FA_DETECTOR_FILES: dict[str, tuple[str, ...]] = {
    "sfd": ("s3fd-619a316812.pth",),
    "blazeface": ("blazeface.pth", "anchors.npy"),
    "retinaface": ("retinaface_mobilenet0.25.pth",),
    "scrfd": ("scrfd_2.5g_bnkps.onnx",),
    "yunet": ("face_detection_yunet_2023mar.onnx",),
    "dlib": (),  # on CPU face-alignment uses dlib's HOG detector, which needs no file
}
FA_BASE_URL = "https://www.adrianbulat.com/downloads/python-fan/"


def face_alignment_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (torch.hub's cache, where face-alignment looks for its weights).

    Mirrors ``torch.hub.get_dir()`` without importing torch (seconds on a busy CPU) unless it is already loaded.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        return Path(torch.hub.get_dir()) / "checkpoints"
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def face_alignment_missing_files(face_detector: str = "sfd") -> list[str]:
    """Names of the weight files face-alignment would have to download for this detector (empty = ready)."""
    if face_detector not in FA_DETECTOR_FILES:
        raise ConfigError(
            f"unknown face-alignment detector '{face_detector}'",
            hint=f"choose one of {sorted(FA_DETECTOR_FILES)}",
        )
    folder = face_alignment_checkpoint_dir()
    needed = (FAN_2D_FILE, *FA_DETECTOR_FILES[face_detector])
    return [name for name in needed if not (folder / name).is_file()]


class FaceAlignmentEngine:
    """face-alignment's detector (S3FD by default) + 2DFAN4 landmarks, eager mode (``compile=False``).

    Args:
        device: torch device, e.g. "cpu" or "cuda".
        face_detector: "sfd" (S3FD, DFL's detector), "blazeface", "retinaface", "scrfd", "yunet" or "dlib".
        flip_input: also run FAN on the mirrored crop and average (2 forward passes, slightly more accurate).
        allow_download: let face-alignment download missing weights (needs internet, e.g. on Colab).
            When False (default) missing files raise EngineUnavailableError before anything is built.

    Raises:
        EngineUnavailableError: face-alignment is not installed, or its weight files are not cached.
    """

    name = "face_alignment"

    def __init__(
        self,
        device: str = "cpu",
        face_detector: str = "sfd",
        flip_input: bool = True,
        allow_download: bool = False,
    ):
        if importlib.util.find_spec("face_alignment") is None:
            raise EngineUnavailableError(
                "the face-alignment package is not installed",
                hint="pip install face-alignment==1.5.0, or use the offline engine 'dlib'",
            )
        missing = face_alignment_missing_files(face_detector)
        if missing and not allow_download:
            folder = face_alignment_checkpoint_dir()
            raise EngineUnavailableError(
                f"face-alignment weights are not in the torch hub cache (missing: {', '.join(missing)})",
                folder,
                "use the offline engine 'dlib' (the default), or put the files into "
                f"$TORCH_HOME/hub/checkpoints/ (here {folder}); the FAN and S3FD files download from "
                f"{FA_BASE_URL}<name>. With internet (e.g. Colab) pass allow_download=True.",
            )
        extra = {"scrfd": "onnxruntime"}.get(face_detector)
        if extra and importlib.util.find_spec(extra) is None:
            raise EngineUnavailableError(
                f"face-alignment's '{face_detector}' detector needs {extra}", hint=f"pip install {extra}"
            )
        import face_alignment

        kwargs = {}
        if face_detector == "dlib" and "cuda" in device:  # on CUDA it would download the MMOD file; use ours
            kwargs["path_to_detector"] = str(dlib_model_path("mmod_human_face_detector.dat"))
        self.device = device
        self.face_detector = face_detector
        self._fa = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D,
            device=device,
            flip_input=flip_input,
            face_detector=face_detector,
            face_detector_kwargs=kwargs,
            compile=False,
        )

    def detect(self, image: np.ndarray) -> list[tuple[Box, float]]:
        found = self._fa.face_detector.detect_from_image(as_dlib_image(image).copy())
        out = []
        for det in found:
            det = np.asarray(det, dtype=np.float64).ravel()
            score = float(det[4]) if det.size > 4 else 1.0
            out.append(((float(det[0]), float(det[1]), float(det[2]), float(det[3])), score))
        return out

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        det = np.array([*box, 1.0], dtype=np.float64)  # float32 breaks face_alignment.utils.transform
        result = self._fa.get_landmarks_from_image(as_dlib_image(image), detected_faces=[det])
        return np.asarray(result[0], dtype=np.float32)[:, :2].reshape(NUM_LANDMARKS, 2)

