"""Aligned faces as self-describing image files.

Each aligned face is a PNG or JPEG that carries its own metadata as versioned JSON inside the file:
a PNG ``iTXt`` chunk or a JPEG comment (COM) segment, both keyed ``workbench``. No pickle, no side
files: a user can delete, rename or move faces with any file manager and the faceset stays valid.
A folder scan rebuilds the index; a cached index (``.index.json``) only speeds up re-scans and is
ignored entry by entry whenever a file's size or modification time changed.

Schema history: 1 = geometry and provenance; 2 adds XSeg labels (``seg_polys``, include/exclude polygons in
aligned pixels) and the applied XSeg mask (``xseg_mask``, base64 PNG). Version-1 files read as having
neither; :func:`update_face_meta` rewrites only the metadata (pixels untouched, atomic).
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from .errors import MetadataError, WorkbenchError
from .fileutil import atomic_path, atomic_write_json
from .images import decode_image_bytes, to_uint8
from .segment.labels import SegPolygon, polygons_from_list

SCHEMA_VERSION = 2
METADATA_KEY = "workbench"
FACE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
INDEX_NAME = ".index.json"


@dataclass(frozen=True)
class FaceMeta:
    """Everything known about one aligned face; stored as JSON inside the image file.

    Coordinates: ``landmarks`` are in aligned-face pixels, ``source_landmarks`` and ``box`` in
    frame pixels, and ``face_matrix`` maps frame pixels to aligned-face pixels.
    """

    face_type: str
    size: int
    landmarks: np.ndarray = field(compare=False, repr=False)
    source_landmarks: np.ndarray = field(compare=False, repr=False)
    face_matrix: np.ndarray = field(compare=False, repr=False)
    source_file: str = ""
    frame_index: int = 0
    face_index: int = 0
    timestamp: float | None = None
    source_size: tuple[int, int] = (0, 0)
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    score: float = 0.0
    detector: str = ""
    landmarker: str = ""
    identity_distance: float | None = None
    origin: str = "detected"  # "detected" by the engine, or "tracked" (KLT filled a frame the detector missed)
    seg_polys: tuple[SegPolygon, ...] = ()
    xseg_mask: bytes | None = field(default=None, compare=False, repr=False)
    schema_version: int = SCHEMA_VERSION

    def landmarks_at(self, size: float) -> np.ndarray:
        """The (68, 2) landmarks in the pixels of this face drawn ``size`` pixels wide, float32."""
        return np.asarray(self.landmarks, np.float32) * (size / float(self.size))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "face_type": self.face_type,
            "size": int(self.size),
            "landmarks": np.round(np.asarray(self.landmarks, dtype=np.float64), 3).tolist(),
            "source_landmarks": np.round(np.asarray(self.source_landmarks, dtype=np.float64), 3).tolist(),
            "face_matrix": np.asarray(self.face_matrix, dtype=np.float64).tolist(),
            "source_file": self.source_file,
            "frame_index": int(self.frame_index),
            "face_index": int(self.face_index),
            "timestamp": None if self.timestamp is None else float(self.timestamp),
            "source_size": [int(v) for v in self.source_size],
            "box": [float(v) for v in self.box],
            "score": float(self.score),
            "detector": self.detector,
            "landmarker": self.landmarker,
            "identity_distance": None if self.identity_distance is None else float(self.identity_distance),
            "origin": self.origin,
            "seg_polys": [p.to_dict() for p in self.seg_polys],
            "xseg_mask": None if self.xseg_mask is None else base64.b64encode(self.xseg_mask).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str | Path | None = None) -> FaceMeta:
        """Build from the stored JSON dict, migrating older schema versions; raises MetadataError.

        Version 1 (no XSeg fields) migrates to no polygons and no applied mask.
        """
        from .align import normalize_face_type
        from .errors import ConfigError

        if not isinstance(data, dict):
            raise MetadataError(f"broken face metadata (a JSON {type(data).__name__} instead of an object)", path,
                                "re-extract this face or move it out of the faceset")
        try:
            face_type = normalize_face_type(data["face_type"])
        except ConfigError as exc:
            raise MetadataError(f"unknown face type {data['face_type']!r} in the face metadata", path,
                                "re-extract this face or move it out of the faceset") from exc
        except KeyError:
            face_type = None
        try:
            version = int(data.get("schema_version", 0))
            if version > SCHEMA_VERSION:
                raise MetadataError(
                    f"face metadata schema {version} is newer than this workbench supports ({SCHEMA_VERSION})",
                    path,
                    "upgrade the workbench package",
                )
            landmarks = np.asarray(data["landmarks"], dtype=np.float32)
            source_landmarks = np.asarray(data["source_landmarks"], dtype=np.float32)
            matrix = np.asarray(data["face_matrix"], dtype=np.float64)
            if landmarks.shape != (68, 2) or source_landmarks.shape != (68, 2) or matrix.shape != (2, 3):
                raise ValueError(
                    f"bad shapes landmarks {landmarks.shape}, source_landmarks {source_landmarks.shape}, "
                    f"face_matrix {matrix.shape}"
                )
            if not (np.isfinite(landmarks).all() and np.isfinite(matrix).all()):
                raise ValueError("non-finite coordinates")
            size = int(data["size"])
            if size < 1:
                raise ValueError(f"face size {size} px (must be >= 1)")
            if face_type is None:
                raise KeyError("face_type")
            return cls(
                face_type=face_type,
                size=size,
                landmarks=landmarks,
                source_landmarks=source_landmarks,
                face_matrix=matrix,
                source_file=str(data.get("source_file", "")),
                frame_index=int(data.get("frame_index", 0)),
                face_index=int(data.get("face_index", 0)),
                timestamp=None if data.get("timestamp") is None else float(data["timestamp"]),
                source_size=tuple(int(v) for v in data.get("source_size", (0, 0))),
                box=tuple(float(v) for v in data.get("box", (0, 0, 0, 0))),
                score=float(data.get("score", 0.0)),
                detector=str(data.get("detector", "")),
                landmarker=str(data.get("landmarker", "")),
                identity_distance=None if data.get("identity_distance") is None else float(data["identity_distance"]),
                origin=str(data.get("origin", "detected")),
                seg_polys=polygons_from_list(data.get("seg_polys") or ()),
                xseg_mask=base64.b64decode(data["xseg_mask"], validate=True) if data.get("xseg_mask") else None,
                schema_version=SCHEMA_VERSION,
            )
        except MetadataError:
            raise
        except (KeyError, TypeError, ValueError, base64.binascii.Error) as exc:
            raise MetadataError(
                f"broken face metadata ({exc.__class__.__name__}: {exc})",
                path,
                "re-extract this face or move it out of the faceset",
            ) from exc


@dataclass(frozen=True)
class FaceRecord:
    """One aligned face file and its metadata."""

    path: Path
    meta: FaceMeta


@dataclass(frozen=True)
class FacesetScan:
    """The result of scanning a folder: valid faces (ordered) and files that could not be used."""

    folder: Path
    faces: tuple[FaceRecord, ...]
    broken: tuple[tuple[Path, str], ...]

    def __len__(self) -> int:
        return len(self.faces)


def encode_aligned_face(image: np.ndarray, meta: FaceMeta, fmt: str = "jpg", quality: int = 90) -> bytes:
    """Encode an aligned face image with its metadata embedded; returns the file bytes."""
    payload = _metadata_payload(meta)
    img = Image.fromarray(to_uint8(image))
    buf = io.BytesIO()
    fmt = fmt.lower().lstrip(".")
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt(METADATA_KEY, payload, zip=True)
        img.save(buf, format="PNG", pnginfo=info, compress_level=1)
    elif fmt in ("jpg", "jpeg"):
        img.save(buf, format="JPEG", quality=int(quality), comment=payload.encode("utf-8"))
    else:
        raise MetadataError(f"aligned faces are PNG or JPEG, not '{fmt}'", hint="use a .png or .jpg file name")
    return buf.getvalue()


def write_aligned_face(path: str | Path, image: np.ndarray, meta: FaceMeta, quality: int = 90) -> Path:
    """Write an aligned face with embedded metadata, atomically (format from the suffix)."""
    path = Path(path)
    data = encode_aligned_face(image, meta, path.suffix, quality)
    with atomic_path(path, size_hint=len(data)) as tmp:
        tmp.write_bytes(data)
    return path


def _payload_from_image(img: Image.Image) -> str | None:
    if img.format == "PNG":
        text = img.text if hasattr(img, "text") else img.info
        value = text.get(METADATA_KEY) if text else None
        return value if isinstance(value, str) else None
    comment = img.info.get("comment")
    if isinstance(comment, bytes):
        return comment.decode("utf-8", errors="replace")
    return comment


def _meta_from_payload(payload: str | None, path: Path) -> FaceMeta:
    if not payload:
        raise MetadataError("no workbench metadata in this image", path, "only faces written by `workbench extract` carry it")
    try:
        data = json.loads(payload)[METADATA_KEY]
    except (json.JSONDecodeError, KeyError, TypeError, IndexError) as exc:
        raise MetadataError(f"corrupt workbench metadata ({exc.__class__.__name__}: {exc})", path,
                            "re-extract this face or move it out of the faceset") from exc
    return FaceMeta.from_dict(data, path)


def _read_meta(source: str | Path | io.BytesIO, path: Path) -> FaceMeta:
    try:
        with Image.open(source) as img:
            return _meta_from_payload(_payload_from_image(img), path)
    except MetadataError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise MetadataError(f"cannot read aligned face ({exc})", path, "the file is corrupt or not an image") from exc


def read_face_meta(path: str | Path) -> FaceMeta:
    """Read only the metadata of an aligned face file (no pixel decoding)."""
    return _read_meta(path, Path(path))


def load_aligned_face(path: str | Path) -> tuple[np.ndarray, FaceMeta]:
    """Read an aligned face image (RGB float32) and its metadata, from one read of the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MetadataError(f"cannot read aligned face ({exc})", path, "check the file exists and is readable") from exc
    image, meta = decode_aligned_face(data, path)
    if image.shape[0] != meta.size or image.shape[1] != meta.size:
        # A user resized the file in an editor: scale the aligned-space geometry to match.
        factor = image.shape[0] / float(meta.size)
        meta = FaceMeta(**{**meta.__dict__, "size": image.shape[0],
                           "landmarks": meta.landmarks * factor,
                           "face_matrix": meta.face_matrix * factor,
                           "seg_polys": tuple(p.scaled(factor) for p in meta.seg_polys)})
    return image, meta


def decode_aligned_face(data: bytes, name: str | Path = "<bytes>") -> tuple[np.ndarray, FaceMeta]:
    """Decode aligned-face bytes (as produced by :func:`encode_aligned_face`) to (image, metadata)."""
    meta = _read_meta(io.BytesIO(data), Path(name))
    try:
        image = decode_image_bytes(data, str(name))
    except WorkbenchError as exc:  # a damaged JPEG: its header (and metadata) read fine, the pixels do not
        raise MetadataError(f"the face image is damaged ({exc.message})", name,
                            "re-extract this face or move it out of the faceset") from exc
    return image, meta


def list_face_files(folder: str | Path) -> list[Path]:
    """Aligned-face candidate files in a folder (not recursive, hidden files ignored), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FACE_SUFFIXES and not p.name.startswith("."))


def scan_faceset(folder: str | Path, use_cache: bool = True) -> FacesetScan:
    """Scan a folder of aligned faces; broken files are reported, not fatal.

    The cached index maps file name -> (size, mtime_ns, metadata) and is rewritten atomically after
    each scan, so deleting, renaming or adding files is always picked up.
    """
    folder = Path(folder)
    index_path = folder / INDEX_NAME
    cache: dict[str, Any] = {}
    if use_cache and index_path.exists():
        try:
            cache = json.loads(index_path.read_text(encoding="utf-8")).get("files", {})
        except (json.JSONDecodeError, OSError, AttributeError):
            cache = {}
    faces: list[FaceRecord] = []
    broken: list[tuple[Path, str]] = []
    new_cache: dict[str, Any] = {}
    real_folder = folder.resolve()
    for path in list_face_files(folder):
        if path.is_symlink() and path.resolve().parent != real_folder:
            broken.append((path, "a link to a file outside the faceset folder (not followed)"))
            continue
        try:
            stat = path.stat()
        except OSError as exc:  # a dangling link, or the file vanished during the scan
            broken.append((path, f"cannot read the file ({exc.strerror})"))
            continue
        key = [stat.st_size, stat.st_mtime_ns]
        entry = cache.get(path.name) if isinstance(cache, dict) else None
        try:
            if isinstance(entry, dict) and entry.get("key") == key:
                meta = FaceMeta.from_dict(entry["meta"], path)
            else:
                meta = read_face_meta(path)
        except MetadataError as exc:
            broken.append((path, exc.message))
            continue
        faces.append(FaceRecord(path, meta))
        new_cache[path.name] = {"key": key, "meta": meta.to_dict()}
    faces.sort(key=lambda r: (r.meta.source_file, r.meta.frame_index, r.meta.face_index, r.path.name))
    if use_cache and folder.is_dir() and new_cache != cache:
        try:
            atomic_write_json(index_path, {"schema_version": SCHEMA_VERSION, "files": new_cache})
        except OSError:
            pass  # a read-only faceset is still usable; the index is only a cache
    return FacesetScan(folder, tuple(faces), tuple(broken))


def _metadata_payload(meta: FaceMeta) -> str:
    return json.dumps({METADATA_KEY: meta.to_dict()}, separators=(",", ":"))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _replace_png_payload(data: bytes, payload: str) -> bytes:
    """Swap the ``workbench`` iTXt chunk of a PNG (pixels untouched); raises ValueError on a bad file."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    itxt = _png_chunk(b"iTXt", METADATA_KEY.encode("latin-1") + b"\0\1\0\0\0" + zlib.compress(payload.encode("utf-8")))
    out, pos, inserted = [data[:8]], 8, False
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos:pos + 12 + length]
        if len(chunk) != 12 + length:
            raise ValueError("truncated PNG chunk")
        pos += 12 + length
        if kind in (b"iTXt", b"tEXt", b"zTXt") and chunk[8:8 + len(METADATA_KEY) + 1] == METADATA_KEY.encode() + b"\0":
            continue
        if kind in (b"IDAT", b"IEND") and not inserted:
            out.append(itxt)
            inserted = True
        out.append(chunk)
        if kind == b"IEND":
            break
    return b"".join(out)


def _replace_jpeg_payload(data: bytes, payload: str) -> bytes:
    """Swap the JPEG comment (COM) segment that carries the metadata (pixels untouched)."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG file")
    body = payload.encode("utf-8")
    if len(body) > 65533:
        raise ValueError(f"metadata of {len(body)} bytes does not fit a JPEG comment (65533 max)")
    com = b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body
    out, pos, inserted = [data[:2]], 2, False
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError("corrupt JPEG marker")
        marker = data[pos + 1]
        if marker == 0xDA or not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            if not inserted:
                out.append(com)
            out.append(data[pos:])  # scan data and the rest: copied byte for byte
            return b"".join(out)
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        segment = data[pos:pos + 2 + length]
        pos += 2 + length
        if marker == 0xFE:
            continue  # the old comment (PIL reads one; ours replaces it)
        out.append(segment)
    raise ValueError("JPEG ends before its image data")


def update_face_meta(path: str | Path, **changes: Any) -> FaceMeta:
    """Change some metadata fields of an aligned face file in place, atomically, without re-encoding pixels.

    Used by the XSeg editor (polygons on every click) and ``workbench xseg apply/remove``.

    Raises:
        MetadataError: the file is not an aligned face, or the new metadata does not fit a JPEG comment.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MetadataError(f"cannot read aligned face ({exc})", path, "check the file exists and is readable") from exc
    meta = replace_meta(_read_meta(io.BytesIO(data), path), **changes)
    payload = _metadata_payload(meta)
    try:
        new = _replace_png_payload(data, payload) if data[:4] == b"\x89PNG" else _replace_jpeg_payload(data, payload)
    except ValueError as exc:
        raise MetadataError(f"cannot rewrite the face metadata ({exc})", path,
                            "re-extract this face, or use PNG faces for very large labels") from exc
    with atomic_path(path) as tmp:
        tmp.write_bytes(new)
    return meta


def replace_meta(meta: FaceMeta, **changes: Any) -> FaceMeta:
    """Return a copy of ``meta`` with some fields changed (dataclasses.replace for numpy fields)."""
    values = {**meta.__dict__, **changes}
    return FaceMeta(**values)


def move_to_trash(path: str | Path, trash_dir: str | Path) -> Path:
    """Move a face file into a trash folder (never delete); returns its new path."""
    path = Path(path)
    trash_dir = Path(trash_dir)
    trash_dir.mkdir(parents=True, exist_ok=True)
    target = trash_dir / path.name
    counter = 1
    while target.exists():
        target = trash_dir / f"{path.stem}_{counter}{path.suffix}"
        counter += 1
    os.replace(path, target)
    return target


def restore_from_trash(trash_dir: str | Path, folder: str | Path) -> tuple[int, int]:
    """Move every face of a trash folder back into its faceset folder; a face whose name is taken there stays
    in the trash. Returns ``(restored, kept)``."""
    restored = kept = 0
    for path in list_face_files(Path(trash_dir)):
        target = Path(folder) / path.name
        if target.exists():
            kept += 1
            continue
        os.replace(path, target)
        restored += 1
    return restored, kept
