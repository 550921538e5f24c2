"""XSeg labels: include/exclude polygons in aligned-face pixels, their rasterisation, and compact masks.

DFL keeps ``seg_ie_polys`` (polygons) and ``xseg_mask`` (an applied mask as PNG bytes) in a pickled dict
inside the JPEG. Here both live in the face file's JSON metadata (``workbench.faceset``, schema 2):
polygons as point lists, the applied mask as base64 PNG bytes. No torch, no cv2-heavy work at import.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

POLY_KINDS = ("include", "exclude")
# A JPEG comment segment holds at most 65533 bytes and the metadata shares it with the landmarks; DFL caps
# its mask at 50 000 bytes for the same reason (one APP15 segment).
MASK_MAX_BYTES = 40_000


@dataclass(frozen=True)
class SegPolygon:
    """One polygon in aligned-face pixel coordinates; ``include`` adds face, ``exclude`` removes it.

    ``closed`` is False only for the polygon the editor is still drawing; rasterisation uses every
    polygon with at least three points either way.
    """

    kind: str
    points: tuple[tuple[float, float], ...]
    closed: bool = True

    def __post_init__(self) -> None:
        if self.kind not in POLY_KINDS:
            raise ValueError(f"polygon kind must be one of {POLY_KINDS}, got {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "closed": bool(self.closed),
                "points": [[round(float(x), 2), round(float(y), 2)] for x, y in self.points]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegPolygon:
        pts = np.asarray(data.get("points", []), dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(pts).all():
            raise ValueError("non-finite polygon point")
        return cls(str(data["kind"]), tuple((float(x), float(y)) for x, y in pts), bool(data.get("closed", True)))

    def scaled(self, factor: float) -> SegPolygon:
        return SegPolygon(self.kind, tuple((x * factor, y * factor) for x, y in self.points), self.closed)


def polygons_from_list(items: Iterable[dict[str, Any]]) -> tuple[SegPolygon, ...]:
    """Parse the stored list of polygon dicts (raises ValueError/KeyError/TypeError on bad data)."""
    return tuple(SegPolygon.from_dict(item) for item in items)


def rasterize_polygons(polygons: Sequence[SegPolygon], shape_hw: tuple[int, ...]) -> np.ndarray:
    """Fill the polygons into an (H, W) float32 mask: every include polygon 1, then every exclude 0.

    Excludes always win over includes whatever the drawing order (DFL sorts includes first on load).
    Polygons with fewer than three points cover nothing.
    """
    h, w = int(shape_hw[0]), int(shape_hw[1])
    mask = np.zeros((h, w), np.uint8)
    for kind, value in (("include", 1), ("exclude", 0)):
        for poly in polygons:
            if poly.kind == kind and len(poly.points) >= 3:
                # Sub-pixel coordinates: fillPoly with 2 fractional bits keeps edges within 1/4 px.
                pts = np.rint(np.asarray(poly.points, np.float64) * 4.0).astype(np.int32)
                cv2.fillPoly(mask, [pts], value, lineType=cv2.LINE_8, shift=2)
    return mask.astype(np.float32)


def has_labels(polygons: Sequence[SegPolygon]) -> bool:
    """True when at least one polygon covers area (three or more points)."""
    return any(len(p.points) >= 3 for p in polygons)


def encode_mask_png(mask: np.ndarray, max_bytes: int = MASK_MAX_BYTES) -> bytes:
    """Binarise a (H, W) mask at 0.5 (as DFL stores it) and encode it as a grey PNG of at most ``max_bytes``.

    A mask whose PNG is too large is halved in size until it fits; :func:`decode_mask_png` scales it back.
    """
    from PIL import Image

    m = np.asarray(mask, np.float32)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"mask must be (H, W), got {m.shape}")
    binary = np.where(m >= 0.5, 255, 0).astype(np.uint8)
    while True:
        buf = io.BytesIO()
        Image.fromarray(binary, mode="L").save(buf, format="PNG", optimize=True)
        data = buf.getvalue()
        if len(data) <= max_bytes or min(binary.shape) <= 16:
            return data
        binary = cv2.resize(binary, (binary.shape[1] // 2, binary.shape[0] // 2), interpolation=cv2.INTER_AREA)
        binary = np.where(binary >= 128, 255, 0).astype(np.uint8)


def decode_mask_png(data: bytes, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Decode :func:`encode_mask_png` bytes to an (H, W) float32 mask in [0, 1], resized to ``size`` if given."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        mask = np.asarray(img.convert("L"), np.float32) / 255.0
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        if mask.shape != (h, w):
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(mask, 0.0, 1.0).astype(np.float32)
