"""Atomic file writes: a reader (another process, a crash) never sees half a file."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import DiskFullError

# errnos that mean "no room left": the disk is full or the user's quota is used up
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask is a set-and-return)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_disk_full(exc: BaseException | None) -> bool:
    """True for an OSError that means the disk or quota is full, also when a library re-raised it as
    something else (torch.save turns it into a RuntimeError about the zip writer)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def disk_full_error(folder: str | Path, needed_bytes: int | None = None) -> DiskFullError:
    """A clear "disk full" error naming the folder, the space needed (when known) and the space free."""
    folder = Path(folder)
    free = None
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(folder).free
    need = f"about {_mb(needed_bytes)} more is needed" if needed_bytes else "more space is needed"
    have = f", {_mb(free)} free" if free is not None else ""
    return DiskFullError(f"disk full: {need}{have}", folder,
                         "free some space on that disk (or point the project at a bigger one) and re-run the "
                         "same command: finished work is kept")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{max(size, 0) / 1e3:.0f} kB"


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None, size_hint: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``.

    The temporary file lives in the same folder so ``os.replace`` is an atomic rename.
    If the body raises, the temporary file is removed and ``path`` is untouched.
    ``suffix`` defaults to the final suffix of ``path`` so that tools that pick a
    format from the extension (OpenCV, ffmpeg) still work on the temporary name.
    A full disk raises :class:`DiskFullError` naming the folder and the space needed (``size_hint`` bytes
    when the caller knows the size, else what was written before the disk filled up).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.stem}.tmp-", suffix=suffix if suffix is not None else path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; files people share (exports, sheets, faces) get the user's usual mode instead.
    with contextlib.suppress(OSError):
        os.chmod(tmp, 0o666 & ~current_umask())
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        written = 0
        with contextlib.suppress(OSError):
            written = tmp.stat().st_size
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if is_disk_full(exc):
            previous = 0
            with contextlib.suppress(OSError):
                previous = path.stat().st_size
            raise disk_full_error(path.parent, max(written, previous, size_hint or 0) or None) from exc
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    with atomic_path(path, size_hint=len(data)) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(path: str | Path, obj: Any) -> None:
    """Append one JSON line; a crash can at worst leave a truncated last line, which readers skip."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(obj) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(path.parent, len(line.encode())) from exc
        raise


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSON-lines file, skipping a truncated or corrupt line instead of failing."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
