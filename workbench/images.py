"""Still-image I/O at the edge of the library.

Inside the workbench every image is RGB float32 HWC in [0, 1]; files are uint8 (or 16-bit) on disk.
This module is the only place that converts: RGBA -> RGB (composited on black is wrong for faces,
so alpha is simply dropped), grey -> RGB, 16-bit -> 8-bit, and EXIF orientation is applied.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import MediaError
from .fileutil import atomic_path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})

# A 2-core machine holding a 100-megapixel frame as float32 needs 1.2 GB; beyond this we refuse.
MAX_PIXELS = 120_000_000
MIN_SIDE = 8


def is_image_path(path: str | Path) -> bool:
    """True when the file name has a still-image suffix the workbench reads."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def pil_to_float_rgb(img: Image.Image, path: str | Path | None = None) -> np.ndarray:
    """Convert a PIL image of any mode to RGB float32 HWC in [0, 1] (EXIF orientation applied)."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / peak, 0, 1).astype(np.float32)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if img.mode == "F":
        arr = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255.0


def read_image(path: str | Path) -> np.ndarray:
    """Read a still as RGB float32 HWC in [0, 1].

    Handles JPEG/PNG/WebP/BMP/TIFF, RGBA (alpha dropped), grey, palette, 16-bit, and EXIF rotation.

    Raises:
        MediaError: the file is missing, empty, truncated, not an image, or absurdly small/large.
    """
    path = Path(path)
    if not path.exists():
        raise MediaError("image file not found", path, "check the path; relative paths are resolved from the working folder")
    if path.is_dir():
        raise MediaError("expected an image file but got a folder", path)
    if path.stat().st_size == 0:
        raise MediaError("image file is empty (0 bytes)", path, "re-copy or re-export the file")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise MediaError(
                    f"image is too large ({w}x{h} pixels)", path, f"downscale it below {MAX_PIXELS // 1_000_000} megapixels"
                )
            img.load()
            arr = pil_to_float_rgb(img, path)
    except MediaError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise MediaError(
            f"cannot read image ({exc.__class__.__name__}: {exc})", path, "the file is corrupt, truncated or not an image"
        ) from exc
    if min(arr.shape[:2]) < MIN_SIDE:
        raise MediaError(f"image is too small ({arr.shape[1]}x{arr.shape[0]} pixels)", path, f"use images at least {MIN_SIDE} px on a side")
    return arr


def decode_image_bytes(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode an encoded image (PNG/JPEG/...) held in memory to RGB float32 HWC."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return pil_to_float_rgb(img)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MediaError(f"cannot decode image ({exc})", name) from exc


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float [0,1] (or uint8) image -> uint8 with rounding and clipping."""
    if image.dtype == np.uint8:
        return image
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] <= 4):
        # OpenCV rounds and saturates in C, ~20x faster than numpy on a video frame; convertScaleAbs takes
        # the absolute value, so negatives are clamped to 0 first.
        return cv2.convertScaleAbs(cv2.max(image, 0.0), alpha=255.0)
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 (or float) image -> float32 in [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return np.asarray(image, dtype=np.float32)


def encode_image(image: np.ndarray, fmt: str = "png", quality: int = 90) -> bytes:
    """Encode an RGB float or uint8 image (or HW mask) as PNG/JPEG/WebP bytes."""
    arr = to_uint8(image)
    img = Image.fromarray(arr)
    buf = io.BytesIO()
    fmt = fmt.lower().lstrip(".")
    if fmt in ("jpg", "jpeg"):
        img.save(buf, format="JPEG", quality=int(quality), subsampling=0 if quality >= 90 else 2)
    elif fmt == "webp":
        img.save(buf, format="WEBP", quality=int(quality))
    elif fmt == "png":
        img.save(buf, format="PNG", compress_level=1)
    elif fmt == "bmp":
        img.save(buf, format="BMP")
    elif fmt in ("tif", "tiff"):
        img.save(buf, format="TIFF")
    else:
        raise MediaError(f"unsupported image format '{fmt}'", hint="use png, jpg, webp, bmp or tif")
    return buf.getvalue()


def write_image(path: str | Path, image: np.ndarray, quality: int = 90) -> Path:
    """Write an RGB float/uint8 image (or an HW mask) atomically; the format follows the suffix."""
    path = Path(path)
    data = encode_image(image, path.suffix or ".png", quality)
    with atomic_path(path, size_hint=len(data)) as tmp:
        tmp.write_bytes(data)
    return path
