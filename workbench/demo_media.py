"""Offline demo media made from images that ship inside installed packages (no downloads).

- Source face: Grace Hopper (``matplotlib``'s bundled ``grace_hopper.jpg``), as a still or a short clip with
  mild camera motion so the source faceset has some variety.
- Destination: scikit-image's ``astronaut`` (Eileen Collins, a NASA public-domain portrait) turned into a
  short MP4 with smooth pan / zoom / small rotation and a generated melody as its AAC audio track.

Both clips are written with ``workbench.export.export_video`` and tagged as "generated demo input" in
their container metadata; they are inputs, not face-swap output, so they carry no SYNTHETIC label.
"""

from __future__ import annotations

import math
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .export import export_video
from .images import pil_to_float_rgb

DEMO_TAG = "generated demo input"
AUDIO_RATE = 44100

# Face centres (x, y) in the original images, measured with dlib's HOG detector (upsample 0).
_ASTRONAUT_FACE = (222.0, 126.0)  # HOG box 179..266 x 83..170 (87 px) in the 512x512 image
_HOPPER_FACE = (268.0, 244.0)  # HOG box 161..376 x 137..352 (215 px) in the 512x600 image


def demo_source_image() -> np.ndarray:
    """Grace Hopper's portrait (matplotlib sample data) as RGB float32 HWC in [0, 1], 600x512 (HxW)."""
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f, Image.open(f) as img:
        img.load()
        return pil_to_float_rgb(img)


def demo_destination_image() -> np.ndarray:
    """scikit-image's ``astronaut`` (512x512) as RGB float32 HWC in [0, 1]."""
    from skimage import data

    return data.astronaut().astype(np.float32) / np.float32(255.0)


def _ease(t: float) -> float:
    """Smoothstep easing: zero velocity at both ends."""
    t = min(max(t, 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def _camera(
    image: np.ndarray, center: tuple[float, float], crop: float, angle: float, size: int
) -> np.ndarray:
    """Render a virtual camera: a ``crop``-pixel square window around ``center``, rotated by ``angle``
    degrees, resampled to ``size`` x ``size``. Borders that come into view are mirrored, never black."""
    scale = size / crop
    matrix = cv2.getRotationMatrix2D(center, angle, scale)
    matrix[:, 2] += (size / 2.0 - center[0], size / 2.0 - center[1])
    out = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    return np.clip(out, 0.0, 1.0)


def _camera_path(
    n: int,
    rng: np.random.Generator,
    face: tuple[float, float],
    crop: tuple[float, float],
    pan: float,
    max_angle: float,
) -> Iterator[tuple[tuple[float, float], float, float]]:
    """Yield (center, crop size, angle) per frame: an eased zoom and pan plus a slow sway."""
    start = np.array(face) + rng.uniform(-pan, pan, 2)
    end = np.array(face) + rng.uniform(-pan, pan, 2)
    phase = rng.uniform(0, 2 * math.pi)
    for i in range(n):
        t = i / max(n - 1, 1)
        e = _ease(t)
        center = (1 - e) * start + e * end
        size = (1 - e) * crop[0] + e * crop[1]
        angle = max_angle * math.sin(2 * math.pi * 0.8 * t + phase)
        yield (float(center[0]), float(center[1])), float(size), float(angle)


def _melody(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A little pentatonic tune: sine tones with 2 harmonics and an attack/decay envelope (mono float)."""
    n = int(round(seconds * AUDIO_RATE))
    out = np.zeros(n, np.float32)
    scale = [261.63, 293.66, 329.63, 392.00, 440.00, 523.25]  # C major pentatonic (+ octave)
    t0 = 0.0
    note_len = 0.25
    while t0 < seconds:
        freq = scale[int(rng.integers(len(scale)))]
        length = note_len * int(rng.choice([1, 1, 2]))
        i0, i1 = int(t0 * AUDIO_RATE), min(n, int((t0 + length) * AUDIO_RATE))
        t = np.arange(i1 - i0, dtype=np.float32) / AUDIO_RATE
        tone = (
            np.sin(2 * np.pi * freq * t)
            + 0.3 * np.sin(4 * np.pi * freq * t)
            + 0.1 * np.sin(6 * np.pi * freq * t)
        )
        envelope = np.minimum(t / 0.01, 1.0) * np.exp(-3.0 * t / length)
        out[i0:i1] += (0.25 * tone * envelope).astype(np.float32)
        t0 += length
    fade = min(n, int(0.05 * AUDIO_RATE))
    out[n - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return np.clip(out, -1.0, 1.0)


def _write_wav(path: Path, samples: np.ndarray) -> None:
    pcm = np.clip(np.rint(samples * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(AUDIO_RATE)
        w.writeframes(pcm.tobytes())


def make_demo_destination(
    out_path: str | Path,
    seconds: float = 4.0,
    fps: int = 24,
    size: int = 384,
    seed: int = 0,
    *,
    overwrite: bool = True,
    progress: bool = False,
) -> Path:
    """Write the demo destination clip: the astronaut with smooth camera motion and a generated melody.

    The face stays fully in frame and about 110-140 px wide (``size=384``), large enough for dlib's HOG
    detector at upsample 0. H.264 MP4, ``fps`` constant frame rate, AAC 44.1 kHz mono audio.
    """
    if seconds <= 0 or fps <= 0 or size < 128:
        raise ValueError("seconds and fps must be > 0 and size >= 128")
    rng = np.random.default_rng(seed)
    image = demo_destination_image()
    n = max(1, int(round(seconds * fps)))
    # Crop 300 -> 240 source px into `size` output px: the 87 px HOG face becomes ~111..139 px at 384.
    k = size / 384.0
    path = _camera_path(n, rng, _ASTRONAUT_FACE, (300.0 * k, 240.0 * k), pan=12.0 * k, max_angle=4.0)
    frames = (_camera(image, c, s, a, size) for c, s, a in path)
    timestamps = [i / fps for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="workbench-demo-") as tmp:
        wav = Path(tmp) / "melody.wav"
        _write_wav(wav, _melody(n / fps, rng))
        return export_video(
            frames,
            timestamps,
            out_path,
            audio_source=wav,
            provenance=None,
            label_synthetic=False,
            crf=20,
            overwrite=overwrite,
            progress=progress,
            end_time=n / fps,
            preset="veryfast",
            metadata={
                "comment": f"{DEMO_TAG}: scikit-image astronaut with synthetic camera motion and a "
                "generated melody (Face-Swap Workbench demo)",
                "workbench_kind": DEMO_TAG,
            },
        )


def make_demo_source_clip(
    out_path: str | Path,
    frames: int = 36,
    fps: int = 12,
    size: int = 384,
    seed: int = 1,
    *,
    overwrite: bool = True,
    progress: bool = False,
) -> Path:
    """Write a short silent clip of Grace Hopper with mild pan / zoom / rotation (source-faceset variety)."""
    if frames < 1 or fps <= 0 or size < 128:
        raise ValueError("frames and fps must be > 0 and size >= 128")
    rng = np.random.default_rng(seed)
    image = demo_source_image()
    path = _camera_path(frames, rng, _HOPPER_FACE, (460.0, 380.0), pan=20.0, max_angle=8.0)
    images = (_camera(image, c, s, a, size) for c, s, a in path)
    return export_video(
        images,
        [i / fps for i in range(frames)],
        out_path,
        audio_source=None,
        provenance=None,
        label_synthetic=False,
        crf=20,
        overwrite=overwrite,
        progress=progress,
        end_time=frames / fps,
        preset="veryfast",
        metadata={
            "comment": f"{DEMO_TAG}: matplotlib's grace_hopper.jpg with synthetic camera motion "
            "(Face-Swap Workbench demo)",
            "workbench_kind": DEMO_TAG,
        },
    )
